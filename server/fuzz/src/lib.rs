//! The fuzz harnesses of plexus, one function per cargo-fuzz target (`fuzz_targets/*.rs`
//! only call these). Each takes the raw input, feeds it to the code that sees hostile
//! input in production (pod annotations, NAD manifests, CNI configs, plugin stdout,
//! annotation values written by others) and checks properties that must hold for any
//! input, beyond "does not panic": what is parsed re-parses to the same thing, plans have
//! unique interfaces, lease directories stay where they belong.
//!
//! Inputs are text; where a target needs two pieces, the first line is one and the rest
//! is the other, so the committed seed corpus (`corpus/<target>/`) stays readable.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use plexus_core::annotation::{self, NETWORKS};
use plexus_core::cni::{self, CniArgs, PluginError, VersionInfo, version};
use plexus_core::nad::parse_documents;
use plexus_core::plan::Plan;
use plexus_core::status;
use plexus_core::{
    Config, MemorySource, Nad, PodIdentity, PrimaryMode, explain, pod_from_manifest, resolve,
    resolve_one,
};
use plexus_engine::ipam;
use plexus_engine::native::{self, LinkPlan, NativeConfig};
use serde_json::{Value, json};

/// Splits off the first line (without its `\n`).
fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// `annotation`: the input is an annotation value. It is parsed as
/// `k8s.v1.cni.cncf.io/networks`, `v1.multus-cni.io/default-network` and as a hot-plug
/// selection, and as an interface name and hardware address. A list that parses must
/// re-parse to the same networks in the JSON form.
pub fn annotation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selections) = annotation::parse_networks(text, "default") {
        assert!(selections.len() <= annotation::MAX_SELECTIONS);
        let mut json_form = Vec::new();
        for (i, s) in selections.iter().enumerate() {
            assert_eq!(s.position, i + 1, "positions are 1-based and in order");
            assert!(!s.name.is_empty() && !s.namespace.is_empty(), "{s:?}");
            if let Some(ifname) = &s.interface {
                annotation::validate_ifname(ifname).expect("accepted interface names are valid");
            }
            let mut element = json!({"name": s.name, "namespace": s.namespace});
            if let Some(ifname) = &s.interface {
                element["interface"] = ifname.to_string().into();
            }
            json_form.push(element);
        }
        let again = annotation::parse_networks(&Value::Array(json_form).to_string(), "other")
            .expect("the JSON form of an accepted list is accepted");
        let key =
            |s: &annotation::Selection| (s.namespace.clone(), s.name.clone(), s.interface.clone());
        assert_eq!(
            again.iter().map(key).collect::<Vec<_>>(),
            selections.iter().map(key).collect::<Vec<_>>()
        );
    }
    if let Ok(Some(s)) = annotation::parse_default_network(text, "kube-system") {
        assert!(!s.name.is_empty() && !s.namespace.is_empty(), "{s:?}");
    }
    if let Ok(s) = annotation::parse_selection(text, "default") {
        assert!(!s.name.is_empty() && !s.namespace.is_empty(), "{s:?}");
    }
    let _ = annotation::validate_ifname(text);
    if let Some(octets) = annotation::parse_hwaddr(text) {
        assert!(matches!(octets.len(), 6 | 8 | 20));
    }
}

/// Resolution settings the resolve targets run under. Spec-less NADs and named networks
/// look in a directory that does not exist, so nothing is read from the machine.
fn configs(nads: &[Nad]) -> Vec<Config> {
    let conf_dir = PathBuf::from("/nonexistent/plexus-fuzz/net.d");
    let runtime = Config {
        conf_dir: conf_dir.clone(),
        ..Config::default()
    };
    let mut out = vec![runtime.clone()];
    if let Some(first) = nads.first() {
        // plexus runs the cluster network: the first NAD is it, isolation on.
        out.push(Config {
            cluster_network: Some(first.name.clone()),
            multus_namespace: first.namespace.clone(),
            default_networks: nads
                .iter()
                .skip(1)
                .take(2)
                .map(|n| n.name.clone())
                .collect(),
            namespace_isolation: true,
            primary_mode: PrimaryMode::Plexus,
            ..runtime.clone()
        });
        // Delegates mode: the NADs' configs inline.
        let delegates: Vec<Value> = nads
            .iter()
            .take(3)
            .filter_map(|n| serde_json::from_str(&n.config).ok())
            .collect();
        if !delegates.is_empty() {
            out.push(Config {
                delegates,
                primary_mode: PrimaryMode::Plexus,
                ..runtime
            });
        }
    }
    out
}

