//! The demo: a private containerd with NRI, plexusd and plexus-nri, and two pods on an
//! "IoT" macvlan network with static IPs and MACs; prints what each pod sees, shows them
//! reaching each other, then tears everything down, or with `keep` leaves it running and
//! prints how to look at it and how to clean up ([`cleanup`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cleanup::{cleanup_leftovers, remove_all_pods_blocking};
use crate::containerd;
use crate::env::{Env, IOT, NAMESPACE};
use crate::error::{Error, Result};
use crate::plexus;
use crate::pod::{Pod, PodSpec};

/// What `--cleanup` needs to undo a kept demo, stored as `<run dir>/demo.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Kept {
    /// The run dir.
    pub run_dir: PathBuf,
    /// containerd's socket.
    pub socket: PathBuf,
    /// PIDs started by the demo, in stop order (plexus-nri, plexusd, containerd).
    pub pids: Vec<u32>,
    /// The test network namespace containerd runs in.
    pub host_netns: String,
    /// Pod network namespaces.
    pub pod_netns: Vec<PathBuf>,
}

/// The demo pods: name, static address (last octet) and MAC.
const PODS: [(&str, u8, &str); 2] = [
    ("sensor-a", 11, "02:10:00:00:00:11"),
    ("sensor-b", 12, "02:10:00:00:00:12"),
];

/// Runs the demo, writing what happens to stdout; `keep` leaves everything running.
pub async fn run(keep: bool) -> Result<()> {
    let copts = containerd::Options {
        prefix: "plexus-demo".into(),
        ..containerd::Options::default()
    };
    println!("==> starting a private containerd (CRI + NRI), plexusd and plexus-nri");
    let mut env = Env::start_with(copts, plexus::Options::default()).await?;
    let c = &env.containerd;
    println!("    run dir:     {}", c.paths().run_dir.display());
    println!(
        "    IoT network: {NAMESPACE}/{IOT}, macvlan on {} ({})",
        env.uplink, env.subnets.iot
    );

    let prefix = env.subnets.iot.trim_end_matches(".0/24").to_owned();
    let mut pods = Vec::new();
    for (name, octet, mac) in PODS {
        let sel = format!(
            r#"[{{"name":"{IOT}","interface":"iot0","ips":["{prefix}.{octet}/24"],"mac":"{mac}"}}]"#
        );
        let spec = PodSpec::new(NAMESPACE, name).networks(&sel);
        let started = std::time::Instant::now();
        let pod = c.run_pod(&spec).await?;
        println!(
            "\n==> pod {NAMESPACE}/{name} is running ({} ms), sandbox {}",
            started.elapsed().as_millis(),
            &pod.id[..12.min(pod.id.len())]
        );
        println!("    annotation k8s.v1.cni.cncf.io/networks: {sel}");
        print!("{}", indent(&pod.brief_addresses()?));
        let status = env.plexus.network_status(&pod).await?;
        println!("    k8s.v1.cni.cncf.io/network-status (rendered by plexusd):");
        print!("{}", indent(&status));
        pods.push((pod, format!("{prefix}.{octet}")));
    }

    println!("\n==> {} pings {} over iot0", pods[0].0.name, pods[1].1);
    print!("{}", indent(&pods[0].0.ping("iot0", &pods[1].1, 3)?));
    println!("==> {} pings {} over iot0", pods[1].0.name, pods[0].1);
    print!("{}", indent(&pods[1].0.ping("iot0", &pods[0].1, 3)?));

    if keep {
        let kept = keep_running(&mut env, &pods)?;
        print!("{}", how_to_look(&kept, &env));
        return Ok(());
    }
    println!("\n==> tearing down");
    for (pod, _) in &pods {
        env.containerd.delete_pod(pod).await?;
    }
    let left = env.plexus.attachments().await?;
    println!(
        "    pods deleted; attachments left in plexusd: {}",
        left.len()
    );
    drop(env);
    println!("    containerd, plexusd and plexus-nri stopped; run dir and namespaces removed");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().fold(String::new(), |mut s, l| {
        let _ = writeln!(s, "    {l}");
        s
    })
}

fn keep_running(env: &mut Env, pods: &[(Pod, String)]) -> Result<Kept> {
    let (plexusd, nri) = env.plexus.pids();
    let kept = Kept {
        run_dir: env.containerd.paths().run_dir.clone(),
        socket: env.containerd.paths().socket.clone(),
        pids: [nri, plexusd, env.containerd.pid()]
            .into_iter()
            .flatten()
            .collect(),
        host_netns: env.containerd.host_netns().name().to_owned(),
        pod_netns: pods.iter().map(|(p, _)| p.netns.clone()).collect(),
    };
    let path = kept.run_dir.join("demo.json");
    let text = serde_json::to_string_pretty(&kept).unwrap_or_default();
    std::fs::write(&path, text).map_err(Error::io("write", &path))?;
    env.keep();
    Ok(kept)
}

fn how_to_look(kept: &Kept, env: &Env) -> String {
    let sock = kept.socket.display();
    let bins = env.plexus.bin_dir().display();
    let mut s = String::new();
    let _ = writeln!(s, "\n==> left running (--keep). To look around:");
    let _ = writeln!(s, "    containerd socket: {sock}");
    let _ = writeln!(
        s,
        "    NRI socket:        {}",
        env.containerd.paths().nri_socket.display()
    );
    let _ = writeln!(
        s,
        "    plexusd socket:    {}",
        env.plexus.paths().socket.display()
    );
    let _ = writeln!(
        s,
        "    logs:              {}/{{containerd.log,plexus/plexusd.log,plexus/plexus-nri.log}}",
        kept.run_dir.display()
    );
    let _ = writeln!(
        s,
        "    {bins}/plexusctl --socket {} attachments --output json",
        env.plexus.paths().socket.display()
    );
    let _ = writeln!(s, "    ctr -a {sock} -n k8s.io containers ls");
    let _ = writeln!(s, "    ctr -a {sock} -n k8s.io tasks ls");
    for p in &kept.pod_netns {
        let _ = writeln!(s, "    nsenter --net={} ip -br addr", p.display());
    }
    let _ = writeln!(
        s,
        "    ip netns exec {} ip -br link    # the uplink and bridges",
        kept.host_netns
    );
    let _ = writeln!(s, "  clean up with:");
    let _ = writeln!(
        s,
        "    {bins}/plexus-demo --cleanup {}",
        kept.run_dir.display()
    );
    s
}

/// Undoes a kept demo: removes its pods (if containerd still answers), stops the PIDs it
/// recorded (only if they still belong to this run), and removes mounts, namespaces and
/// the run dir.
pub fn cleanup(run_dir: &Path) -> Result<()> {
    let path = run_dir.join("demo.json");
    let text = std::fs::read_to_string(&path).map_err(Error::io("read", &path))?;
    let kept: Kept = serde_json::from_str(&text).map_err(|source| Error::Json {
        what: "demo.json",
        source,
    })?;
    let mut netns = kept.pod_netns.clone();
    netns.extend(remove_all_pods_blocking(&kept.socket));
    let marker = kept.run_dir.display().to_string();
    for pid in kept.pids {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if nix::sys::signal::kill(pid, None).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    cleanup_leftovers(&kept.run_dir, &kept.socket, &netns);
    crate::netns::delete_named(&kept.host_netns);
    Ok(())
}
