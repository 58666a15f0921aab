//! Crash matrix (privileged): a child process runs a two-network attach (network 0 native
//! macvlan, network 1 an exec-path conflist chain), a teardown, or a detach of one of the
//! two, and aborts at one named crash point (`PLEXUS_CRASH_AT`); a new engine on the same
//! state dir then recovers and tears down, and the test proves no link, address or lease
//! is left. After a crashed detach, recovery must have removed only the detached network
//! (its link, address and lease gone) and kept the other one attached and recorded done.
//! Every point of both attachments, of teardown and of detach is covered, and the two
//! points of the link deletion a runtime's teardown leaves for after its answer (`reap.*`:
//! the child tears down with `LinkDeletion::AfterAnswer` and waits for the reaper); then the
//! teardown and reap points again in NRI StopPodSandbox's teardown (`early.*`,
//! `LinkDeletion::AfterMark`), where they come after the answer.
//!
//! The child is this same test binary re-executed as `<exe> crash_matrix --exact` with
//! `PLEXUS_CRASH_CHILD` set: the one test then plays the child's role instead of the matrix.

mod common;

use std::process::Command;

use common::{Fixture, attachment, config_for, lease_files, plan, sid};
use plexus_engine::crash::{
    DETACH_STEPS, ENV, REAP_STEPS, SETUP_STEPS_EXEC, SETUP_STEPS_NATIVE, TEARDOWN_STEPS,
};
use plexus_engine::{DelegationMode, Engine, LinkDeletion};
use plexus_netlink::test_util::require_privileged;

