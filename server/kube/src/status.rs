//! The network-status publisher: writes `k8s.v1.cni.cncf.io/network-status` on the pod with a
//! JSON merge patch of `pods/status` that also carries `metadata.uid`, off the pod-setup path.
//!
//! Per pod (`namespace/name`) only the latest status is kept; a recreated pod with the same
//! name replaces the old one's job. The uid in the patch makes the API server refuse to write
//! a pod that is not the one the status was made for (a changed uid is an immutable-field
//! error, 422): that ends the job, as does 404 (the pod is gone). 409, 429 (with its
//! `Retry-After`), 5xx and connection errors are retried with capped exponential backoff; a
//! 403 is logged naming the missing permission and retried slowly (RBAC may be fixed). The
//! daemon re-drives convergence after a restart by publishing every recorded sandbox again.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::error::Error;
use crate::outbox::{Job, Outbox, Outcome, QueueStats, RetryPolicy};
use crate::request;

/// The annotation written.
pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";
/// Pods with a status waiting at most (a node runs a few hundred pods).
pub const DEFAULT_CAPACITY: usize = 4096;
/// Largest status accepted (the API server limits all annotations of an object to 256 KiB).
pub const MAX_STATUS_BYTES: usize = 256 * 1024;
/// The field manager named in patches.
pub const FIELD_MANAGER: &str = "plexus";

/// Which pod a status is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`: the patch only applies to this incarnation of the pod.
    pub uid: String,
}

impl std::fmt::Display for PodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (uid {})", self.namespace, self.name, self.uid)
    }
}

/// Why a status was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The pod key is incomplete.
    #[error("network-status for pod {pod}: {reason}")]
    InvalidPod {
        /// The pod.
        pod: String,
        /// What is missing.
        reason: &'static str,
    },
    /// The status is larger than an annotation may be.
    #[error(
        "network-status for pod {pod} is {size} bytes; at most {MAX_STATUS_BYTES} fit in the pod's annotations"
    )]
    TooLarge {
        /// The pod.
        pod: String,
        /// Its size.
        size: usize,
    },
    /// The queue holds its maximum of pods.
    #[error("network-status for pod {pod}: the publish queue is full ({capacity} pods waiting)")]
    QueueFull {
        /// The pod.
        pod: String,
        /// The queue's capacity.
        capacity: usize,
    },
}

/// Publishes network-status annotations asynchronously. Cheap to clone; the worker stops when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Publisher {
    outbox: Outbox<StatusJob>,
    capacity: usize,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts the worker (inside a tokio runtime) with the default capacity and backoff.
    pub fn start(client: kube::Client) -> Self {
        Self::start_with(client, DEFAULT_CAPACITY, RetryPolicy::default())
    }

    /// Starts the worker with a capacity and a backoff policy.
    pub fn start_with(client: kube::Client, capacity: usize, policy: RetryPolicy) -> Self {
        Self {
            outbox: Outbox::start(client, capacity, policy, "network-status"),
            capacity,
        }
    }

    /// Queues `status` for the pod; a status still waiting for the same pod is replaced.
    pub fn publish(&self, pod: PodKey, status: &str) -> Result<(), PublishError> {
        let display = pod.to_string();
        let reason = if pod.namespace.is_empty() {
            Some("namespace is empty")
        } else if pod.name.is_empty() {
            Some("name is empty")
        } else if pod.uid.is_empty() {
            Some("uid is empty (the patch must name the pod's uid)")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PublishError::InvalidPod {
                pod: display,
                reason,
            });
        }
        if status.len() > MAX_STATUS_BYTES {
            return Err(PublishError::TooLarge {
                pod: display,
                size: status.len(),
            });
        }
        let key = format!("{}/{}", pod.namespace, pod.name);
        let job = StatusJob {
            pod: Arc::new(pod),
            status: Arc::from(status),
        };
        if self.outbox.push(key, job) {
            Ok(())
        } else {
            Err(PublishError::QueueFull {
                pod: display,
                capacity: self.capacity,
            })
        }
    }

    /// Pods whose status is not written yet (for `plexusctl status`).
    pub fn backlog(&self) -> usize {
        self.outbox.stats().backlog
    }

    /// The queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.outbox.stats()
    }

    /// Retries everything now (the API server is known to be back).
    pub fn resume(&self) {
        self.outbox.resume();
    }
}

#[derive(Debug, Clone)]
struct StatusJob {
    pod: Arc<PodKey>,
    status: Arc<str>,
}

/// The merge patch: the annotation and the uid it is meant for.
pub fn patch_body(pod: &PodKey, status: &str) -> serde_json::Value {
    json!({
        "metadata": {
            "uid": pod.uid,
            "annotations": { NETWORK_STATUS: status },
        }
    })
}

/// The request: `PATCH /api/v1/namespaces/{ns}/pods/{name}/status`, merge patch.
pub fn patch_request(pod: &PodKey, status: &str) -> Result<http::Request<Vec<u8>>, String> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    kube::core::Request::new(format!("/api/v1/namespaces/{}/pods", pod.namespace))
        .patch_subresource(
            "status",
            &pod.name,
            &params,
            &Patch::Merge(patch_body(pod, status)),
        )
        .map_err(|e| e.to_string())
}

