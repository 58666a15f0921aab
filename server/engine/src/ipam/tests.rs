use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;
use plexus_netlink::test_util::unavailable;

fn req(id: &str, ifname: &str) -> Request {
    Request {
        network_name: "net-a".parse().unwrap(),
        container_id: id.into(),
        ifname: ifname.into(),
        cni_version: "1.0.0".into(),
        ip_arg: None,
        args_ips: vec![],
        runtime_ips: vec![],
        gateway_arg: None,
        gave_up: GaveUp::default(),
    }
}

fn parse(v: serde_json::Value) -> Config {
    Config::parse(&v).expect("native ipam config")
}

fn addrs(a: &Allocation) -> Vec<String> {
    a.ips.iter().map(|i| i.address.to_string()).collect()
}

#[test]
fn classification_rejects_unknown_keys_and_types() {
    let ok = serde_json::json!({"type":"host-local","subnet":"10.0.0.0/24"});
    assert!(Config::parse(&ok).is_some());
    let extra = serde_json::json!({"type":"host-local","subnet":"10.0.0.0/24","fancy":1});
    assert!(Config::parse(&extra).is_none());
    let resolv =
        serde_json::json!({"type":"host-local","subnet":"10.0.0.0/24","resolvConf":"/etc/r"});
    assert!(Config::parse(&resolv).is_none());
    assert!(Config::parse(&serde_json::json!({"type":"whereabouts"})).is_none());
    assert!(Config::parse(&serde_json::json!({"type":"static","addresses":[],"x":1})).is_none());
}

#[test]
fn host_local_disk_format_and_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({
        "type":"host-local",
        "ranges":[[{"subnet":"10.9.0.0/29"}]],
        "routes":[{"dst":"0.0.0.0/0"}]
    }));
    let a = allocate(&cfg, &req("sb1", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&a), vec!["10.9.0.2/29"]);
    assert_eq!(a.ips[0].gateway.unwrap().to_string(), "10.9.0.1");
    assert_eq!(a.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(a.routes[0].gw, None);
    let net = dir.path().join("net-a");
    assert_eq!(fs::read(net.join("10.9.0.2")).unwrap(), b"sb1\r\nnet1");
    assert_eq!(
        fs::read(net.join("last_reserved_ip.0")).unwrap(),
        b"10.9.0.2"
    );
    assert!(net.join("lock").exists());

    // The same id+ifname twice in one range set is refused, like the reference plugin.
    let dup = allocate(&cfg, &req("sb1", "net1"), dir.path()).unwrap_err();
    assert!(dup.to_string().contains("duplicate allocation"), "{dup}");

    let b = allocate(&cfg, &req("sb2", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&b), vec!["10.9.0.3/29"]);
    release(&lease_for(&cfg, &req("sb1", "net1"), dir.path()).unwrap()).unwrap();
    assert!(!net.join("10.9.0.2").exists());
    // Round robin continues after the last reserved address, then wraps (skipping .1).
    let c = allocate(&cfg, &req("sb3", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&c), vec!["10.9.0.4/29"]);
    for (i, want) in ["10.9.0.5/29", "10.9.0.6/29", "10.9.0.2/29"]
        .iter()
        .enumerate()
    {
        let x = allocate(&cfg, &req(&format!("f{i}"), "net1"), dir.path()).unwrap();
        assert_eq!(addrs(&x), vec![want.to_string()]);
    }
    let full = allocate(&cfg, &req("late", "net1"), dir.path()).unwrap_err();
    assert!(
        full.to_string().contains("no IP addresses available"),
        "{full}"
    );
    // A failed allocation leaves no lease behind.
    assert!(
        LeaseStore::open(&net)
            .unwrap()
            .get_by_id("late", "net1")
            .is_empty()
    );
    // last_reserved_ip is written in place: the address alone, no temporary file left.
    assert_eq!(
        fs::read(net.join("last_reserved_ip.0")).unwrap(),
        b"10.9.0.2"
    );
    let temps: Vec<String> = fs::read_dir(&net)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| crate::state::is_temp_name(n))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn host_local_requested_ip_dual_stack_and_release_all() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({
        "type":"host-local",
        "subnet":"10.8.0.0/24","rangeStart":"10.8.0.50","rangeEnd":"10.8.0.60","gateway":"10.8.0.254",
        "ranges":[[{"subnet":"fd00:8::/64"}]],
        "dataDir": dir.path().join("custom"),
    }));
    let mut r = req("sb1", "net2");
    r.runtime_ips = vec!["10.8.0.55/24".into()];
    let a = allocate(&cfg, &r, Path::new("/nonexistent")).unwrap();
    assert_eq!(addrs(&a), vec!["10.8.0.55/24", "fd00:8::2/64"]);
    assert_eq!(a.ips[0].gateway.unwrap().to_string(), "10.8.0.254");
    let net = dir.path().join("custom/net-a");
    assert_eq!(fs::read(net.join("fd00:8::2")).unwrap(), b"sb1\r\nnet2");
    assert!(net.join("last_reserved_ip.1").exists());

    let mut gw = req("sb2", "net2");
    gw.ip_arg = Some("10.8.0.254".into());
    assert!(allocate(&cfg, &gw, Path::new("/x")).is_err());
    let mut out = req("sb2", "net2");
    out.args_ips = vec!["10.99.0.1".into()];
    let e = allocate(&cfg, &out, Path::new("/x")).unwrap_err();
    assert!(
        e.to_string()
            .contains("failed to allocate all requested IPs: 10.99.0.1"),
        "{e}"
    );
    assert!(
        LeaseStore::open(&net)
            .unwrap()
            .get_by_id("sb2", "net2")
            .is_empty()
    );

    // Legacy one-line lease of the same container, and one of another interface kept.
    fs::write(net.join("10.8.0.51"), "sb1").unwrap();
    fs::write(net.join("10.8.0.52"), "sb1\r\neth0").unwrap();
    let released = release_all_for_container(&dir.path().join("custom"), "sb1", &["eth0"]).unwrap();
    let mut ips: Vec<String> = released.iter().map(|(_, ip, _)| ip.clone()).collect();
    ips.sort();
    assert_eq!(ips, vec!["10.8.0.51", "10.8.0.55", "fd00:8::2"]);
    assert!(net.join("10.8.0.52").exists());
}

