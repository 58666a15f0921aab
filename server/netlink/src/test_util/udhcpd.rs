//! A DHCP server for privileged tests: busybox `udhcpd` in a server netns the test makes,
//! on one end of a veth pair whose other end stays where the test's clients are. The
//! server netns gets `10.77.0.1/24` on that end and hands out `10.77.0.100`–`.150`, with
//! router `10.77.0.1`, DNS `10.77.0.53` and one static lease ([`RESERVED_MAC`] →
//! `10.77.0.42`). Nothing leaves the namespaces the test made; the server is killed, by its
//! pid, on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::handle::LinkChange;

use super::TestNetns;

/// The MAC with a static lease (`10.77.0.42`) in the server's config.
pub const RESERVED_MAC: &str = "02:00:00:aa:bb:cc";

/// udhcpd running in its own netns.
#[derive(Debug)]
pub struct Udhcpd {
    child: Option<Child>,
    conf: PathBuf,
    lease_file: PathBuf,
    /// The server's netns (holds the moved veth end).
    pub srv: TestNetns,
    /// The name of the veth end the server listens on (inside [`Udhcpd::srv`]).
    pub link: String,
}

impl Drop for Udhcpd {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Udhcpd {
    /// Moves `peer` (a link in `from`) into a new server netns, addresses it, writes the
    /// server's config and lease file under `dir` and starts udhcpd with `lease_secs`.
    pub async fn start_on(from: &TestNetns, peer: &str, dir: &Path, lease_secs: u32) -> Udhcpd {
        let srv = TestNetns::new().await;
        let host = from.handle().await;
        let link = host.find_link(peer).await.expect("server veth end");
        host.move_link(&link, srv.netns(), &LinkChange::new())
            .await
            .expect("move the server's veth end");
        let sh = srv.handle().await;
        let link = sh.find_link(peer).await.expect("moved veth end");
        sh.add_address(&link, "10.77.0.1/24".parse().unwrap())
            .await
            .expect("server address");
        sh.set_up(&link).await.expect("server link up");
        std::fs::create_dir_all(dir).expect("udhcpd dir");
        let lease_file = dir.join("leases");
        std::fs::write(&lease_file, b"").expect("udhcpd lease file");
        let conf = dir.join("udhcpd.conf");
        std::fs::write(
            &conf,
            format!(
                "start 10.77.0.100\nend 10.77.0.150\ninterface {peer}\nlease_file {}\n\
                 pidfile {}\nauto_time 1\noption subnet 255.255.255.0\noption router 10.77.0.1\n\
                 option dns 10.77.0.53\noption lease {lease_secs}\n\
                 static_lease {RESERVED_MAC} 10.77.0.42\n",
                lease_file.display(),
                dir.join("pid").display()
            ),
        )
        .expect("udhcpd config");
        let mut server = Udhcpd {
            child: None,
            conf,
            lease_file,
            srv,
            link: peer.to_string(),
        };
        server.start();
        server
    }

    /// (Re)starts the server process with the same config and lease file.
    pub fn start(&mut self) {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.srv.path().display()))
            .args(["busybox", "udhcpd", "-f", "-a", "100"])
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start udhcpd (busybox-static)");
        self.child = Some(child);
    }

    /// Kills the server process (the one this fixture started) and reaps it.
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

    /// Whether the server shows `ip` as leased (`expired == false`) or as freed.
    pub fn shows(&self, ip: &str, expired: bool) -> bool {
        self.leases()
            .iter()
            .any(|(_, i, e)| i == ip && (e == "expired") == expired)
    }
}
