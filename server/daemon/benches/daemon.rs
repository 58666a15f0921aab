//! plexusd benchmarks (a harness that prints figures, not a test):
//! 1. RSS of an idle plexusd process, and with 1,000 recorded attachments after listing them
//!    (targets: ≤ 16 MiB idle, ≤ 32 MiB with 1,000), from `VmRSS` in `/proc/<pid>/status`;
//! 2. (root only) setup + teardown latency of a two-network pod through the API (a plexusd
//!    process, gRPC over its socket) vs calling the engine in-process, medians over 100 pods;
//!    then the same through the API with 1,000 other sandboxes recorded (setup must not grow
//!    with the number of records), and the time of one full listing of them;
//! 3. NAD lookups with 50,000 NAD files in the directory: the one load (what each lookup cost
//!    before the index), and the median lookup from the index.
//!
//! Run: `cargo bench -p plexus-server --bench daemon` (release build of plexusd is used by
//! cargo bench itself).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexus_client::v1;
use plexus_core::plan::{Plan, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use plexus_engine::Engine;
use plexus_engine::state;
use plexus_netlink::test_util::{TestNetns, unique_name};
use plexus_server::config::Config;
use plexus_server::daemon::{engine_config, resolver};
use plexus_server::planner::Planner;

#[path = "daemon/support.rs"]
mod support;
#[path = "daemon/teardowns.rs"]
mod teardowns;

use support::{median, ms, record_attachments, record_sandboxes, rss_kib, start, write_config};
use teardowns::{crowd_leases, nri_stops, runtime_teardowns};

pub(crate) const PODS: usize = 100;
pub(crate) const RECORDED_SANDBOXES: usize = 500;

async fn rss_bench() {
    let dir = tempfile::tempdir().unwrap();
    let (config, socket) = write_config(dir.path(), None);
    let idle = {
        let daemon = start(&config, &socket).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rss_kib(daemon.0.id())
    };
    record_attachments(&dir.path().join("state"));
    let daemon = start(&config, &socket).await;
    let mut client = plexus_client::connect(&socket).await.unwrap();
    let listed = client
        .list_attachments(v1::ListAttachmentsRequest { target: None })
        .await
        .unwrap()
        .into_inner()
        .attachments
        .len();
    let loaded = rss_kib(daemon.0.id());
    println!("plexusd RSS");
    println!(
        "  idle                         {:>8.1} MiB  (target <= 16)",
        idle as f64 / 1024.0
    );
    println!(
        "  {listed:>5} recorded attachments   {:>8.1} MiB  (target <= 32)",
        loaded as f64 / 1024.0
    );
}

async fn latency_bench() {
    let host = TestNetns::new().await;
    let uplink = unique_name("up");
    host.veth_pair(&uplink, &unique_name("pe")).await.unwrap();
    let pod = TestNetns::new().await;
    // State and leases on disk under /var/tmp, as /var/lib/plexus is in production (and
    // as the integration harness keeps them): /tmp may be a tmpfs, where an fsync costs
    // nothing, and on the test machine's root filesystem creating a file under /tmp took
    // 0.6-0.8 ms against 0.015 ms under /var/tmp, which alone added about 1.5 ms per setup.
    let dir = tempfile::Builder::new()
        .prefix("plexus-bench-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let networks = dir.path().join("networks.d");
    std::fs::create_dir_all(&networks).unwrap();
    let mut nads = String::new();
    for (name, subnet) in [("mv1", "10.251.1.0/24"), ("mv2", "10.251.2.0/24")] {
        let conf = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": uplink,
            "mode": "bridge", "ipam": {"type": "host-local", "subnet": subnet}});
        nads.push_str(&format!(
            "---\napiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  config: '{conf}'\n"
        ));
    }
    std::fs::write(networks.join("nets.yaml"), nads).unwrap();
    let (config_path, socket) = write_config(dir.path(), Some(&host.path()));
    let config = Config::load(&config_path).unwrap();
    let identity = PodIdentity::new("default", "bench", "uid-bench");
    let ann = HashMap::from([(
        "k8s.v1.cni.cncf.io/networks".to_owned(),
        "mv1,mv2".to_owned(),
    )]);

    // In-process: resolve + engine.setup / teardown. The bench's pod netns stays (no
    // runtime removes it), so the reaper deletes the links and removes the record at once.
    let engine = Engine::open(plexus_engine::EngineConfig {
        links_grace: Duration::ZERO,
        removal_batch: Duration::ZERO,
        ..engine_config(&config)
    })
    .unwrap();
    let planner = Arc::new(resolver(&config));
    let ann_sorted: BTreeMap<String, String> = ann.clone().into_iter().collect();
    let (mut direct_up, mut direct_down) = (Vec::new(), Vec::new());
    let (mut up_fsyncs, mut down_fsyncs, mut up_writes, mut up_deferred) = (0, 0, 0, 0);
    for i in 0..PODS {
        let id = plexus_core::SandboxId::new(format!("direct-{i}")).unwrap();
        let t = Instant::now();
        let plan = planner.plan(&identity, &ann_sorted).unwrap();
        let spec = plexus_engine::SandboxSpec {
            sandbox_id: id.clone(),
            pod: identity.clone(),
            netns: pod.path(),
        };
        let (f, w, d) = (
            state::fsyncs(),
            state::record_writes(),
            state::deferred_fsyncs(),
        );
        engine.setup(spec, plan).await.unwrap();
        direct_up.push(t.elapsed());
        // The done write's directory fsync follows the answer: waited for outside the timing.
        engine.flush_state();
        (up_fsyncs, up_writes, up_deferred) = (
            up_fsyncs + state::fsyncs() - f,
            up_writes + state::record_writes() - w,
            up_deferred + state::deferred_fsyncs() - d,
        );
        let t = Instant::now();
        let f = state::fsyncs();
        engine.teardown(&id).await.unwrap();
        direct_down.push(t.elapsed());
        down_fsyncs += state::fsyncs() - f;
    }
    let runtime = |prefix: &'static str| {
        let (engine, planner) = (engine.clone(), Arc::clone(&planner));
        let (identity, ann, netns) = (identity.clone(), ann_sorted.clone(), pod.path());
        async move { runtime_teardowns(&engine, &*planner, &identity, &ann, &netns, prefix).await }
    };
    let (_, runtime_down, runtime_fsyncs) = runtime("runtime").await;
    let (nri_down, nri_released) = nri_stops(
        &engine,
        &*planner,
        &identity,
        &ann_sorted,
        &pod.path(),
        dir.path(),
    )
    .await;
    // The same on busy networks: other pods' leases in each lease directory.
    let crowd = crowd_leases(&dir.path().join("leases"), CROWD);
    let (crowded_up, crowded_down, _) = runtime("crowded").await;
    crowd
        .iter()
        .for_each(|lease| std::fs::remove_file(lease).unwrap());
    // The node service's own layer without gRPC: Node::setup_pod / teardown_pod over the
    // same engine (resolution, locks, admission, events, network-status).
    let node = plexus_server::node::Node::new(
        Arc::new(plexus_server::engine::EngineAttacher::new(engine.clone())),
        Arc::clone(&planner),
        plexus_server::node::Limits {
            max_parallel: 8,
            max_queued: 64,
            setup_budget: None,
        },
    );
    let (mut node_up, mut node_down) = (Vec::new(), Vec::new());
    for i in 0..PODS {
        let id = plexus_core::SandboxId::new(format!("node-{i}")).unwrap();
        let spec = plexus_server::model::SandboxSpec {
            sandbox_id: id.clone(),
            pod: identity.clone(),
            netns: pod.path(),
        };
        let t = Instant::now();
        node.setup_pod(spec, ann_sorted.clone(), None)
            .await
            .unwrap();
        node_up.push(t.elapsed());
        let t = Instant::now();
        node.teardown_pod(id, None, plexus_engine::LinkDeletion::BeforeAnswer)
            .await
            .unwrap();
        node_down.push(t.elapsed());
    }
    drop(node);
    drop(engine);
    let slow = slow_plugins(dir.path(), &config, &pod).await;

    // Through the API: a plexusd process on its socket, with no other sandbox recorded,
    // then with 1,000 (written while it is stopped; it starts with them).
    let (api_up, api_down, _) =
        api_latency(&config_path, &socket, &pod.path(), &identity, &ann).await;
    record_sandboxes(&dir.path().join("state"), MANY_RECORDS);
    let (many_up, many_down, listing) =
        api_latency(&config_path, &socket, &pod.path(), &identity, &ann).await;
    let (du, dd, au, ad) = (
        median(direct_up),
        median(direct_down),
        median(api_up),
        median(api_down),
    );
    println!("two-macvlan pod (host-local), medians over {PODS} pods");
    println!("  path              setup ms   teardown ms");
    println!("  engine in-process {:>8.2}   {:>11.2}", ms(du), ms(dd));
    println!(
        "  node, no gRPC     {:>8.2}   {:>11.2}",
        ms(median(node_up)),
        ms(median(node_down))
    );
    println!("  plexusd API       {:>8.2}   {:>11.2}", ms(au), ms(ad));
    println!(
        "  API / engine      {:>8.2}x  {:>11.2}x",
        ms(au) / ms(du),
        ms(ad) / ms(dd)
    );
    let (mu, md) = (median(many_up), median(many_down));
    println!("  plexusd API, {MANY_RECORDS} other sandboxes recorded");
    println!("                    {:>8.2}   {:>11.2}", ms(mu), ms(md));
    println!(
        "  {MANY_RECORDS} / none     {:>8.2}x  {:>11.2}x",
        ms(mu) / ms(au),
        ms(md) / ms(ad)
    );
    println!(
        "  ListAttachments of {} sandboxes: {:.2} ms (median of 20, after the first)",
        MANY_RECORDS + 1,
        ms(listing)
    );
    let per_pod = |n: u64| n as f64 / PODS as f64;
    println!(
        "  runtime's teardown (links deleted after the answer), in-process: {:.2} ms, {:.1} fsyncs before the answer",
        ms(median(runtime_down)),
        per_pod(runtime_fsyncs)
    );
    println!(
        "  NRI StopPodSandbox's teardown, in-process: answered in {:.2} ms (record marked, netns \
         held), leases released {:.2} ms after the request",
        ms(median(nri_down)),
        ms(median(nri_released))
    );
    println!(
        "    with {CROWD} other pods' leases on each network: setup {:.2} ms, runtime's teardown {:.2} ms",
        ms(median(crowded_up)),
        ms(median(crowded_down))
    );
    println!(
        "  durable writes per pod: setup {:.1} fsyncs ({:.1} record writes; {:.1} of the fsyncs \
         after the answer), teardown {:.1} fsyncs",
        per_pod(up_fsyncs),
        per_pod(up_writes),
        per_pod(up_deferred),
        per_pod(down_fsyncs)
    );
    let (su, sd) = slow;
    println!(
        "three exec'd networks whose plugin takes 200 ms (ADD and DEL), median of {SLOW_PODS} pods:\n  setup {:.1} ms, teardown {:.1} ms (one by one: >= 600 ms each)",
        ms(su),
        ms(sd)
    );
}

