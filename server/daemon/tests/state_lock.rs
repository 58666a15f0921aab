//! Two plexusd processes on one state directory (privileged; issue 9 defect 2). plexusd A is
//! in the middle of a pod's setup — its bridge plugin has made the veth, address and lease
//! and not answered yet — when plexusd B starts on the same config: B must exit naming A's
//! pid and touch nothing (no recovery undoing A's half-made attachment, no socket removed,
//! no temp file swept), and A's setup must finish. Then C starts with `--lock-wait`, waits
//! while A runs, and takes over when A exits: it sweeps the stale temp file, finds A's
//! records, and tears the pod down to nothing.

mod support;

use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_client::v1;
use plexus_netlink::test_util::{require_privileged, unique_name};
use support::{
    Namespaces, Plexusd, install_plugin, lease_files, link_names, nad, recorded, setup_request_for,
    slow_bridge_script, write_config, write_nads,
};

/// Bound on waiting for what should happen promptly; reached only when something is broken.
const HANG_GUARD: Duration = Duration::from_secs(30);

/// How long the slow plugin sleeps after its work: B runs and exits meanwhile.
const PLUGIN_SLEEP_SECS: u32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_plexusd_touches_nothing_and_a_waiting_one_takes_over() {
    if !require_privileged() {
        return;
    }
    let Namespaces { host, pod, uplink } = Namespaces::new().await;
    let bridge = unique_name("br");
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), &host);
    // SetupPod is bounded by the NRI budget; the slow plugin needs longer.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("nri: {deadlineBudget: 30s}\n");
    std::fs::write(&config, text).unwrap();
    let leases = dir.path().join("leases");
    let state = dir.path().join("state");
    let marker = dir.path().join("slow-add-ran");
    install_plugin(
        dir.path(),
        "slowbridge",
        &slow_bridge_script(&marker, PLUGIN_SLEEP_SECS),
    );
    let mv = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
        "mode": "bridge", "ipam": {"type": "host-local", "subnet": "10.250.31.0/24"}});
    let slow = serde_json::json!({"cniVersion": "1.0.0", "type": "slowbridge",
        "bridge": bridge, "isGateway": false,
        "ipam": {"type": "host-local", "subnet": "10.250.32.0/24", "dataDir": leases}});
    write_nads(dir.path(), &[nad("mv", mv), nad("slowbr", slow)]);
    let pod_links = link_names(&pod).await;

    // A serves and is in the middle of a setup.
    let mut a = Plexusd::start(&config, &socket, None).await;
    let socket_inode = std::fs::metadata(&socket).unwrap().ino();
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let request = setup_request_for("sb-lock", &pod.path(), "mv,slowbr");
    let setup = tokio::spawn(async move { client.setup_pod(request).await });
    let until = Instant::now() + HANG_GUARD;
    while !marker.exists() {
        assert!(!setup.is_finished(), "setup ended early: {:?}", setup.await);
        assert!(Instant::now() < until, "the slow plugin never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A temp file as a killed writer leaves it: only the lock holder may sweep it.
    let stale = state.join(".sb-old.json.999999.0.tmp");
    std::fs::write(&stale, b"{").unwrap();
    let record_before = std::fs::read(state.join("sb-lock.json")).unwrap();

    // B: refused at once, naming A.
    let b = tokio::process::Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(HANG_GUARD, b.wait_with_output())
        .await
        .expect("the second plexusd kept running")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", a.pid())), "{stderr}");
    assert!(stderr.contains("--lock-wait"), "{stderr}");
    assert!(!stderr.contains("another plexusd is serving"), "{stderr}");

    // B touched nothing: A's setup finishes with both networks, the record A is writing,
    // its socket and the temp file are as A left them.
    assert!(
        stale.exists(),
        "the second plexusd swept the state directory"
    );
    assert_eq!(
        std::fs::metadata(&socket).unwrap().ino(),
        socket_inode,
        "the socket was replaced"
    );
    let answer = setup.await.unwrap().expect("A's setup must succeed");
    let ifaces: Vec<String> = answer
        .into_inner()
        .attachments
        .into_iter()
        .map(|a| a.interface)
        .collect();
    assert_eq!(ifaces, ["eth0", "net1", "net2"]);
    let now = link_names(&pod).await;
    assert!(now.contains("net1") && now.contains("net2"), "{now:?}");
    assert_eq!(lease_files(&leases).len(), 2, "{:?}", lease_files(&leases));
    assert_ne!(
        std::fs::read(state.join("sb-lock.json")).unwrap(),
        record_before,
        "A recorded the finished setup"
    );

    // C waits for the lock, and says so.
    let mut c_child = Command::new(env!("CARGO_BIN_EXE_plexusd"))
        .arg("--config")
        .arg(&config)
        .arg("--lock-wait")
        .arg("60s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = c_child.stderr.take().unwrap();
    let mut c = Plexusd::adopt(c_child);
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = lines
            .recv_timeout(HANG_GUARD)
            .expect("the waiting plexusd said nothing");
        if line.contains("waiting for it to exit") {
            break;
        }
    }
    // Still A's: C has not swept or taken the socket.
    assert!(stale.exists());
    let mut client = plexus_client::connect(&socket).await.unwrap();
    assert_eq!(recorded(&mut client).await.len(), 3);
    drop(client);

    // A stops; C takes over.
    kill(Pid::from_raw(a.pid() as i32), Signal::SIGTERM).unwrap();
    assert!(a.wait().success());
    c.wait_serving(&socket, HANG_GUARD).await;
    assert!(!stale.exists(), "the new holder sweeps stale temp files");
    let mut client = plexus_client::connect(&socket).await.unwrap();
    assert_eq!(
        recorded(&mut client).await,
        [
            ("sb-lock".to_owned(), "eth0".to_owned()),
            ("sb-lock".to_owned(), "net1".to_owned()),
            ("sb-lock".to_owned(), "net2".to_owned()),
        ]
    );
    let down = client
        .teardown_pod(v1::TeardownPodRequest {
            sandbox_id: "sb-lock".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(down.known);
    assert_eq!(link_names(&pod).await, pod_links);
    assert!(
        lease_files(&leases).is_empty(),
        "{:?}",
        lease_files(&leases)
    );
    assert_eq!(
        std::fs::read_to_string(state.join("plexusd.lock")).unwrap(),
        format!("{}\n", c.pid())
    );
}
