//! Whether the API server answers: every request of a [`track`]ed client records its outcome
//! (any HTTP answer, even an error status, means the server is reachable; a transport failure
//! means it is not). The first answer after a failure is a *reconnection*: the writers'
//! queues wake on it ([`ApiHealth::reconnected`]), so status patches and events queued during
//! an outage go out as soon as a watch (or any request) gets through again, instead of
//! waiting out the backoff they reached while the server was away.

use std::sync::{Arc, Mutex};

use kube::client::Body;

use crate::nad::lock;

/// The API server's reachability as this client last saw it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiHealth {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Bumped at every reconnection.
    reconnects: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// An answer was received since the last failure (false before any request).
    connected: bool,
    /// The last transport failure, kept after a reconnection for `plexusctl status`.
    last_error: Option<String>,
}

/// What [`ApiHealth::snapshot`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// The last request got an answer.
    pub connected: bool,
    /// The last transport failure (still shown after the server came back).
    pub last_error: Option<String>,
}

impl ApiHealth {
    fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                reconnects: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The current view.
    pub fn snapshot(&self) -> HealthSnapshot {
        let state = lock(&self.shared.state);
        HealthSnapshot {
            connected: state.connected,
            last_error: state.last_error.clone(),
        }
    }

    /// True when the last request got an answer.
    pub fn connected(&self) -> bool {
        lock(&self.shared.state).connected
    }

    /// A receiver that changes at every reconnection (the first answer after a failure).
    pub fn reconnected(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.reconnects.subscribe()
    }

    fn answered(&self) {
        let mut state = lock(&self.shared.state);
        let was_failing = !state.connected && state.last_error.is_some();
        state.connected = true;
        drop(state);
        if was_failing {
            tracing::info!("the API server answers again");
            self.shared.reconnects.send_modify(|n| *n += 1);
        }
    }

    fn failed(&self, error: String) {
        let mut state = lock(&self.shared.state);
        if state.connected {
            tracing::warn!(%error, "the API server does not answer");
        }
        state.connected = false;
        state.last_error = Some(error);
    }
}

/// Wraps `client` so every request records its outcome in the returned [`ApiHealth`].
pub fn track(client: kube::Client) -> (kube::Client, ApiHealth) {
    let health = ApiHealth::new();
    let recorder = health.clone();
    let namespace = client.default_namespace().to_string();
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let client = client.clone();
        let health = recorder.clone();
        async move {
            match client.send(req).await {
                Ok(response) => {
                    health.answered();
                    Ok(response)
                }
                Err(err) => {
                    health.failed(err.to_string());
                    Err(err)
                }
            }
        }
    });
    (kube::Client::new(svc, namespace), health)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_then_an_answer_is_a_reconnection() {
        let health = ApiHealth::new();
        let mut rx = health.reconnected();
        assert!(!health.connected());
        health.answered();
        assert!(
            !rx.has_changed().unwrap(),
            "a first answer is no reconnection"
        );
        health.failed("connection refused".into());
        assert_eq!(
            health.snapshot(),
            HealthSnapshot {
                connected: false,
                last_error: Some("connection refused".into())
            }
        );
        health.answered();
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        health.answered();
        assert!(
            !rx.has_changed().unwrap(),
            "only the first answer after a failure"
        );
        assert!(health.snapshot().connected);
    }

    #[tokio::test]
    async fn a_tracked_dead_client_reports_the_failure() {
        let (client, health) = track(crate::request::dead_client());
        let request = http::Request::get("/version").body(Vec::new()).unwrap();
        assert!(crate::request::send(&client, request).await.is_err());
        let snap = health.snapshot();
        assert!(!snap.connected);
        assert!(
            snap.last_error
                .as_deref()
                .unwrap_or("")
                .contains("no server"),
            "{snap:?}"
        );
    }
}
