//! Plugin lifetime: a plugin dies with a SIGKILLed daemon, and does not die with the
//! (possibly short-lived) runtime thread that asked for it.
//!
//! The daemon is played by a child process: this test binary re-executed as
//! `<exe> <this test> --exact` with [`CHILD`] set, which then runs a plugin ADD instead
//! of the test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use super::*;

/// Set in the re-executed child: `<bin dir>:<cache dir>`.
const CHILD: &str = "PLEXUS_PLUGIN_LIFETIME_CHILD";

/// A plugin that writes its pid to `pidfile` (atomically), then runs `rest`.
fn pid_plugin(f: &Fixture, pidfile: &Path, rest: &str) {
    let tmp = pidfile.with_extension("tmp");
    f.plugin(
        "p1",
        &format!(
            "echo $$ > '{tmp}' && mv '{tmp}' '{pid}'\n{rest}",
            tmp = tmp.display(),
            pid = pidfile.display()
        ),
    );
}

/// Waits (up to 10 s) for `pidfile` and returns the pid in it.
fn wait_pid(pidfile: &Path, mut alive: impl FnMut() -> bool) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(pidfile) {
            return text.trim().parse().unwrap();
        }
        assert!(
            alive(),
            "the plugin runner exited before the plugin started"
        );
        assert!(Instant::now() < deadline, "the plugin never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next());
    !stat.is_empty() && state != Some("Z")
}

#[tokio::test]
async fn plugin_dies_with_a_killed_daemon() {
    if let Ok(dirs) = std::env::var(CHILD) {
        // The "daemon": start an ADD whose plugin sleeps; the parent kills us meanwhile.
        let (bin, cache) = dirs.split_once(':').unwrap();
        let ex = Executor::new(Config::new(vec![bin.into()], cache));
        let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
        let rc = RuntimeConfig::default();
        let pod = PodIdentity::new("ns1", "web-0", "uid-1");
        let (id, ifname) = (super::sid("c1"), super::ifn("net1"));
        let inv = Invocation {
            container_id: &id,
            netns: None,
            ifname: &ifname,
            pod: &pod,
            config: &config,
            runtime_config: &rc,
            runtime_capabilities: None,
            extra_cni_args: &[],
            prev_result: None,
        };
        let _ = ex.add(&inv).await;
        return;
    }
    let f = Fixture::new();
    let pidfile = f.log.join("plugin.pid");
    pid_plugin(&f, &pidfile, "exec sleep 30");
    let test = format!(
        "{}::plugin_dies_with_a_killed_daemon",
        module_path!().split_once("::").unwrap().1
    );
    let mut daemon = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{}:{}", f.bin.display(), f.cache.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = wait_pid(&pidfile, || daemon.try_wait().unwrap().is_none());
    assert!(running(pid));
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(pid) {
        if Instant::now() > deadline {
            // Ours (a sleep under our temp dir): do not leave it behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("plugin {pid} outlived its SIGKILLed daemon");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The kernel's parent-death signal follows the thread that forked. Here the runtime
/// thread that polls the ADD gives its worker role away (`block_in_place`) and then exits
/// as an idle blocking thread while the plugin still runs: the plugin must survive.
#[test]
fn plugin_outlives_the_runtime_thread_that_started_it() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(Duration::from_millis(20))
        .enable_all()
        .build()
        .unwrap();
    let f = Arc::new(Fixture::new());
    let pidfile = f.log.join("plugin.pid");
    // The plugin answers only once the test says so, after the thread has exited.
    let go = f.log.join("go");
    pid_plugin(
        &f,
        &pidfile,
        &format!(
            "while [ ! -e '{go}' ]; do sleep 0.02; done\n\
             case \"$CNI_COMMAND\" in ADD) printf '%s' '{P2_RESULT}';; esac",
            go = go.display()
        ),
    );
    let task = {
        let f = f.clone();
        rt.spawn(async move {
            let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
            let rc = RuntimeConfig::default();
            f.executor().add(&f.invocation(&config, &rc)).await
        })
    };
    let pid = wait_pid(&pidfile, || !task.is_finished());
    // The only worker (the one that polled the ADD) becomes a blocking thread, then idles
    // past its keep-alive and exits.
    let tid = rt
        .block_on(rt.spawn(async {
            tokio::task::block_in_place(|| {
                std::thread::sleep(Duration::from_millis(100));
                nix::unistd::gettid().as_raw()
            })
        }))
        .unwrap();
    // Wait for that thread's exit itself (it leaves /proc/self/task), not for a time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "runtime thread {tid} still alive after 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        running(pid),
        "the plugin died with the thread that started it"
    );
    std::fs::write(&go, b"").unwrap();
    let out = rt.block_on(task).unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let out = out.expect("the plugin must survive the exit of the thread that asked for it");
    assert_eq!(out.stdout, P2_RESULT.as_bytes());
}
