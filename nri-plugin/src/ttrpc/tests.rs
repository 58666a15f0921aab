use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::server::{Call, Service, serve};
use super::*;
use crate::error::CallError;
use crate::mux::Mux;

#[test]
fn header_roundtrip_and_layout() {
    let mut out = BytesMut::new();
    let h = Header {
        length: 0x3b,
        stream_id: 1,
        kind: TYPE_REQUEST,
        flags: 0,
    };
    h.encode(&mut out);
    assert_eq!(&out[..], &[0, 0, 0, 0x3b, 0, 0, 0, 1, 1, 0]);
    let raw: [u8; HEADER_LEN] = out[..].try_into().unwrap();
    assert_eq!(Header::parse(&raw), h);
}

#[test]
fn deframer_handles_every_split_point() {
    let mut wire = encode_message(1, TYPE_REQUEST, b"hello").unwrap().to_vec();
    wire.extend_from_slice(&encode_message(3, TYPE_RESPONSE, b"").unwrap());
    wire.extend_from_slice(&encode_message(5, TYPE_REQUEST, &[9u8; 300]).unwrap());
    for split in 0..=wire.len() {
        let mut d = Deframer::default();
        d.push(&wire[..split]);
        let mut got = Vec::new();
        while let Some(f) = d.next_frame() {
            got.push(f);
        }
        d.push(&wire[split..]);
        while let Some(f) = d.next_frame() {
            got.push(f);
        }
        let ids: Vec<u32> = got
            .iter()
            .map(|f| match f {
                Frame::Message(m) => m.stream_id,
                Frame::TooLarge { .. } => panic!("unexpected too-large frame"),
            })
            .collect();
        assert_eq!(ids, [1, 3, 5], "split at {split}");
        assert!(
            matches!(&got[0], Frame::Message(m) if &m.payload[..] == b"hello" && m.kind == TYPE_REQUEST)
        );
        assert!(matches!(&got[1], Frame::Message(m) if m.payload.is_empty()));
        assert!(matches!(&got[2], Frame::Message(m) if m.payload.len() == 300));
    }
}

#[test]
fn deframer_skips_oversized_messages() {
    let len = MAX_MESSAGE_LEN + 10;
    let mut d = Deframer::default();
    let mut head = BytesMut::new();
    Header {
        length: len as u32,
        stream_id: 7,
        kind: TYPE_REQUEST,
        flags: 0,
    }
    .encode(&mut head);
    d.push(&head);
    d.push(&vec![0u8; 1000]);
    assert_eq!(
        d.next_frame(),
        Some(Frame::TooLarge {
            stream_id: 7,
            kind: TYPE_REQUEST,
            length: len as u32
        })
    );
    d.push(&vec![0u8; len - 1000]);
    assert_eq!(d.next_frame(), None);
    d.push(&encode_message(9, TYPE_REQUEST, b"ok").unwrap());
    assert!(matches!(d.next_frame(), Some(Frame::Message(m)) if m.stream_id == 9));
    assert!(encode_message(1, TYPE_REQUEST, &vec![0u8; MAX_MESSAGE_LEN + 1]).is_err());
}

#[test]
fn golden_error_response_and_absent_status() {
    // reference §1.6: code 2 UNKNOWN, "boom".
    let body = encode_response(&Err(Status::new(code::UNKNOWN, "boom")));
    assert_eq!(
        body,
        [0x0a, 0x08, 0x08, 0x02, 0x12, 0x04, b'b', b'o', b'o', b'm']
    );
    assert_eq!(
        decode_response(&body).unwrap(),
        Err(Status::new(code::UNKNOWN, "boom"))
    );
    // Success: no status at all, as Go sends it.
    assert_eq!(
        encode_response(&Ok(vec![0x10, 0x07])),
        [0x12, 0x02, 0x10, 0x07]
    );
    assert_eq!(encode_response(&Ok(Vec::new())), Vec::<u8>::new());
    assert_eq!(decode_response(&[]).unwrap(), Ok(Bytes::new()));
    // An explicit OK status (0a 00) is success too.
    assert_eq!(
        decode_response(&[0x0a, 0x00, 0x12, 0x02, 0x10, 0x07]).unwrap(),
        Ok(Bytes::from_static(&[0x10, 0x07]))
    );
}

