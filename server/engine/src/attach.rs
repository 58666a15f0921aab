//! Making one attachment: its intent written first, then the native driver or the CNI
//! exec, the default-route plan, and the done record, each step a crash point, all in its
//! `attachment` span and reported to the observer.

use plexus_core::plan::PlannedAttachment;
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
use crate::state::{AttachmentRecord, Driver, NativeRecord, Phase, SandboxRecord};

impl Engine {
    /// Makes one attachment in its `attachment` span, and reports it to the observer.
    pub(crate) async fn attach_one(
        &self,
        rec: &mut SandboxRecord,
        att: &PlannedAttachment,
        pod: &Handle,
        call: Call,
    ) -> Result<()> {
        let native = match self.inner.cfg.delegation {
            _ if att.runtime_managed => None,
            DelegationMode::Auto => native::classify(att),
            DelegationMode::ForceExec => None,
        };
        let driver = match &native {
            _ if att.runtime_managed => Driver::Runtime,
            Some(_) => Driver::Native,
            None => Driver::Exec,
        };
        let step = self.track(
            "attach",
            Op::Setup,
            call,
            &att.network,
            &att.interface,
            driver,
        );
        let result = self
            .attach_step(rec, att, pod, native)
            .instrument(step.span())
            .await;
        step.finish(&result, Outcome::Ok);
        result
    }

    /// Makes one attachment: F8 check, intent record, driver, route plan, done record.
    async fn attach_step(
        &self,
        rec: &mut SandboxRecord,
        att: &PlannedAttachment,
        pod: &Handle,
        native: Option<NativeConfig>,
    ) -> Result<()> {
        let idx = rec.attachments.len();
        if att.runtime_managed {
            // Described before the route plan runs: network-status shows the primary's
            // own result (Multus: the gateway comes from the plugin, not the override).
            let primary = self
                .inner
                .primary
                .describe(rec.sandbox_id.as_str(), &att.interface, &rec.netns, pod)
                .await;
            route::apply(pod, &att.interface, &att.route_plan, None).await?;
            let network = match primary.as_ref().and_then(|p| p.network.clone()) {
                Some(name) if att.network.is_empty() => name,
                _ => att.network.clone(),
            };
            rec.attachments.push(AttachmentRecord {
                network,
                interface: att.interface.clone(),
                driver: Driver::Runtime,
                phase: Phase::Done,
                planned: att.clone(),
                result: primary.map(|p| p.result),
                native: NativeRecord::default(),
            });
            return self.inner.store.save(rec);
        }
        let taken = pod
            .try_find_link(&att.interface)
            .await
            .map_err(|source| Error::Netlink {
                op: format!("validateIfName: look up {}", att.interface),
                source: Box::new(source),
            })?;
        if taken.is_some() || rec.attachment(&att.interface).is_some() {
            return Err(Error::InterfaceExists {
                interface: att.interface.clone(),
            });
        }
        let host = match native {
            Some(_) => Some(self.host().await?),
            None => None,
        };
        let mut planned = NativeRecord::default();
        if let (Some(n), Some(host)) = (&native, host) {
            let ctx = self.ctx(host, Some(pod), &rec.netns, rec.sandbox_id.as_str());
            planned = native::plan_record(n, &att.interface, &ctx);
        }
        rec.attachments.push(AttachmentRecord {
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
            native: planned.clone(),
        });
        self.inner.store.save(rec)?;
        crash::point("setup", idx, "intent");
        let result = match (&native, host) {
            (Some(n), Some(host)) => {
                let ctx = self.ctx(host, Some(pod), &rec.netns, rec.sandbox_id.as_str());
                let mut step = |s: &str| crash::point("setup", idx, s);
                let span = StepSpan::new(native_span(n.kind.as_str(), NativeOp::Create));
                let added = native::add(n, &att.interface, &ctx, &mut step)
                    .instrument(span.span())
                    .await;
                span.finish(failure_of(&added));
                added?
            }
            _ => {
                let req = ExecRequest {
                    sandbox_id: rec.sandbox_id.as_str(),
                    pod: &rec.pod,
                    netns: Some(&rec.netns),
                    attachment: att,
                    prev_result: None,
                };
                self.inner
                    .exec
                    .add(req)
                    .await
                    .map_err(|source| Error::Delegate {
                        verb: "ADD",
                        network: att.network.clone(),
                        interface: att.interface.clone(),
                        source,
                    })?
            }
        };
        // The ADD finished: its result goes on record before anything else can fail or be
        // cut short, so an undo passes it to DEL and does not mistake the attachment for a
        // half-made one whose DEL failure may be ignored. The phase stays `Intent` until
        // the route plan is applied.
        let a = rec.attachments.last_mut().expect("pushed above");
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
        self.inner.store.save(rec)?;
        if native.is_none() {
            crash::point("setup", idx, "exec");
        }
        let a = rec.attachments.last_mut().expect("pushed above");
        route::apply(pod, &att.interface, &att.route_plan, a.result.as_mut()).await?;
        crash::point("setup", idx, "routes");
        a.phase = Phase::Done;
        self.inner.store.save(rec)?;
        crash::point("setup", idx, "done");
        Ok(())
    }
}
