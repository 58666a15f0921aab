//! The unary ttrpc client on one conn: odd stream ids from 1 upwards, one pending entry
//! per call, a reader task that routes responses by stream id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Deframer, Frame, Status, TYPE_REQUEST, TYPE_RESPONSE};
use crate::error::CallError;
use crate::mux::{ConnReader, ConnWriter};

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Result<Bytes, Status>>>>>;

/// A ttrpc client over one conn. Dropping it stops its reader task.
#[derive(Debug)]
pub struct Client {
    writer: ConnWriter,
    next_stream: AtomicU32,
    pending: Pending,
    reader: JoinHandle<()>,
}

impl Client {
    /// Starts the response reader over `reader`; requests go out through `writer`.
    pub fn new(reader: ConnReader, writer: ConnWriter) -> Self {
        let pending = Pending::default();
        let task = tokio::spawn(read_responses(reader, pending.clone()));
        Self {
            writer,
            next_stream: AtomicU32::new(1),
            pending,
            reader: task,
        }
    }

    /// Calls `service/method` with an encoded request and waits up to `wait` for the
    /// encoded response. `timeout_nano` is what the peer is told (0: no deadline).
    pub async fn call(
        &self,
        service: &str,
        method: &str,
        payload: &[u8],
        timeout_nano: i64,
        wait: Duration,
    ) -> Result<Bytes, CallError> {
        let stream_id = self.next_stream.fetch_add(2, Ordering::Relaxed);
        let body = super::encode_request(service, method, payload, timeout_nano);
        let msg = super::encode_message(stream_id, TYPE_REQUEST, &body)
            .map_err(|err| CallError::Send(Box::new(err)))?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(stream_id, tx);
        if self.writer.send(msg).await.is_err() {
            lock(&self.pending).remove(&stream_id);
            return Err(CallError::Closed);
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(Ok(payload))) => Ok(payload),
            Ok(Ok(Err(status))) => Err(CallError::Status(status)),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&stream_id);
                Err(CallError::Timeout(wait))
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked: every operation is one call.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_responses(mut reader: ConnReader, pending: Pending) {
    let mut deframer = Deframer::default();
    while let Some(chunk) = reader.recv().await {
        deframer.push(&chunk);
        while let Some(frame) = deframer.next_frame() {
            match frame {
                Frame::Message(msg) if msg.kind == TYPE_RESPONSE => {
                    let Some(tx) = lock(&pending).remove(&msg.stream_id) else {
                        tracing::debug!(
                            stream_id = msg.stream_id,
                            "ttrpc response for no pending call"
                        );
                        continue;
                    };
                    let result = super::decode_response(&msg.payload).unwrap_or_else(|err| {
                        Err(Status::new(
                            super::code::INTERNAL,
                            format!("decode ttrpc response: {err}"),
                        ))
                    });
                    let _ = tx.send(result);
                }
                Frame::TooLarge { stream_id, .. } => {
                    if let Some(tx) = lock(&pending).remove(&stream_id) {
                        let _ = tx.send(Err(Status::new(
                            super::code::RESOURCE_EXHAUSTED,
                            "response exceeds the maximum message size",
                        )));
                    }
                }
                other => tracing::debug!(?other, "ttrpc client ignoring a non-response message"),
            }
        }
    }
    // Conn closed: dropping the senders fails every pending call with Closed.
    lock(&pending).clear();
}
