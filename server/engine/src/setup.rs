//! A pod's attachments made together. Interface names are fixed by the plan and every
//! master or parent is a host link, so no attachment of a pod depends on another: all are
//! made at once (exec'd plugins as concurrent processes, native ones as concurrent netlink
//! requests), and the pod waits for the slowest instead of the sum (Multus runs them one
//! by one, #1016). What depends on order stays in plan order: a pod with a default-route
//! plan (one interface's default route must be gone before the next one's is added) is
//! made one attachment at a time, each plan applied right after its attachment.
//!
//! Two record writes per pod, however many attachments: one intent naming everything that
//! will be created (so a crash at any later point is undone by recovery), one done. A
//! failure or a passed deadline leaves the entries of what finished with their results
//! and the rest as intents; the caller rolls back all of them.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_netlink::Handle;
use tokio::time::Instant;
use tracing::Instrument;

use std::sync::atomic::{AtomicU8, Ordering};

use crate::attach::{Target, took};
use crate::crash;
use crate::engine::Engine;
use crate::error::Error;
use crate::observe::{Call, Op, Outcome, Tracked};
use crate::route;
use crate::state::{AttachmentRecord, Driver, Phase, SandboxRecord};

/// Why [`Engine::attach_all`] stopped.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Plan index of the attachment that failed, or of the first one not finished at the
    /// deadline.
    pub index: usize,
    /// The failure; `None` when the deadline passed.
    pub cause: Option<Error>,
    /// When the deadline passed: what that attachment was doing (see [`Progress::doing`]);
    /// empty otherwise.
    pub doing: &'static str,
}

impl Stopped {
    /// Attachment `index` failed with `cause` (`None`: its deadline passed, doing nothing
    /// in particular).
    fn failed(index: usize, cause: Option<Error>) -> Stopped {
        Stopped {
            index,
            cause,
            doing: "",
        }
    }

    /// The deadline passed while attachment `index` was `doing` this.
    fn cut(index: usize, doing: &'static str) -> Stopped {
        Stopped {
            index,
            cause: None,
            doing,
        }
    }
}

/// How far one attachment's make got, so that a setup cut by its deadline says what it
/// was waiting for: on a busy node a link request waits for the kernel's rtnl lock and an
/// allocation for its lease directory, and an operator asks which.
#[derive(Debug, Default)]
pub(crate) struct Progress(AtomicU8);

impl Progress {
    const LINK: u8 = 1;
    const IPAM: u8 = 2;
    const ADDR: u8 = 4;
    const EXEC: u8 = 8;

    /// Notes a step of a native make (its crash points `link`, `ipam`, `addr`).
    pub fn reached(&self, step: &str) {
        let bit = match step {
            "link" => Self::LINK,
            "ipam" => Self::IPAM,
            "addr" => Self::ADDR,
            _ => 0,
        };
        self.0.fetch_or(bit, Ordering::Relaxed);
    }

    /// Notes that the make is a CNI plugin's ADD (one step, the plugin's own).
    pub fn exec(&self) {
        self.0.fetch_or(Self::EXEC, Ordering::Relaxed);
    }

    /// What the make was doing when it was cut.
    pub fn doing(&self) -> &'static str {
        let v = self.0.load(Ordering::Relaxed);
        if v & Self::EXEC != 0 {
            return "its CNI plugin's ADD was running";
        }
        match (
            v & Self::LINK != 0,
            v & Self::IPAM != 0,
            v & Self::ADDR != 0,
        ) {
            (_, _, true) => "its addresses and routes were in place",
            (true, true, false) => "its addresses and routes were being put on its link",
            (false, true, false) => "its addresses were taken, its link was being made",
            (true, false, false) => "its link was made, its addresses were being taken",
            (false, false, false) => "its link was being made and its addresses taken",
        }
    }
}

