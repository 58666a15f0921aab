//! The live fixture of the monitoring tests: a plexusd with metrics on a loopback port,
//! its host and pod namespaces, and a plain HTTP GET of its endpoints.

use super::*;

/// A plexusd with metrics on a loopback port; killed on drop.
pub(crate) struct Plexusd {
    pub(crate) child: Child,
    pub(crate) metrics: SocketAddr,
    pub(crate) socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Plexusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Plexusd {
    /// plexusd with `host` as its host netns and three NADs: `watched-net` (macvlan on
    /// `uplink`), `no-master` (macvlan on a link that does not exist) and `slow` (an exec'd
    /// plugin whose ADD takes 5 s).
    pub(crate) fn start(host: &Path, uplink: &str) -> Plexusd {
        let bins = plexus_integration::plexus::bin_dir().expect("the plexus binaries");
        let dir = tempfile::tempdir().unwrap();
        let subnet = format!("10.246.{}.0/24", plexus_integration::netns::next_id() % 256);
        std::fs::create_dir_all(dir.path().join("networks.d")).unwrap();
        Nad::macvlan(
            "default",
            "watched-net",
            uplink,
            &subnet,
            &dir.path().join("leases"),
        )
        .write_to(&dir.path().join("networks.d"))
        .unwrap();
        Nad::macvlan(
            "default",
            "no-master",
            "pxnomaster0",
            &subnet,
            &dir.path().join("leases"),
        )
        .write_to(&dir.path().join("networks.d"))
        .unwrap();
        let slow = Nad {
            namespace: "default".into(),
            name: "slow".into(),
            config: serde_json::json!({"cniVersion": "1.0.0", "name": "slow", "type": "plexus-test-slow"}),
        };
        slow.write_to(&dir.path().join("networks.d")).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let plugin = bin.join("plexus-test-slow");
        std::fs::write(
            &plugin,
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n  ADD) sleep 5; exit 1 ;;\n  VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\",\"1.0.0\"]}' ;;\nesac\n",
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = SocketAddr::from(([127, 0, 0, 1], port));
        let socket = dir.path().join("plexus.sock");
        let config = dir.path().join("plexusd.yaml");
        std::fs::write(
            &config,
            format!(
                "socket: {}\nstateDir: state\ncniCacheDir: cache\nipamDataDir: leases\n\
                 hostNetns: {}\nnadSource: {{directory: networks.d}}\ncniBinDirs: [bin]\n\
                 telemetry: {{logLevel: warn, metricsAddress: \"{metrics}\"}}\n",
                socket.display(),
                host.display()
            ),
        )
        .unwrap();
        let child = Command::new(bins.join("plexusd"))
            .arg("--config")
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Plexusd {
            child,
            metrics,
            socket,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while !get(me.metrics, "/readyz").is_ok_and(|(s, _)| s == 200) {
            assert!(Instant::now() < until, "plexusd never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        me
    }
}

/// A test host netns with an uplink, a pod netns, and plexusd over them.
pub(crate) struct Live {
    pub(crate) pod: TestNetns,
    pub(crate) plexusd: Plexusd,
    _host: TestNetns,
}

impl Live {
    pub(crate) fn start() -> Live {
        let host = TestNetns::create("pxm-host").unwrap();
        let uplink = create_uplink(&host).unwrap();
        let pod = TestNetns::create("pxm-pod").unwrap();
        let plexusd = Plexusd::start(host.path(), &uplink);
        Live {
            pod,
            plexusd,
            _host: host,
        }
    }

    /// A SetupPod of sandbox `id` (pod `pod-<id>`) in the pod netns, asking for `network`.
    pub(crate) fn setup(&self, id: &str, network: &str) -> v1::SetupPodRequest {
        v1::SetupPodRequest {
            pod: Some(v1::PodRef {
                namespace: "default".into(),
                name: format!("pod-{id}"),
                uid: format!("u-{id}"),
            }),
            sandbox_id: id.into(),
            netns_path: self.pod.path().display().to_string(),
            annotations: [("k8s.v1.cni.cncf.io/networks".to_owned(), network.to_owned())].into(),
            labels: Default::default(),
            may_finish_later: false,
        }
    }
}

/// A GET with Prometheus's `Accept` header: (status, body).
pub(crate) fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
