//! The [`Engine`]: executes a pod's plan into its netns (native driver or CNI exec per
//! attachment), records every step crash-safely, and undoes in reverse on failure.
//!
//! Per-sandbox work is serialised by an in-process lock, so concurrent callers for the
//! same sandbox cannot interleave record writes. Teardown, detach and recovery live in
//! `teardown.rs`, removing one attachment and rollback in `undo.rs`. Every attachment step
//! runs in its `attachment` span and is reported to the observer (`observe.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_netlink::Handle;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{DelegationMode, EngineConfig};
use crate::crash;
use crate::error::{Error, Result, SetupError};
use crate::exec::{Exec, ExecRequest};
use crate::native::{self, Ctx, NativeConfig};
use crate::observe::{
    Call, NativeOp, Observer, ObserverSlot, Op, Outcome, StepSpan, Tracked, failure_of, native_span,
};
use crate::route;
use crate::state::{
    AttachmentRecord, Driver, NativeRecord, Phase, RECORD_VERSION, SandboxRecord, Store,
};

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
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    host: tokio::sync::OnceCell<Handle>,
    observer: ObserverSlot,
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
        Ok(Engine {
            inner: Arc::new(Inner {
                cfg,
                store,
                exec,
                locks: Mutex::new(HashMap::new()),
                host: tokio::sync::OnceCell::new(),
                observer: ObserverSlot::new(),
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
    /// still handles them).
    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        let mut out = Vec::new();
        for id in self.inner.store.ids()? {
            match self.inner.store.load(&id) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!(sandbox_id = %id, error = %e, "unreadable sandbox record"),
            }
        }
        Ok(out)
    }

    /// One sandbox's record.
    pub fn sandbox(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxRecord>> {
        self.inner.store.load(sandbox_id)
    }

    pub(crate) async fn lock(&self, sandbox_id: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.inner.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, m| Arc::strong_count(m) > 1);
            locks.entry(sandbox_id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    pub(crate) async fn host(&self) -> Result<&Handle> {
        self.inner
            .host
            .get_or_try_init(|| async {
                match &self.inner.cfg.host_netns {
                    Some(p) => Handle::open_path(p).await,
                    None => Handle::current().await,
                }
                .map_err(|source| Error::Netlink {
                    op: "open the host netns".into(),
                    source: Box::new(source),
                })
            })
            .await
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

    /// Executes `plan` for the sandbox: every attachment in order, recorded before and
    /// after each step; on failure everything made is undone in reverse.
    pub async fn setup(&self, sb: SandboxSpec, plan: Plan) -> Result<SandboxRecord, SetupError> {
        self.setup_inner(sb, plan, None).await
    }

    /// Like [`Engine::setup`], but when `deadline` passes, undoes what was made and returns
    /// [`SetupError::DeadlineExceeded`].
    pub async fn setup_with_deadline(
        &self,
        sb: SandboxSpec,
        plan: Plan,
        deadline: Duration,
    ) -> Result<SandboxRecord, SetupError> {
        self.setup_inner(sb, plan, Some(deadline)).await
    }

    async fn setup_inner(
        &self,
        sb: SandboxSpec,
        plan: Plan,
        deadline: Option<Duration>,
    ) -> Result<SandboxRecord, SetupError> {
        let until = deadline.map(|d| Instant::now() + d);
        let engine_err = |cause| SetupError::Engine {
            sandbox_id: sb.sandbox_id.to_string(),
            cause,
        };
        // Before any attachment is made, a passed deadline has nothing to undo: an old
        // record cut short in its teardown keeps its `tearing_down` mark for a later
        // teardown or recovery.
        let expired = |stage: &str, note: Option<&str>| SetupError::DeadlineExceeded {
            pod: sb.pod.to_string(),
            deadline: deadline.unwrap_or_default(),
            network: String::new(),
            stage: stage.to_string(),
            undone: Vec::new(),
            undo_failures: note.map(str::to_string).into_iter().collect(),
        };
        // Before anything else: nothing may be made in (or torn down for) a namespace that
        // is not the pod's own.
        self.check_pod_netns(&sb.netns).map_err(engine_err)?;
        let Ok(_guard) = within(until, self.lock(sb.sandbox_id.as_str())).await else {
            return Err(expired("waiting for the sandbox lock", None));
        };
        // The old record to tear down first: `Some(None)` when it is unreadable.
        let old = match self.inner.store.load(&sb.sandbox_id) {
            Ok(None) => None,
            Ok(Some(old)) if same_attachments(&old, &plan) && old.netns == sb.netns => {
                return Ok(old);
            }
            Ok(Some(old)) => Some(Some(old)),
            Err(Error::CorruptRecord { .. } | Error::ReadRecord { .. }) => Some(None),
            Err(e) => return Err(engine_err(e)),
        };
        if let Some(old) = old {
            let cleared = async {
                match old {
                    Some(old) => self.teardown_record(old, Call::Setup).await.map(drop),
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
        for att in &plan.attachments {
            let step = self.attach_one(&mut rec, att, &pod, Call::Setup);
            let failure = match within(until, step).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => Some(e),
                Err(()) => None,
            };
            let (mut undone, mut undo_failures) = (Vec::new(), Vec::new());
            let undo = self.rollback(
                &mut rec,
                Some(&pod),
                Call::Setup,
                &mut undone,
                &mut undo_failures,
            );
            return Err(match failure {
                Some(cause) => {
                    undo.await;
                    SetupError::Attach {
                        pod: sb.pod.to_string(),
                        network: att.network.clone(),
                        interface: att.interface.clone(),
                        cause,
                        undone,
                        undo_failures,
                    }
                }
                None => {
                    // Past the deadline already: the undo gets a bounded grace, whatever
                    // it did not finish stays recorded for teardown or recovery.
                    let grace = rollback_grace(deadline.unwrap_or_default());
                    if tokio::time::timeout(grace, undo).await.is_err() {
                        let left: Vec<&str> = rec
                            .attachments
                            .iter()
                            .rev()
                            .map(|a| a.interface.as_str())
                            .collect();
                        undo_failures.push(format!(
                            "undo cut short after {grace:?}: {} left to teardown/recovery",
                            left.join(", ")
                        ));
                    }
                    SetupError::DeadlineExceeded {
                        pod: sb.pod.to_string(),
                        deadline: deadline.unwrap_or_default(),
                        network: att.network.clone(),
                        stage: format!("attaching network {:?}", att.network),
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
        Ok(rec)
    }

    /// Hot-plugs one attachment into a set-up sandbox.
    pub async fn attach(
        &self,
        sandbox_id: &SandboxId,
        att: PlannedAttachment,
    ) -> Result<AttachmentRecord> {
        let _guard = self.lock(sandbox_id.as_str()).await;
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
            Ok(()) => Ok(rec.attachments.last().cloned().expect("just attached")),
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

    /// Makes one attachment in its `attachment` span, and reports it to the observer.
    async fn attach_one(
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
            let primary = crate::primary::describe(
                &self.inner.cfg.cni_cache_dir,
                rec.sandbox_id.as_str(),
                &att.interface,
                &rec.netns,
                pod,
            )
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

/// Runs `f` until `until` (no limit when `None`); `Err(())` when the deadline passed first.
async fn within<F: std::future::Future>(until: Option<Instant>, f: F) -> Result<F::Output, ()> {
    match until {
        Some(t) => tokio::time::timeout_at(t, f).await.map_err(drop),
        None => Ok(f.await),
    }
}

/// How long the undo after a passed setup deadline may run: a third of the deadline (the
/// caller keeps about that much in reserve), at least 20ms, at most 2s.
fn rollback_grace(deadline: Duration) -> Duration {
    (deadline / 3).clamp(Duration::from_millis(20), Duration::from_secs(2))
}

fn same_attachments(rec: &SandboxRecord, plan: &Plan) -> bool {
    rec.attachments.len() == plan.attachments.len()
        && rec
            .attachments
            .iter()
            .zip(&plan.attachments)
            .all(|(a, p)| a.phase == Phase::Done && a.planned == *p)
}
