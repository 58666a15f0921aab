//! A pod's networks are attached at once and detached at once (issue 14), shown with real
//! exec'd plugins in a real pod netns: each plugin's ADD (and, at teardown, DEL) waits until
//! all three have started, so run one by one they would give up — no timing is asserted,
//! the rendezvous itself proves the concurrency. A rollback after one of three fails undoes
//! exactly what was made: every network DELed once, the pod left empty, nothing recorded.
//! A setup writes the pod's record twice (intent, done), however many networks. Wall times
//! and fsyncs are printed; `make bench` has the figures.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::{Fixture, attachment, config_for, plan, sid};
use plexus_engine::{DelegationMode, Engine, SetupError, state};
use plexus_netlink::test_util::require_privileged;

/// Writes plugin `kind` into `bin`: ADD logs, waits for `add_barrier` ADDs to have started
/// (fails after 10 s), then `fail`s or makes a link `CNI_IFNAME` (a bridge: nothing else needed) in the pod and takes
/// `ms`; DEL logs, waits for `del_barrier` DELs to have started, deletes the link.
fn plugin(bin: &Path, kind: &str, log: &Path, ms: u32, fail: bool, barriers: (usize, usize)) {
    let (add_barrier, del_barrier) = barriers;
    let d = log.parent().unwrap().display();
    let script = format!(
        r#"#!/bin/sh
echo "$CNI_COMMAND $CNI_IFNAME" >> {log}
wait_for() {{
  n=0
  while [ "$(ls {d} | grep -c "^$1-")" -lt "$2" ]; do
    n=$((n+1))
    if [ $n -gt 1000 ]; then
      echo '{{"cniVersion":"1.0.0","code":11,"msg":"the other '"$1"'s never started: one at a time"}}'
      exit 1
    fi
    sleep 0.01
  done
}}
case "$CNI_COMMAND" in
ADD)
  touch {d}/add-"$CNI_IFNAME"
  wait_for add {add_barrier}
  sleep {secs}
  if [ {fail} = 1 ]; then
    echo '{{"cniVersion":"1.0.0","code":100,"msg":"refused by the test plugin"}}'
    exit 1
  fi
  nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type bridge || exit 1
  echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"'"$CNI_IFNAME"'","sandbox":"'"$CNI_NETNS"'"}}],"ips":[]}}'
  ;;
DEL)
  touch {d}/del-"$CNI_IFNAME"
  wait_for del {del_barrier}
  sleep {secs}
  [ -n "$CNI_NETNS" ] && nsenter --net="$CNI_NETNS" ip link del "$CNI_IFNAME" 2>/dev/null
  exit 0
  ;;
VERSION)
  echo '{{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}}'
  ;;
esac
"#,
        log = log.display(),
        secs = f64::from(ms) / 1000.0,
        fail = u8::from(fail),
    );
    let path = bin.join(kind);
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn conf(name: &str, kind: &str) -> serde_json::Value {
    serde_json::json!({"cniVersion": "1.0.0", "name": name, "type": kind})
}

/// The fixture's engine with `bin` searched first for plugins.
fn engine(fx: &Fixture, bin: &Path) -> Engine {
    let mut cfg = config_for(fx.dir.path(), &fx.host.path(), DelegationMode::Auto);
    cfg.cni_bin_dirs.insert(0, bin.to_path_buf());
    Engine::open(cfg).unwrap()
}

fn calls(log: &Path) -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with("VERSION"))
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn dirs(fx: &Fixture) -> (PathBuf, PathBuf) {
    let bin = fx.dir.path().join("bin");
    let work = fx.dir.path().join("calls");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    (bin, work.join("log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_slow_networks_are_attached_at_once_and_detached_at_once() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let (bin, log) = dirs(&fx);
    plugin(&bin, "slowpoke", &log, 200, false, (3, 3));
    let e = engine(&fx, &bin);
    let atts = ["net1", "net2", "net3"]
        .iter()
        .enumerate()
        .map(|(i, ifname)| attachment(i + 1, ifname, &conf(&format!("slow{i}"), "slowpoke")))
        .collect();
    let (writes, fsyncs) = (state::record_writes(), state::fsyncs());
    let started = Instant::now();
    let rec = e.setup(fx.sandbox("sb-par"), plan(atts)).await.unwrap();
    println!(
        "3 networks of 200 ms each set up in {:?}, {} fsyncs",
        started.elapsed(),
        state::fsyncs() - fsyncs
    );
    assert_eq!(
        state::record_writes() - writes,
        2,
        "one intent and one done write, however many networks"
    );
    let names: Vec<&str> = rec
        .attachments
        .iter()
        .map(|a| a.interface.as_str())
        .collect();
    assert_eq!(names, ["net1", "net2", "net3"], "recorded in plan order");
    let mut links = fx.pod_links().await;
    links.retain(|l| l != "lo");
    links.sort();
    assert_eq!(links, ["net1", "net2", "net3"]);

    let started = Instant::now();
    let report = e.teardown(&sid("sb-par")).await.unwrap();
    println!("and torn down in {:?}", started.elapsed());
    assert_eq!(
        report.removed,
        ["net3", "net2", "net1"],
        "reported in reverse plan order"
    );
    assert_eq!(
        calls(&log),
        [
            "ADD net1", "ADD net2", "ADD net3", "DEL net1", "DEL net2", "DEL net3"
        ]
    );
    assert!(fx.pod_links().await.is_empty());
    assert!(e.sandbox(&sid("sb-par")).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_one_of_three_fails_everything_made_is_undone_exactly_once() {
    if !require_privileged() {
        return;
    }
    let fx = Fixture::new().await;
    let (bin, log) = dirs(&fx);
    // All three ADDs meet; then the middle one fails while the others take 200 ms more.
    plugin(&bin, "slowpoke", &log, 200, false, (3, 0));
    plugin(&bin, "refuser", &log, 0, true, (3, 0));
    let e = engine(&fx, &bin);
    let atts = vec![
        attachment(1, "net1", &conf("first", "slowpoke")),
        attachment(2, "net2", &conf("second", "refuser")),
        attachment(3, "net3", &conf("third", "slowpoke")),
    ];
    let err = e
        .setup(fx.sandbox("sb-roll"), plan(atts))
        .await
        .unwrap_err();
    let SetupError::Attach {
        network,
        interface,
        undone,
        undo_failures,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(
        (network.as_str(), interface.as_str()),
        ("default/second", "net2")
    );
    assert_eq!(undone, &["net3", "net2", "net1"], "{err}");
    assert!(undo_failures.is_empty(), "{err}");
    assert!(
        err.to_string().contains("refused by the test plugin"),
        "{err}"
    );
    // Each network's ADD ran once and its DEL once (the refused one too, as CNI asks).
    assert_eq!(
        calls(&log),
        [
            "ADD net1", "ADD net2", "ADD net3", "DEL net1", "DEL net2", "DEL net3"
        ]
    );
    assert!(fx.pod_links().await.is_empty());
    assert!(e.sandbox(&sid("sb-roll")).unwrap().is_none());
}
