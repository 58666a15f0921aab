//! The gRPC `plexus.v1.Node` service: decodes requests, calls [`Node`], encodes answers.
//!
//! Thin by design: validation, resolution and execution live in `node.rs`; conversions in
//! `convert.rs`; error codes in the one `From<Error> for tonic::Status`.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use plexus_core::pod::PodIdentity;
use plexus_proto::v1;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::attacher::Attacher;
use crate::convert;
use crate::deadline::request_timeout;
use crate::entry::{self, Path};
use crate::error::Error;
use crate::kubernetes::Cluster;
use crate::model::SandboxSpec;
use crate::node::{Edited, Node, Setup};
use crate::planner::Planner;

/// The node API over a [`Node`].
#[derive(Debug)]
pub struct NodeService<A, P> {
    node: Arc<Node<A, P>>,
    /// Kubernetes mode: the API side (status, `explain --pod`).
    cluster: Option<Arc<Cluster>>,
}

impl<A, P> NodeService<A, P> {
    /// Serves `node` (standalone mode).
    pub fn new(node: Arc<Node<A, P>>) -> Self {
        Self {
            node,
            cluster: None,
        }
    }

    /// Serves `node` in Kubernetes mode, `cluster` being its API side.
    pub fn with_cluster(node: Arc<Node<A, P>>, cluster: Option<Arc<Cluster>>) -> Self {
        Self { node, cluster }
    }

    /// The node served.
    pub fn node(&self) -> &Arc<Node<A, P>> {
        &self.node
    }
}

impl<A: Attacher, P: Planner> NodeService<A, P> {
    /// `explain` of a pod read from the API server (Kubernetes mode): its annotations from a
    /// GET, its NADs from the cache (plus one GET each for those the cache lacks).
    async fn explain_from_cluster(
        &self,
        pod: Option<&v1::PodRef>,
    ) -> Result<crate::planner::Explanation, Error> {
        let Some(cluster) = &self.cluster else {
            return Err(Error::NotKubernetesMode {
                what: "explain of a pod read from the API server (explain --pod ns/name)",
            });
        };
        let (namespace, name) = convert::api_pod_name(pod)?;
        let meta = cluster.read_pod(&namespace, &name).await?;
        let identity = PodIdentity::new(namespace, name, meta.uid);
        Ok(self
            .node
            .planner()
            .explain_fetching(&identity, &meta.annotations)
            .await)
    }
}

/// The gRPC service name, as it appears in span names.
const SERVICE: &str = "plexus.v1.Node";

/// The RPC's span, continuing the caller's `traceparent`.
fn rpc_span(method: &str, metadata: &tonic::metadata::MetadataMap) -> tracing::Span {
    plexus_telemetry::rpc_span(SERVICE, method, metadata)
}

/// Puts the selected pod (as the caller named it) on the RPC span.
fn record_target(span: &tracing::Span, target: Option<&v1::PodSelector>) {
    if let Some(t) = target {
        let pod = t.pod.clone().unwrap_or_default();
        plexus_telemetry::record_pod(span, &pod.namespace, &pod.name, &pod.uid, &t.sandbox_id);
    }
}

/// Records how the call (so far) ended on its span (gRPC code; status ERROR with the
/// message and the fixed reason as `error.type` when it failed), and converts the error.
fn finish<T>(span: &tracing::Span, result: Result<T, Error>) -> Result<T, Status> {
    match result {
        Ok(v) => {
            plexus_telemetry::record_rpc_status(span, tonic::Code::Ok, None);
            Ok(v)
        }
        Err(err) => {
            let reason = err.reason();
            let message = err.to_string();
            let status = Status::from(err);
            plexus_telemetry::record_rpc_status(span, status.code(), Some((reason, &message)));
            tracing::warn!(parent: span, reason, "request failed");
            Err(status)
        }
    }
}