#[test]
fn static_addresses_routes_dns_and_args() {
    let cfg = parse(serde_json::json!({
        "type":"static",
        "addresses":[{"address":"192.0.2.10/24","gateway":"192.0.2.1"},{"address":"2001:db8::10/64"}],
        "routes":[{"dst":"198.51.100.0/24","gw":"192.0.2.254"}],
        "dns":{"nameservers":["192.0.2.53"],"search":["example.org"]}
    }));
    let mut r = req("sb", "net1");
    r.gateway_arg = Some("2001:db8::1".into());
    let a = allocate(&cfg, &r, Path::new("/x")).unwrap();
    assert_eq!(addrs(&a), vec!["192.0.2.10/24", "2001:db8::10/64"]);
    // GATEWAY= only applies to addresses that came from IP=.
    assert_eq!(a.ips[1].gateway, None);
    assert_eq!(a.routes[0].gw.unwrap().to_string(), "192.0.2.254");
    assert_eq!(a.dns.nameservers, vec!["192.0.2.53"]);
    assert!(lease_for(&cfg, &r, Path::new("/x")).is_none());
    let mut old = r.clone();
    old.cni_version = "0.2.0".into();
    old.ip_arg = Some("192.0.2.11/24".into());
    assert!(allocate(&cfg, &old, Path::new("/x")).is_err());
}

