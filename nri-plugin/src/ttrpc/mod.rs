//! ttrpc, hand-rolled: the 10-byte message framing of containerd/ttrpc (`channel.go`),
//! the Request/Response/Status envelope, a unary [`server`] and a unary [`client`].
//!
//! Header: `[length u32 BE][stream id u32 BE][type u8][flags u8]`, payload length limited
//! to 4 MiB. A response without a status is OK (Go never sends one on success). This
//! module works on byte streams handed over by the [`crate::mux`] and knows nothing of NRI.

pub mod client;
pub mod server;

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::error::{Error, Result};

/// Length of the message header.
pub const HEADER_LEN: usize = 10;
/// Largest message payload either side accepts (Go's `messageLengthMax`).
pub const MAX_MESSAGE_LEN: usize = 4 << 20;
/// Message type of a request.
pub const TYPE_REQUEST: u8 = 0x01;
/// Message type of a response.
pub const TYPE_RESPONSE: u8 = 0x02;
/// Message type of a stream data message (unused by NRI).
pub const TYPE_DATA: u8 = 0x03;

/// gRPC/ttrpc status codes this crate uses (`google.golang.org/grpc/codes`).
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation was cancelled.
    pub const CANCELLED: i32 = 1;
    /// Unknown error (Go's code for errors that are not statuses).
    pub const UNKNOWN: i32 = 2;
    /// The caller sent something invalid.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The deadline passed.
    pub const DEADLINE_EXCEEDED: i32 = 4;
    /// Something was not found.
    pub const NOT_FOUND: i32 = 5;
    /// A limit was hit.
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// Unknown service or method.
    pub const UNIMPLEMENTED: i32 = 12;
    /// Internal error.
    pub const INTERNAL: i32 = 13;
    /// The service is not reachable.
    pub const UNAVAILABLE: i32 = 14;
}

/// A ttrpc status: a code from [`code`] and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Status code.
    pub code: i32,
    /// Message; containerd puts it in the pod's error.
    pub message: String,
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Go's answer to an unknown service: UNIMPLEMENTED "service X".
    pub fn unknown_service(service: &str) -> Self {
        Self::new(code::UNIMPLEMENTED, format!("service {service}"))
    }

    /// Go's answer to an unknown method: UNIMPLEMENTED "method X".
    pub fn unknown_method(method: &str) -> Self {
        Self::new(code::UNIMPLEMENTED, format!("method {method}"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.message)
    }
}

/// The fixed header in front of every ttrpc message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length, header excluded.
    pub length: u32,
    /// Stream id; odd for client-initiated streams.
    pub stream_id: u32,
    /// One of the `TYPE_*` constants.
    pub kind: u8,
    /// Stream flags; 0 for unary calls.
    pub flags: u8,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8; HEADER_LEN]) -> Self {
        let mut b = &buf[..];
        Self {
            length: b.get_u32(),
            stream_id: b.get_u32(),
            kind: b.get_u8(),
            flags: b.get_u8(),
        }
    }

    /// Appends the encoded header to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.length);
        out.put_u32(self.stream_id);
        out.put_u8(self.kind);
        out.put_u8(self.flags);
    }
}

/// One complete message read off a conn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Stream id.
    pub stream_id: u32,
    /// Message type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// The payload (an encoded Request or Response for unary calls).
    pub payload: Bytes,
}

/// What the [`Deframer`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message.
    Message(Message),
    /// A message above [`MAX_MESSAGE_LEN`]; its payload is being discarded.
    TooLarge {
        /// Stream id, so a request can be answered RESOURCE_EXHAUSTED.
        stream_id: u32,
        /// Message type.
        kind: u8,
        /// Declared length.
        length: u32,
    },
}

/// Turns a conn's byte stream, fed in arbitrary chunks, into messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: BytesMut,
    discard: usize,
}

impl Deframer {
    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        let skip = self.discard.min(data.len());
        self.discard -= skip;
        self.buf.extend_from_slice(&data[skip..]);
    }

    /// The next complete frame, if enough bytes have arrived.
    pub fn next_frame(&mut self) -> Option<Frame> {
        if self.discard > 0 || self.buf.len() < HEADER_LEN {
            return None;
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.buf[..HEADER_LEN]);
        let header = Header::parse(&raw);
        let len = header.length as usize;
        if len > MAX_MESSAGE_LEN {
            self.buf.advance(HEADER_LEN);
            let skip = len.min(self.buf.len());
            self.buf.advance(skip);
            self.discard = len - skip;
            return Some(Frame::TooLarge {
                stream_id: header.stream_id,
                kind: header.kind,
                length: header.length,
            });
        }
        if self.buf.len() < HEADER_LEN + len {
            return None;
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        Some(Frame::Message(Message {
            stream_id: header.stream_id,
            kind: header.kind,
            flags: header.flags,
            payload,
        }))
    }
}

/// Encodes one message (header and payload), flags 0.
pub fn encode_message(stream_id: u32, kind: u8, payload: &[u8]) -> Result<Bytes> {
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(Error::MessageTooLarge {
            len: payload.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    Header {
        // Bounded by MAX_MESSAGE_LEN above.
        length: payload.len() as u32,
        stream_id,
        kind,
        flags: 0,
    }
    .encode(&mut out);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Encodes a ttrpc Request body.
pub fn encode_request(service: &str, method: &str, payload: &[u8], timeout_nano: i64) -> Vec<u8> {
    plexus_proto::ttrpc::Request {
        service: service.to_owned(),
        method: method.to_owned(),
        payload: payload.to_vec(),
        timeout_nano,
        metadata: Vec::new(),
    }
    .encode_to_vec()
}

/// Encodes a ttrpc Response body: no status on success (as Go does), and an empty
/// payload on error (Go decodes the payload before looking at the status).
pub fn encode_response(result: &Result<Vec<u8>, Status>) -> Vec<u8> {
    let response = match result {
        Ok(payload) => plexus_proto::ttrpc::Response {
            status: None,
            payload: payload.clone(),
        },
        Err(status) => plexus_proto::ttrpc::Response {
            status: Some(plexus_proto::ttrpc::Status {
                code: status.code,
                message: status.message.clone(),
                details: Vec::new(),
            }),
            payload: Vec::new(),
        },
    };
    response.encode_to_vec()
}

/// Decodes a ttrpc Response body; an absent status or code 0 is success.
pub fn decode_response(body: &[u8]) -> Result<Result<Bytes, Status>, prost::DecodeError> {
    let response = plexus_proto::ttrpc::Response::decode(body)?;
    Ok(match response.status {
        Some(status) if status.code != code::OK => Err(Status::new(status.code, status.message)),
        _ => Ok(Bytes::from(response.payload)),
    })
}

#[cfg(test)]
mod tests;