/// Properties of any plan resolution returns.
fn check_plan(plan: &Plan) {
    let first = plan.attachments.first().expect("a plan has its primary");
    assert!(first.primary && first.index == 0, "{first:?}");
    for (i, a) in plan.attachments.iter().enumerate() {
        assert_eq!(a.index, i, "indexes follow the order");
        assert!(!a.interface.is_empty());
        assert!(
            plan.attachments[..i]
                .iter()
                .all(|b| b.interface != a.interface),
            "interface {} twice",
            a.interface
        );
    }
}

/// `nad_resolve`: the input is a manifest file as `plexusd explain` and `networks.d/`
/// take it (YAML documents, or JSON when it starts with `{`/`[`): typically a Pod
/// followed by NADs. The first document is read as the Pod (else a default pod without
/// annotations is used), every document as a NAD; the pod is resolved against the NADs
/// under three settings, explained, and its networks annotation is also resolved as a
/// hot-plug selection.
pub fn nad_resolve(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let json = text.trim_start().starts_with(['{', '[']);
    let nads: Vec<Nad> = parse_documents(text, json)
        .into_iter()
        .filter_map(|(document, nad)| {
            assert!(document >= 1);
            nad.ok()
        })
        .collect();
    for nad in &nads {
        assert!(!nad.name.is_empty() && !nad.namespace.is_empty(), "{nad:?}");
        assert!(!nad.name.contains('/') && !nad.namespace.contains('/'));
        let _ = (nad.delegation(), nad.resource_name(), nad.key());
    }
    let source = MemorySource::new(nads.clone());
    let (pod, annotations) = pod_from_manifest(text)
        .unwrap_or_else(|_| (PodIdentity::new("default", "fuzz", ""), BTreeMap::new()));
    for config in configs(&nads) {
        let outcome = resolve(&pod, &annotations, &config, &source);
        if let Ok(plan) = &outcome {
            check_plan(plan);
        }
        let explained = explain(&pod, &outcome);
        serde_json::from_str::<Value>(&explained.json).expect("explain JSON is JSON");
        if let Some(selection) = annotations.get(NETWORKS) {
            let existing = ["eth0".to_string(), "net1".to_string()];
            if let Ok(a) = resolve_one(&pod, selection, &existing, &config, &source) {
                assert!(
                    !existing.contains(&a.interface.to_string()),
                    "{}",
                    a.interface
                );
            }
        }
    }
}

/// The result shape families whose conversion is lossless among their versions.
fn shape(version: &str) -> Option<u8> {
    match version {
        "0.3.0" | "0.3.1" | "0.4.0" => Some(4),
        "1.0.0" | "1.1.0" => Some(10),
        _ => None,
    }
}