/// Runs the reference host-local plugin (if installed) against the same lease directory:
/// its leases are released by us and ours by it, and round-robin state is shared.
#[test]
fn interoperates_with_the_reference_host_local_plugin() {
    let plugin = Path::new("/usr/lib/cni/host-local");
    if !plugin.exists() {
        unavailable(&format!("reference plugin {} missing", plugin.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = serde_json::json!({
        "cniVersion":"1.0.0","name":"net-a","type":"bridge",
        "ipam":{"type":"host-local","subnet":"10.7.0.0/24","dataDir":dir.path()}
    });
    let run = |cmd: &str, id: &str| {
        let mut child = Command::new(plugin)
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", "/dev/null")
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let cfg = Config::parse(&conf["ipam"]).unwrap();
    let out = run("ADD", "theirs");
    assert!(out.contains("10.7.0.2/24"), "{out}");
    // Ours continues after theirs (shared last_reserved_ip.0).
    let ours = allocate(&cfg, &req("ours", "net1"), Path::new("/x")).unwrap();
    assert_eq!(addrs(&ours), vec!["10.7.0.3/24"]);
    let out = run("ADD", "theirs2");
    assert!(out.contains("10.7.0.4/24"), "{out}");
    // They release ours, we release theirs.
    run("DEL", "ours");
    release(&lease_for(&cfg, &req("theirs", "net1"), Path::new("/x")).unwrap()).unwrap();
    let net = dir.path().join("net-a");
    assert!(!net.join("10.7.0.3").exists());
    assert!(!net.join("10.7.0.2").exists());
    assert_eq!(fs::read(net.join("10.7.0.4")).unwrap(), b"theirs2\r\nnet1");
}

/// The reference `static` plugin (if installed) and ours agree on which addresses and
/// gateways result from config addresses, `IP=`/`GATEWAY=`, `args.cni.ips` and
/// runtimeConfig `ips`.
#[test]
fn static_matches_the_reference_plugin() {
    let plugin = Path::new("/usr/lib/cni/static");
    if !plugin.exists() {
        unavailable(&format!("reference plugin {} missing", plugin.display()));
        return;
    }
    let addresses = serde_json::json!([{"address":"192.0.2.10/24","gateway":"192.0.2.1"}]);
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (serde_json::json!({}), ""),
        (
            serde_json::json!({}),
            "IgnoreUnknown=1;IP=192.0.2.13/24,192.0.2.14/24;GATEWAY=192.0.2.254",
        ),
        (
            serde_json::json!({"args":{"cni":{"ips":["192.0.2.11/24","2001:db8::5/64"]}}}),
            "IgnoreUnknown=1;IP=192.0.2.13/24",
        ),
        (
            serde_json::json!({"runtimeConfig":{"ips":["192.0.2.12/24"]},"args":{"cni":{"ips":["192.0.2.11/24"]}}}),
            "",
        ),
        (serde_json::json!({}), "IgnoreUnknown=1;GATEWAY=192.0.2.254"),
    ];
    for (extra, cni_args) in cases {
        let mut conf = serde_json::json!({"cniVersion":"1.0.0","name":"n","type":"x",
            "ipam":{"type":"static","addresses":addresses}});
        for (k, v) in extra.as_object().unwrap() {
            conf[k] = v.clone();
        }
        let mut child = Command::new(plugin)
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", "x")
            .env("CNI_NETNS", "/dev/null")
            .env("CNI_IFNAME", "net1")
            .env("CNI_PATH", "/usr/lib/cni")
            .env("CNI_ARGS", cni_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let theirs: Vec<(String, Option<String>)> = theirs["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["address"].as_str().unwrap().to_string(),
                    i["gateway"].as_str().map(String::from),
                )
            })
            .collect();
        let mut r = req("x", "net1");
        for kv in cni_args.split(';') {
            match kv.split_once('=') {
                Some(("IP", v)) => r.ip_arg = Some(v.into()),
                Some(("GATEWAY", v)) => r.gateway_arg = Some(v.into()),
                _ => {}
            }
        }
        let strs = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        r.args_ips = strs(&conf["args"]["cni"]["ips"]);
        r.runtime_ips = strs(&conf["runtimeConfig"]["ips"]);
        let ours = allocate(&Config::parse(&conf["ipam"]).unwrap(), &r, Path::new("/x")).unwrap();
        let ours: Vec<(String, Option<String>)> = ours
            .ips
            .iter()
            .map(|i| (i.address.to_string(), i.gateway.map(|g| g.to_string())))
            .collect();
        assert_eq!(ours, theirs, "case {extra} / {cni_args:?}");
    }
}

#[test]
fn a_lease_left_empty_by_a_killed_writer_is_removed_under_the_lock() {
    // A kill between creating a lease file and writing its owner leaves it empty: no
    // release matches it and it would hold the address for ever.
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({
        "type":"host-local", "subnet":"10.9.0.0/29", "dataDir": dir.path(),
    }));
    let net = dir.path().join("net-a");
    fs::create_dir_all(&net).unwrap();
    fs::write(net.join("10.9.0.2"), "").unwrap();
    fs::write(net.join("10.9.0.3"), "sb-other\r\nnet1").unwrap();
    fs::write(net.join("notes"), "").unwrap();
    let store = LeaseStore::open(&net).unwrap();
    store.release("sb-gone", "net1").unwrap();
    assert!(!net.join("10.9.0.2").exists(), "the torn lease is removed");
    assert!(net.join("10.9.0.3").exists(), "a real lease stays");
    assert!(
        net.join("notes").exists(),
        "only address-named files are leases"
    );

    // Allocation cleans up too, and the address is free again.
    fs::write(net.join("10.9.0.2"), "").unwrap();
    let a = allocate(&cfg, &req("sb1", "net1"), Path::new("/x")).unwrap();
    assert_eq!(addrs(&a), vec!["10.9.0.2/29"]);
    assert_eq!(fs::read(net.join("10.9.0.2")).unwrap(), b"sb1\r\nnet1");
}

/// A data dir, a host-local config on 10.9.0.0/29, and its (empty) lease directory.
fn empty_lease_dir() -> (tempfile::TempDir, Config, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({"type":"host-local","subnet":"10.9.0.0/29"}));
    let net = dir.path().join("net-a");
    fs::create_dir_all(&net).unwrap();
    (dir, cfg, net)
}

