//! Fakes for testing the node service without root: a recording [`FakeAttacher`] that keeps
//! sandboxes in memory (optionally persisted to a directory, to test restarts), with a
//! per-attachment delay that honours deadlines by undoing, and a scripted [`FakePlanner`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_engine::SandboxLock;

use crate::attacher::{Attacher, SetupDone};
use crate::error::{Error, Result};
use crate::model::{
    AttachmentState, AttachmentView, RecoveryOutcome, SandboxSpec, SandboxView, TeardownOutcome,
};

/// One call the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `recover`.
    Recover,
    /// `setup` with the planned interfaces.
    Setup(String, Vec<String>),
    /// `teardown`.
    Teardown(String),
    /// `attach` with the interface.
    Attach(String, String),
    /// `detach` with the interface.
    Detach(String, String),
    /// An attachment undone because the deadline passed.
    Undone(String, String),
}

/// In-memory attacher that records every call.
#[derive(Debug, Default)]
pub struct FakeAttacher {
    sandboxes: Mutex<BTreeMap<String, SandboxView>>,
    calls: Mutex<Vec<Call>>,
    delay: Mutex<Duration>,
    removal_delay: Mutex<Duration>,
    removals_held: Gate,
    work_held: Gate,
    work_free: AtomicUsize,
    dir: Option<PathBuf>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Detaches of this interface fail with this message while set.
    failing_detach: Mutex<Option<(String, String)>>,
    /// The same kind of lock map as the engine's.
    locks: plexus_engine::SandboxLocks,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn view_of(a: &PlannedAttachment, index: usize) -> AttachmentView {
    AttachmentView {
        network: a.network.clone(),
        interface: a.interface.to_string(),
        ips: vec![format!("192.0.2.{}/24", 10 + index)],
        mac: format!("02:00:00:00:00:{:02x}", index),
        driver: if a.runtime_managed {
            "runtime"
        } else {
            "native"
        }
        .to_owned(),
        plugin: a.config.plugin_types.join(","),
        origin: a.origin.as_str().to_owned(),
        state: AttachmentState::Attached,
        mtu: Some(1500),
        gateways: Vec::new(),
        primary: a.primary,
        lease_expires: None,
        // Every attachment has a CNI result, as the engine records one (network-status is
        // rendered from it; a cluster network answers the runtime with it).
        result: Some(plexus_core::cni::Result {
            cni_version: "1.0.0".to_owned(),
            interfaces: vec![plexus_core::cni::Interface {
                name: a.interface.to_string(),
                mac: format!("02:00:00:00:00:{:02x}", index),
                sandbox: "/var/run/netns/fake".to_owned(),
                ..Default::default()
            }],
            ips: vec![plexus_core::cni::IpConfig {
                interface: Some(0),
                address: format!("192.0.2.{}/24", 10 + index).parse().expect("valid"),
                gateway: Some([192, 0, 2, 1].into()),
            }],
            routes: Vec::new(),
            dns: Default::default(),
        }),
    }
}

impl FakeAttacher {
    /// A fake that forgets everything when dropped.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that persists sandboxes as JSON files in `dir` and loads them back.
    pub fn persistent(dir: PathBuf) -> Self {
        let fake = Self {
            dir: Some(dir.clone()),
            ..Self::default()
        };
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut map = lock(&fake.sandboxes);
            for entry in entries.flatten() {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                if let Ok(view) = serde_json::from_slice::<SandboxView>(&bytes) {
                    map.insert(view.sandbox_id.to_string(), view);
                }
            }
        }
        fake
    }

    /// Each attachment made takes this long.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    /// Each teardown and detach takes this long; like the engine's, they ignore deadlines.
    pub fn set_removal_delay(&self, delay: Duration) {
        *lock(&self.removal_delay) = delay;
    }

    /// Detaches of `interface` fail with `message` until called with `None`.
    pub fn fail_detach(&self, failing: Option<(&str, &str)>) {
        *lock(&self.failing_detach) = failing.map(|(i, m)| (i.to_owned(), m.to_owned()));
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The most setups/attaches that ever ran at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    fn record(&self, call: Call) {
        lock(&self.calls).push(call);
    }

    fn store(&self, view: &SandboxView) {
        lock(&self.sandboxes).insert(view.sandbox_id.to_string(), view.clone());
        if let Some(dir) = &self.dir {
            let _ = std::fs::create_dir_all(dir);
            if let Ok(json) = serde_json::to_vec(view) {
                let _ = std::fs::write(dir.join(format!("{}.json", view.sandbox_id)), json);
            }
        }
    }

    fn forget(&self, sandbox_id: &str) -> Option<SandboxView> {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(dir.join(format!("{sandbox_id}.json")));
        }
        lock(&self.sandboxes).remove(sandbox_id)
    }

