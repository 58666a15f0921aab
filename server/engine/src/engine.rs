//! The [`Engine`]: executes a pod's plan into its netns (native driver or CNI exec per
//! attachment, all at once: `setup.rs`), recorded crash-safely (an intent before anything
//! is made, done after), and undoes in reverse on failure.
//!
//! Per-sandbox work is serialised by an in-process lock, so concurrent callers for the
//! same sandbox cannot interleave record writes. Teardown, detach and recovery live in
//! `teardown.rs`, removing one attachment and rollback in `undo.rs`, making one attachment
//! in `attach.rs`. Every attachment step
//! runs in its `attachment` span and is reported to the observer (`observe.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use plexus_core::deadline::Deadline;
use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_netlink::Handle;
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::error::{Error, Result, SetupError};
use crate::exec::Exec;
use crate::lock::{SandboxLock, SandboxLocks};
use crate::native::Ctx;
use crate::observe::{Call, Observer, ObserverSlot, Op, Tracked};
use crate::reap::LinkDeletion;
use crate::setup::{SetupDone, same_attachments, within};
use crate::state::{AttachmentRecord, Driver, RECORD_VERSION, SandboxRecord, Store};

/// The sandbox a plan is executed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The runtime's sandbox id (validated: it names the record file).
    pub sandbox_id: SandboxId,
    /// The pod.
    pub pod: PodIdentity,
    /// Path of the pod's network namespace.
    pub netns: PathBuf,
}

/// The attach engine. Cheap to clone; all clones share state and locks.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub cfg: EngineConfig,
    pub store: Store,
    pub exec: Arc<dyn Exec>,
    locks: SandboxLocks,
    host: crate::host_handles::HostHandles,
    observer: ObserverSlot,
    /// The runtime's primary, described from its CNI cache.
    pub primary: Arc<crate::primary::Lookup>,
    /// Teardowns whose links are still being deleted (`reap.rs`).
    pub reaping: crate::reap::Reaping,
    /// Reaped records waiting to be removed together (`reap/batch.rs`).
    pub removals: crate::reap::Batch,
    /// The pods' network namespaces, held open until their teardowns (`held.rs`).
    pub held: crate::held::Held,
}

impl Engine {
    /// Opens the engine with the CNI delegate executor as exec path.
    pub fn open(cfg: EngineConfig) -> Result<Engine> {
        let exec = crate::delegate_exec::DelegateExec::new(&cfg);
        Engine::with_exec(cfg, Arc::new(exec))
    }

