//! The production [`Attacher`]: an adapter over `plexus_engine::Engine`. It converts engine
//! records to the service's views and engine errors to the service's errors by type; it
//! adds no behaviour of its own.

use plexus_core::id::SandboxId;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_engine::error::chain;
use plexus_engine::{
    AttachmentRecord, Driver, Engine, Phase, SandboxLock, SandboxRecord, SetupError,
};

use crate::attacher::{Attacher, SetupDone};
use crate::error::{Error, Result};
use crate::model::{
    AttachmentState, AttachmentView, RecoveryOutcome, SandboxSpec, SandboxView, TeardownOutcome,
};

/// [`Attacher`] over the plexus engine.
#[derive(Debug, Clone)]
pub struct EngineAttacher {
    engine: Engine,
}

impl EngineAttacher {
    /// Wraps an opened engine.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// Fills the native DHCP lease expiry of each attachment that has a lease file.
    fn with_dhcp_leases(&self, mut view: SandboxView) -> SandboxView {
        let store =
            plexus_engine::ipam::dhcp::LeaseStore::new(&self.engine.config().dhcp_lease_dir);
        for a in &mut view.attachments {
            if let Ok(Some(lease)) = store.load(view.sandbox_id.as_str(), &a.interface) {
                a.lease_expires = lease.expires_at();
            }
        }
        view
    }
}