/// Echo service: `Echo` returns the payload, `Fail` an error, `Sleep` never finishes.
struct Echo;

impl Service for Echo {
    fn name(&self) -> &str {
        "test.Echo"
    }

    // `async fn` would borrow `self`; the server needs a 'static future.
    #[allow(clippy::manual_async_fn)]
    fn call(&self, call: Call) -> impl Future<Output = Result<Vec<u8>, Status>> + Send + 'static {
        async move {
            match call.method.as_str() {
                "Echo" => Ok(call.payload.to_vec()),
                "Fail" => Err(Status::new(code::NOT_FOUND, "no such thing")),
                "Sleep" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Vec::new())
                }
                other => Err(Status::unknown_method(other)),
            }
        }
    }
}

/// A client and a server of `Echo` talking through two muxes over a duplex pipe.
fn pair() -> (Client, Mux, Mux) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (client_mux, mut client_readers) = Mux::start(a, &[1]);
    let (server_mux, mut server_readers) = Mux::start(b, &[1]);
    tokio::spawn(serve(
        server_readers.remove(&1).unwrap(),
        server_mux.writer(1),
        Arc::new(Echo),
    ));
    let client = Client::new(client_readers.remove(&1).unwrap(), client_mux.writer(1));
    (client, client_mux, server_mux)
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn unary_calls_succeed_and_fail_with_status() {
    let (client, _a, _b) = pair();
    let big = vec![0xabu8; 20_000];
    let got = client
        .call("test.Echo", "Echo", &big, 0, WAIT)
        .await
        .unwrap();
    assert_eq!(&got[..], &big[..]);
    match client.call("test.Echo", "Fail", b"", 0, WAIT).await {
        Err(CallError::Status(s)) => {
            assert_eq!(s, Status::new(code::NOT_FOUND, "no such thing"))
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_method_and_service_are_unimplemented() {
    let (client, _a, _b) = pair();
    match client.call("test.Echo", "Nope", b"", 0, WAIT).await {
        Err(CallError::Status(s)) => assert_eq!(s, Status::new(code::UNIMPLEMENTED, "method Nope")),
        other => panic!("expected UNIMPLEMENTED, got {other:?}"),
    }
    match client.call("other.Svc", "Echo", b"", 0, WAIT).await {
        Err(CallError::Status(s)) => {
            assert_eq!(s, Status::new(code::UNIMPLEMENTED, "service other.Svc"))
        }
        other => panic!("expected UNIMPLEMENTED, got {other:?}"),
    }
}

#[tokio::test]
async fn server_honours_timeout_nano() {
    let (client, _a, _b) = pair();
    // The Sleep handler never ends by itself (an hour): a DEADLINE_EXCEEDED status from the
    // server, not the client's own WAIT, is the 50 ms timeout honoured.
    let res = client
        .call("test.Echo", "Sleep", b"", 50_000_000, WAIT)
        .await;
    match res {
        Err(CallError::Status(s)) => assert_eq!(s.code, code::DEADLINE_EXCEEDED),
        other => panic!("expected DEADLINE_EXCEEDED, got {other:?}"),
    }
}

#[tokio::test]
async fn client_times_out_and_sees_closed_trunk() {
    let (client, _a, server_mux) = pair();
    match client
        .call("test.Echo", "Sleep", b"", 0, Duration::from_millis(50))
        .await
    {
        Err(CallError::Timeout(_)) => {}
        other => panic!("expected a client timeout, got {other:?}"),
    }
    drop(server_mux);
    match client.call("test.Echo", "Echo", b"x", 0, WAIT).await {
        Err(CallError::Closed) => {}
        other => panic!("expected Closed, got {other:?}"),
    }
}
