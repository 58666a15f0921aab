//! Differential test (privileged): the same NADs through the native path and through the
//! reference plugin binaries (`/usr/lib/cni`), each in its own fresh host + pod netns;
//! the CNI results and the resulting state (links with kind/mode/mtu/flags/master,
//! addresses, routes, per-interface sysctls; for bridges also the host side) must be equal,
//! ignoring only random MACs, the random host veth name and the plexus link group.

mod common;

use common::{Fixture, attachment, plan, sid};
use plexus_engine::{DelegationMode, Driver};
use plexus_netlink::inspect::{self, Snapshot};
use plexus_netlink::test_util::{KernelFeature, require_privileged, skip_if_kernel_lacks};
use serde_json::{Value, json};

/// One case: a config builder (uplink name, lease dir) and optional plan tweaks.
struct Case {
    name: &'static str,
    conf: fn(&str, &str) -> Value,
    mac_arg: Option<&'static str>,
    runtime_mac: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "macvlan-bridge-host-local-routes-mac-arg",
            conf: |up, dir| {
                json!({"cniVersion":"1.0.0","name":"d1","type":"macvlan","master":up,
                "ipam":{"type":"host-local","subnet":"10.51.0.0/24","rangeStart":"10.51.0.20",
                        "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.0.2.0/24","gw":"10.51.0.254"}],
                        "dataDir":dir}})
            },
            mac_arg: Some("02:aa:bb:cc:dd:01"),
            runtime_mac: None,
        },
        Case {
            name: "macvlan-private-mtu-static-dns",
            conf: |up, _| {
                json!({"cniVersion":"0.4.0","name":"d2","type":"macvlan","master":up,
                "mode":"private","mtu":1400,"dns":{"nameservers":["10.52.0.53"]},
                "ipam":{"type":"static","addresses":[{"address":"10.52.0.7/24","gateway":"10.52.0.1"}],
                        "routes":[{"dst":"198.51.100.0/24"}],"dns":{"nameservers":["9.9.9.9"]}}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "macvlan-vepa-runtime-mac",
            conf: |up, dir| {
                json!({"cniVersion":"1.0.0","name":"d3","type":"macvlan","master":up,
                "mode":"vepa","capabilities":{"mac":true},
                "ipam":{"type":"host-local","subnet":"10.53.0.0/24","dataDir":dir}})
            },
            mac_arg: None,
            runtime_mac: Some("02:11:22:33:44:55"),
        },
        Case {
            name: "macvlan-passthru-l2",
            conf: |up, _| {
                json!({"cniVersion":"1.0.0","name":"d4","type":"macvlan","master":up,
                "mode":"passthru"})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "macvlan-dual-stack-host-local",
            conf: |up, dir| {
                json!({"cniVersion":"1.0.0","name":"d5","type":"macvlan","master":up,
                "ipam":{"type":"host-local","dataDir":dir,
                        "ranges":[[{"subnet":"10.55.0.0/24"}],[{"subnet":"fd00:55::/64"}]]}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "bridge-gateway-host-local",
            conf: |_, dir| {
                json!({"cniVersion":"1.0.0","name":"d6","type":"bridge","bridge":"plxbr6",
                "isGateway":true,
                "ipam":{"type":"host-local","subnet":"10.56.0.0/24","dataDir":dir}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "bridge-default-gateway-hairpin-mtu",
            conf: |_, dir| {
                json!({"cniVersion":"1.0.0","name":"d7","type":"bridge","bridge":"plxbr7",
                "isDefaultGateway":true,"hairpinMode":true,"mtu":1450,
                "ipam":{"type":"host-local","subnet":"10.57.0.0/24","dataDir":dir}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "bridge-promisc-vlan-static",
            conf: |_, _| {
                json!({"cniVersion":"1.0.0","name":"d8","type":"bridge","bridge":"plxbr8",
                "promiscMode":true,"vlan":100,
                "ipam":{"type":"static","addresses":[{"address":"10.58.0.9/24"}]}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "bridge-promisc-static",
            conf: |_, _| {
                json!({"cniVersion":"1.0.0","name":"d11","type":"bridge","bridge":"plxbr11",
                "promiscMode":true,
                "ipam":{"type":"static","addresses":[{"address":"10.61.0.9/24","gateway":"10.61.0.1"}],
                        "routes":[{"dst":"0.0.0.0/0"}]}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "host-device-static",
            conf: |up, _| {
                json!({"cniVersion":"1.0.0","name":"d12","type":"host-device","device":up,
                "ipam":{"type":"static","addresses":[{"address":"10.62.0.9/24"}]}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "ipvlan-l3-host-local",
            conf: |up, dir| {
                json!({"cniVersion":"1.0.0","name":"d9","type":"ipvlan","master":up,
                "mode":"l3","ipam":{"type":"host-local","subnet":"10.59.0.0/24","dataDir":dir}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
        Case {
            name: "vlan-static",
            conf: |up, _| {
                json!({"cniVersion":"1.0.0","name":"d10","type":"vlan","master":up,
                "vlanId":42,"mtu":1400,
                "ipam":{"type":"static","addresses":[{"address":"10.60.0.9/24"}]}})
            },
            mac_arg: None,
            runtime_mac: None,
        },
    ]
}

/// The kernel feature a config needs beyond veth, bridge and macvlan, read from the config
/// itself (its `type`, and `vlan` on a bridge): ipvlan, 802.1q vlan, bridge vlan filtering.
/// Only such a case may skip, and only when the kernel probe found the feature missing;
/// once it runs, every error fails the test.
fn needs(conf: &Value) -> Option<KernelFeature> {
    match conf["type"].as_str() {
        Some("ipvlan") => Some(KernelFeature::Ipvlan),
        Some("vlan") => Some(KernelFeature::Vlan),
        Some("bridge") if conf.get("vlan").is_some() => Some(KernelFeature::BridgeVlanFiltering),
        _ => None,
    }
}

struct Outcome {
    result: Value,
    pod: Snapshot,
    host: Snapshot,
    pod_mac: Option<String>,
}

async fn run(case: &Case, mode: DelegationMode) -> Result<Outcome, String> {
    let fx = Fixture::new().await;
    let conf = (case.conf)(&fx.uplink, fx.leases().to_str().unwrap());
    let mut att = attachment(1, "net1", &conf);
    if let Some(m) = case.mac_arg {
        att.extra_cni_args = vec![("MAC".into(), m.into())];
    }
    if let Some(m) = case.runtime_mac {
        att.runtime_config.mac = Some(m.into());
    }
    let engine = fx.engine(mode);
    let rec = engine
        .setup(fx.sandbox("sb-diff"), plan(vec![att]))
        .await
        .map_err(|e| format!("{} {mode:?}: setup: {e}", case.name))?;
    let want = if mode == DelegationMode::Auto {
        Driver::Native
    } else {
        Driver::Exec
    };
    assert_eq!(rec.attachments[0].driver, want, "{}: path", case.name);
    let mut result = serde_json::to_value(rec.attachments[0].result.as_ref().unwrap()).unwrap();
    let pod_mac = result["interfaces"]
        .as_array()
        .and_then(|i| i.iter().find(|i| i["name"] == "net1"))
        .map(|i| i["mac"].as_str().unwrap_or("").to_string());
    for iface in result["interfaces"].as_array_mut().into_iter().flatten() {
        iface["mac"] = Value::Null;
        if iface["sandbox"].is_string() {
            iface["sandbox"] = "<netns>".into();
        }
        let name = iface["name"].as_str().unwrap_or("").to_string();
        if name.starts_with("veth") {
            iface["name"] = "veth*".into();
        }
    }
    let normalise = |s: Snapshot, keep: &dyn Fn(&str) -> bool| {
        let mut s = s.stable();
        s.links.retain(|l| keep(&l.name));
        for l in s.links.iter_mut() {
            l.group = 0;
            if l.alias.as_deref() == Some(fx.uplink.as_str()) {
                l.alias = Some("<uplink>".into());
            }
        }
        s.addresses.retain(|a| keep(&a.link));
        s.routes.retain(|r| r.dev.as_deref().is_none_or(keep));
        s.sysctls
            .retain(|k, _| !k.contains(&fx.uplink) && !k.contains("/pe"));
        s
    };
    let pod = normalise(
        inspect::snapshot(&fx.pod.handle().await).await.unwrap(),
        &|_| true,
    );
    let uplink = fx.uplink.clone();
    let host = normalise(
        inspect::snapshot(&fx.host.handle().await).await.unwrap(),
        &move |n: &str| n != uplink && !n.starts_with("pe") && n != "lo",
    );
    engine.teardown(&sid("sb-diff")).await.expect("teardown");
    assert!(fx.pod_links().await.is_empty(), "{}: links left", case.name);
    assert!(fx.lease_files().is_empty(), "{}: leases left", case.name);
    let host_h = fx.host.handle().await;
    assert!(
        host_h.try_find_link(&fx.uplink).await.unwrap().is_some(),
        "{}: uplink not back in the host under its name",
        case.name
    );
    Ok(Outcome {
        result,
        pod,
        host,
        pod_mac,
    })
}

#[tokio::test]
async fn native_path_matches_the_reference_plugins() {
    if !require_privileged() {
        return;
    }
    let mut failures = Vec::new();
    for case in cases() {
        let before = failures.len();
        if let Some(feature) = needs(&(case.conf)("uplink", "/leases"))
            && skip_if_kernel_lacks(&format!("differential::{}", case.name), feature)
        {
            continue;
        }
        let (native, reference) = match (
            run(&case, DelegationMode::Auto).await,
            run(&case, DelegationMode::ForceExec).await,
        ) {
            (Ok(n), Ok(r)) => (n, r),
            (n, r) => {
                for e in [n.err(), r.err()].into_iter().flatten() {
                    println!("{e}");
                    failures.push(e);
                }
                continue;
            }
        };
        if native.result != reference.result {
            failures.push(format!(
                "{}: results differ\n native:    {}\n reference: {}",
                case.name, native.result, reference.result
            ));
        }
        if native.pod != reference.pod {
            failures.push(format!(
                "{}: pod state differs\n native:    {:?}\n reference: {:?}",
                case.name, native.pod, reference.pod
            ));
        }
        if native.host != reference.host {
            failures.push(format!(
                "{}: host state differs\n native:    {:?}\n reference: {:?}",
                case.name, native.host, reference.host
            ));
        }
        if let Some(m) = case.mac_arg.or(case.runtime_mac) {
            for (path, got) in [
                ("native", &native.pod_mac),
                ("reference", &reference.pod_mac),
            ] {
                if got.as_deref() != Some(m) {
                    failures.push(format!("{}: {path} mac {got:?}, requested {m}", case.name));
                }
            }
        }
        if failures.len() == before {
            println!("differential {}: equal", case.name);
        } else {
            for f in &failures[before..] {
                println!("differential {f}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn only_ipvlan_vlan_and_vlan_filtering_cases_may_skip() {
    let need: Vec<(&str, Option<KernelFeature>)> = cases()
        .iter()
        .map(|c| (c.name, needs(&(c.conf)("uplink", "/leases"))))
        .collect();
    for (name, feature) in &need {
        let want = match *name {
            "ipvlan-l3-host-local" => Some(KernelFeature::Ipvlan),
            "vlan-static" => Some(KernelFeature::Vlan),
            "bridge-promisc-vlan-static" => Some(KernelFeature::BridgeVlanFiltering),
            _ => None,
        };
        assert_eq!(*feature, want, "{name}");
    }
    assert!(
        need.iter().filter(|(_, f)| f.is_none()).count() >= 8,
        "{need:?}"
    );
}