/// A NAD's dataDir may be a directory others can write to: a symlink (or a FIFO) planted
/// as `last_reserved_ip.0` is never written through nor waited on, and does not fail the
/// allocation; neither does a FIFO named like a lease.
#[test]
fn the_last_reserved_hint_is_never_written_through_a_symlink_or_to_a_fifo() {
    let (dir, cfg, net) = empty_lease_dir();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, net.join("last_reserved_ip.0")).unwrap();
    let a = allocate(&cfg, &req("sb1", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&a), vec!["10.9.0.2/29"]);
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(
        fs::symlink_metadata(net.join("last_reserved_ip.0"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    fs::remove_file(net.join("last_reserved_ip.0")).unwrap();
    nix::unistd::mkfifo(
        &net.join("last_reserved_ip.0"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    nix::unistd::mkfifo(&net.join("10.9.0.3"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    // Opening a FIFO with no peer blocks for ever, were it opened blocking.
    let b = allocate(&cfg, &req("sb2", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&b), vec!["10.9.0.4/29"]);
}

/// The directory's lock file is opened only as a regular file: a symlink planted there
/// (say to a device whose opening has effects) fails the allocation, naming the path.
#[test]
fn a_lock_file_that_is_a_symlink_fails_the_allocation_naming_it() {
    let (dir, cfg, net) = empty_lease_dir();
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, net.join("lock")).unwrap();
    let err = allocate(&cfg, &req("sb1", "net1"), dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&net.join("lock").display().to_string()),
        "{err}"
    );
    assert!(!target.exists(), "the symlink was followed");
}

/// An allocation whose caller gave up before the directory's lock was free takes nothing;
/// one that keeps its caller allocates as always, and so does one nobody watches.
#[test]
fn an_abandoned_allocation_takes_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({"type":"host-local","subnet":"10.9.1.0/29"}));
    let watched = |id: &str, gave_up: bool| Request {
        gave_up: GaveUp::watching(Arc::new(AtomicBool::new(gave_up))),
        ..req(id, "net1")
    };
    let err = allocate(&cfg, &watched("sb1", true), dir.path()).unwrap_err();
    assert!(err.to_string().contains("abandoned"), "{err}");
    let leases: Vec<_> = fs::read_dir(dir.path().join("net-a"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
    let a = allocate(&cfg, &watched("sb1", false), dir.path()).unwrap();
    assert_eq!(addrs(&a), vec!["10.9.1.2/29"]);
    // A request nobody watches is never refused.
    let b = allocate(&cfg, &req("sb2", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&b), vec!["10.9.1.3/29"]);
}

/// A lease whose record names its addresses is released by reading only those files: a
/// stray lease of the same `(id, ifname)` at an address the record does not name stays
/// (the directory search would have released it, so this shows which one ran), as does a
/// recorded address another holder has now. A torn file at a recorded address goes.
#[test]
fn release_by_recorded_addresses_reads_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = parse(serde_json::json!({
        "type":"host-local",
        "ranges":[[{"subnet":"10.9.0.0/28"}]]
    }));
    let a = allocate(&cfg, &req("sb1", "net1"), dir.path()).unwrap();
    assert_eq!(addrs(&a), vec!["10.9.0.2/28"]);
    let net = dir.path().join("net-a");
    fs::write(net.join("10.9.0.9"), "sb1\r\nnet1").unwrap();
    fs::write(net.join("10.9.0.10"), "other\r\nnet1").unwrap();
    fs::write(net.join("10.9.0.11"), "").unwrap();
    let mut lease = lease_for(&cfg, &req("sb1", "net1"), dir.path()).unwrap();
    lease.ips = ["10.9.0.2", "10.9.0.10", "10.9.0.11", "10.9.0.12"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    release(&lease).unwrap();
    assert!(
        !net.join("10.9.0.2").exists(),
        "the recorded lease is released"
    );
    assert!(
        !net.join("10.9.0.11").exists(),
        "a torn file at a recorded address goes"
    );
    assert_eq!(fs::read(net.join("10.9.0.10")).unwrap(), b"other\r\nnet1");
    assert_eq!(fs::read(net.join("10.9.0.9")).unwrap(), b"sb1\r\nnet1");
    // Idempotent; and without recorded addresses the directory is searched.
    release(&lease).unwrap();
    lease.ips.clear();
    release(&lease).unwrap();
    assert!(
        !net.join("10.9.0.9").exists(),
        "the search finds the stray lease"
    );
    assert_eq!(fs::read(net.join("10.9.0.10")).unwrap(), b"other\r\nnet1");
    // A lease directory that does not exist holds nothing to release.
    lease.dir = dir.path().join("never-made");
    release(&lease).unwrap();
    assert!(!lease.dir.exists());
}