/// The outcome of a status patch's answer.
pub(crate) fn classify(pod: &PodKey, answer: &request::Answer) -> Outcome {
    if let Some(outcome) = request::retry_class(answer) {
        return outcome;
    }
    match answer.code {
        404 => Outcome::Dropped(format!("pod {pod} is gone (404): {}", answer.message)),
        422 => Outcome::Dropped(format!(
            "pod {pod} refused the status (422, a recreated pod has another uid): {}",
            answer.message
        )),
        403 => {
            let err = Error::Forbidden {
                verb: "patch",
                resource: "pods/status",
                scope: crate::error::scope(Some(&pod.namespace)),
                message: answer.message.clone(),
            };
            tracing::error!(error = %err, "cannot write network-status");
            Outcome::Retry {
                after: None,
                global: true,
                error: err.to_string(),
            }
        }
        code => Outcome::Dropped(format!(
            "patching the status of pod {pod} failed ({code}): {}",
            answer.message
        )),
    }
}

impl Job for StatusJob {
    async fn deliver(&self, client: &kube::Client) -> Outcome {
        let request = match patch_request(&self.pod, &self.status) {
            Ok(r) => r,
            Err(e) => return Outcome::Dropped(format!("cannot build the patch: {e}")),
        };
        match request::send(client, request).await {
            Ok(answer) => classify(&self.pod, &answer),
            Err(e) => request::unreachable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pod() -> PodKey {
        PodKey {
            namespace: "default".to_string(),
            name: "web-0".to_string(),
            uid: "uid-1".to_string(),
        }
    }

    fn answer(code: u16, retry_after: Option<u64>) -> request::Answer {
        request::Answer {
            code,
            retry_after: retry_after.map(Duration::from_secs),
            message: "msg".to_string(),
        }
    }

    #[test]
    fn the_patch_is_a_merge_patch_of_pods_status_carrying_the_uid() {
        let req = patch_request(&pod(), "[{\"name\":\"x\"}]").unwrap();
        assert_eq!(req.method(), http::Method::PATCH);
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/default/pods/web-0/status"
        );
        let query = req.uri().query().unwrap_or_default();
        assert!(
            query.split('&').any(|kv| kv == "fieldManager=plexus"),
            "{query}"
        );
        assert_eq!(
            req.headers()[http::header::CONTENT_TYPE],
            "application/merge-patch+json"
        );
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"metadata": {
                "uid": "uid-1",
                "annotations": {"k8s.v1.cni.cncf.io/network-status": "[{\"name\":\"x\"}]"}
            }})
        );
    }

    #[test]
    fn answers_are_classified_as_the_api_documents_them() {
        let p = pod();
        assert_eq!(classify(&p, &answer(200, None)), Outcome::Delivered);
        assert!(matches!(
            classify(&p, &answer(404, None)),
            Outcome::Dropped(_)
        ));
        let Outcome::Dropped(why) = classify(&p, &answer(422, None)) else {
            panic!("422 ends the job");
        };
        assert!(why.contains("uid"), "{why}");
        assert!(matches!(
            classify(&p, &answer(409, None)),
            Outcome::Retry { global: false, .. }
        ));
        assert_eq!(
            classify(&p, &answer(429, Some(7))),
            Outcome::Retry {
                after: Some(Duration::from_secs(7)),
                global: true,
                error: "429: msg".to_string()
            }
        );
        assert!(matches!(
            classify(&p, &answer(500, None)),
            Outcome::Retry { global: true, .. }
        ));
        let Outcome::Retry { error, .. } = classify(&p, &answer(403, None)) else {
            panic!("403 is retried slowly");
        };
        assert!(
            error.starts_with(
                "forbidden: plexus needs `patch` on `pods/status` in namespace default"
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn publish_refuses_incomplete_pods_and_oversized_statuses() {
        let publisher = Publisher::start(request::dead_client());
        let mut p = pod();
        p.uid.clear();
        let err = publisher.publish(p, "[]").unwrap_err();
        assert!(err.to_string().contains("uid is empty"), "{err}");
        let err = publisher
            .publish(pod(), &"x".repeat(MAX_STATUS_BYTES + 1))
            .unwrap_err();
        assert!(matches!(err, PublishError::TooLarge { .. }), "{err}");
        publisher.publish(pod(), "[]").unwrap();
        assert_eq!(publisher.backlog(), 1, "kept while the API is unreachable");
    }

    #[test]
    fn status_bodies_give_their_message_and_retry_after() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many","reason":"TooManyRequests","details":{"retryAfterSeconds":3},"code":429}"#;
        assert_eq!(
            request::status_message(body),
            ("too many".to_string(), Some(Duration::from_secs(3)))
        );
        assert_eq!(
            request::status_message(b"Too many requests, please try again later.\n"),
            (
                "Too many requests, please try again later.".to_string(),
                None
            )
        );
    }
}