/// An attachment record as the service shows it.
pub fn attachment_view(a: &AttachmentRecord) -> AttachmentView {
    let result = a.result.as_ref();
    let iface = result.and_then(|r| {
        r.interfaces
            .iter()
            .find(|i| i.name == a.interface && !i.sandbox.is_empty())
            .or_else(|| r.interfaces.iter().find(|i| !i.sandbox.is_empty()))
    });
    AttachmentView {
        network: a.network.clone(),
        interface: a.interface.to_string(),
        ips: result
            .map(|r| r.ips.iter().map(|ip| ip.address.to_string()).collect())
            .unwrap_or_default(),
        mac: iface.map(|i| i.mac.clone()).unwrap_or_default(),
        driver: match a.driver {
            Driver::Native => "native",
            Driver::Exec => "exec",
            Driver::Runtime => "runtime",
        }
        .to_owned(),
        plugin: a.planned.config.plugin_types.join(","),
        origin: a.planned.origin.as_str().to_owned(),
        state: match a.phase {
            Phase::Intent => AttachmentState::Pending,
            Phase::Done => AttachmentState::Attached,
            Phase::Removing => AttachmentState::Detaching,
        },
        mtu: iface.and_then(|i| i.mtu),
        gateways: result
            .map(|r| {
                r.ips
                    .iter()
                    .filter_map(|ip| ip.gateway.map(|g| g.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        primary: a.planned.primary,
        lease_expires: None,
        result: a.result.clone(),
    }
}

/// A sandbox record as the service shows it.
pub fn sandbox_view(rec: &SandboxRecord) -> SandboxView {
    SandboxView {
        sandbox_id: rec.sandbox_id.clone(),
        pod: rec.pod.clone(),
        netns: rec.netns.to_string_lossy().into_owned(),
        attachments: rec.attachments.iter().map(attachment_view).collect(),
    }
}

/// What a setup or hot-plug cut short by its deadline undid, truthfully in every case:
/// "nothing had been attached" only when nothing was undone *and* nothing was left over.
fn undone_text(undone: &[String], failures: &[String]) -> String {
    let left = failures.join("; ");
    match (undone.is_empty(), failures.is_empty()) {
        (true, true) => "nothing had been attached yet, so nothing was undone".to_owned(),
        (false, true) => format!("undid {}", undone.join(", ")),
        (true, false) => format!("nothing could be undone in time, left to teardown: {left}"),
        (false, false) => format!(
            "undid {}; not undone, left to teardown: {left}",
            undone.join(", ")
        ),
    }
}

impl EngineAttacher {
    /// Undoes a hot-plug whose deadline passed, and says what was undone.
    ///
    /// The engine's hot-plug has no deadline of its own, so the service drops it: that kills
    /// a running CNI plugin (with its process group); the sandbox's lock stays held.
    /// What the engine had recorded by then (the intent, written before anything is made, or
    /// the finished attachment) is removed exactly like a detach, which tolerates pieces that
    /// were never made. No record means nothing was made.
    async fn undo_attach(
        &self,
        lock: &SandboxLock,
        network: &str,
        interface: &plexus_core::InterfaceName,
    ) -> String {
        let sandbox_id = lock.sandbox_id();
        match self.engine.detach_locked(lock, interface).await {
            Ok(_) => undone_text(&[format!("{interface} ({network})")], &[]),
            Err(
                plexus_engine::Error::NoSuchAttachment { .. }
                | plexus_engine::Error::UnknownSandbox { .. },
            ) => undone_text(&[], &[]),
            Err(err) => {
                tracing::warn!(sandbox.id = %sandbox_id, %interface, error = %chain(&err),
                    "undo of a hot-plug past its deadline failed");
                format!(
                    "undo of {interface} ({network}) failed (left to teardown): {}",
                    chain(&err)
                )
            }
        }
    }
}

/// A state-store read error naming the record (`sandbox <id>` or `the sandbox records`).
fn state_error(record: impl Into<String>) -> impl FnOnce(plexus_engine::Error) -> Error {
    let record = record.into();
    move |err| Error::ReadState {
        record,
        message: chain(&err),
    }
}

impl Attacher for EngineAttacher {
    async fn recover(&self) -> Result<RecoveryOutcome> {
        let report = self
            .engine
            .recover()
            .await
            .map_err(|e| Error::Recover { message: chain(&e) })?;
        let mut repaired: Vec<String> = report.undone.iter().map(|(id, _)| id.clone()).collect();
        repaired.extend(report.finished_teardowns.iter().cloned());
        repaired.extend(report.finished_detaches.iter().map(|(id, _)| id.clone()));
        repaired.extend(report.restored_leases.iter().map(|(id, _, _)| id.clone()));
        repaired.sort();
        repaired.dedup();
        let mut failed = report.failures.clone();
        failed.extend(
            report
                .corrupt
                .iter()
                .map(|id| format!("{id}: record unreadable")),
        );
        Ok(RecoveryOutcome { repaired, failed })
    }

    async fn lock(&self, sandbox_id: &SandboxId) -> SandboxLock {
        self.engine.lock(sandbox_id).await
    }

    async fn setup(
        &self,
        lock: &SandboxLock,
        spec: SandboxSpec,
        plan: Plan,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<SetupDone> {
        let sandbox_id = spec.sandbox_id.to_string();
        let pod = spec.pod.to_string();
        let sb = plexus_engine::SandboxSpec {
            sandbox_id: spec.sandbox_id,
            pod: spec.pod,
            netns: spec.netns,
        };
        if deadline.is_some_and(|d| d.passed()) {
            return Err(Error::DeadlineExceeded {
                operation: format!("setting up pod {pod}"),
                undone: "nothing was done".to_owned(),
            });
        }
        match self.engine.setup_locked(lock, sb, plan, deadline).await {
            Ok(done) => Ok(SetupDone {
                sandbox: sandbox_view(&done.record),
                reused: done.reused,
            }),
            Err(SetupError::DeadlineExceeded {
                pod,
                stage,
                undone,
                undo_failures,
                ..
            }) => Err(Error::DeadlineExceeded {
                operation: format!("setting up pod {pod} while {stage}"),
                undone: undone_text(&undone, &undo_failures),
            }),
            Err(
                err @ SetupError::Attach {
                    cause: plexus_engine::Error::InterfaceExists { .. },
                    ..
                },
            ) => Err(Error::Conflict {
                sandbox_id,
                message: chain(&err),
            }),
            Err(SetupError::Engine {
                cause: plexus_engine::Error::PodNetnsRefused { path, reason },
                ..
            }) => Err(Error::InvalidNetns {
                path: crate::convert::shown(&path.to_string_lossy()),
                reason,
            }),
            Err(SetupError::Engine {
                cause: plexus_engine::Error::NetnsMissing { path, source },
                ..
            }) => Err(Error::NetnsMissing {
                path: crate::convert::shown(&path.to_string_lossy()),
                message: source.to_string(),
            }),
            Err(err) => Err(Error::Setup {
                sandbox_id,
                message: chain(&err),
                reason: match &err {
                    SetupError::Attach { cause, .. } | SetupError::Engine { cause, .. } => {
                        cause.reason()
                    }
                    SetupError::DeadlineExceeded { .. } => "deadline_exceeded",
                },
            }),
        }
    }

    async fn teardown(
        &self,
        lock: &SandboxLock,
        links: plexus_engine::LinkDeletion,
        _deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<TeardownOutcome> {
        // Teardown always runs to the end: a half-removed pod is worse than a late answer.
        let sandbox_id = lock.sandbox_id();
        let before = self.engine.sandbox(sandbox_id).ok().flatten();
        let report = self
            .engine
            .teardown_locked_as(lock, links)
            .await
            .map_err(|e| Error::Teardown {
                sandbox_id: sandbox_id.to_string(),
                message: chain(&e),
            })?;
        let removed = report
            .removed
            .iter()
            .map(|iface| {
                before
                    .as_ref()
                    .and_then(|rec| rec.attachment(iface))
                    .map(attachment_view)
                    .unwrap_or_else(|| AttachmentView {
                        network: String::new(),
                        interface: iface.clone(),
                        ips: Vec::new(),
                        mac: String::new(),
                        driver: String::new(),
                        plugin: String::new(),
                        origin: String::new(),
                        state: AttachmentState::Detaching,
                        mtu: None,
                        gateways: Vec::new(),
                        primary: false,
                        lease_expires: None,
                        result: None,
                    })
            })
            .collect();
        if !report.unresolved.is_empty() {
            tracing::warn!(sandbox.id = %sandbox_id, unresolved = ?report.unresolved,
                "teardown from fallback evidence left things it could not identify");
        }
        Ok(TeardownOutcome {
            known: report.known,
            pod: before.map(|rec| rec.pod),
            removed,
        })
    }

    async fn attach(
        &self,
        lock: &SandboxLock,
        attachment: PlannedAttachment,
        deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<AttachmentView> {
        let sandbox_id = lock.sandbox_id();
        let network = attachment.network.clone();
        let interface = attachment.interface.clone();
        // An interface recorded before this call is never this call's to undo (the engine
        // refuses the name anyway).
        let taken = self
            .engine
            .sandbox(sandbox_id)
            .map_err(state_error(format!("sandbox {sandbox_id}")))?
            .is_some_and(|rec| rec.attachment(&interface).is_some());
        let attach = self.engine.attach_locked(lock, attachment);
        let result = match deadline {
            None => attach.await,
            Some(deadline) => match tokio::time::timeout_at(deadline.work().into(), attach).await {
                Ok(result) => result,
                Err(_) => {
                    let undone = match taken {
                        true => undone_text(&[], &[]),
                        false => self.undo_attach(lock, &network, &interface).await,
                    };
                    return Err(Error::DeadlineExceeded {
                        operation: format!(
                            "attaching {network} as {interface} to sandbox {sandbox_id}"
                        ),
                        undone,
                    });
                }
            },
        };
        match result {
            Ok(rec) => Ok(attachment_view(&rec)),
            Err(plexus_engine::Error::UnknownSandbox { .. }) => Err(Error::SandboxNotFound {
                selector: format!("sandbox {sandbox_id}"),
            }),
            Err(plexus_engine::Error::PodNetnsRefused { path, reason }) => {
                Err(Error::InvalidNetns {
                    path: crate::convert::shown(&path.to_string_lossy()),
                    reason,
                })
            }
            Err(plexus_engine::Error::NetnsMissing { path, source }) => Err(Error::NetnsMissing {
                path: crate::convert::shown(&path.to_string_lossy()),
                message: source.to_string(),
            }),
            Err(err @ plexus_engine::Error::InterfaceExists { .. }) => Err(Error::Conflict {
                sandbox_id: sandbox_id.to_string(),
                message: format!("attaching {network}: {}", chain(&err)),
            }),
            Err(err) => Err(Error::Attach {
                sandbox_id: sandbox_id.to_string(),
                network,
                message: chain(&err),
                reason: err.reason(),
            }),
        }
    }

    async fn detach(
        &self,
        lock: &SandboxLock,
        interface: plexus_core::InterfaceName,
        _deadline: Option<plexus_core::deadline::Deadline>,
    ) -> Result<AttachmentView> {
        let sandbox_id = lock.sandbox_id();
        match self.engine.detach_locked(lock, &interface).await {
            Ok(rec) => Ok(attachment_view(&rec)),
            Err(plexus_engine::Error::UnknownSandbox { .. }) => Err(Error::SandboxNotFound {
                selector: format!("sandbox {sandbox_id}"),
            }),
            Err(
                err @ (plexus_engine::Error::DetachPrimary { .. }
                | plexus_engine::Error::DetachAdopted { .. }),
            ) => Err(Error::DetachPrimary {
                message: err.to_string(),
            }),
            Err(plexus_engine::Error::NoSuchAttachment { .. }) => Err(Error::InterfaceNotFound {
                sandbox_id: sandbox_id.to_string(),
                interface: interface.to_string(),
            }),
            Err(err) => Err(Error::Detach {
                sandbox_id: sandbox_id.to_string(),
                interface: interface.to_string(),
                message: chain(&err),
            }),
        }
    }

    fn sandboxes(&self) -> Result<Vec<SandboxView>> {
        let records = self
            .engine
            .sandboxes()
            .map_err(state_error("the sandbox records"))?;
        Ok(records
            .iter()
            .map(|r| self.with_dhcp_leases(sandbox_view(r)))
            .collect())
    }

    fn sandbox(&self, sandbox_id: &SandboxId) -> Result<Option<SandboxView>> {
        let record = self
            .engine
            .sandbox(sandbox_id)
            .map_err(state_error(format!("sandbox {sandbox_id}")))?;
        Ok(record
            .as_ref()
            .map(|r| self.with_dhcp_leases(sandbox_view(r))))
    }

    fn stop_at_once(&self, sandbox_id: &SandboxId) -> bool {
        self.engine.stop_at_once(sandbox_id)
    }
}

/// Feeds the engine's per-attachment timings into the Prometheus histograms
/// (`plexus_setup_duration_seconds` / `plexus_teardown_duration_seconds`), labelled by the
/// entry point of the request doing the work ([`crate::entry`]) and by outcome. Failed
/// requests are counted by reason where the request is measured ([`crate::node::Node`]).
#[derive(Debug)]
pub struct EngineMetrics(pub plexus_telemetry::Metrics);

impl plexus_engine::Observer for EngineMetrics {
    fn attachment_done(&self, e: &plexus_engine::AttachmentEvent<'_>) {
        use plexus_telemetry::metrics::{Driver as MDriver, Outcome, Path};
        let path = crate::entry::current().unwrap_or(if e.call.is_hot_plug() {
            Path::Api
        } else {
            Path::Nri
        });
        let driver = match e.driver {
            Driver::Native => MDriver::Native,
            Driver::Exec | Driver::Runtime => MDriver::Exec,
        };
        let outcome = Outcome::of(!matches!(e.outcome, plexus_engine::Outcome::Error(_)));
        match e.op {
            plexus_engine::Op::Setup => self.0.observe_setup(path, driver, outcome, e.elapsed),
            plexus_engine::Op::Teardown => {
                self.0.observe_teardown(path, driver, outcome, e.elapsed)
            }
        }
    }
}

#[cfg(test)]
mod tests;
