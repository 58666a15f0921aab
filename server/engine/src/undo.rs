//! Removing attachments: one at a time in its own `attachment` span (detach, teardown,
//! recovery) and the reverse-order rollback of a failed setup or hot-plug.

use plexus_netlink::Handle;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::native;
use crate::observe::{Call, Op, Outcome, StepSpan};
use crate::state::{AttachmentRecord, Driver, SandboxRecord};

impl Engine {
    /// Undoes every attachment of `rec` in reverse, adding to `undone` (interfaces) and
    /// `failures`; removes the record when nothing is left to undo.
    ///
    /// Cancellation-safe: `rec.attachments` always holds what is not undone yet (the one
    /// being undone included), so a caller that cuts the rollback short knows what is left.
    pub(crate) async fn rollback(
        &self,
        rec: &mut SandboxRecord,
        pod: Option<&Handle>,
        call: Call,
        undone: &mut Vec<String>,
        failures: &mut Vec<String>,
    ) {
        let mut i = rec.attachments.len();
        while i > 0 {
            i -= 1;
            let a = rec.attachments[i].clone();
            if a.driver == Driver::Runtime {
                // Made and removed by the runtime: dropped from the record, nothing to undo.
                rec.attachments.remove(i);
                continue;
            }
            match self.remove_one(rec, &a, pod, call, true).await {
                Ok(()) => {
                    undone.push(a.interface.clone());
                    rec.attachments.remove(i);
                }
                Err(e) => failures.push(format!("{}: {}", a.interface, crate::error::chain(&e))),
            }
        }
        let saved = if rec.attachments.is_empty() {
            self.inner.store.remove(&rec.sandbox_id)
        } else {
            self.inner.store.save(rec)
        };
        if let Err(e) = saved {
            failures.push(format!("state: {}", crate::error::chain(&e)));
        }
    }

    /// Removes one attachment in its `attachment` span (`undo …` when `rollback`, else
    /// `detach …`) and reports it to the observer.
    pub(crate) async fn remove_one(
        &self,
        rec: &SandboxRecord,
        a: &AttachmentRecord,
        pod: Option<&Handle>,
        call: Call,
        rollback: bool,
    ) -> Result<()> {
        if a.driver == Driver::Runtime {
            // Made and removed by the runtime: nothing to do, nothing to report.
            return Ok(());
        }
        let (verb, success) = match rollback {
            true => ("undo", Outcome::Undone),
            false => ("detach", Outcome::Ok),
        };
        let step = self.track(verb, Op::Teardown, call, &a.network, &a.interface, a.driver);
        let result = self
            .undo_attachment(rec, a, pod)
            .instrument(step.span())
            .await;
        step.finish(&result, success);
        result
    }

    /// Removes one attachment's pieces (idempotent; missing pieces are fine).
    async fn undo_attachment(
        &self,
        rec: &SandboxRecord,
        a: &AttachmentRecord,
        pod: Option<&Handle>,
    ) -> Result<()> {
        match a.driver {
            Driver::Runtime => Ok(()),
            Driver::Exec => {
                let req = ExecRequest {
                    sandbox_id: rec.sandbox_id.as_str(),
                    pod: &rec.pod,
                    netns: pod.map(|_| rec.netns.as_path()),
                    attachment: &a.planned,
                    prev_result: a.result.as_ref(),
                };
                match self.inner.exec.del(req).await {
                    Ok(()) => Ok(()),
                    // ADD never returned a result: the plugin cleaned up its own failed ADD
                    // (CNI spec) and its DEL may fail for the reason the ADD did (e.g. a
                    // missing master). Like Multus's rollback, tolerate it, loudly.
                    Err(source) if a.result.is_none() => {
                        tracing::warn!(network = %a.network, interface = %a.interface,
                            error = %source, "cni DEL after an unfinished ADD failed");
                        Ok(())
                    }
                    Err(source) => Err(Error::Delegate {
                        verb: "DEL",
                        network: a.network.clone(),
                        interface: a.interface.clone(),
                        source,
                    }),
                }
            }
            Driver::Native => {
                let host = self.host().await?;
                let ctx = self.ctx(host, pod, &rec.netns, rec.sandbox_id.as_str());
                let span = StepSpan::new(crate::observe::native_span(&a.native.kind, "DEL"));
                let removed = native::del(&a.native, &a.interface, &ctx)
                    .instrument(span.span())
                    .await;
                span.finish(removed.is_ok());
                removed
            }
        }
    }
}