    /// From now on every removal (teardown, detach) waits, after its delay, until
    /// [`FakeAttacher::release_removals`]: a test sees the answer come before the work ends
    /// by the order of events, not by the clock.
    pub fn hold_removals(&self) {
        self.removals_held.hold();
    }

    /// Lets every held and future removal finish.
    pub fn release_removals(&self) {
        self.removals_held.release();
    }

    /// From now on every attachment being made (setup, attach) waits, after its delay,
    /// until [`FakeAttacher::release_work`] or its deadline.
    pub fn hold_work(&self) {
        self.work_held.hold();
    }

    /// Like [`FakeAttacher::hold_work`], but the next `free` attachments pass: "the first
    /// network is made, the second hangs until the deadline", without timing.
    pub fn hold_work_after(&self, free: usize) {
        self.work_free.store(free, Ordering::SeqCst);
        self.work_held.hold();
    }

    /// Lets every held and future attachment finish.
    pub fn release_work(&self) {
        self.work_held.release();
    }

    /// Setups and attaches running right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits the removal delay, then while removals are held.
    async fn removal_wait(&self) {
        let delay = *lock(&self.removal_delay);
        tokio::time::sleep(delay).await;
        self.removals_held.pass().await;
    }

    /// Waits one attachment's delay; false when the deadline came first.
    async fn work(&self, deadline: Option<Instant>) -> bool {
        let free = self
            .work_free
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if free {
            return true;
        }
        let delay = *lock(&self.delay);
        let end = Instant::now() + delay;
        match deadline {
            Some(d) if d < end => {
                tokio::time::sleep_until(d.into()).await;
                false
            }
            Some(d) => {
                tokio::time::sleep(delay).await;
                // Biased: an open gate wins even when the deadline is due as well.
                tokio::select! {
                    biased;
                    () = self.work_held.pass() => true,
                    () = tokio::time::sleep_until(d.into()) => false,
                }
            }
            None => {
                tokio::time::sleep(delay).await;
                self.work_held.pass().await;
                true
            }
        }
    }
}

/// A gate tests close and open to order events: closed, callers of [`Gate::pass`] wait.
#[derive(Debug, Default)]
struct Gate(Mutex<Option<std::sync::Arc<tokio::sync::Semaphore>>>);

impl Gate {
    fn hold(&self) {
        *lock(&self.0) = Some(std::sync::Arc::new(tokio::sync::Semaphore::new(0)));
    }

    fn release(&self) {
        if let Some(gate) = lock(&self.0).take() {
            gate.close();
        }
    }

    async fn pass(&self) {
        let gate = lock(&self.0).clone();
        if let Some(gate) = gate {
            // Closed on release: acquiring then fails at once, which is the signal.
            let _ = gate.acquire().await;
        }
    }
}

struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize, max: &AtomicUsize) -> Self {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        Self(counter)
    }
}