const CHILD: &str = "PLEXUS_CRASH_CHILD";
const SANDBOX: &str = "sb-crash";
/// Per network index: interface, lease dir (network name), address prefix.
const NETWORKS: [(&str, &str, &str); 2] =
    [("net1", "mv-x", "10.41."), ("net2", "chain-y", "10.42.")];

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
    assert!(
        plexus_engine::crash::enabled(),
        "the crash matrix needs plexus-engine's `crash-hooks` feature (its dev-dependency)"
    );
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
        for s in DETACH_STEPS {
            points.push(format!("detach.{i}.{s}"));
        }
    }
    for s in REAP_STEPS {
        points.push(format!("reap.0.{s}"));
    }
    // A runtime's teardown of two native networks takes the quick way (the mark file, the
    // addresses removed in one job): its points again, with only the mark file to show it.
    for i in 0..2 {
        for s in TEARDOWN_STEPS {
            points.push(format!("quick.teardown.{i}.{s}"));
        }
    }
    for s in REAP_STEPS {
        points.push(format!("quick.reap.0.{s}"));
    }
    // NRI StopPodSandbox's teardown (`LinkDeletion::AfterMark`): the same points, reached
    // after its answer, in the background.
    for i in 0..2 {
        for s in TEARDOWN_STEPS {
            points.push(format!("early.teardown.{i}.{s}"));
        }
    }
    for s in REAP_STEPS {
        points.push(format!("early.reap.0.{s}"));
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

/// Child: `setup`, `teardown` or `detach-<i>` against the paths in the environment.
async fn child(role: &str) {
    let var = |k: &str| std::env::var(k).unwrap();
    let dir = std::path::PathBuf::from(var("CRASH_DIR"));
    let cfg = config_for(&dir, var("CRASH_HOST").as_ref(), DelegationMode::Auto);
    let engine = Engine::open(cfg).unwrap();
    if role == "setup" {
        let p: plexus_core::plan::Plan = serde_json::from_str(&var("CRASH_PLAN")).unwrap();
        let sb = plexus_engine::SandboxSpec {
            sandbox_id: sid(SANDBOX),
            pod: p.pod.clone(),
            netns: var("CRASH_POD").into(),
        };
        engine.setup(sb, p).await.unwrap();
    } else if let Some(i) = role.strip_prefix("detach-") {
        let i: usize = i.parse().unwrap();
        engine
            .detach(&sid(SANDBOX), &NETWORKS[i].0.parse().unwrap())
            .await
            .unwrap();
    } else if let Some(how) = role.strip_prefix("teardown-") {
        let links = match how {
            "early" => LinkDeletion::AfterMark,
            _ => LinkDeletion::AfterAnswer,
        };
        let lock = engine.lock(&sid(SANDBOX)).await;
        engine.teardown_locked_as(&lock, links).await.unwrap();
        drop(lock);
        engine.reaped().await;
    } else {
        engine.teardown(&sid(SANDBOX)).await.unwrap();
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

/// The index of the network a `detach.<i>.<step>` point detaches.
fn detached(point: &str) -> Option<usize> {
    point
        .strip_prefix("detach.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// After a crashed detach of network `i` and recovery: that network's link, address and
/// lease are gone; the other one is still attached, addressed, leased and recorded done.
async fn check_detach_recovered(
    fx: &Fixture,
    after: Option<&plexus_engine::SandboxRecord>,
    i: usize,
) -> Result<(), String> {
    let (gone_if, gone_net, gone_prefix) = NETWORKS[i];
    let (kept_if, kept_net, kept_prefix) = NETWORKS[1 - i];
    let rec = after.ok_or("recovery of a detach removed the whole sandbox record")?;
    let recorded: Vec<_> = rec
        .attachments
        .iter()
        .map(|a| (a.interface.as_str(), a.phase))
        .collect();
    if recorded != [(kept_if, plexus_engine::Phase::Done)] {
        return Err(format!(
            "after recovery of a detach of {gone_if} the record holds {recorded:?}, want only {kept_if} done"
        ));
    }
    let links = fx.pod_links().await;
    let addrs = pod_addresses(fx).await?;
    let leases = lease_files(&fx.leases());
    let has_lease = |net: &str| leases.iter().any(|l| l.starts_with(&format!("{net}/")));
    let has_addr = |p: &str| addrs.iter().any(|a| a.starts_with(p));
    if links.iter().any(|l| l == gone_if) || has_addr(gone_prefix) || has_lease(gone_net) {
        return Err(format!(
            "detached {gone_if} not fully removed: pod links {links:?}, addresses {addrs:?}, leases {leases:?}"
        ));
    }
    if !links.iter().any(|l| l == kept_if) || !has_addr(kept_prefix) || !has_lease(kept_net) {
        return Err(format!(
            "{kept_if} lost by recovery of a detach of {gone_if}: pod links {links:?}, addresses {addrs:?}, leases {leases:?}"
        ));
    }
    Ok(())
}

/// The pod's non-loopback addresses.
async fn pod_addresses(fx: &Fixture) -> Result<Vec<String>, String> {
    let h = fx.pod.handle().await;
    Ok(h.addresses(None)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| !a.addr.addr().is_loopback())
        .map(|a| a.addr.to_string())
        .collect())
}

async fn run_point(point: &str) -> Result<(), String> {
    use std::os::unix::process::ExitStatusExt;
    let fx = Fixture::new().await;
    // `quick.<point>`: `<point>` in a runtime's teardown of two native networks;
    // `early.<point>`: the same in NRI StopPodSandbox's.
    let (early, point) = match point.strip_prefix("early.") {
        Some(inner) => (true, inner),
        None => (false, point),
    };
    let (quick, point) = match point.strip_prefix("quick.") {
        Some(inner) => (true, inner),
        None => (early, point),
    };
    let second = match quick {
        true => fx.macvlan("mv-y", "bridge", "10.42.0.0/24"),
        false => serde_json::json!({"cniVersion":"1.0.0","name":"chain-y","plugins":[
            {"type":"macvlan","master":fx.uplink,"mode":"vepa",
             "ipam":{"type":"host-local","subnet":"10.42.0.0/24","dataDir":fx.leases()}},
            {"type":"tuning","mtu":1400}
        ]}),
    };
    let p = plan(vec![
        attachment(1, "net1", &fx.macvlan("mv-x", "bridge", "10.41.0.0/24")),
        attachment(2, "net2", &second),
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
        let role = match detached(point) {
            Some(i) => format!("detach-{i}"),
            None if early => "teardown-early".into(),
            None if quick || point.starts_with("reap.") => "teardown-after".into(),
            None => "teardown".into(),
        };
        let st = spawn(&fx, &role, &plan_json, Some(point)).await;
        if !aborted(st) {
            return Err(format!("{role} child did not abort at {point}: {st}"));
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
    let after = engine.sandbox(&sid(SANDBOX)).map_err(|e| e.to_string())?;
    if (point.starts_with("teardown.") || point.starts_with("reap.")) && after.is_some() {
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
    if let Some(i) = detached(point) {
        check_detach_recovered(&fx, after.as_ref(), i).await?;
    }
    engine
        .teardown(&sid(SANDBOX))
        .await
        .map_err(|e| format!("teardown: {e}"))?;
    let links = fx.pod_links().await;
    let leases = lease_files(&fx.leases());
    let addrs = pod_addresses(&fx).await?;
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
        .sandbox(&sid(SANDBOX))
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("record left".into());
    }
    Ok(())
}