impl Engine {
    /// Makes every attachment of `plan` onto the empty record `rec`, until `until`.
    pub(crate) async fn attach_all(
        &self,
        rec: &mut SandboxRecord,
        plan: &Plan,
        pod: &Handle,
        until: Option<Instant>,
    ) -> Result<(), Stopped> {
        let stop = Stopped::failed;
        let mut natives = Vec::with_capacity(plan.attachments.len());
        for (i, att) in plan.attachments.iter().enumerate() {
            let (_, native) = self.driver_of(att);
            let prepared = within(until, self.prepare(rec, att, native.as_ref(), pod)).await;
            let entry = match prepared {
                Ok(Ok(entry)) => entry,
                // Nothing made or written yet: nothing to undo.
                Ok(Err(e)) => {
                    rec.attachments.clear();
                    return Err(stop(i, Some(e)));
                }
                Err(()) => {
                    rec.attachments.clear();
                    return Err(Stopped::cut(
                        i,
                        "its interface name was being checked in the pod",
                    ));
                }
            };
            rec.attachments.push(entry);
            natives.push(native);
        }
        // Which attachments plexus makes (the runtime's own are done already).
        let made: Vec<bool> = rec
            .attachments
            .iter()
            .map(|a| a.driver != Driver::Runtime)
            .collect();
        let ordered = !plan.attachments.iter().all(|a| a.route_plan.is_noop());
        // The runtime's own interfaces are described before any route plan runs: first
        // when there is one, else while the rest is written and made (read-only netlink
        // requests in the pod, a few hundred µs off the pod's path).
        let runtime: Vec<usize> = (0..made.len()).filter(|&i| !made[i]).collect();
        let (sandbox_id, netns) = (rec.sandbox_id.clone(), rec.netns.clone());
        let describe = || {
            let (sandbox_id, netns) = (&sandbox_id, &netns);
            futures::future::join_all(runtime.iter().map(move |&i| async move {
                let att = &plan.attachments[i];
                let described = within(until, self.describe_runtime(sandbox_id, netns, att, pod));
                (i, described.await.unwrap_or_default())
            }))
        };
        let early = match ordered {
            true => describe().await,
            false => Vec::new(),
        };
        for (i, described) in early {
            described.fill(&mut rec.attachments[i]);
        }
        let (described, written) = tokio::join!(
            async {
                match ordered {
                    true => Vec::new(),
                    false => describe().await,
                }
            },
            self.write_and_make(rec, plan, &natives, &made, ordered, pod, until)
        );
        let intent_written = written?;
        for (i, described) in described {
            described.fill(&mut rec.attachments[i]);
        }
        for a in &mut rec.attachments {
            a.phase = Phase::Done;
        }
        // The one done write; after an intent write, its directory fsync follows the answer.
        let store = &self.inner.store;
        match intent_written {
            true => store.save_done(rec),
            false => store.save(rec),
        }
        .map_err(|e| stop(plan.attachments.len().saturating_sub(1), Some(e)))?;
        for i in 0..plan.attachments.len() {
            crash::point("setup", i, "done");
        }
        Ok(())
    }

    /// The intent write, then every attachment plexus makes (`made`), in waves. Says
    /// whether it wrote an intent (none when plexus makes nothing).
    #[allow(clippy::too_many_arguments)]
    async fn write_and_make(
        &self,
        rec: &mut SandboxRecord,
        plan: &Plan,
        natives: &[Option<crate::native::NativeConfig>],
        made: &[bool],
        ordered: bool,
        pod: &Handle,
        until: Option<Instant>,
    ) -> Result<bool, Stopped> {
        let stop = Stopped::failed;
        let intent = made.iter().any(|m| *m);
        if intent {
            // The one intent write (the first write creates the record).
            self.inner.store.save(rec).map_err(|e| stop(0, Some(e)))?;
        }
        for i in (0..made.len()).filter(|&i| made[i]) {
            crash::point("setup", i, "intent");
        }
        // With a default-route plan anywhere, order matters (an interface's default route
        // must be gone before the next one's is added): one at a time, each plan right
        // after its attachment, as Multus does. Otherwise a primary plexus makes (the shim
        // path's eth0) first, so it stays the pod's first interface, then the rest at once.
        let waves: Vec<Vec<usize>> = if !ordered {
            let (first, rest): (Vec<usize>, Vec<usize>) =
                (0..made.len()).partition(|&i| made[i] && plan.attachments[i].primary);
            [first, rest]
                .into_iter()
                .filter(|w| !w.is_empty())
                .collect()
        } else {
            (0..made.len()).map(|i| vec![i]).collect()
        };
        for wave in waves {
            self.make_wave(rec, plan, natives, made, &wave, pod, until)
                .await?;
        }
        Ok(intent)
    }

