//! Start-up recovery from hand-written records, with a recording fake exec path (no root):
//! an interrupted detach finishes only that attachment, an interrupted teardown (record
//! marked `tearing_down`) finishes all, a half-made attachment is undone; and teardown
//! records `tearing_down` durably before it removes anything.

mod common;

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use plexus_core::cni;
use plexus_core::id::SandboxId;
use plexus_core::pod::PodIdentity;
use plexus_engine::exec::{BoxError, Exec, ExecRequest};
use plexus_engine::state::{RECORD_VERSION, Store};
use plexus_engine::{AttachmentRecord, DelegationMode, Driver, Engine, Phase, SandboxRecord};

/// Records every DEL as `<sandbox>/<interface>`, with what the sandbox's record on disk
/// said at that moment: (`tearing_down`, phases of its attachments).
#[derive(Debug)]
struct FakeExec {
    store: Store,
    dels: Mutex<Vec<(String, bool, Vec<Phase>)>>,
}

impl Exec for FakeExec {
    fn add<'a>(&'a self, _req: ExecRequest<'a>) -> BoxFuture<'a, Result<cni::Result, BoxError>> {
        async { Err("add is not used here".into()) }.boxed()
    }

    fn del<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<(), BoxError>> {
        async move {
            let rec = self
                .store
                .load(req.sandbox_id)?
                .ok_or("no record during DEL")?;
            let phases = rec.attachments.iter().map(|a| a.phase).collect();
            let call = format!("{}/{}", req.sandbox_id, req.attachment.interface);
            self.dels
                .lock()
                .unwrap()
                .push((call, rec.tearing_down, phases));
            Ok(())
        }
        .boxed()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    engine: Engine,
    store: Store,
    fake: Arc<FakeExec>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_for(
        dir.path(),
        &dir.path().join("no-host"),
        DelegationMode::ForceExec,
    );
    let store = Store::open(&cfg.state_dir).unwrap();
    let fake = Arc::new(FakeExec {
        store: store.clone(),
        dels: Mutex::new(Vec::new()),
    });
    let engine = Engine::with_exec(cfg, fake.clone()).unwrap();
    Setup {
        _dir: dir,
        engine,
        store,
        fake,
    }
}

impl Setup {
    /// Saves a record with exec attachments `net1`, `net2`, … in the given phases; its
    /// netns does not exist (DEL runs without one).
    fn record(&self, id: &str, phases: &[Phase], tearing_down: bool) {
        let attachments = phases
            .iter()
            .enumerate()
            .map(|(i, &phase)| {
                let iface = format!("net{}", i + 1);
                let conf = serde_json::json!({"cniVersion":"1.0.0","name":format!("n{i}"),"type":"macvlan"});
                AttachmentRecord {
                    network: format!("default/n{i}"),
                    interface: common::ifn(&iface),
                    driver: Driver::Exec,
                    phase,
                    planned: common::attachment(i + 1, &iface, &conf),
                    result: None,
                    native: Default::default(),
                }
            })
            .collect();
        self.store
            .save(&SandboxRecord {
                version: RECORD_VERSION,
                sandbox_id: SandboxId::new(id).unwrap(),
                pod: PodIdentity::new("default", "pod", "uid-1"),
                netns: self._dir.path().join("gone-netns"),
                attachments,
                tearing_down,
            })
            .unwrap();
    }

    fn dels(&self) -> Vec<String> {
        let dels = self.fake.dels.lock().unwrap();
        dels.iter().map(|(c, _, _)| c.clone()).collect()
    }

