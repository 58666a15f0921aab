//! Attach and detach through the pod's `k8s.v1.cni.cncf.io/networks` annotation
//! (`plexusctl attach/detach --pod` on a Kubernetes node): the same checks as the direct calls
//! answered at once (the selection parses, namespace isolation, the interface exists and came
//! from the annotation), then one patch of the annotation; the hot-plug controller does the
//! work and network-status follows. Without Kubernetes mode there is no annotation to edit
//! and the direct path is taken.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use plexus_core::InterfaceName;
use plexus_core::pod::PodIdentity;

use super::Node;
use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::hotplug_controller::edit;
use crate::model::Selector;
use crate::planner::Planner;

/// Where the pod's networks annotation is read and written (Kubernetes mode's cluster).
pub trait NetworksAnnotation: Send + Sync + std::fmt::Debug + 'static {
    /// The pod's uid and current networks value (empty when unset) as this node's pod watch
    /// holds it; `None` when the watch does not hold this pod.
    fn current(&self, pod: &PodIdentity) -> Option<(String, String)>;

    /// Writes `value` to the pod with this `uid` (a recreated pod is refused).
    fn write<'a>(
        &'a self,
        pod: &'a PodIdentity,
        uid: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<()>>;
}

/// What an annotation-first Attach or Detach did.
#[derive(Debug, Clone)]
pub enum Edited {
    /// The annotation was patched to this value; the controller acts on it.
    Annotation(String),
    /// Not in Kubernetes mode: attached or detached directly.
    Direct(Box<super::HotplugOutcome>),
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Makes the pod's networks annotation editable through this node (Kubernetes mode).
    pub fn set_networks_annotation(&self, annotation: Arc<dyn NetworksAnnotation>) {
        let _ = self.annotation.set(annotation);
    }

    fn annotation_of(&self, target: &Selector) -> Result<Option<(PodIdentity, String, String)>> {
        let Some(annotation) = self.annotation.get() else {
            return Ok(None);
        };
        let sandbox = self.find(target)?;
        let (uid, value) = annotation.current(&sandbox.pod).ok_or_else(|| {
            Error::SandboxNotFound {
                selector: format!(
                    "{target} in this node's pod watch (the pod object is not known yet, or was recreated; retry, or use --direct)"
                ),
            }
        })?;
        Ok(Some((sandbox.pod, uid, value)))
    }

    /// Hot-plugs `selection` by appending it to the pod's annotation (Kubernetes mode), else
    /// directly like [`Node::attach`].
    pub async fn attach_via_annotation(
        self: &Arc<Self>,
        target: Selector,
        selection: String,
        timeout: Option<Duration>,
    ) -> Result<Edited> {
        super::require("selection", &selection)?;
        let Some((pod, uid, value)) = self.annotation_of(&target)? else {
            return Ok(Edited::Direct(Box::new(
                self.attach(target, selection, timeout).await?,
            )));
        };
        let parsed =
            plexus_core::annotation::parse_selection(&selection, &pod.namespace).map_err(|e| {
                Error::InvalidRequest {
                    message: format!("selection {selection:?}: {e}"),
                }
            })?;
        self.planner.check_isolation(&pod, &parsed.network())?;
        let new = edit::add(&value, &pod.namespace, &selection)?;
        self.write_annotation(&pod, &uid, &new).await?;
        Ok(Edited::Annotation(new))
    }

    /// Hot-unplugs `interface` by removing its element from the pod's annotation (Kubernetes
    /// mode), else directly like [`Node::detach`].
    pub async fn detach_via_annotation(
        self: &Arc<Self>,
        target: Selector,
        interface: InterfaceName,
        timeout: Option<Duration>,
    ) -> Result<Edited> {
        super::require("interface", &interface)?;
        let Some((pod, uid, value)) = self.annotation_of(&target)? else {
            return Ok(Edited::Direct(Box::new(
                self.detach(target, interface, timeout).await?,
            )));
        };
        let sandbox = self.find(&target)?;
        if let Some(a) = sandbox
            .attachments
            .iter()
            .find(|a| a.interface == interface && !a.primary)
        {
            self.planner.check_isolation(&pod, &a.network)?;
        }
        let new = edit::remove(&value, &pod.namespace, &sandbox.attachments, &interface)?;
        self.write_annotation(&pod, &uid, &new).await?;
        Ok(Edited::Annotation(new))
    }

    async fn write_annotation(&self, pod: &PodIdentity, uid: &str, value: &str) -> Result<()> {
        let Some(annotation) = self.annotation.get() else {
            return Ok(());
        };
        annotation.write(pod, uid, value).await?;
        tracing::info!(%pod, networks = %value, "networks annotation patched; the hot-plug controller follows it");
        Ok(())
    }
}
