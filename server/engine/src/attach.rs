//! Making attachments, in three steps every path shares: [`Engine::prepare`] names what an
//! attachment will create (its intent entry, before anything exists), [`Engine::make`] runs
//! the native driver or the CNI exec, and [`took`] puts the result on the entry; the route
//! plan and the done record follow. A pod's setup runs the makes of all its attachments
//! at once (`setup.rs`); a hot-plug ([`Engine::attach_one`]) makes one. Each step is a crash
//! point, and each attachment is in its `attachment` span, reported to the observer.

use std::path::Path;

use plexus_core::cni;
use plexus_core::plan::PlannedAttachment;
use plexus_core::pod::PodIdentity;
use plexus_netlink::Handle;
use tracing::Instrument;

use crate::config::DelegationMode;
use crate::crash;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::native::{self, NativeConfig};
use crate::observe::{Call, NativeOp, Op, Outcome, StepSpan, failure_of, native_span};
use crate::route;
use crate::setup::Progress;
use crate::state::{AttachmentRecord, Driver, NativeRecord, Phase, SandboxRecord};

/// Who a make is for: the sandbox, its pod and its netns.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub sandbox_id: &'a plexus_core::SandboxId,
    pub pod: &'a PodIdentity,
    pub netns: &'a Path,
}

impl<'a> Target<'a> {
    pub(crate) fn of(rec: &'a SandboxRecord) -> Target<'a> {
        Target {
            sandbox_id: &rec.sandbox_id,
            pod: &rec.pod,
            netns: &rec.netns,
        }
    }
}

impl Engine {
    /// The driver of `att` and, for a native one, its config.
    pub(crate) fn driver_of(&self, att: &PlannedAttachment) -> (Driver, Option<NativeConfig>) {
        if att.runtime_managed {
            return (Driver::Runtime, None);
        }
        let native = match self.inner.cfg.delegation {
            DelegationMode::Auto => native::classify(att),
            DelegationMode::ForceExec => None,
        };
        match native {
            Some(n) => (Driver::Native, Some(n)),
            None => (Driver::Exec, None),
        }
    }

    /// The record entry for `att` before it is made: for the runtime's own interface, done
    /// (it exists; [`Engine::describe_runtime`] fills in what it looks like); for anything
    /// else, after the F8 check (the interface name is free in the pod and on the record),
    /// an intent naming every piece it will create.
    pub(crate) async fn prepare(
        &self,
        rec: &SandboxRecord,
        att: &PlannedAttachment,
        native: Option<&NativeConfig>,
        pod: &Handle,
    ) -> Result<AttachmentRecord> {
        if att.runtime_managed {
            return Ok(AttachmentRecord {
                network: att.network.clone(),
                interface: att.interface.clone(),
                driver: Driver::Runtime,
                phase: Phase::Done,
                planned: att.clone(),
                result: None,
                native: NativeRecord::default(),
            });
        }
        // By ioctl: an RTM_GETLINK would wait for the rtnl lock behind every other pod's
        // link requests on a busy node.
        let taken = pod
            .peek_link(&att.interface)
            .map_err(|source| Error::Netlink {
                op: format!("validateIfName: look up {}", att.interface),
                source: Box::new(source),
            })?;
        if taken.is_some() || rec.attachment(&att.interface).is_some() {
            return Err(Error::InterfaceExists {
                interface: att.interface.to_string(),
            });
        }
        let mut planned = NativeRecord::default();
        if let Some(n) = native {
            let host = self.host().await?;
            let ctx = self.ctx(host, Some(pod), &rec.netns, rec.sandbox_id.as_str());
            planned = native::plan_record(n, &att.interface, &ctx);
        }
        Ok(AttachmentRecord {
            network: att.network.clone(),
            interface: att.interface.clone(),
            driver: if native.is_some() {
                Driver::Native
            } else {
                Driver::Exec
            },
            phase: Phase::Intent,
            planned: att.clone(),
            result: None,
            native: planned,
        })
    }

    /// Makes attachment `idx` (`att`): the native driver, or the CNI ADD. Writes nothing.
    pub(crate) async fn make(
        &self,
        target: Target<'_>,
        idx: usize,
        att: &PlannedAttachment,
        native: Option<&NativeConfig>,
        pod: &Handle,
        progress: &Progress,
    ) -> Result<cni::Result> {
        match native {
            Some(n) => {
                let host = self.host().await?;
                let ctx = self.ctx(host, Some(pod), target.netns, target.sandbox_id.as_str());
                let mut step = |s: &str| {
                    crash::point("setup", idx, s);
                    progress.reached(s);
                };
                let span = StepSpan::new(native_span(n.kind.as_str(), NativeOp::Create));
                let added = native::add(n, &att.interface, &ctx, &mut step)
                    .instrument(span.span())
                    .await;
                span.finish(failure_of(&added));
                added
            }
            None => {
                progress.exec();
                let req = ExecRequest {
                    sandbox_id: target.sandbox_id,
                    pod: target.pod,
                    netns: Some(target.netns),
                    attachment: att,
                    prev_result: None,
                };
                let added = self
                    .inner
                    .exec
                    .add(req)
                    .await
                    .map_err(|source| Error::Delegate {
                        verb: "ADD",
                        network: att.network.clone(),
                        interface: att.interface.to_string(),
                        source,
                    });
                if added.is_ok() {
                    crash::point("setup", idx, "exec");
                }
                added
            }
        }
    }

