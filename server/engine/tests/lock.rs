//! The engine's per-sandbox lock is the one lock of a sandbox: a caller holding it
//! (plexusd takes it before its parallelism slot) runs the `*_locked` operations under it,
//! every other operation on that sandbox waits for it, and a lock that is not this engine's
//! lock of that sandbox is refused before anything is done. Unprivileged: an engine over a
//! temporary state directory, and a record without attachments whose netns is gone.

mod common;

use std::time::Duration;

use common::{config_for, plan, sid};
use plexus_engine::state::{RECORD_VERSION, SandboxRecord, Store};
use plexus_engine::{DelegationMode, Engine, Error, SetupError};

fn open_engine(dir: &std::path::Path) -> Engine {
    let host = std::path::Path::new("/proc/self/ns/net");
    Engine::open(config_for(dir, host, DelegationMode::Auto)).expect("open engine")
}

fn record(engine: &Engine, id: &str) {
    let rec = SandboxRecord {
        version: RECORD_VERSION,
        sandbox_id: sid(id),
        pod: plexus_core::pod::PodIdentity::new("default", "lock-test", "uid-1"),
        netns: "/run/netns/plexus-lock-test-gone".into(),
        attachments: Vec::new(),
        tearing_down: false,
    };
    Store::open(&engine.config().state_dir)
        .unwrap()
        .save(&rec)
        .unwrap();
}

#[tokio::test]
async fn work_on_a_locked_sandbox_waits_for_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    record(&engine, "sb-lock-a");
    let lock = engine.lock(&sid("sb-lock-a")).await;
    let teardown = tokio::spawn({
        let engine = engine.clone();
        async move { engine.teardown(&sid("sb-lock-a")).await }
    });
    let waiting = async {
        while engine.lock_users(&sid("sb-lock-a")) < 2 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the teardown waits for the sandbox's lock");
    assert!(!teardown.is_finished());
    assert!(engine.sandbox(&sid("sb-lock-a")).unwrap().is_some());
    drop(lock);
    assert!(teardown.await.unwrap().expect("teardown").known);
    assert!(engine.sandbox(&sid("sb-lock-a")).unwrap().is_none());
    assert_eq!(engine.locked(), 0, "no entry is left behind");
}

#[tokio::test]
async fn a_lock_that_is_not_this_engines_lock_of_that_sandbox_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path());
    record(&engine, "sb-lock-b");
    // Another engine's lock of the same sandbox.
    let other_dir = tempfile::tempdir().unwrap();
    let foreign = open_engine(other_dir.path()).lock(&sid("sb-lock-b")).await;
    let err = engine.teardown_locked(&foreign).await.unwrap_err();
    assert!(matches!(err, Error::LockNotHeld { .. }), "{err}");
    assert!(err.to_string().contains("nothing was done"), "{err}");
    let err = engine
        .detach_locked(&foreign, &"net1".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LockNotHeld { .. }), "{err}");
    assert!(engine.sandbox(&sid("sb-lock-b")).unwrap().is_some());
    // This engine's lock of another sandbox.
    let wrong = engine.lock(&sid("sb-lock-c")).await;
    let spec = plexus_engine::SandboxSpec {
        sandbox_id: sid("sb-lock-b"),
        pod: plexus_core::pod::PodIdentity::new("default", "lock-test", "uid-1"),
        netns: "/run/netns/plexus-lock-test-gone".into(),
    };
    let err = engine
        .setup_locked(&wrong, spec.clone(), plan(Vec::new()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SetupError::Engine { cause: Error::LockNotHeld { held, .. }, .. } if held == "sb-lock-c"),
        "{err}"
    );
    assert!(engine.sandbox(&sid("sb-lock-b")).unwrap().is_some());
}
