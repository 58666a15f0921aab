//! Whether the native path takes an attachment: every key of its config known to the
//! reference plugin's native twin, capabilities and CNI args covered, nothing guessed.

use plexus_core::cni::Dns;
use plexus_core::plan::PlannedAttachment;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use plexus_netlink::MacAddr;

use super::{Kind, NativeConfig, bridge, macvlan};
use crate::ipam;

/// Keys every main plugin accepts (`types.NetConf`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Common {
    #[serde(default, rename = "cniVersion")]
    cni_version: String,
    #[serde(default)]
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    ipam: Option<Map<String, Value>>,
    #[serde(default)]
    dns: Option<ipam::DnsConfig>,
    #[serde(default)]
    capabilities: Map<String, Value>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: RuntimeConf,
    #[serde(default)]
    args: Option<ArgsConf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConf {
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgsConf {
    #[serde(default)]
    cni: Option<CniArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CniArgs {
    #[serde(default)]
    ips: Vec<String>,
    /// Read by the bridge plugin only (other plugins ignore it, and so does this path).
    #[serde(default)]
    mac: Option<String>,
}

const COMMON_KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "capabilities",
    "runtimeConfig",
    "args",
];

/// Decides whether `att` can run natively; `None` sends it to the exec path.
pub fn classify(att: &PlannedAttachment) -> Option<NativeConfig> {
    if att.config.form != plexus_core::plan::ConfigForm::Conf || att.force_exec {
        return None;
    }
    let Value::Object(obj) = serde_json::from_slice::<Value>(&att.config.bytes).ok()? else {
        return None;
    };
    let (common_map, own): (Map<String, Value>, Map<String, Value>) = obj
        .into_iter()
        .partition(|(k, _)| COMMON_KEYS.contains(&k.as_str()));
    let common: Common = serde_json::from_value(Value::Object(common_map)).ok()?;
    // The name becomes the host-local lease directory (`<dataDir>/<name>`): one that
    // breaks libcni's rule goes to the exec path, which refuses it with its own message.
    let name = plexus_core::NetworkName::new(common.name.as_str()).ok()?;
    let caps = |name: &str| common.capabilities.get(name) == Some(&Value::Bool(true));
    // Capabilities whose runtime values the native path would have to honour.
    let rc = &att.runtime_config;
    let unsupported_runtime = (caps("portMappings") && !rc.port_mappings.is_empty())
        || (caps("bandwidth") && rc.bandwidth.is_some())
        || (caps("infinibandGUID") && rc.infiniband_guid.is_some())
        || (caps("deviceID") && rc.device_id.is_some());
    if unsupported_runtime {
        return None;
    }
    let ipam = match &common.ipam {
        Some(m)
            if m.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| !t.is_empty()) =>
        {
            Some(ipam::Config::parse(&Value::Object(m.clone()))?)
        }
        Some(m) if m.keys().any(|k| k != "type") => return None,
        _ => None,
    };
    // Legacy CNI_ARGS: only those the reference plugins read.
    let mut ip_arg = None;
    let mut mac_arg = None;
    let mut gateway_arg = None;
    for (k, v) in &att.extra_cni_args {
        match k.as_str() {
            "IP" => ip_arg = Some(v.clone()),
            "MAC" => mac_arg = Some(v.clone()),
            "GATEWAY" => gateway_arg = Some(v.clone()),
            "IgnoreUnknown"
            | "K8S_POD_NAMESPACE"
            | "K8S_POD_NAME"
            | "K8S_POD_UID"
            | "K8S_POD_INFRA_CONTAINER_ID" => {}
            _ => return None,
        }
    }
    let args = common.args.as_ref().and_then(|a| a.cni.as_ref());
    let args_ips = args.map(|a| a.ips.clone()).unwrap_or_default();
    let mut runtime_ips = common.runtime_config.ips.clone();
    if caps("ips") {
        runtime_ips.extend(rc.ips.iter().cloned());
    }
    let rc_mac = common
        .runtime_config
        .mac
        .clone()
        .or_else(|| caps("mac").then(|| rc.mac.clone()).flatten());
    let own = Value::Object(own);
    let parse_mac = |s: &str| s.parse::<MacAddr>().ok();
    let (kind, mac) = match common.kind.as_str() {
        "macvlan" => {
            let c: macvlan::Conf = strict(own)?;
            // loadConf: config `mac`, then MAC= arg, then runtimeConfig.mac.
            let m = rc_mac.or(mac_arg).or(c.mac.clone());
            (Kind::Macvlan(c), m)
        }
        "ipvlan" => (Kind::Ipvlan(strict(own)?), None),
        "bridge" => {
            let c: bridge::Conf = strict(own)?;
            if !c.is_supported() || mac_arg.is_some() {
                return None;
            }
            // bridge: args.cni.mac, then runtimeConfig.mac (MAC= is not read).
            let m = rc_mac.or(args.and_then(|a| a.mac.clone()));
            (Kind::Bridge(c), m)
        }
        "host-device" => (Kind::HostDevice(strict(own)?), None),
        "vlan" => (Kind::Vlan(strict(own)?), None),
        _ => return None,
    };
    // A DHCP lease on a gateway bridge would put the router's address on the bridge
    // (the reference `calcGateways` on the lease): that combination stays on the exec path.
    if matches!(ipam, Some(ipam::Config::Dhcp(_)))
        && matches!(&kind, Kind::Bridge(c) if c.is_gateway || c.is_default_gateway)
    {
        return None;
    }
    if mac.is_some() && !matches!(kind, Kind::Macvlan(_) | Kind::Bridge(_)) {
        return None;
    }
    let mac = match mac {
        Some(m) => Some(parse_mac(&m)?),
        None => None,
    };
    if gateway_arg.is_some() && !matches!(ipam, Some(ipam::Config::Static(_))) {
        return None;
    }
    let dns = common.dns.unwrap_or_default();
    Some(NativeConfig {
        kind,
        name,
        cni_version: common.cni_version,
        ipam,
        dns: Dns {
            nameservers: dns.nameservers,
            domain: dns.domain,
            search: dns.search,
            options: dns.options,
        },
        ip_arg,
        args_ips,
        runtime_ips,
        gateway_arg,
        mac,
    })
}

fn strict<T: DeserializeOwned>(v: Value) -> Option<T> {
    serde_json::from_value(v).ok()
}