    fn recorded(&self, id: &str) -> Option<Vec<(String, Phase)>> {
        let rec = self.store.load(&sid(id)).unwrap()?;
        Some(
            rec.attachments
                .into_iter()
                .map(|a| (a.interface.to_string(), a.phase))
                .collect(),
        )
    }
}

#[tokio::test]
async fn an_interrupted_detach_removes_only_the_detached_attachment() {
    let s = setup();
    s.record("sb", &[Phase::Done, Phase::Removing, Phase::Done], false);
    let report = s.engine.recover().await.unwrap();
    assert_eq!(s.dels(), ["sb/net2"]);
    assert_eq!(report.finished_detaches, [("sb".into(), "net2".into())]);
    assert!(report.finished_teardowns.is_empty() && report.failures.is_empty());
    assert_eq!(
        s.recorded("sb").unwrap(),
        [("net1".into(), Phase::Done), ("net3".into(), Phase::Done)]
    );
    // Nothing left to do on a second start.
    s.engine.recover().await.unwrap();
    assert_eq!(s.dels().len(), 1);
}

#[tokio::test]
async fn an_interrupted_teardown_removes_everything_once() {
    let s = setup();
    s.record("sb", &[Phase::Removing, Phase::Removing], true);
    let report = s.engine.recover().await.unwrap();
    // Removed all at once: each exactly once, in no particular order.
    let mut dels = s.dels();
    dels.sort();
    assert_eq!(dels, ["sb/net1", "sb/net2"]);
    assert_eq!(report.finished_teardowns, ["sb"]);
    assert!(report.finished_detaches.is_empty());
    assert_eq!(s.recorded("sb"), None);
    s.engine.recover().await.unwrap();
    assert_eq!(s.dels().len(), 2);
}

#[tokio::test]
async fn a_teardown_marked_only_by_its_mark_file_is_finished_once_and_the_mark_goes() {
    let s = setup();
    // A runtime's teardown that got as far as its mark file: the record itself still says
    // done (it is never rewritten for the mark).
    s.record("sb", &[Phase::Done, Phase::Done], false);
    let state = s.store.dir().to_path_buf();
    std::fs::write(state.join("sb.tearing-down"), "").unwrap();
    let report = s.engine.recover().await.unwrap();
    let mut dels = s.dels();
    dels.sort();
    assert_eq!(dels, ["sb/net1", "sb/net2"]);
    assert_eq!(report.finished_teardowns, ["sb"]);
    assert!(report.restored_leases.is_empty() && report.failures.is_empty());
    assert_eq!(s.recorded("sb"), None);
    assert!(
        !state.join("sb.tearing-down").exists(),
        "the mark went with its record"
    );
    s.engine.recover().await.unwrap();
    assert_eq!(s.dels().len(), 2, "finished once");
}

#[tokio::test]
async fn half_made_and_half_removed_attachments_are_handled_each_their_way() {
    let s = setup();
    s.record("sb", &[Phase::Removing, Phase::Done, Phase::Intent], false);
    let report = s.engine.recover().await.unwrap();
    assert_eq!(s.dels(), ["sb/net3", "sb/net1"]);
    assert_eq!(report.undone, [("sb".into(), "net3".into())]);
    assert_eq!(report.finished_detaches, [("sb".into(), "net1".into())]);
    assert_eq!(s.recorded("sb").unwrap(), [("net2".into(), Phase::Done)]);
}

#[tokio::test]
async fn teardown_marks_the_record_before_it_removes_anything_and_detach_does_not() {
    let s = setup();
    s.record("sb", &[Phase::Done, Phase::Done], false);
    s.engine
        .detach(&sid("sb"), &common::ifn("net1"))
        .await
        .unwrap();
    s.engine.teardown(&sid("sb")).await.unwrap();
    let dels = s.fake.dels.lock().unwrap().clone();
    assert_eq!(
        dels,
        [
            ("sb/net1".into(), false, vec![Phase::Removing, Phase::Done]),
            ("sb/net2".into(), true, vec![Phase::Removing]),
        ]
    );
    assert_eq!(s.recorded("sb"), None);
}

fn sid(id: &str) -> SandboxId {
    SandboxId::new(id).unwrap()
}

#[tokio::test]
async fn an_adopted_interface_is_not_detached_and_the_refusal_says_why() {
    let s = setup();
    s.record("sb", &[Phase::Done, Phase::Done], false);
    // net1 as adoption records it: made by the runtime (or another agent), not the primary.
    let mut rec = s.store.load(&sid("sb")).unwrap().unwrap();
    rec.attachments[0].driver = Driver::Runtime;
    s.store.save(&rec).unwrap();
    let err = s
        .engine
        .detach(&sid("sb"), &common::ifn("net1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, plexus_engine::Error::DetachAdopted { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("already in the pod when plexus adopted it"),
        "{text}"
    );
    assert!(!text.contains("primary"), "{text}");
    assert!(s.dels().is_empty(), "nothing was run");
    assert_eq!(
        s.recorded("sb").unwrap().len(),
        2,
        "the record is unchanged"
    );
    // A secondary plexus made is still detached.
    s.engine
        .detach(&sid("sb"), &common::ifn("net2"))
        .await
        .expect("detach net2");
    assert_eq!(s.dels(), ["sb/net2"]);
}

/// A host-local lease is written without fsync when taken; its record is the durable copy.
/// After a power loss lost the file (or left it empty), recovery writes it back; an
/// address someone else took meanwhile is reported, naming the holder, and left alone.
#[tokio::test]
async fn leases_a_power_loss_lost_are_written_back_from_the_record() {
    let s = setup();
    let leases = s._dir.path().join("leases/n0");
    std::fs::create_dir_all(&leases).unwrap();
    let native_record = |id: &str, ips: &[&str]| {
        s.record(id, &[Phase::Done], false);
        let mut rec = s.store.load(&sid(id)).unwrap().unwrap();
        let a = &mut rec.attachments[0];
        a.driver = Driver::Native;
        a.native.kind = "macvlan".into();
        a.native.leases = vec![plexus_engine::state::LeaseRecord {
            dir: leases.clone(),
            container_id: id.into(),
            ifname: "net1".into(),
            ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        }];
        s.store.save(&rec).unwrap();
        rec
    };
    let kept = native_record("sb", &["10.9.0.5", "10.9.0.6", "10.9.0.8"]);
    // .5 lost, .6 created but its content lost, .8 on disk as written.
    std::fs::write(leases.join("10.9.0.6"), "").unwrap();
    std::fs::write(leases.join("10.9.0.8"), "sb\r\nnet1").unwrap();
    native_record("sb2", &["10.9.0.7"]);
    std::fs::write(leases.join("10.9.0.7"), "other\r\neth1").unwrap();

    let report = s.engine.recover().await.unwrap();

    let written: Vec<String> = report
        .restored_leases
        .iter()
        .map(|(id, ifname, ip)| format!("{id}/{ifname}/{ip}"))
        .collect();
    assert_eq!(written, ["sb/net1/10.9.0.5", "sb/net1/10.9.0.6"]);
    for ip in ["10.9.0.5", "10.9.0.6", "10.9.0.8"] {
        assert_eq!(
            std::fs::read(leases.join(ip)).unwrap(),
            b"sb\r\nnet1",
            "{ip}"
        );
    }
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert!(
        failure.starts_with("sb2/net1:") && failure.contains("other on eth1 holds it now"),
        "{failure}"
    );
    assert_eq!(
        std::fs::read(leases.join("10.9.0.7")).unwrap(),
        b"other\r\neth1"
    );
    assert_eq!(
        s.store.load(&sid("sb")).unwrap(),
        Some(kept),
        "the record is unchanged"
    );
    assert!(s.dels().is_empty(), "a made attachment is kept");
}
