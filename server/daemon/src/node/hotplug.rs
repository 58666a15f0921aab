//! Hot-plug and hot-unplug of one network in a running pod: the same resolution, isolation
//! and per-sandbox serialisation as setup; the attachment is recorded with the pod and torn
//! down with it.

use std::sync::Arc;
use std::time::Duration;

use plexus_core::InterfaceName;
use plexus_core::plan::Origin;
use plexus_telemetry::Operation;

use super::{Node, require};
use crate::attacher::Attacher;
use crate::error::{Error, Result};
use crate::model::{AttachmentView, EventKind, SandboxView, Selector};
use crate::planner::Planner;

/// Result of a hot-plug or hot-unplug.
#[derive(Debug, Clone)]
pub struct HotplugOutcome {
    /// The sandbox the attachment belongs (belonged) to.
    pub sandbox: SandboxView,
    /// The attachment made or removed.
    pub attachment: AttachmentView,
    /// The network-status after the change.
    pub network_status: String,
}

impl<A: Attacher, P: Planner> Node<A, P> {
    /// Hot-plugs one network selection into a running pod (the node API's Attach, e.g.
    /// `plexusctl attach --direct`): recorded with origin `hotplug`, which the hot-plug
    /// controller leaves alone whatever the pod's annotation says.
    pub async fn attach(
        self: &Arc<Self>,
        target: Selector,
        selection: String,
        timeout: Option<Duration>,
    ) -> Result<HotplugOutcome> {
        self.plug(target, selection, timeout, Origin::Hotplug).await
    }

    /// The hot-plug controller's attach of an element of the pod's annotation: recorded with
    /// origin `annotation`, like the networks the pod started with, so a later edit of the
    /// annotation can remove it again.
    pub async fn attach_wanted(
        self: &Arc<Self>,
        target: Selector,
        selection: String,
        timeout: Option<Duration>,
    ) -> Result<HotplugOutcome> {
        self.plug(target, selection, timeout, Origin::Annotation)
            .await
    }

    async fn plug(
        self: &Arc<Self>,
        target: Selector,
        selection: String,
        timeout: Option<Duration>,
        origin: Origin,
    ) -> Result<HotplugOutcome> {
        let work = self.plug_unmeasured(target, selection, timeout, origin);
        self.measured(Operation::Attach, work).await
    }

    async fn plug_unmeasured(
        self: &Arc<Self>,
        target: Selector,
        selection: String,
        timeout: Option<Duration>,
        origin: Origin,
    ) -> Result<HotplugOutcome> {
        require("selection", &selection)?;
        let sandbox = self.find(&target)?;
        let op = format!("attaching {selection} to pod {}", sandbox.pod);
        let id = sandbox.sandbox_id.clone();
        let busy = self.marks.begin(id.as_str());
        self.run(
            Operation::Attach,
            op,
            id,
            timeout,
            None,
            move |node, deadline, lock| async move {
                let _busy = busy;
                // Re-read under the lock: the interfaces present decide the new name.
                let sandbox = node.attacher.sandbox(&sandbox.sandbox_id)?.ok_or_else(|| {
                    Error::SandboxNotFound {
                        selector: format!("sandbox {}", sandbox.sandbox_id),
                    }
                })?;
                let present: Vec<String> = sandbox
                    .attachments
                    .iter()
                    .map(|a| a.interface.clone())
                    .collect();
                let mut planned = node.planner.plan_one(&sandbox.pod, &selection, &present)?;
                planned.origin = origin;
                let id = sandbox.sandbox_id.clone();
                match node.attacher.attach(&lock, planned, deadline).await {
                    Ok(attachment) => {
                        node.publish(EventKind::Attached, &sandbox, Some(&attachment), "");
                        let sandbox = node.attacher.sandbox(&id)?.unwrap_or(sandbox);
                        let network_status = node.planner.network_status(&sandbox)?;
                        Ok(HotplugOutcome {
                            sandbox,
                            attachment,
                            network_status,
                        })
                    }
                    Err(err) => {
                        node.publish(EventKind::AttachFailed, &sandbox, None, &err.to_string());
                        Err(err)
                    }
                }
            },
        )
        .await
    }

    /// Hot-unplugs one interface from a running pod (the node API's Detach). Namespace
    /// isolation holds as for Attach: a secondary interface whose network the pod's namespace
    /// may not reference is refused (`PERMISSION_DENIED` naming both namespaces and the rule);
    /// the runtime's primary is refused by the engine whatever the policy.
    pub async fn detach(
        self: &Arc<Self>,
        target: Selector,
        interface: InterfaceName,
        timeout: Option<Duration>,
    ) -> Result<HotplugOutcome> {
        self.unplug(target, interface, timeout, true).await
    }

    /// The hot-plug controller's detach: the pod's own annotation no longer asks for the
    /// network. Removing an interface never widens what the pod reaches, so, as with teardown,
    /// isolation is not asked (an attachment made before isolation was switched on can still
    /// be dropped from the annotation). The primary stays refused.
    pub async fn detach_unwanted(
        self: &Arc<Self>,
        target: Selector,
        interface: InterfaceName,
        timeout: Option<Duration>,
    ) -> Result<HotplugOutcome> {
        self.unplug(target, interface, timeout, false).await
    }

    async fn unplug(
        self: &Arc<Self>,
        target: Selector,
        interface: InterfaceName,
        timeout: Option<Duration>,
        isolation: bool,
    ) -> Result<HotplugOutcome> {
        let work = self.unplug_unmeasured(target, interface, timeout, isolation);
        self.measured(Operation::Detach, work).await
    }

    async fn unplug_unmeasured(
        self: &Arc<Self>,
        target: Selector,
        interface: InterfaceName,
        timeout: Option<Duration>,
        isolation: bool,
    ) -> Result<HotplugOutcome> {
        require("interface", &interface)?;
        let sandbox = self.find(&target)?;
        let op = format!("detaching {interface} from pod {}", sandbox.pod);
        let id = sandbox.sandbox_id.clone();
        self.run(
            Operation::Detach,
            op,
            id,
            timeout,
            None,
            move |node, deadline, lock| async move {
                let id = sandbox.sandbox_id.clone();
                let sandbox = node.attacher.sandbox(&id)?.unwrap_or(sandbox);
                let Some(found) = sandbox
                    .attachments
                    .iter()
                    .find(|a| a.interface == interface)
                else {
                    return Err(Error::InterfaceNotFound {
                        sandbox_id: id.to_string(),
                        interface: interface.to_string(),
                    });
                };
                if isolation && !found.primary {
                    node.planner
                        .check_isolation(&sandbox.pod, &found.network)
                        .map_err(|err| match err {
                            Error::Resolve { pod, kind, message } => Error::Resolve {
                                pod,
                                kind,
                                message: format!("detach of {interface} refused: {message}"),
                            },
                            other => other,
                        })?;
                }
                match node.attacher.detach(&lock, interface, deadline).await {
                    Ok(attachment) => {
                        node.publish(EventKind::Detached, &sandbox, Some(&attachment), "");
                        let sandbox = node.attacher.sandbox(&id)?.unwrap_or(sandbox);
                        let network_status = node.planner.network_status(&sandbox)?;
                        Ok(HotplugOutcome {
                            sandbox,
                            attachment,
                            network_status,
                        })
                    }
                    Err(err) => {
                        node.publish(EventKind::DetachFailed, &sandbox, None, &err.to_string());
                        Err(err)
                    }
                }
            },
        )
        .await
    }
}
