//! What `daemon::run` does to the state directory before it serves (issue 9, defects 10 and
//! 11): it creates the directory 0700, holds the lock while it runs, and removes the temp
//! files a killed plexusd left in the state and cache directories — only those, never
//! other files that merely look alike.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use plexus_server::config::Config;
use plexus_server::daemon;
use plexus_server::lock::StateLock;

fn plant(dir: &Path, names: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    for name in names {
        std::fs::write(dir.join(name), b"{").unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_sweeps_only_our_temp_files_into_a_private_locked_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nets")).unwrap();
    let config = Config::parse(
        "socket: run/plexus.sock\nstateDir: var/state\ncniCacheDir: cache\nipamDataDir: leases\n\
         cniConfDir: conf\nnadSource: {directory: nets}\nreconcile: {interval: off}\n",
        Path::new("test.yaml"),
        dir.path(),
    )
    .unwrap();
    let state = dir.path().join("var/state");
    let results = dir.path().join("cache/results");
    // Killed writers' temp files (ours) next to look-alikes that are not.
    let ours_state = [".sb-a.json.4242.0.tmp", ".sb-b.json.17.3.tmp"];
    let others_state = ["notes.tmp", ".sb-a.json.tmp", ".sb-a.json.x.0.tmp"];
    let ours_cache = [".tmp-4242-net-a-sb-a-net1"];
    let others_cache = [".tmp-net-a-sb-a-net1", "keep.tmp"];
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    plant(&state, &ours_state);
    plant(&state, &others_state);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    plant(&results, &ours_cache);
    plant(&results, &others_cache);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let socket = config.socket.clone();
    let run = tokio::spawn(async move {
        daemon::run(&config, None, async {
            let _ = stopped.await;
        })
        .await
    });
    let until = Instant::now() + Duration::from_secs(20);
    while plexus_client::connect(&socket).await.is_err() {
        assert!(!run.is_finished(), "plexusd stopped: {:?}", run.await);
        assert!(Instant::now() < until, "plexusd did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut expected: Vec<String> = others_state.iter().map(|s| s.to_string()).collect();
    expected.push("plexusd.lock".into());
    expected.sort();
    assert_eq!(names(&state), expected);
    let mut expected: Vec<String> = others_cache.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names(&results), expected);
    // The lock is held while it serves.
    let held = StateLock::try_acquire(&state).unwrap();
    assert_eq!(held.err(), Some(Some(std::process::id())));

    let _ = stop.send(());
    run.await.unwrap().unwrap();
    // Released at exit.
    assert!(StateLock::try_acquire(&state).unwrap().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_state_dir_is_created_private() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nets")).unwrap();
    let config = Config::parse(
        "socket: run/plexus.sock\nstateDir: fresh/state\ncniCacheDir: cache\n\
         nadSource: {directory: nets}\nreconcile: {interval: off}\n",
        Path::new("test.yaml"),
        dir.path(),
    )
    .unwrap();
    let state = config.state_dir.clone();
    // Started with shutdown already requested: it still locks, opens and recovers first.
    daemon::run(&config, None, async {}).await.unwrap();
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_signalled_only_once_recovery_ran_and_the_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nets")).unwrap();
    let config = Config::parse(
        "socket: run/plexus.sock\nstateDir: var/state\ncniCacheDir: cache\n\
         nadSource: {directory: nets}\nreconcile: {interval: off}\n",
        Path::new("test.yaml"),
        dir.path(),
    )
    .unwrap();
    let state = config.state_dir.clone();
    std::fs::create_dir_all(dir.path().join("var")).unwrap();
    let stale = [".sb-a.json.4242.0.tmp"];
    plant(&state, &stale);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = config.socket.clone();
    let (ready, readied) = tokio::sync::oneshot::channel::<()>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        daemon::run_ready(
            &config,
            None,
            move || {
                let _ = ready.send(());
            },
            async {
                let _ = stopped.await;
            },
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(30), readied)
        .await
        .expect("never ready")
        .expect("plexusd stopped before it was ready");
    // At the signal, and without any retry: recovery's sweep ran and the socket answers.
    assert_eq!(names(&state), ["plexusd.lock"]);
    plexus_client::connect(&socket)
        .await
        .expect("ready, yet the node socket does not answer");
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}