    /// Makes the attachments `wave` (plan indices) at once, then applies their route
    /// plans in plan order; each in its attachment span.
    #[allow(clippy::too_many_arguments)]
    async fn make_wave(
        &self,
        rec: &mut SandboxRecord,
        plan: &Plan,
        natives: &[Option<crate::native::NativeConfig>],
        made: &[bool],
        wave: &[usize],
        pod: &Handle,
        until: Option<Instant>,
    ) -> Result<(), Stopped> {
        let stop = Stopped::failed;
        // Each attachment's step (span, clock, report) starts when its make starts; the
        // runtime's own get theirs for the route plan.
        let drivers: Vec<_> = rec.attachments.iter().map(|a| a.driver).collect();
        let track = |i: usize| {
            let att = &plan.attachments[i];
            Some(self.track(
                "attach",
                Op::Setup,
                Call::Setup,
                &att.network,
                &att.interface,
                drivers[i],
            ))
        };
        let mut steps: Vec<Option<Tracked<'_>>> = wave.iter().map(|_| None).collect();
        // The native makes at once, then the exec'd ones at once: natives take a few ms, and
        // none of their steps (each a crash point) then runs while a plugin process is half
        // way through an ADD (a plugin killed mid-ADD can leave a link under a temporary
        // name its DEL cannot find). Each finished make is kept, so a deadline knows what
        // exists; a failed native stops the exec'd ones from starting.
        let target = Target::of(rec);
        let mut results: Vec<Option<crate::Result<_>>> = wave.iter().map(|_| None).collect();
        let progress: Vec<Progress> = wave.iter().map(|_| Progress::default()).collect();
        let mut timed_out = false;
        for native_group in [true, false] {
            if timed_out || results.iter().any(|r| matches!(r, Some(Err(_)))) {
                break;
            }
            let group: Vec<(usize, usize)> = wave
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, i)| made[i] && natives[i].is_some() == native_group)
                .collect();
            for &(k, i) in &group {
                steps[k] = track(i);
            }
            let mut pending: FuturesUnordered<_> = group
                .iter()
                .map(|&(k, i)| {
                    let (att, native) = (&plan.attachments[i], natives[i].as_ref());
                    let span = steps[k]
                        .as_ref()
                        .map_or_else(tracing::Span::none, |s| s.span());
                    let progress = &progress[k];
                    async move { (k, self.make(target, i, att, native, pod, progress).await) }
                        .instrument(span)
                })
                .collect();
            loop {
                match within(until, pending.next()).await {
                    Ok(Some((k, r))) => results[k] = Some(r),
                    Ok(None) => break,
                    Err(()) => {
                        timed_out = true;
                        break;
                    }
                }
            }
            // Cut short at the deadline: the makes still running are cancelled here.
            drop(pending);
        }
        // Failures are reported in plan order, each on its own step, the others as made.
        // `None` (not made here, or not finished at the deadline) counts as no failure.
        let mut errors: Vec<crate::Result<()>> = Vec::with_capacity(wave.len());
        for (k, r) in results.into_iter().enumerate() {
            errors.push(match r {
                Some(Ok(result)) => {
                    took(&mut rec.attachments[wave[k]], result);
                    Ok(())
                }
                Some(Err(e)) => Err(e),
                None => Ok(()),
            });
        }
        if errors.iter().any(Result::is_err) {
            for (k, r) in errors.iter().enumerate() {
                if let Some(step) = steps[k].take() {
                    step.finish(r, Outcome::Ok);
                }
            }
            let (k, e) = errors
                .into_iter()
                .enumerate()
                .find_map(|(k, r)| r.err().map(|e| (k, e)))
                .expect("one failed");
            return Err(stop(wave[k], Some(e)));
        }
        if timed_out {
            // The first attachment without a result is the one the deadline caught;
            // unfinished steps report `cancelled` when dropped, finished ones ok.
            let mut caught = 0;
            for (k, &i) in wave.iter().enumerate().rev() {
                if made[i] && rec.attachments[i].result.is_none() {
                    caught = k;
                } else if let Some(step) = steps[k].take() {
                    step.finish(&Ok::<(), Error>(()), Outcome::Ok);
                }
            }
            return Err(Stopped::cut(wave[caught], progress[caught].doing()));
        }
        for (k, &i) in wave.iter().enumerate() {
            let att = &plan.attachments[i];
            if !made[i] {
                steps[k] = track(i);
            }
            let span = steps[k]
                .as_ref()
                .map_or_else(tracing::Span::none, |s| s.span());
            let a = &mut rec.attachments[i];
            let applied = route::apply(pod, &att.interface, &att.route_plan, a.result.as_mut())
                .instrument(span);
            match within(until, applied).await {
                Ok(Ok(())) => crash::point("setup", i, "routes"),
                Ok(Err(e)) => {
                    let r: crate::Result<()> = Err(e);
                    if let Some(step) = steps[k].take() {
                        step.finish(&r, Outcome::Ok);
                    }
                    finish_ok(&mut steps);
                    return Err(stop(i, r.err()));
                }
                Err(()) => {
                    finish_ok(&mut steps);
                    return Err(Stopped::cut(i, "its route plan was being applied"));
                }
            }
        }
        finish_ok(&mut steps);
        Ok(())
    }
}

