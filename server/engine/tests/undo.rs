//! Privileged tests of setup's undo with a scripted fake exec path (real pod netns, no
//! plugins): an attachment whose ADD finished is undone with its result and a failed DEL
//! is reported (record kept), never mistaken for a half-made ADD; the setup deadline
//! covers the wait for the sandbox lock; the undo after a deadline has a bounded grace.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fixture, attachment, plan, sid};
use futures::FutureExt;
use futures::future::BoxFuture;
use plexus_core::cni;
use plexus_core::deadline::Deadline;
use plexus_engine::exec::{BoxError, Exec, ExecRequest};
use plexus_engine::{DelegationMode, Engine, Phase, SetupError};
use plexus_netlink::test_util::require_privileged;

/// What the fake does on ADD / DEL.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Succeed,
    Fail,
    Hang,
}

/// A fake exec path: ADD returns a fixed result (making nothing), DEL records whether it
/// got a `prevResult`; each answers as told.
#[derive(Debug)]
struct FakeExec {
    add: Act,
    del: Act,
    adds: tokio::sync::Semaphore,
    dels: Mutex<Vec<bool>>,
}

impl FakeExec {
    fn new(add: Act, del: Act) -> Arc<FakeExec> {
        Arc::new(FakeExec {
            add,
            del,
            adds: tokio::sync::Semaphore::new(0),
            dels: Mutex::new(Vec::new()),
        })
    }
}

async fn act(a: Act, what: &str) -> Result<(), BoxError> {
    match a {
        Act::Succeed => Ok(()),
        Act::Fail => Err(format!("{what} refused by the fake plugin").into()),
        Act::Hang => futures::future::pending().await,
    }
}

impl Exec for FakeExec {
    fn add<'a>(&'a self, _req: ExecRequest<'a>) -> BoxFuture<'a, Result<cni::Result, BoxError>> {
        async move {
            self.adds.add_permits(1);
            act(self.add, "ADD").await?;
            Ok(serde_json::from_value(serde_json::json!({
                "cniVersion":"1.0.0","ips":[{"address":"10.77.0.5/24"}]
            }))?)
        }
        .boxed()
    }

    fn del<'a>(&'a self, req: ExecRequest<'a>) -> BoxFuture<'a, Result<(), BoxError>> {
        async move {
            self.dels.lock().unwrap().push(req.prev_result.is_some());
            act(self.del, "DEL").await
        }
        .boxed()
    }
}

fn engine(fx: &Fixture, fake: &Arc<FakeExec>) -> Engine {
    Engine::with_exec(fx.config(DelegationMode::ForceExec), fake.clone()).unwrap()
}

fn conf(name: &str) -> serde_json::Value {
    serde_json::json!({"cniVersion":"1.0.0","name":name,"type":"fake"})
}

#[tokio::test]
async fn a_finished_add_is_undone_with_its_result_and_a_failed_del_is_reported() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let fake = FakeExec::new(Act::Succeed, Act::Fail);
    let engine = engine(&fx, &fake);
    // The fake makes no link, so the route plan fails after the ADD succeeded.
    let mut att = attachment(1, "net1", &conf("rp"));
    att.route_plan.remove_v4 = true;
    let err = engine
        .setup(fx.sandbox("sb-routes"), plan(vec![att]))
        .await
        .expect_err("route plan fails");
    match &err {
        SetupError::Attach {
            cause,
            undone,
            undo_failures,
            ..
        } => {
            assert_eq!(cause.reason(), "netlink", "{err}");
            assert!(undone.is_empty(), "{err}");
            assert_eq!(undo_failures.len(), 1, "{err}");
            assert!(
                undo_failures[0].contains("DEL refused by the fake plugin"),
                "{err}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(*fake.dels.lock().unwrap(), vec![true], "DEL got prevResult");
    let rec = engine
        .sandbox(&sid("sb-routes"))
        .unwrap()
        .expect("record kept");
    assert_eq!(rec.attachments.len(), 1);
    assert_eq!(rec.attachments[0].phase, Phase::Intent);
    assert!(rec.attachments[0].result.is_some(), "ADD result recorded");
}

#[tokio::test]
async fn the_deadline_covers_the_wait_for_the_sandbox_lock() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let fake = FakeExec::new(Act::Hang, Act::Succeed);
    let engine = engine(&fx, &fake);
    let first = {
        let (engine, sb) = (engine.clone(), fx.sandbox("sb-lock"));
        let p = plan(vec![attachment(1, "net1", &conf("l1"))]);
        tokio::spawn(async move { engine.setup(sb, p).await })
    };
    // The first setup holds the sandbox lock, hanging in its ADD.
    drop(fake.adds.acquire().await.unwrap());
    let second = engine.setup_with_deadline(
        fx.sandbox("sb-lock"),
        plan(vec![attachment(1, "net1", &conf("l1"))]),
        Deadline::from_now(Duration::from_millis(200)),
    );
    let err = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the deadline did not cover the lock wait")
        .expect_err("deadline");
    match &err {
        SetupError::DeadlineExceeded {
            stage,
            network,
            undone,
            ..
        } => {
            assert_eq!(stage, "waiting for the sandbox lock");
            assert!(network.is_empty() && undone.is_empty(), "{err}");
        }
        other => panic!("unexpected {other}"),
    }
    first.abort();
    let _ = first.await;
}

#[tokio::test]
async fn the_undo_after_a_deadline_is_bounded_and_leaves_the_rest_recorded() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let fake = FakeExec::new(Act::Hang, Act::Hang);
    let engine = engine(&fx, &fake);
    let deadline = Deadline::from_now(Duration::from_millis(300));
    let setup = engine.setup_with_deadline(
        fx.sandbox("sb-grace"),
        plan(vec![attachment(1, "net1", &conf("g1"))]),
        deadline,
    );
    // ADD and DEL both hang forever: only the deadline and the undo grace can end this, so
    // an answer at all within a generous bound is the proof (no clock reading).
    let err = tokio::time::timeout(Duration::from_secs(30), setup)
        .await
        .expect("the undo after the deadline was not bounded")
        .expect_err("deadline");
    match &err {
        SetupError::DeadlineExceeded {
            network,
            undo_failures,
            ..
        } => {
            assert_eq!(network, "default/g1");
            assert_eq!(undo_failures.len(), 1, "{err}");
            assert!(
                undo_failures[0].contains("net1 left to teardown/recovery"),
                "{err}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(fake.dels.lock().unwrap().len(), 1, "the undo started");
    let rec = engine
        .sandbox(&sid("sb-grace"))
        .unwrap()
        .expect("record kept");
    assert_eq!(rec.attachments.len(), 1);
    assert_eq!(rec.attachments[0].phase, Phase::Intent);
}