    /// Hot-plugs one attachment onto `rec` in its `attachment` span: intent write, make,
    /// route plan, done write.
    pub(crate) async fn attach_one(
        &self,
        rec: &mut SandboxRecord,
        att: &PlannedAttachment,
        pod: &Handle,
        call: Call,
    ) -> Result<()> {
        let (driver, native) = self.driver_of(att);
        let step = self.track(
            "attach",
            Op::Setup,
            call,
            &att.network,
            &att.interface,
            driver,
        );
        let result = self
            .attach_step(rec, att, native.as_ref(), pod)
            .instrument(step.span())
            .await;
        step.finish(&result, Outcome::Ok);
        result
    }

    async fn attach_step(
        &self,
        rec: &mut SandboxRecord,
        att: &PlannedAttachment,
        native: Option<&NativeConfig>,
        pod: &Handle,
    ) -> Result<()> {
        let idx = rec.attachments.len();
        let mut entry = self.prepare(rec, att, native, pod).await?;
        let runtime = entry.driver == Driver::Runtime;
        if runtime {
            // Before the route plan runs (see `describe_runtime`).
            let described = self
                .describe_runtime(&rec.sandbox_id, &rec.netns, att, pod)
                .await;
            described.fill(&mut entry);
        }
        rec.attachments.push(entry);
        if !runtime {
            self.inner.store.save(rec)?;
            crash::point("setup", idx, "intent");
            let progress = Progress::default();
            let result = self
                .make(Target::of(rec), idx, att, native, pod, &progress)
                .await?;
            took(rec.attachments.last_mut().expect("pushed above"), result);
        }
        let a = rec.attachments.last_mut().expect("pushed above");
        route::apply(pod, &att.interface, &att.route_plan, a.result.as_mut()).await?;
        crash::point("setup", idx, "routes");
        a.phase = Phase::Done;
        // After an intent write, the directory's fsync follows the answer.
        match runtime {
            true => self.inner.store.save(rec)?,
            false => self.inner.store.save_done(rec)?,
        }
        crash::point("setup", idx, "done");
        Ok(())
    }
}

/// What the runtime's own interface looks like ([`Engine::describe_runtime`]).
#[derive(Debug, Default)]
pub(crate) struct Described {
    network: Option<String>,
    result: Option<cni::Result>,
}

impl Described {
    /// Puts it on the runtime attachment's record entry (its network name only when the
    /// plan named none).
    pub(crate) fn fill(self, a: &mut AttachmentRecord) {
        if let Some(name) = self.network
            && a.planned.network.is_empty()
        {
            a.network = name;
        }
        a.result = self.result;
    }
}

impl Engine {
    /// Describes the runtime's own interface `att` (the primary, NRI path) for
    /// network-status. Read-only, and never fails a setup (a primary that cannot be
    /// described is left out). It must run before `att`'s route plan: network-status shows
    /// the primary's own result (Multus: the gateway comes from the plugin, not the
    /// override).
    pub(crate) async fn describe_runtime(
        &self,
        sandbox_id: &plexus_core::SandboxId,
        netns: &Path,
        att: &PlannedAttachment,
        pod: &Handle,
    ) -> Described {
        let primary = self
            .inner
            .primary
            .describe(sandbox_id, &att.interface, netns, pod)
            .await;
        Described {
            network: primary.as_ref().and_then(|p| p.network.clone()),
            result: primary.map(|p| p.result),
        }
    }
}

/// Puts a made attachment's CNI result on its record entry: the leased addresses of a
/// native lease, a bridge's host-side veth, the result itself (so an undo passes it to DEL
/// and does not mistake the attachment for a half-made one whose DEL failure may be
/// ignored). The phase stays `Intent` until the route plan is applied.
pub(crate) fn took(a: &mut AttachmentRecord, result: cni::Result) {
    if let Some(lease) = a.native.leases.first_mut() {
        lease.ips = result.ips.iter().map(|i| i.address.addr()).collect();
    }
    if a.driver == Driver::Native && a.native.kind == "bridge" {
        // The host end of the veth (result interface 1): gone with its pod peer, and
        // deleted by name on teardown should it ever outlive it.
        a.native.host_links = result
            .interfaces
            .get(1)
            .map(|i| i.name.clone())
            .into_iter()
            .collect();
    }
    a.result = Some(result);
}