    /// Opens the engine with a given exec path (tests, alternative executors).
    pub fn with_exec(cfg: EngineConfig, exec: Arc<dyn Exec>) -> Result<Engine> {
        let store = Store::open(&cfg.state_dir)?;
        let primary = Arc::new(crate::primary::Lookup::new(&cfg.cni_cache_dir));
        Ok(Engine {
            inner: Arc::new(Inner {
                cfg,
                store,
                exec,
                locks: SandboxLocks::new(),
                host: Default::default(),
                observer: ObserverSlot::new(),
                primary,
                reaping: crate::reap::Reaping::new(),
                removals: Default::default(),
                held: Default::default(),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Replaces the [`Observer`] told about every attachment step (for all clones of this
    /// engine); the default ignores everything.
    pub fn set_observer(&self, observer: Arc<dyn Observer>) {
        self.inner.observer.set(observer);
    }

    /// Starts tracking one attachment step (span, clock, observer).
    pub(crate) fn track<'a>(
        &self,
        verb: &str,
        op: Op,
        call: Call,
        network: &'a str,
        interface: &'a str,
        driver: Driver,
    ) -> Tracked<'a> {
        Tracked::start(
            self.inner.observer.get(),
            verb,
            op,
            call,
            network,
            interface,
            driver,
        )
    }

    /// Every readable sandbox record (unreadable ones are logged and skipped; teardown
    /// still handles them). A sandbox whose teardown answered is not listed while its
    /// links are still being deleted (`reap.rs`): nothing of it is left to act on.
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        // The reaped ones are looked at before the records are read: a reaper removes its
        // record before it stops being pending, so a record read afterwards is either
        // pending in this snapshot or was not being reaped then. (Asked after the read, a
        // record read just before its removal would pass as not pending.)
        let reaped = self.inner.reaping.pending_ids();
        let mut all = self.inner.store.all()?;
        all.retain(|r| {
            !reaped.contains(&r.sandbox_id) && !self.inner.reaping.is_pending(&r.sandbox_id)
        });
        Ok(all)
    }

    /// Makes every setup's done write so far durable against a power loss (each leaves its
    /// directory fsync to after its answer): at a clean exit, and where fsyncs are counted.
    pub fn flush_state(&self) {
        self.inner.store.flush_deferred();
    }

    /// One sandbox's record (none once its teardown answered, as in
    /// [`Engine::sandboxes`]).
    pub fn sandbox(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxRecord>> {
        if self.inner.reaping.is_pending(sandbox_id) {
            return Ok(None);
        }
        self.inner.store.load(sandbox_id)
    }

    /// Waits for the sandbox's lock (see [`crate::lock`]) and takes it, for the `*_locked`
    /// operations. Bound the wait with a timeout around this future.
    pub async fn lock(&self, sandbox_id: &SandboxId) -> SandboxLock {
        self.inner.locks.lock(sandbox_id).await
    }

    /// Sandboxes whose lock is held or waited for right now.
    pub fn locked(&self) -> usize {
        self.inner.locks.len()
    }

    /// Callers holding or waiting for `sandbox_id`'s lock right now.
    pub fn lock_users(&self, sandbox_id: &SandboxId) -> usize {
        self.inner.locks.users(sandbox_id)
    }

    /// Checks that `lock` is this engine's lock of `sandbox_id`.
    pub(crate) fn held(&self, lock: &SandboxLock, sandbox_id: &SandboxId) -> Result<()> {
        if self.inner.locks.issued(lock) && lock.sandbox_id() == sandbox_id {
            return Ok(());
        }
        Err(Error::LockNotHeld {
            sandbox_id: sandbox_id.to_string(),
            held: lock.sandbox_id().to_string(),
        })
    }

    pub(crate) async fn host(&self) -> Result<&Handle> {
        let path = self.inner.cfg.host_netns.as_deref();
        self.inner.host.get(path).await
    }

    pub(crate) fn ctx<'a>(
        &'a self,
        host: &'a Handle,
        pod: Option<&'a Handle>,
        netns: &'a Path,
        sandbox_id: &'a str,
    ) -> Ctx<'a> {
        Ctx {
            host,
            pod,
            netns_path: netns,
            container_id: sandbox_id,
            ipam_data_dir: &self.inner.cfg.ipam_data_dir,
            dhcp_lease_dir: &self.inner.cfg.dhcp_lease_dir,
            link_group: self.inner.cfg.link_group,
        }
    }

    /// Executes `plan` for the sandbox: every attachment at once (see `setup.rs` for the
    /// order kept), recorded as one intent before and one done after; on failure everything
    /// made is undone in reverse. Takes the sandbox's lock for itself.
    pub async fn setup(&self, sb: SandboxSpec, plan: Plan) -> Result<SandboxRecord, SetupError> {
        self.setup_inner(None, sb, plan, None)
            .await
            .map(|d| d.record)
    }

    /// Like [`Engine::setup`] under a lock the caller already holds (see
    /// [`Engine::lock`]), with an optional deadline (see [`Engine::setup_with_deadline`]),
    /// and says whether the sandbox was already set up exactly as planned: the one place
    /// that decides it (every attachment done, with the same planned network, config and
    /// interface, in the same netns), so a retried setup after a NAD change is redone, not
    /// answered from the stale record.
    pub async fn setup_locked(
        &self,
        lock: &SandboxLock,
        sb: SandboxSpec,
        plan: Plan,
        deadline: Option<Deadline>,
    ) -> Result<SetupDone, SetupError> {
        self.setup_inner(Some(lock), sb, plan, deadline).await
    }

    /// Like [`Engine::setup`], but when `deadline`'s work time passes (waiting for the
    /// sandbox's lock included), undoes what was made (until its undo time; what is left
    /// stays recorded for teardown or recovery) and returns
    /// [`SetupError::DeadlineExceeded`].
    pub async fn setup_with_deadline(
        &self,
        sb: SandboxSpec,
        plan: Plan,
        deadline: Deadline,
    ) -> Result<SandboxRecord, SetupError> {
        self.setup_inner(None, sb, plan, Some(deadline))
            .await
            .map(|d| d.record)
    }

    async fn setup_inner(
        &self,
        lock: Option<&SandboxLock>,
        sb: SandboxSpec,
        plan: Plan,
        deadline: Option<Deadline>,
    ) -> Result<SetupDone, SetupError> {
        let until = deadline.map(|d| Instant::from_std(d.work()));
        // For messages: the time the work had, from now.
        let budget = deadline.map(|d| d.work_left()).unwrap_or_default();
        let engine_err = |cause| SetupError::Engine {
            sandbox_id: sb.sandbox_id.to_string(),
            cause,
        };
        // Before any attachment is made, a passed deadline has nothing to undo: an old
        // record cut short in its teardown keeps its `tearing_down` mark for a later
        // teardown or recovery.
        let expired = |stage: &str, note: Option<&str>| SetupError::DeadlineExceeded {
            pod: sb.pod.to_string(),
            deadline: budget,
            network: String::new(),
            stage: stage.to_string(),
            undone: Vec::new(),
            undo_failures: note.map(str::to_string).into_iter().collect(),
        };
        if let Some(lock) = lock {
            self.held(lock, &sb.sandbox_id).map_err(engine_err)?;
        }
        // Before anything else: nothing may be made in (or torn down for) a namespace that
        // is not the pod's own.
        self.check_pod_netns(&sb.netns).map_err(engine_err)?;
        let owned;
        let _lock = match lock {
            Some(lock) => lock,
            None => match within(until, self.lock(&sb.sandbox_id)).await {
                Ok(lock) => {
                    owned = lock;
                    &owned
                }
                Err(()) => return Err(expired("waiting for the sandbox lock", None)),
            },
        };
        // A teardown of this id still deleting its links: wait for them, then the old
        // record is this setup's to finish.
        if within(until, self.inner.reaping.take_over(&sb.sandbox_id))
            .await
            .is_err()
        {
            return Err(expired("waiting for the old links to be deleted", None));
        }
        // The old record to tear down first: `Some(None)` when it is unreadable.
        let old = match self.inner.store.load(&sb.sandbox_id) {
            Ok(None) => None,
            Ok(Some(old)) if same_attachments(&old, &plan) && old.netns == sb.netns => {
                self.hold(&old, None);
                return Ok(SetupDone {
                    record: old,
                    reused: true,
                });
            }
            Ok(Some(old)) => Some(Some(old)),
            Err(Error::CorruptRecord { .. } | Error::ReadRecord { .. }) => Some(None),
            Err(e) => return Err(engine_err(e)),
        };
        if let Some(old) = old {
            let cleared = async {
                match old {
                    Some(old) => self
                        .teardown_record(old, Call::Setup, LinkDeletion::BeforeAnswer)
                        .await
                        .map(drop),
                    None => self
                        .teardown_fallback(&sb.sandbox_id, Call::Setup)
                        .await
                        .map(drop),
                }
            };
            match within(until, cleared).await {
                Ok(r) => r.map_err(engine_err)?,
                Err(()) => {
                    return Err(expired(
                        "tearing down the sandbox's old record",
                        Some("old record left to teardown/recovery"),
                    ));
                }
            }
        }
        let mut rec = SandboxRecord {
            version: RECORD_VERSION,
            sandbox_id: sb.sandbox_id.clone(),
            pod: sb.pod.clone(),
            netns: sb.netns.clone(),
            attachments: Vec::new(),
            tearing_down: false,
        };
        // The first intent write creates the record (no extra fsync for an empty one).
        let pod = match within(until, Handle::open_path(&sb.netns)).await {
            Ok(Ok(p)) => p,
            Ok(Err(source)) => {
                return Err(engine_err(Error::Netlink {
                    op: format!("open pod netns {}", sb.netns.display()),
                    source: Box::new(source),
                }));
            }
            Err(()) => return Err(expired("opening the pod netns", None)),
        };
        if let Err(stopped) = self.attach_all(&mut rec, &plan, &pod, until).await {
            let att = &plan.attachments[stopped.index];
            let (mut undone, mut undo_failures) = (Vec::new(), Vec::new());
            let undo = self.rollback(
                &mut rec,
                Some(&pod),
                Call::Setup,
                &mut undone,
                &mut undo_failures,
            );
            return Err(match stopped.cause {
                Some(cause) => {
                    undo.await;
                    SetupError::Attach {
                        pod: sb.pod.to_string(),
                        network: att.network.clone(),
                        interface: att.interface.to_string(),
                        cause,
                        undone,
                        undo_failures,
                    }
                }
                None => {
                    // Past the work deadline already: the undo runs until the deadline's
                    // undo time; whatever it did not finish stays recorded for teardown
                    // or recovery.
                    let undo_until = deadline.map(|d| Instant::from_std(d.undo()));
                    let grace = undo_until
                        .map(|u| u.saturating_duration_since(Instant::now()))
                        .unwrap_or_default();
                    if within(undo_until, undo).await.is_err() {
                        // The runtime's own interfaces were never plexus's to undo (the
                        // rollback drops them from the record): not named as left.
                        let left: Vec<&str> = rec
                            .attachments
                            .iter()
                            .rev()
                            .filter(|a| a.driver != Driver::Runtime)
                            .map(|a| a.interface.as_str())
                            .collect();
                        if !left.is_empty() {
                            undo_failures.push(format!(
                                "undo cut short after {grace:?}: {} left to teardown/recovery",
                                left.join(", ")
                            ));
                        }
                    }
                    SetupError::DeadlineExceeded {
                        pod: sb.pod.to_string(),
                        deadline: budget,
                        network: att.network.clone(),
                        stage: match stopped.doing {
                            "" => format!("attaching network {:?}", att.network),
                            doing => format!("attaching network {:?} ({doing})", att.network),
                        },
                        undone,
                        undo_failures,
                    }
                }
            });
        }
        if rec.attachments.is_empty() {
            // Nothing attached, but the sandbox is known (for hot-plug and teardown).
            self.inner.store.save(&rec).map_err(engine_err)?;
        }
        self.hold(&rec, pod.netns().try_clone().ok());
        Ok(SetupDone {
            record: rec,
            reused: false,
        })
    }

    /// Hot-plugs one attachment into a set-up sandbox. Takes the sandbox's lock for itself.
    pub async fn attach(
        &self,
        sandbox_id: &SandboxId,
        att: PlannedAttachment,
    ) -> Result<AttachmentRecord> {
        self.attach_locked(&self.lock(sandbox_id).await, att).await
    }

    /// Like [`Engine::attach`] under a lock the caller already holds.
    pub async fn attach_locked(
        &self,
        lock: &SandboxLock,
        att: PlannedAttachment,
    ) -> Result<AttachmentRecord> {
        let sandbox_id = lock.sandbox_id();
        self.held(lock, sandbox_id)?;
        let mut rec = self
            .inner
            .store
            .load(sandbox_id)?
            .ok_or_else(|| Error::UnknownSandbox {
                sandbox_id: sandbox_id.to_string(),
            })?;
        self.check_pod_netns(&rec.netns)?;
        let pod = Handle::open_path(&rec.netns)
            .await
            .map_err(|source| Error::Netlink {
                op: format!("open pod netns {}", rec.netns.display()),
                source: Box::new(source),
            })?;
        let before = rec.attachments.len();
        match self.attach_one(&mut rec, &att, &pod, Call::Attach).await {
            Ok(()) => {
                self.hold_again(&rec, None);
                Ok(rec.attachments.last().cloned().expect("just attached"))
            }
            Err(e) => {
                if rec.attachments.len() > before {
                    let a = rec.attachments.pop().expect("len checked");
                    if let Err(undo) = self
                        .remove_one(&rec, &a, Some(&pod), Call::Attach, true)
                        .await
                    {
                        tracing::warn!(error = %undo, interface = %a.interface, "undo of failed hot-plug");
                        rec.attachments.push(a);
                    }
                    self.inner.store.save(&rec)?;
                }
                Err(e)
            }
        }
    }
}