/// `cni_result`: the first line is the config's `cniVersion`, the rest a plugin's stdout.
/// It is read as a result (and as a VERSION answer, an error object, `CNI_ARGS`), then
/// rendered in every spec version: what plexus renders must parse back in that version
/// and render to the same bytes, and converting must equal parsing the rendering.
pub fn cni_result(data: &[u8]) {
    let (label, stdout) = first_line(data);
    let label = String::from_utf8_lossy(label);
    let _ = version::parse(&label);
    let _ = version::of_config(stdout);
    if let Ok(info) = VersionInfo::parse(stdout) {
        let _ = info.supports(&label);
        VersionInfo::parse(info.render().as_bytes()).expect("a rendered VERSION answer parses");
    }
    if let Some(err) = PluginError::parse(stdout) {
        let again = PluginError::parse(err.render().as_bytes()).expect("rendered error parses");
        assert_eq!(again, err);
    }
    if let Ok(text) = std::str::from_utf8(stdout)
        && let Ok(args) = CniArgs::parse(text)
    {
        assert_eq!(CniArgs::parse(&args.render()).ok().as_ref(), Some(&args));
    }
    let Ok(result) = cni::Result::parse(stdout, &label) else {
        return;
    };
    assert!(
        version::is_supported(&result.cni_version),
        "{}",
        result.cni_version
    );
    for v in version::SUPPORTED {
        let Ok(text) = result.render(v) else {
            // Only 0.1.0/0.2.0 can refuse (a result without addresses).
            assert!(matches!(*v, "0.1.0" | "0.2.0"));
            assert!(result.ips.is_empty());
            continue;
        };
        let reparsed = cni::Result::parse_as(v, text.as_bytes())
            .unwrap_or_else(|e| panic!("{v} rendering {text} does not parse: {e}"));
        assert_eq!(reparsed.render(v).expect("renders again"), text, "{v}");
        let converted = result.convert(v).expect("converts where it renders");
        assert_eq!(converted, reparsed, "{v}");
        // Within a shape family (0.3.0-0.4.0, 1.0.0-1.1.0) conversion loses nothing but
        // the label. (0.1.0/0.2.0 regroup routes by family, as libcni does.)
        if shape(v).is_some() && shape(v) == shape(&result.cni_version) {
            let mut relabelled = result.clone();
            relabelled.cni_version = (*v).to_string();
            assert_eq!(
                converted, relabelled,
                "{v}: conversion within the family is lossless"
            );
        }
    }
}

/// `network_status`: the first line is the network's display name, the rest a CNI
/// result (1.0.0 unless labelled) — and, read as a whole, an existing annotation value.
/// The statuses of the result (as primary and not) must render to an annotation that
/// parses back to them; an existing value that parses must survive render → parse.
pub fn network_status(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(existing) = status::parse(text)
    {
        let rendered = status::render(&existing);
        let back = status::parse(&rendered).expect("a rendered annotation parses");
        assert_eq!(back, existing);
    }
    let (name, rest) = first_line(data);
    let Ok(name) = std::str::from_utf8(name) else {
        return;
    };
    let Ok(result) = cni::Result::parse(rest, "1.0.0") else {
        return;
    };
    let device_info =
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:00:1f.6"}});
    for (primary, info) in [(false, None), (true, Some(&device_info))] {
        let att = status::Attachment {
            network: name,
            primary,
            result: &result,
            device_info: info,
        };
        let statuses = status::build(&[att]);
        assert!(statuses.len() <= result.interfaces.len().max(1));
        assert!(statuses.iter().filter(|s| s.default).count() <= usize::from(primary));
        let ips: usize = statuses.iter().map(|s| s.ips.len()).sum();
        assert!(ips <= result.ips.len());
        let text = status::render(&statuses);
        let back = status::parse(&text).expect("a rendered annotation parses");
        assert_eq!(back, statuses);
    }
}

/// A fresh lease directory root for one host-local allocation of `native_plan`, on tmpfs
/// when there is one; removed with everything in it when dropped (a static one would
/// outlive the process: libFuzzer exits without running destructors).
fn lease_root() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    tempfile::Builder::new()
        .prefix("plexus-fuzz-leases")
        .tempdir_in(if shm.is_dir() { shm } else { Path::new("/tmp") })
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary lease directory")
}

