//! One raw request through the kube-rs client, keeping what the typed API drops: the status
//! code, the `Retry-After` header and the Status body's message. The publisher and the event
//! recorder classify answers with [`retry_class`]; nothing here decides what to send.

use std::time::Duration;

use kube::client::Body;

use crate::outbox::Outcome;

/// Longest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An answer of the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// `Retry-After` (seconds form) or the Status body's `details.retryAfterSeconds`.
    pub retry_after: Option<Duration>,
    /// The Status body's `message`, else the body's text (shortened).
    pub message: String,
}

/// Sends `request`; `Err` is a transport failure (no answer).
pub(crate) async fn send(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
) -> Result<Answer, String> {
    let response = client
        .send(request.map(Body::from))
        .await
        .map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    let header_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response
        .into_body()
        .collect_bytes()
        .await
        .map_err(|e| e.to_string())?;
    let (message, body_after) = if code >= 400 {
        status_message(&body[..body.len().min(MAX_ERROR_BODY)])
    } else {
        (String::new(), None)
    };
    Ok(Answer {
        code,
        retry_after: header_after.or(body_after),
        message,
    })
}

/// The `message` and `details.retryAfterSeconds` of a Status body, or the body as text.
pub(crate) fn status_message(body: &[u8]) -> (String, Option<Duration>) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.get("kind").and_then(|k| k.as_str()) == Some("Status") => {
            let message = v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_string();
            let after = v
                .pointer("/details/retryAfterSeconds")
                .and_then(|s| s.as_u64())
                .filter(|s| *s > 0)
                .map(Duration::from_secs);
            (message, after)
        }
        _ => (
            crate::client::shorten(String::from_utf8_lossy(body).trim(), 200),
            None,
        ),
    }
}

/// The outcome classes every write shares: 2xx delivered; 429, 5xx and 401 (a token being
/// rotated) retried queue-wide, honouring `Retry-After`; 409 retried for this job only.
/// `None` for the codes each job decides itself (403, 404, 422, other 4xx).
pub(crate) fn retry_class(answer: &Answer) -> Option<Outcome> {
    match answer.code {
        200..=299 => Some(Outcome::Delivered),
        409 => Some(Outcome::Retry {
            after: answer.retry_after,
            global: false,
            error: format!("409 Conflict: {}", answer.message),
        }),
        401 | 429 | 500..=599 => Some(Outcome::Retry {
            after: answer.retry_after,
            global: true,
            error: format!("{}: {}", answer.code, answer.message),
        }),
        _ => None,
    }
}

/// A transport failure: retried queue-wide.
pub(crate) fn unreachable(error: String) -> Outcome {
    Outcome::Retry {
        after: None,
        global: true,
        error: format!("API server unreachable: {error}"),
    }
}

/// A client whose every request fails without a network (for tests of queue policy).
#[cfg(test)]
pub(crate) fn dead_client() -> kube::Client {
    let svc = tower::service_fn(|_req: http::Request<Body>| async {
        Err::<http::Response<Body>, std::io::Error>(std::io::Error::other("no server"))
    });
    kube::Client::new(svc, "default")
}