impl FakeAttacher {
    /// Every mutating call must come with this attacher's lock of its sandbox.
    fn held<'a>(&self, lock: &SandboxLock, sandbox_id: &'a SandboxId) -> &'a SandboxId {
        assert!(
            self.locks.issued(lock) && lock.sandbox_id() == sandbox_id,
            "sandbox {sandbox_id} changed without holding its lock"
        );
        sandbox_id
    }

    /// Callers holding or waiting for `sandbox_id`'s lock right now.
    pub fn lock_users(&self, sandbox_id: &str) -> usize {
        SandboxId::new(sandbox_id).map_or(0, |id| self.locks.users(&id))
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Attacher for FakeAttacher {
    async fn recover(&self) -> Result<RecoveryOutcome> {
        self.record(Call::Recover);
        Ok(RecoveryOutcome::default())
    }

    async fn lock(&self, sandbox_id: &SandboxId) -> SandboxLock {
        self.locks.lock(sandbox_id).await
    }

    async fn setup(
        &self,
        lock: &SandboxLock,
        spec: SandboxSpec,
        plan: Plan,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<SetupDone> {
        self.held(lock, &spec.sandbox_id);
        // The engine's rule, as far as a view shows it: every attachment attached, with
        // the planned networks and interfaces in order, in the same netns.
        if let Some(existing) = self.sandbox(&spec.sandbox_id)?
            && existing.netns == spec.netns.to_string_lossy()
            && existing.attachments.len() == plan.attachments.len()
            && existing
                .attachments
                .iter()
                .zip(&plan.attachments)
                .all(|(a, p)| {
                    a.network == p.network
                        && a.interface == p.interface
                        && a.state == AttachmentState::Attached
                })
        {
            return Ok(SetupDone {
                sandbox: existing,
                reused: true,
            });
        }
        let _busy = InFlight::enter(&self.in_flight, &self.max_in_flight);
        let names = plan.attachments.iter().map(|a| a.interface.to_string());
        self.record(Call::Setup(spec.sandbox_id.to_string(), names.collect()));
        let mut done: Vec<AttachmentView> = Vec::new();
        for (i, planned) in plan.attachments.iter().enumerate() {
            if !self.work(deadline.map(|d| d.work())).await {
                let mut undone = Vec::new();
                for a in done.iter().rev() {
                    self.record(Call::Undone(
                        spec.sandbox_id.to_string(),
                        a.interface.clone(),
                    ));
                    undone.push(format!("{} ({})", a.interface, a.network));
                }
                let undone = if undone.is_empty() {
                    "nothing had been attached yet".to_owned()
                } else {
                    format!("undid {}", undone.join(", "))
                };
                return Err(Error::DeadlineExceeded {
                    operation: format!(
                        "attaching {} to sandbox {}",
                        planned.network, spec.sandbox_id
                    ),
                    undone,
                });
            }
            done.push(view_of(planned, i));
        }
        let view = SandboxView {
            sandbox_id: spec.sandbox_id,
            pod: spec.pod,
            netns: spec.netns.to_string_lossy().into_owned(),
            attachments: done,
        };
        self.store(&view);
        Ok(SetupDone {
            sandbox: view,
            reused: false,
        })
    }

    async fn teardown(
        &self,
        lock: &SandboxLock,
        _links: plexus_engine::LinkDeletion,
        _deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<TeardownOutcome> {
        let sandbox_id = self.held(lock, lock.sandbox_id());
        self.record(Call::Teardown(sandbox_id.to_string()));
        self.removal_wait().await;
        Ok(match self.forget(sandbox_id.as_str()) {
            Some(view) => TeardownOutcome {
                known: true,
                pod: Some(view.pod),
                removed: view.attachments.into_iter().rev().collect(),
            },
            None => TeardownOutcome::default(),
        })
    }

    async fn attach(
        &self,
        lock: &SandboxLock,
        attachment: PlannedAttachment,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<AttachmentView> {
        let sandbox_id = self.held(lock, lock.sandbox_id());
        let _busy = InFlight::enter(&self.in_flight, &self.max_in_flight);
        self.record(Call::Attach(
            sandbox_id.to_string(),
            attachment.interface.to_string(),
        ));
        let mut view = self
            .sandbox(sandbox_id)?
            .ok_or_else(|| Error::SandboxNotFound {
                selector: format!("sandbox {sandbox_id}"),
            })?;
        if !self.work(deadline.map(|d| d.work())).await {
            return Err(Error::DeadlineExceeded {
                operation: format!("attaching {}", attachment.network),
                undone: "nothing had been attached yet".to_owned(),
            });
        }
        let a = view_of(&attachment, view.attachments.len());
        view.attachments.push(a.clone());
        self.store(&view);
        Ok(a)
    }

    async fn detach(
        &self,
        lock: &SandboxLock,
        interface: plexus_core::InterfaceName,
        _deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<AttachmentView> {
        let sandbox_id = self.held(lock, lock.sandbox_id());
        self.record(Call::Detach(sandbox_id.to_string(), interface.to_string()));
        self.removal_wait().await;
        if let Some((_, message)) = self::lock(&self.failing_detach)
            .as_ref()
            .filter(|(i, _)| *i == interface)
        {
            return Err(Error::Detach {
                sandbox_id: sandbox_id.to_string(),
                interface: interface.to_string(),
                message: message.clone(),
            });
        }
        let mut view = self
            .sandbox(sandbox_id)?
            .ok_or_else(|| Error::SandboxNotFound {
                selector: format!("sandbox {sandbox_id}"),
            })?;
        let pos = view
            .attachments
            .iter()
            .position(|a| a.interface == interface)
            .ok_or_else(|| Error::InterfaceNotFound {
                sandbox_id: sandbox_id.to_string(),
                interface: interface.to_string(),
            })?;
        let removed = view.attachments.remove(pos);
        self.store(&view);
        Ok(removed)
    }

    fn sandboxes(&self) -> Result<Vec<SandboxView>> {
        Ok(lock(&self.sandboxes).values().cloned().collect())
    }

    fn sandbox(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxView>> {
        Ok(lock(&self.sandboxes).get(sandbox_id.as_str()).cloned())
    }
}

mod planner;
pub use planner::FakePlanner;
