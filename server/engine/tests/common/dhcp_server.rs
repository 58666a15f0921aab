//! The DHCP server side of the privileged DHCP tests: busybox `udhcpd` in a server netns
//! the test made, reached through the fixture's uplink veth (its peer is moved into the
//! server netns and carries 10.77.0.1/24). Nothing leaves these namespaces.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plexus_engine::DelegationMode;
use plexus_engine::ipam::dhcp::LeaseStore;
use plexus_netlink::LinkChange;
use plexus_netlink::test_util::TestNetns;

use super::Fixture;

pub const RESERVED_MAC: &str = "02:00:00:aa:bb:cc";

/// udhcpd in `srv`, killed (by its pid) on drop.
pub struct Server {
    child: Option<Child>,
    conf: PathBuf,
    lease_file: PathBuf,
    /// The server netns.
    pub srv: TestNetns,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server {
    pub fn start(&mut self) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.srv.path().display()))
            .args(["busybox", "udhcpd", "-f", "-a", "100"])
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start udhcpd");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `busybox dumpleases` rows `(mac, ip, expires)` of the server's lease file.
    pub fn leases(&self) -> Vec<(String, String, String)> {
        let out = Command::new("busybox")
            .args(["dumpleases", "-f"])
            .arg(&self.lease_file)
            .output()
            .expect("run dumpleases");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3).then(|| {
                    (
                        f[0].to_string(),
                        f[1].to_string(),
                        f[f.len() - 1].to_string(),
                    )
                })
            })
            .collect()
    }
}

/// Moves the uplink's peer into a new server netns, addresses it and starts udhcpd on it.
pub async fn start_server(fx: &Fixture, lease_secs: u32) -> Server {
    let srv = TestNetns::new().await;
    let host = fx.host.handle().await;
    let peer_name = peer_of(fx).await;
    let peer = host.find_link(&peer_name).await.unwrap();
    host.move_link(&peer, srv.netns(), &LinkChange::new())
        .await
        .unwrap();
    let sh = srv.handle().await;
    let peer = sh.find_link(&peer_name).await.unwrap();
    sh.add_address(&peer, "10.77.0.1/24".parse().unwrap())
        .await
        .unwrap();
    sh.set_up(&peer).await.unwrap();
    let dir = fx.dir.path().join("udhcpd");
    std::fs::create_dir_all(&dir).unwrap();
    let lease_file = dir.join("leases");
    std::fs::write(&lease_file, b"").unwrap();
    let conf = dir.join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "start 10.77.0.100\nend 10.77.0.150\ninterface {peer_name}\nlease_file {}\n\
             pidfile {}\nauto_time 1\noption subnet 255.255.255.0\noption router 10.77.0.1\n\
             option dns 10.77.0.53\noption lease {lease_secs}\nstatic_lease {RESERVED_MAC} 10.77.0.42\n",
            lease_file.display(),
            dir.join("pid").display()
        ),
    )
    .unwrap();
    let mut server = Server {
        child: None,
        conf,
        lease_file,
        srv,
    };
    server.start();
    server
}

/// The veth peer of the fixture's uplink (the fixture names it `pe*`).
pub async fn peer_of(fx: &Fixture) -> String {
    let host = fx.host.handle().await;
    host.links()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .find(|n| n.starts_with("pe"))
        .expect("uplink peer")
}

pub fn conf(fx: &Fixture, name: &str, mac: Option<&str>, timeout: u64) -> serde_json::Value {
    let mut c = serde_json::json!({
        "cniVersion":"1.0.0","name":name,"type":"macvlan","master":fx.uplink,
        "ipam":{"type":"dhcp","timeout":timeout}
    });
    if let Some(m) = mac {
        c["runtimeConfig"] = serde_json::json!({ "mac": m });
    }
    c
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn dhcp_store(fx: &Fixture) -> LeaseStore {
    LeaseStore::new(fx.config(DelegationMode::Auto).dhcp_lease_dir)
}

pub fn pod_addrs(fx: &Fixture) -> String {
    let out = Command::new("ip")
        .args([
            "-n",
            fx.pod.name(),
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "net1",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn pod_routes(fx: &Fixture) -> String {
    let out = Command::new("ip")
        .args(["-n", fx.pod.name(), "-4", "route"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
