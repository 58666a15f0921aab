//! The daemon bench's plumbing: the plexusd process it starts, its config, the records it
//! plants, and the figures' arithmetic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use plexus_core::pod::PodIdentity;
use plexus_engine::state::Store;
use plexus_engine::{AttachmentRecord, Driver, Phase, SandboxRecord};
use plexus_server::planner::Planner;
use plexus_server::test_util::FakePlanner;

use crate::RECORDED_SANDBOXES;

pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn plexusd() -> PathBuf {
    // benches/../target/<profile>/plexusd, next to the bench's deps dir.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("plexusd");
    assert!(
        path.is_file(),
        "{} missing: build it first (cargo build -p plexus-server --release)",
        path.display()
    );
    path
}

pub(crate) async fn start(config: &Path, socket: &Path) -> Daemon {
    let child = Command::new(plexusd())
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while plexus_client::connect(socket).await.is_err() {
        assert!(Instant::now() < until, "plexusd did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Daemon(child)
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub(crate) fn write_config(dir: &Path, host_netns: Option<&Path>) -> (PathBuf, PathBuf) {
    let socket = dir.join("plexus.sock");
    let mut text = format!(
        "socket: {}\nstateDir: state\ncniBinDirs: [/usr/lib/cni]\ncniCacheDir: cache\n\
         ipamDataDir: leases\ncniConfDir: conf\nnadSource: {{directory: networks.d}}\n\
         telemetry: {{logLevel: error}}\n",
        socket.display()
    );
    if let Some(ns) = host_netns {
        text.push_str(&format!("hostNetns: {}\n", ns.display()));
    }
    let config = dir.join("plexusd.yaml");
    std::fs::write(&config, text).unwrap();
    (config, socket)
}

pub(crate) fn record_attachments(state: &Path) {
    record_sandboxes(state, RECORDED_SANDBOXES);
}

/// Writes `count` two-attachment sandbox records (exec driver, netns gone) into `state`.
pub(crate) fn record_sandboxes(state: &Path, count: usize) {
    let store = Store::open(state).unwrap();
    let ann = BTreeMap::from([(
        "k8s.v1.cni.cncf.io/networks".to_owned(),
        "lan,wan".to_owned(),
    )]);
    for i in 0..count {
        let pod = PodIdentity::new("bench", format!("pod-{i}"), format!("uid-{i}"));
        let plan = FakePlanner.plan(&pod, &ann).unwrap();
        let attachments = plan
            .attachments
            .into_iter()
            .map(|planned| AttachmentRecord {
                network: planned.network.clone(),
                interface: planned.interface.clone(),
                driver: Driver::Exec,
                phase: Phase::Done,
                planned,
                result: None,
                native: Default::default(),
            })
            .collect();
        store
            .save(&SandboxRecord {
                version: plexus_engine::state::RECORD_VERSION,
                sandbox_id: plexus_core::SandboxId::new(format!("{i:064x}")).unwrap(),
                pod,
                netns: format!("/var/run/netns/bench-{i}").into(),
                attachments,
                tearing_down: false,
            })
            .unwrap();
    }
}

pub(crate) fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