/// Other pods' leases per network in the crowded case.
const CROWD: usize = 200;

/// Pods of the slow-plugin case.
const SLOW_PODS: usize = 5;

/// Setup and teardown medians of a pod with three exec'd networks whose plugin sleeps
/// 200 ms in ADD and in DEL (a bridge link made in the pod netns).
async fn slow_plugins(dir: &Path, config: &Config, pod: &TestNetns) -> (Duration, Duration) {
    let bin = dir.join("slow-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let plugin = bin.join("benchslow");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncase \"$CNI_COMMAND\" in\nADD) sleep 0.2; nsenter --net=\"$CNI_NETNS\" ip link add \"$CNI_IFNAME\" type bridge || exit 1\n  echo '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"'\"$CNI_IFNAME\"'\"}]}' ;;\nDEL) sleep 0.2; [ -n \"$CNI_NETNS\" ] && nsenter --net=\"$CNI_NETNS\" ip link del \"$CNI_IFNAME\" 2>/dev/null; exit 0 ;;\nVERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}' ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cfg = engine_config(config);
    cfg.cni_bin_dirs.insert(0, bin);
    let engine = Engine::open(cfg).unwrap();
    let attachments: Vec<PlannedAttachment> = (1..=3)
        .map(|i| {
            let name = format!("slow{i}");
            let conf =
                serde_json::json!({"cniVersion": "1.0.0", "name": name, "type": "benchslow"});
            serde_json::from_value(serde_json::json!({
                "index": i, "network": format!("default/{name}"), "interface": format!("net{i}"),
                "origin": "annotation", "primary": false,
                "source": {"kind": "nad", "namespace": "default", "name": name},
                "config": {"form": "conf", "name": name, "cni_version": "1.0.0",
                    "plugin_types": ["benchslow"], "bytes": serde_json::to_vec(&conf).unwrap()},
            }))
            .unwrap()
        })
        .collect();
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..SLOW_PODS {
        let id = plexus_core::SandboxId::new(format!("slow-{i}")).unwrap();
        let plan = Plan {
            pod: PodIdentity::new("default", "slow", "uid-slow"),
            attachments: attachments.clone(),
        };
        let spec = plexus_engine::SandboxSpec {
            sandbox_id: id.clone(),
            pod: plan.pod.clone(),
            netns: pod.path(),
        };
        let t = Instant::now();
        engine.setup(spec, plan).await.unwrap();
        up.push(t.elapsed());
        let t = Instant::now();
        engine.teardown(&id).await.unwrap();
        down.push(t.elapsed());
    }
    (median(up), median(down))
}

/// Other sandboxes recorded for the "many records" run.
const MANY_RECORDS: usize = 1000;

/// Starts plexusd on `config_path`, sets up and tears down [`PODS`] pods through its API
/// and stops it. Returns setup and teardown times, and the median time of listing every
/// sandbox (taken with one pod set up).
async fn api_latency(
    config_path: &Path,
    socket: &Path,
    netns: &Path,
    identity: &PodIdentity,
    ann: &HashMap<String, String>,
) -> (Vec<Duration>, Vec<Duration>, Duration) {
    let _daemon = start(config_path, socket).await;
    let mut client = plexus_client::connect(socket).await.unwrap();
    let (mut api_up, mut api_down) = (Vec::new(), Vec::new());
    let mut listing = Vec::new();
    for i in 0..PODS {
        let id = format!("api-{i}");
        let t = Instant::now();
        client
            .setup_pod(v1::SetupPodRequest {
                pod: Some(v1::PodRef {
                    namespace: identity.namespace.clone(),
                    name: identity.name.clone(),
                    uid: identity.uid.clone(),
                }),
                sandbox_id: id.clone(),
                netns_path: netns.to_string_lossy().into_owned(),
                annotations: ann.clone(),
                labels: HashMap::new(),
                may_finish_later: false,
            })
            .await
            .unwrap();
        api_up.push(t.elapsed());
        if i < 21 {
            let t = Instant::now();
            client
                .list_attachments(v1::ListAttachmentsRequest { target: None })
                .await
                .unwrap();
            if i > 0 {
                listing.push(t.elapsed());
            }
        }
        let t = Instant::now();
        client
            .teardown_pod(v1::TeardownPodRequest {
                sandbox_id: id,
                ..Default::default()
            })
            .await
            .unwrap();
        api_down.push(t.elapsed());
    }
    (api_up, api_down, median(listing))
}

/// NAD files written for the lookup bench.
const NAD_FILES: usize = 50_000;

fn nad_lookup_bench() {
    use plexus_core::nad::{DirSource, NadSource};
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..NAD_FILES {
        std::fs::write(
            tmp.path().join(format!("n{i}.yaml")),
            format!(
                "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
                 metadata: {{name: net{i}, namespace: bench}}\n\
                 spec: {{config: '{{\"cniVersion\":\"1.0.0\",\"type\":\"bridge\"}}'}}\n"
            ),
        )
        .unwrap();
    }
    let source = DirSource::new(tmp.path());
    let start = Instant::now();
    source.refresh().unwrap();
    let load = start.elapsed();
    let start = Instant::now();
    source.refresh().unwrap();
    let rescan = start.elapsed();
    let lookups: Vec<Duration> = (0..1000)
        .map(|i| {
            let start = Instant::now();
            let nad = source.get("bench", &format!("net{}", i * 37 % NAD_FILES));
            let took = start.elapsed();
            assert!(matches!(nad, Ok(Some(_))));
            took
        })
        .collect();
    println!("NAD lookups, {NAD_FILES} NAD files");
    println!("  first load (parse all)     {:>10.2} ms", ms(load));
    println!(
        "  rescan, nothing changed    {:>10.2} ms  (per lookup before the index)",
        ms(rescan)
    );
    println!(
        "  lookup from the index      {:>10.4} ms  (median of 1000)",
        ms(median(lookups))
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    nad_lookup_bench();
    rss_bench().await;
    if nix::unistd::geteuid().is_root() {
        latency_bench().await;
    } else {
        println!("latency: not measured (needs root for network namespaces)");
    }
}
