//! The gRPC `plexus.v1.Node` service: decodes requests, calls [`Node`], encodes answers.
//!
//! Thin by design: validation, resolution and execution live in `node.rs`; conversions in
//! `convert.rs`; error codes in the one `From<Error> for tonic::Status`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use plexus_proto::v1;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::attacher::Attacher;
use crate::convert;
use crate::deadline::request_timeout;
use crate::error::Error;
use crate::manifest;
use crate::model::SandboxSpec;
use crate::node::Node;
use crate::planner::Planner;

/// The node API over a [`Node`].
#[derive(Debug)]
pub struct NodeService<A, P> {
    node: Arc<Node<A, P>>,
}

impl<A, P> NodeService<A, P> {
    /// Serves `node`.
    pub fn new(node: Arc<Node<A, P>>) -> Self {
        Self { node }
    }
}

fn rpc_span(method: &'static str, sandbox_id: &str, pod: Option<&v1::PodRef>) -> tracing::Span {
    let (ns, name) = pod
        .map(|p| (p.namespace.as_str(), p.name.as_str()))
        .unwrap_or_default();
    tracing::info_span!(
        "rpc",
        otel.name = method,
        rpc.method = method,
        sandbox.id = sandbox_id,
        pod.namespace = ns,
        pod.name = name
    )
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<A: Attacher, P: Planner> v1::node_server::Node for NodeService<A, P> {
    async fn setup_pod(
        &self,
        request: Request<v1::SetupPodRequest>,
    ) -> Result<Response<v1::SetupPodResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let req = request.into_inner();
        let span = rpc_span("SetupPod", &req.sandbox_id, req.pod.as_ref());
        let spec = SandboxSpec {
            sandbox_id: req.sandbox_id,
            pod: convert::pod_identity(req.pod.as_ref()),
            netns: req.netns_path.into(),
        };
        let annotations = convert::annotations(&req.annotations);
        let outcome = self
            .node
            .setup_pod(spec, annotations, timeout)
            .instrument(span)
            .await?;
        Ok(Response::new(v1::SetupPodResponse {
            attachments: convert::attachments(&outcome.sandbox),
            network_status: outcome.network_status,
        }))
    }

    async fn teardown_pod(
        &self,
        request: Request<v1::TeardownPodRequest>,
    ) -> Result<Response<v1::TeardownPodResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let req = request.into_inner();
        let span = rpc_span("TeardownPod", &req.sandbox_id, req.pod.as_ref());
        let id = req.sandbox_id.clone();
        let outcome = self
            .node
            .teardown_pod(req.sandbox_id, timeout)
            .instrument(span)
            .await?;
        let pod = outcome
            .pod
            .clone()
            .unwrap_or_else(|| convert::pod_identity(req.pod.as_ref()));
        let removed = outcome
            .removed
            .iter()
            .map(|a| convert::attachment(&id, &pod, &req.netns_path, a))
            .collect();
        Ok(Response::new(v1::TeardownPodResponse {
            removed,
            known: outcome.known,
        }))
    }

    async fn cni(
        &self,
        _request: Request<v1::CniRequest>,
    ) -> Result<Response<v1::CniResponse>, Status> {
        Err(Error::Unimplemented {
            what: "the Cni call (CNI shim forwarding is tracked in its own issue; use the NRI path)",
        }
        .into())
    }

    async fn attach(
        &self,
        request: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let req = request.into_inner();
        let target = convert::selector(req.target.as_ref());
        let span = rpc_span("Attach", &target.to_string(), None);
        let outcome = self
            .node
            .attach(target, req.selection, timeout)
            .instrument(span)
            .await?;
        let s = &outcome.sandbox;
        Ok(Response::new(v1::AttachResponse {
            attachment: Some(convert::attachment(
                &s.sandbox_id,
                &s.pod,
                &s.netns,
                &outcome.attachment,
            )),
            network_status: outcome.network_status,
        }))
    }

    async fn detach(
        &self,
        request: Request<v1::DetachRequest>,
    ) -> Result<Response<v1::DetachResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let req = request.into_inner();
        let target = convert::selector(req.target.as_ref());
        let span = rpc_span("Detach", &target.to_string(), None);
        let outcome = self
            .node
            .detach(target, req.interface, timeout)
            .instrument(span)
            .await?;
        let s = &outcome.sandbox;
        Ok(Response::new(v1::DetachResponse {
            removed: Some(convert::attachment(
                &s.sandbox_id,
                &s.pod,
                &s.netns,
                &outcome.attachment,
            )),
            network_status: outcome.network_status,
        }))
    }

    async fn list_attachments(
        &self,
        request: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        let target = convert::selector(request.get_ref().target.as_ref());
        let sandboxes = self.node.list(&target)?;
        Ok(Response::new(v1::ListAttachmentsResponse {
            attachments: sandboxes.iter().flat_map(convert::attachments).collect(),
        }))
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let req = request.into_inner();
        let (pod, annotations) = if req.pod_manifest.is_empty() {
            let pod = convert::pod_identity(req.pod.as_ref());
            if pod.name.is_empty() {
                return Err(Error::InvalidRequest {
                    message: "give pod_manifest, or pod with namespace and name".to_owned(),
                }
                .into());
            }
            (pod, convert::annotations(&req.annotations))
        } else {
            manifest::parse_pod(&req.pod_manifest)?
        };
        let explanation = self.node.explain(&pod, &annotations);
        Ok(Response::new(v1::ExplainResponse {
            json: explanation.json,
            text: explanation.text,
        }))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let live = request.into_inner().live_sandbox_ids;
        let span = rpc_span("Reconcile", "", None);
        let outcome = self.node.reconcile(live, timeout).instrument(span).await?;
        Ok(Response::new(v1::ReconcileResponse {
            torn_down: outcome.torn_down,
            failed: outcome.failed,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let target = convert::selector(request.get_ref().target.as_ref());
        let events = BroadcastStream::new(self.node.subscribe()).filter_map(move |item| {
            match item {
                Ok(event) if target.matches(&event.sandbox_id, &event.pod) => {
                    Some(Ok(convert::event(&event)))
                }
                Ok(_) => None,
                // A slow watcher missed events; the stream goes on.
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    tracing::warn!(dropped = n, "watch subscriber lagged");
                    None
                }
            }
        });
        let events = futures::StreamExt::take_until(events, self.node.closed());
        Ok(Response::new(Box::pin(events)))
    }
}
