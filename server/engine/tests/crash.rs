//! Crash matrix (privileged): a child process runs a two-network attach (network 0 native
//! macvlan, network 1 an exec-path conflist chain) or a teardown and aborts at one named
//! crash point (`PLEXUS_CRASH_AT`); a new engine on the same state dir then recovers and
//! tears down, and the test proves no link, address or lease is left. Every point of both
//! attachments and of teardown is covered.
//!
//! The child is this same test binary re-executed as `<exe> crash_matrix --exact` with
//! `PLEXUS_CRASH_CHILD` set: the one test then plays the child's role instead of the matrix.

mod common;

use std::process::Command;

use common::{Fixture, attachment, config_for, lease_files, plan};
use plexus_engine::crash::{ENV, SETUP_STEPS_EXEC, SETUP_STEPS_NATIVE, TEARDOWN_STEPS};
use plexus_engine::{DelegationMode, Engine};
use plexus_netlink::test_util::require_privileged;

const CHILD: &str = "PLEXUS_CRASH_CHILD";
const SANDBOX: &str = "sb-crash";

#[test]
fn crash_matrix() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    if let Ok(role) = std::env::var(CHILD) {
        rt.block_on(child(&role));
        return;
    }
    if !require_privileged() {
        return;
    }
    let mut points: Vec<String> = Vec::new();
    for (i, steps) in [SETUP_STEPS_NATIVE, SETUP_STEPS_EXEC]
        .into_iter()
        .enumerate()
    {
        for s in steps {
            points.push(format!("setup.{i}.{s}"));
        }
    }
    for i in 0..2 {
        for s in TEARDOWN_STEPS {
            points.push(format!("teardown.{i}.{s}"));
        }
    }
    let mut failures = Vec::new();
    for p in &points {
        match rt.block_on(run_point(p)) {
            Ok(()) => println!("crash point {p}: ok"),
            Err(e) => {
                println!("crash point {p}: FAILED: {e}");
                failures.push(format!("{p}: {e}"));
            }
        }
    }
    println!(
        "crash matrix: {} points, {} failed",
        points.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "crash points failed:\n{}",
        failures.join("\n")
    );
}

/// Child: `setup` or `teardown` against the paths in the environment.
async fn child(role: &str) {
    let var = |k: &str| std::env::var(k).unwrap();
    let dir = std::path::PathBuf::from(var("CRASH_DIR"));
    let cfg = config_for(&dir, var("CRASH_HOST").as_ref(), DelegationMode::Auto);
    let engine = Engine::open(cfg).unwrap();
    if role == "setup" {
        let p: plexus_core::plan::Plan = serde_json::from_str(&var("CRASH_PLAN")).unwrap();
        let sb = plexus_engine::SandboxSpec {
            sandbox_id: SANDBOX.into(),
            pod: p.pod.clone(),
            netns: var("CRASH_POD").into(),
        };
        engine.setup(sb, p).await.unwrap();
    } else {
        engine.teardown(SANDBOX).await.unwrap();
    }
}

async fn spawn(
    fx: &Fixture,
    role: &str,
    plan_json: &str,
    crash_at: Option<&str>,
) -> std::process::ExitStatus {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash_matrix", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, role)
        .env("CRASH_DIR", fx.dir.path())
        .env("CRASH_HOST", fx.host.path())
        .env("CRASH_POD", fx.pod.path())
        .env("CRASH_PLAN", plan_json)
        .env_remove(ENV);
    if let Some(p) = crash_at {
        cmd.env(ENV, p);
    }
    tokio::task::spawn_blocking(move || cmd.status().unwrap())
        .await
        .unwrap()
}

async fn run_point(point: &str) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let fx = Fixture::new().await;
    let p = plan(vec![
        attachment(1, "net1", &fx.macvlan("mv-x", "bridge", "10.41.0.0/24")),
        attachment(
            2,
            "net2",
            &serde_json::json!({"cniVersion":"1.0.0","name":"chain-y","plugins":[
                {"type":"macvlan","master":fx.uplink,"mode":"vepa",
                 "ipam":{"type":"host-local","subnet":"10.42.0.0/24","dataDir":fx.leases()}},
                {"type":"tuning","mtu":1400}
            ]}),
        ),
    ]);
    let plan_json = serde_json::to_string(&p).unwrap();
    let aborted = |s: std::process::ExitStatus| s.signal() == Some(libc::SIGABRT);
    if point.starts_with("setup.") {
        let st = spawn(&fx, "setup", &plan_json, Some(point)).await;
        if !aborted(st) {
            return Err(format!("child did not abort at {point}: {st}"));
        }
    } else {
        let st = spawn(&fx, "setup", &plan_json, None).await;
        if !st.success() {
            return Err(format!("setup child failed: {st}"));
        }
        let st = spawn(&fx, "teardown", &plan_json, Some(point)).await;
        if !aborted(st) {
            return Err(format!("teardown child did not abort at {point}: {st}"));
        }
    }
    let engine = Engine::open(config_for(
        fx.dir.path(),
        &fx.host.path(),
        DelegationMode::Auto,
    ))
    .map_err(|e| e.to_string())?;
    let recovery = engine
        .recover()
        .await
        .map_err(|e| format!("recover: {e}"))?;
    if !recovery.failures.is_empty() {
        return Err(format!("recovery failures: {:?}", recovery.failures));
    }
    // Recovery keeps only finished attachments and finishes interrupted teardowns.
    let after = engine.sandbox(SANDBOX).map_err(|e| e.to_string())?;
    if point.starts_with("teardown.") && after.is_some() {
        return Err("recovery did not finish the interrupted teardown".into());
    }
    if let Some(rec) = &after
        && rec
            .attachments
            .iter()
            .any(|a| a.phase != plexus_engine::Phase::Done)
    {
        return Err(format!("unfinished attachments survived recovery: {rec:?}"));
    }
    engine
        .teardown(SANDBOX)
        .await
        .map_err(|e| format!("teardown: {e}"))?;
    let links = fx.pod_links().await;
    let leases = lease_files(&fx.leases());
    let h = fx.pod.handle().await;
    let addrs: Vec<String> = h
        .addresses(None)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| !a.addr.addr().is_loopback())
        .map(|a| a.addr.to_string())
        .collect();
    let host_links: Vec<String> = fx
        .host
        .handle()
        .await
        .links()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|l| l.name)
        .collect();
    if !links.is_empty() || !leases.is_empty() || !addrs.is_empty() || host_links.len() != 3 {
        return Err(format!(
            "left behind: pod links {links:?}, leases {leases:?}, addresses {addrs:?}, host links {host_links:?}"
        ));
    }
    if engine
        .sandbox(SANDBOX)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("record left".into());
    }
    Ok(())
}