/// Reports every step still open as done: it was made (an undo reports its own removal).
fn finish_ok(steps: &mut [Option<Tracked<'_>>]) {
    for step in steps.iter_mut().filter_map(Option::take) {
        step.finish(&Ok::<(), Error>(()), Outcome::Ok);
    }
}

/// Runs `f` until `until` (no limit when `None`); `Err(())` when the deadline passed first.
pub(crate) async fn within<F: std::future::Future>(
    until: Option<Instant>,
    f: F,
) -> Result<F::Output, ()> {
    match until {
        Some(t) => tokio::time::timeout_at(t, f).await.map_err(drop),
        None => Ok(f.await),
    }
}

/// What [`Engine::setup_locked`] did.
#[derive(Debug, Clone)]
pub struct SetupDone {
    /// The sandbox's record.
    pub record: SandboxRecord,
    /// True when the sandbox was already set up exactly as planned (nothing was done).
    pub reused: bool,
}

/// Whether `rec` is `plan` made: every attachment done, as planned, in plan order.
pub(crate) fn same_attachments(rec: &SandboxRecord, plan: &Plan) -> bool {
    rec.attachments.len() == plan.attachments.len()
        && rec
            .attachments
            .iter()
            .zip(&plan.attachments)
            .all(|(a, p)| a.phase == Phase::Done && satisfies(a, p))
}

/// Whether a done attachment is what `p` plans: the same planned attachment, or, for the
/// runtime's own interface (`eth0` on the NRI path), any attachment of that name, since
/// the runtime decides what it is (with plexus as the runtime's CNI network too, the shim
/// made it, and the NRI event that follows must leave it alone).
fn satisfies(a: &AttachmentRecord, p: &PlannedAttachment) -> bool {
    a.planned == *p || (p.runtime_managed && a.interface == p.interface)
}
