//! The unary ttrpc server on one conn: reads requests, runs the [`Service`] for each in
//! its own task (as Go's server does), honours the caller's `timeout_nano`, and answers
//! on the request's stream id. Unknown services are answered UNIMPLEMENTED like Go
//! (ttrpc-rust says INVALID_ARGUMENT; newer runtimes rely on 12 for their fallback).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::task::JoinSet;

use super::{Deframer, Frame, Status, TYPE_REQUEST, TYPE_RESPONSE, code};
use crate::mux::{ConnReader, ConnWriter};

/// One incoming unary call.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method name, e.g. `Configure`.
    pub method: String,
    /// The encoded request message.
    pub payload: Bytes,
    /// The caller's deadline, if it sent one.
    pub timeout: Option<Duration>,
}

/// A ttrpc service: one name, any number of unary methods.
pub trait Service: Send + Sync + 'static {
    /// The service name on the wire, e.g. `nri.pkg.api.v1alpha1.Plugin`.
    fn name(&self) -> &str;

    /// Handles one call; unknown methods answer [`Status::unknown_method`].
    fn call(&self, call: Call) -> impl Future<Output = Result<Vec<u8>, Status>> + Send + 'static;
}

/// Serves `service` on a conn until the conn closes. Calls still running then are left
/// to finish (their responses are lost): a pod event that already reached plexusd should
/// complete rather than be cut half-way, since the runtime lets the pod start anyway.
pub async fn serve<S: Service>(mut reader: ConnReader, writer: ConnWriter, service: Arc<S>) {
    let mut deframer = Deframer::default();
    let mut calls = JoinSet::new();
    let mut last_stream = 0u32;
    loop {
        let chunk = tokio::select! {
            chunk = reader.recv() => chunk,
            Some(_) = calls.join_next(), if !calls.is_empty() => continue,
        };
        let Some(chunk) = chunk else { break };
        deframer.push(&chunk);
        while let Some(frame) = deframer.next_frame() {
            let (stream_id, body) = match frame {
                Frame::TooLarge {
                    stream_id,
                    kind: TYPE_REQUEST,
                    length,
                } => {
                    let status = Status::new(
                        code::RESOURCE_EXHAUSTED,
                        format!("message length {length} exceeds maximum message size"),
                    );
                    spawn_reply(&mut calls, &writer, stream_id, Err(status));
                    continue;
                }
                Frame::Message(msg) if msg.kind == TYPE_REQUEST => (msg.stream_id, msg.payload),
                other => {
                    tracing::debug!(?other, "ttrpc server ignoring a non-request message");
                    continue;
                }
            };
            if stream_id % 2 == 0 || stream_id <= last_stream {
                let status = Status::new(
                    code::INVALID_ARGUMENT,
                    format!("stream id {stream_id} must be odd and increasing"),
                );
                spawn_reply(&mut calls, &writer, stream_id, Err(status));
                continue;
            }
            last_stream = stream_id;
            let request = match plexus_proto::ttrpc::Request::decode(body) {
                Ok(request) => request,
                Err(err) => {
                    let status =
                        Status::new(code::INVALID_ARGUMENT, format!("decode request: {err}"));
                    spawn_reply(&mut calls, &writer, stream_id, Err(status));
                    continue;
                }
            };
            if request.service != service.name() {
                let status = Status::unknown_service(&request.service);
                spawn_reply(&mut calls, &writer, stream_id, Err(status));
                continue;
            }
            let timeout = u64::try_from(request.timeout_nano)
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_nanos);
            let fut = service.call(Call {
                method: request.method,
                payload: Bytes::from(request.payload),
                timeout,
            });
            let writer = writer.clone();
            calls.spawn(async move {
                let result = match timeout {
                    Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                        Err(Status::new(
                            code::DEADLINE_EXCEEDED,
                            format!("handler did not finish within {limit:?}"),
                        ))
                    }),
                    None => fut.await,
                };
                reply(&writer, stream_id, result).await;
            });
        }
    }
    calls.detach_all();
}

fn spawn_reply(
    calls: &mut JoinSet<()>,
    writer: &ConnWriter,
    stream_id: u32,
    result: Result<Vec<u8>, Status>,
) {
    let writer = writer.clone();
    calls.spawn(async move { reply(&writer, stream_id, result).await });
}

async fn reply(writer: &ConnWriter, stream_id: u32, result: Result<Vec<u8>, Status>) {
    let body = super::encode_response(&result);
    match super::encode_message(stream_id, TYPE_RESPONSE, &body) {
        Ok(msg) => {
            if writer.send(msg).await.is_err() {
                tracing::debug!(stream_id, "trunk closed before the response could be sent");
            }
        }
        Err(err) => tracing::warn!(stream_id, error = %err, "cannot encode ttrpc response"),
    }
}
