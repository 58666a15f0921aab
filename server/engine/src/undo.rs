//! Removing attachments: one at a time in its own `attachment` span (detach, teardown,
//! recovery) and the reverse-order rollback of a failed setup or hot-plug.

use plexus_netlink::Handle;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::ExecRequest;
use crate::native;
use crate::observe::{Call, NativeOp, Op, Outcome, StepSpan, failure_of, native_span};
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
            match self.remove_one_reporting(rec, &a, pod, call, true).await {
                Ok(Removal::Removed) => {
                    undone.push(a.interface.to_string());
                    rec.attachments.remove(i);
                }
                // Nothing left to retry: not undone, and not left to teardown either.
                Ok(Removal::DelFailedAfterFailedAdd(e)) => {
                    failures.push(format!(
                        "{}: DEL after its failed ADD failed too (not retried: the plugin \
                         cleans up its own failed ADD): {e}",
                        a.interface
                    ));
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
        self.remove_one_reporting(rec, a, pod, call, rollback)
            .await
            .map(|_| ())
    }

    /// The part of a native attachment's removal a pod's teardown waits for when its link
    /// is deleted later (`reap.rs`): leases released and addresses removed, in the same
    /// `attachment` span and observer report as [`Engine::remove_one`]. `removed`: the
    /// outcome when its addresses were removed already (`native::release`).
    pub(crate) async fn release_one(
        &self,
        rec: &SandboxRecord,
        a: &AttachmentRecord,
        pod: Option<&Handle>,
        removed: Option<plexus_netlink::Result<()>>,
        call: Call,
    ) -> Result<()> {
        let step = self.track(
            "detach",
            Op::Teardown,
            call,
            &a.network,
            &a.interface,
            a.driver,
        );
        let released = async {
            let host = self.host().await?;
            let ctx = self.ctx(host, pod, &rec.netns, rec.sandbox_id.as_str());
            let result = a.result.as_ref();
            native::release(&a.native, &a.interface, result, removed, &ctx).await
        }
        .instrument(step.span())
        .await;
        step.finish(&released, Outcome::Ok);
        released
    }

    /// [`Engine::remove_one`], saying whether the attachment was really removed.
    async fn remove_one_reporting(
        &self,
        rec: &SandboxRecord,
        a: &AttachmentRecord,
        pod: Option<&Handle>,
        call: Call,
        rollback: bool,
    ) -> Result<Removal> {
        if a.driver == Driver::Runtime && (rollback || !a.planned.release_on_teardown) {
            // Made and removed by the runtime: nothing to do, nothing to report.
            return Ok(Removal::Removed);
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
        match &result {
            Ok(Removal::DelFailedAfterFailedAdd(e)) => step.finish_failed("plugin_failed", e),
            _ => step.finish(&result, success),
        }
        result
    }

    /// Removes one attachment's pieces (idempotent; missing pieces are fine).
    async fn undo_attachment(
        &self,
        rec: &SandboxRecord,
        a: &AttachmentRecord,
        pod: Option<&Handle>,
    ) -> Result<Removal> {
        match a.driver {
            Driver::Runtime if !a.planned.release_on_teardown => Ok(Removal::Removed),
            // A runtime-made interface plexus took over is released with the planned
            // delegate's DEL, as the runtime would have.
            Driver::Exec | Driver::Runtime => {
                let netns = pod.map(|pod| crate::held::plugin_netns(rec, pod));
                let req = ExecRequest {
                    sandbox_id: &rec.sandbox_id,
                    pod: &rec.pod,
                    netns: netns.as_deref(),
                    attachment: &a.planned,
                    prev_result: a.result.as_ref(),
                };
                match self.inner.exec.del(req).await {
                    Ok(()) => Ok(Removal::Removed),
                    // ADD never returned a result: the plugin cleaned up its own failed ADD
                    // (CNI spec) and its DEL may fail for the reason the ADD did (e.g. a
                    // missing master). Like Multus's rollback, tolerate it, loudly, and say
                    // so in the span and the setup error instead of calling it undone.
                    Err(source) if a.result.is_none() => {
                        let message = crate::error::chain(&*source);
                        tracing::warn!(error = %message, "cni DEL after an unfinished ADD failed");
                        Ok(Removal::DelFailedAfterFailedAdd(message))
                    }
                    Err(source) => Err(Error::Delegate {
                        verb: "DEL",
                        network: a.network.clone(),
                        interface: a.interface.to_string(),
                        source,
                    }),
                }
            }
            Driver::Native => {
                let host = self.host().await?;
                let ctx = self.ctx(host, pod, &rec.netns, rec.sandbox_id.as_str());
                let span = StepSpan::new(native_span(&a.native.kind, NativeOp::Delete));
                let removed = native::del(&a.native, &a.interface, &ctx)
                    .instrument(span.span())
                    .await;
                span.finish(failure_of(&removed));
                removed.map(|()| Removal::Removed)
            }
        }
    }
}

/// How a removal ended when it did not fail.
#[derive(Debug)]
pub(crate) enum Removal {
    /// Everything it made is gone.
    Removed,
    /// The exec'd plugin's DEL after its own failed ADD failed too; nothing is retried
    /// (the CNI spec has the plugin clean up a failed ADD). The message says why.
    DelFailedAfterFailedAdd(String),
}