/// `eth0,net1=default/a,net2=default/b`: what one pod event did, for its info line (the
/// runtime's interface has no network of plexus's).
fn interface_list(attachments: &[crate::model::AttachmentView]) -> String {
    let parts: Vec<String> = attachments
        .iter()
        .map(|a| match a.network.is_empty() {
            true => a.interface.clone(),
            false => format!("{}={}", a.interface, a.network),
        })
        .collect();
    parts.join(",")
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<A: Attacher, P: Planner> v1::node_server::Node for NodeService<A, P> {
    async fn setup_pod(
        &self,
        request: Request<v1::SetupPodRequest>,
    ) -> Result<Response<v1::SetupPodResponse>, Status> {
        let started = std::time::Instant::now();
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("SetupPod", request.metadata());
        let req = request.into_inner();
        let pod = req.pod.clone().unwrap_or_default();
        plexus_telemetry::record_pod(&span, &pod.namespace, &pod.name, &pod.uid, "");
        let sandbox_id = finish(&span, convert::sandbox_id("sandbox_id", &req.sandbox_id))?;
        plexus_telemetry::record_pod(
            &span,
            &pod.namespace,
            &pod.name,
            &pod.uid,
            sandbox_id.as_str(),
        );
        let spec = SandboxSpec {
            sandbox_id,
            pod: convert::pod_identity(req.pod.as_ref()),
            netns: finish(&span, convert::netns_path(&req.netns_path))?,
        };
        let annotations = convert::annotations(&req.annotations);
        let outcome = if req.may_finish_later {
            let work = self
                .node
                .setup_pod_finishing_later(spec, annotations, timeout);
            let result = entry::scope(Path::Nri, work).instrument(span.clone()).await;
            match finish(&span, result)? {
                Setup::Done(outcome) => outcome,
                Setup::Finishing => {
                    return Ok(Response::new(v1::SetupPodResponse {
                        finishing: true,
                        ..Default::default()
                    }));
                }
            }
        } else {
            let work = self.node.setup_pod(spec, annotations, timeout);
            let result = entry::scope(Path::Nri, work).instrument(span.clone()).await;
            finish(&span, result)?
        };
        tracing::info!(
            parent: &span,
            interfaces = %interface_list(&outcome.sandbox.attachments),
            duration_ms = started.elapsed().as_millis() as u64,
            "pod networks set up"
        );
        Ok(Response::new(v1::SetupPodResponse {
            attachments: convert::attachments(&outcome.sandbox),
            stop_at_once: self
                .node
                .attacher()
                .stop_at_once(&outcome.sandbox.sandbox_id),
            network_status: outcome.network_status,
            finishing: false,
        }))
    }

    async fn teardown_pod(
        &self,
        request: Request<v1::TeardownPodRequest>,
    ) -> Result<Response<v1::TeardownPodResponse>, Status> {
        let started = std::time::Instant::now();
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("TeardownPod", request.metadata());
        let req = request.into_inner();
        let pod = req.pod.clone().unwrap_or_default();
        plexus_telemetry::record_pod(&span, &pod.namespace, &pod.name, &pod.uid, "");
        let id = finish(&span, convert::sandbox_id("sandbox_id", &req.sandbox_id))?;
        plexus_telemetry::record_pod(&span, &pod.namespace, &pod.name, &pod.uid, id.as_str());
        let links = match req.netns_removed_after {
            true => plexus_engine::LinkDeletion::AfterMark,
            false => plexus_engine::LinkDeletion::BeforeAnswer,
        };
        let work = self.node.teardown_pod(id.clone(), timeout, links);
        let result = entry::scope(Path::Nri, work).instrument(span.clone()).await;
        let outcome = finish(&span, result)?;
        if let Some(p) = &outcome.pod {
            // The recorded pod, when the caller did not name it.
            plexus_telemetry::record_pod(&span, &p.namespace, &p.name, &p.uid, "");
        }
        tracing::info!(
            parent: &span,
            known = outcome.known,
            interfaces = %interface_list(&outcome.removed),
            duration_ms = started.elapsed().as_millis() as u64,
            "pod networks torn down"
        );
        let pod = outcome
            .pod
            .clone()
            .unwrap_or_else(|| convert::pod_identity(req.pod.as_ref()));
        let removed = outcome
            .removed
            .iter()
            .map(|a| convert::attachment(id.as_str(), &pod, &req.netns_path, a))
            .collect();
        Ok(Response::new(v1::TeardownPodResponse {
            removed,
            known: outcome.known,
        }))
    }

    async fn cni(
        &self,
        request: Request<v1::CniRequest>,
    ) -> Result<Response<v1::CniResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("Cni", request.metadata());
        let req = request.into_inner();
        let work = crate::cni::serve(&self.node, &req.env, &req.stdin, timeout);
        let answer = entry::scope(Path::Cni, work).instrument(span).await;
        Ok(Response::new(answer))
    }

    async fn attach(
        &self,
        request: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("Attach", request.metadata());
        let req = request.into_inner();
        record_target(&span, req.target.as_ref());
        let target = finish(&span, convert::selector(req.target.as_ref()))?;
        if req.via_annotation {
            let work = self
                .node
                .attach_via_annotation(target, req.selection, timeout);
            let result = entry::scope(Path::Api, work).instrument(span.clone()).await;
            return Ok(Response::new(match finish(&span, result)? {
                Edited::Annotation(annotation) => v1::AttachResponse {
                    annotation,
                    ..Default::default()
                },
                Edited::Direct(outcome) => {
                    let (attachment, network_status) = convert::hotplug(&outcome);
                    v1::AttachResponse {
                        attachment: Some(attachment),
                        network_status,
                        annotation: String::new(),
                    }
                }
            }));
        }
        let result = entry::scope(Path::Api, self.node.attach(target, req.selection, timeout))
            .instrument(span.clone())
            .await;
        let (attachment, network_status) = convert::hotplug(&finish(&span, result)?);
        Ok(Response::new(v1::AttachResponse {
            attachment: Some(attachment),
            network_status,
            annotation: String::new(),
        }))
    }

    async fn detach(
        &self,
        request: Request<v1::DetachRequest>,
    ) -> Result<Response<v1::DetachResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("Detach", request.metadata());
        let req = request.into_inner();
        record_target(&span, req.target.as_ref());
        let target = finish(&span, convert::selector(req.target.as_ref()))?;
        let interface = finish(&span, convert::ifname("interface", &req.interface))?;
        if req.via_annotation {
            let work = self.node.detach_via_annotation(target, interface, timeout);
            let result = entry::scope(Path::Api, work).instrument(span.clone()).await;
            return Ok(Response::new(match finish(&span, result)? {
                Edited::Annotation(annotation) => v1::DetachResponse {
                    annotation,
                    ..Default::default()
                },
                Edited::Direct(outcome) => {
                    let (removed, network_status) = convert::hotplug(&outcome);
                    v1::DetachResponse {
                        removed: Some(removed),
                        network_status,
                        annotation: String::new(),
                    }
                }
            }));
        }
        let result = entry::scope(Path::Api, self.node.detach(target, interface, timeout))
            .instrument(span.clone())
            .await;
        let (removed, network_status) = convert::hotplug(&finish(&span, result)?);
        Ok(Response::new(v1::DetachResponse {
            removed: Some(removed),
            network_status,
            annotation: String::new(),
        }))
    }

    async fn list_attachments(
        &self,
        request: Request<v1::ListAttachmentsRequest>,
    ) -> Result<Response<v1::ListAttachmentsResponse>, Status> {
        let target = convert::selector(request.get_ref().target.as_ref())?;
        let sandboxes = self.node.list(&target)?;
        let mut network_status = std::collections::HashMap::new();
        for sandbox in &sandboxes {
            network_status.insert(
                sandbox.sandbox_id.to_string(),
                self.node.network_status(sandbox)?,
            );
        }
        Ok(Response::new(v1::ListAttachmentsResponse {
            attachments: sandboxes.iter().flat_map(convert::attachments).collect(),
            network_status,
        }))
    }

    async fn explain(
        &self,
        request: Request<v1::ExplainRequest>,
    ) -> Result<Response<v1::ExplainResponse>, Status> {
        let req = request.into_inner();
        if req.from_cluster {
            let explanation = self.explain_from_cluster(req.pod.as_ref()).await?;
            return Ok(Response::new(v1::ExplainResponse {
                json: explanation.json,
                text: explanation.text,
                ok: explanation.ok,
            }));
        }
        let node = Arc::clone(&self.node);
        // Manifest parsing and resolution read user text and NAD files: off the async
        // workers, so a hostile manifest cannot stall health checks and other RPCs.
        let explained = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let (pod, annotations) = if req.pod_manifest.is_empty() {
                let mut pod = convert::pod_identity(req.pod.as_ref());
                if pod.namespace.is_empty() {
                    // As for a manifest without metadata.namespace.
                    pod.namespace = "default".to_owned();
                }
                if pod.name.is_empty() {
                    return Err(Error::InvalidRequest {
                        message: "give pod_manifest, or pod with a name".to_owned(),
                    });
                }
                (pod, convert::annotations(&req.annotations))
            } else {
                crate::resolver::pod_from_manifest(&req.pod_manifest)?
            };
            Ok(node.explain(&pod, &annotations))
        })
        .await
        .map_err(|e| Status::internal(format!("explain did not finish: {e}")))?;
        let explanation = explained?;
        Ok(Response::new(v1::ExplainResponse {
            json: explanation.json,
            text: explanation.text,
            ok: explanation.ok,
        }))
    }

    async fn reconcile(
        &self,
        request: Request<v1::ReconcileRequest>,
    ) -> Result<Response<v1::ReconcileResponse>, Status> {
        let timeout = request_timeout(request.metadata());
        let span = rpc_span("Reconcile", request.metadata());
        let arrived = std::time::Instant::now();
        let req = request.into_inner();
        if req.live_sandbox_ids.is_empty() && !req.all_listed {
            // Every recorded pod would lose its networks: only on explicit confirmation.
            return finish(
                &span,
                Err(Error::InvalidRequest {
                    message: "live_sandbox_ids is empty: that would tear down every recorded \
                              sandbox; send the live ids, or set all_listed (plexusctl \
                              reconcile --all) when the runtime really has no pods"
                        .to_owned(),
                }),
            );
        }
        let live = finish(&span, convert::live_ids(req.live_sandbox_ids))?;
        let adoptable = convert::live_pods(&req.live_pods);
        let result = entry::scope(Path::Nri, self.node.reconcile(live, timeout))
            .instrument(span.clone())
            .await;
        let outcome = finish(&span, result)?;
        if !adoptable.is_empty() {
            self.node
                .adopt(adoptable, arrived)
                .instrument(span.clone())
                .await;
        }
        Ok(Response::new(v1::ReconcileResponse {
            torn_down: outcome.torn_down,
            failed: outcome.failed,
            kept: outcome.kept,
        }))
    }

    async fn get_status(
        &self,
        _request: Request<v1::GetStatusRequest>,
    ) -> Result<Response<v1::GetStatusResponse>, Status> {
        let answer = match &self.cluster {
            Some(cluster) => {
                let status = cluster.status();
                convert::status("kubernetes", &status.node_name, Some(&status))
            }
            None => convert::status(
                "standalone",
                &plexus_kube::node_name().unwrap_or_default(),
                None,
            ),
        };
        Ok(Response::new(answer))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<v1::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let target = convert::selector(request.get_ref().target.as_ref())?;
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