/// Runs IPAM for a classified config without leaving the lease root: static is pure;
/// host-local allocates under [`lease_root`] (a NAD's own `dataDir` is honoured in
/// production; here it is replaced so the fuzzer never writes elsewhere).
fn allocate(cfg: &NativeConfig, ifname: &str) -> Option<Option<ipam::Allocation>> {
    let Some(ipam_cfg) = &cfg.ipam else {
        return Some(None);
    };
    let req = ipam::Request {
        network_name: cfg.name.clone(),
        container_id: "fuzz".into(),
        ifname: ifname.into(),
        cni_version: cfg.cni_version.clone(),
        ip_arg: cfg.ip_arg.clone(),
        args_ips: cfg.args_ips.clone(),
        runtime_ips: cfg.runtime_ips.clone(),
        gateway_arg: cfg.gateway_arg.clone(),
        gave_up: ipam::GaveUp::default(),
    };
    let ipam_cfg = match ipam_cfg {
        ipam::Config::HostLocal(h) => {
            let root_dir = lease_root();
            let root = root_dir.path();
            let mut h = h.clone();
            h.data_dir = None;
            let lease = ipam::lease_for(&ipam::Config::HostLocal(h.clone()), &req, root)
                .expect("host-local has a lease directory");
            // The network name must not lead the lease directory out of the data dir.
            let rel = lease.dir.strip_prefix(root).unwrap_or_else(|_| {
                panic!(
                    "lease dir {} is outside {}",
                    lease.dir.display(),
                    root.display()
                )
            });
            let mut parts = rel.components();
            assert!(
                matches!(parts.next(), Some(Component::Normal(_))) && parts.next().is_none(),
                "lease dir {} is not one directory below {}",
                lease.dir.display(),
                root.display()
            );
            return ipam::allocate(&ipam::Config::HostLocal(h), &req, root)
                .ok()
                .map(Some);
        }
        other => other,
    };
    // Static IPAM never touches the data dir.
    ipam::allocate(ipam_cfg, &req, Path::new("/nonexistent/plexus-fuzz/ipam"))
        .ok()
        .map(Some)
}

/// `native_plan`: the first line is the pod's networks annotation (empty: just the
/// network), the rest the NAD's `spec.config` (the network is `default/fuzz`). The pod
/// is resolved; each attachment the native path takes is classified, allocated
/// (static, or host-local in a temporary directory) and planned down to the link specs
/// without netlink. Invalid configs must be errors, never panics.
pub fn native_plan(data: &[u8]) {
    let (selection, config) = first_line(data);
    let (Ok(selection), Ok(config)) = (std::str::from_utf8(selection), std::str::from_utf8(config))
    else {
        return;
    };
    let nad = Nad::new("default", "fuzz", config);
    let mut annotations = BTreeMap::new();
    let selection = if selection.trim().is_empty() {
        "fuzz"
    } else {
        selection
    };
    annotations.insert(NETWORKS.to_string(), selection.to_string());
    let pod = PodIdentity::new("default", "fuzz-pod", "");
    let config = Config {
        conf_dir: PathBuf::from("/nonexistent/plexus-fuzz/net.d"),
        ..Config::default()
    };
    let Ok(plan) = resolve(&pod, &annotations, &config, &MemorySource::new([nad])) else {
        return;
    };
    for att in plan.attachments.iter().filter(|a| !a.runtime_managed) {
        let Some(cfg) = native::classify(att) else {
            continue;
        };
        let Some(mut alloc) = allocate(&cfg, &att.interface) else {
            continue;
        };
        let had_ips = alloc.as_ref().map(|a| a.ips.len());
        let Ok(planned) = native::plan_links(&cfg, &att.interface, 7, alloc.as_mut()) else {
            continue;
        };
        let link = match &planned {
            LinkPlan::Macvlan(s) => &s.link,
            LinkPlan::Ipvlan(s) => &s.link,
            LinkPlan::Vlan(s) => &s.link,
            LinkPlan::Bridge(s) => &s.link,
            LinkPlan::HostDevice(_) => continue,
        };
        assert_eq!(link.name, att.interface);
        assert_eq!(link.group, 7);
        assert_eq!(alloc.as_ref().map(|a| a.ips.len()), had_ips);
        if let LinkPlan::Bridge(spec) = &planned {
            for gw in &spec.gateways {
                assert!(
                    alloc.as_ref().is_some_and(|a| a.ips.iter().any(|ip| {
                        ip.gateway == Some(gw.addr()) && ip.address.prefix_len() == gw.prefix_len()
                    })),
                    "bridge gateway {gw} is not a gateway of the allocation"
                );
            }
        }
    }
}
