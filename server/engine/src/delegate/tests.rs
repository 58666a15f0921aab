//! Delegate executor tests with fake plugins: small shell scripts in a temp bin dir that
//! record their environment and stdin and print results or errors. No root needed.

use plexus_core::id::{InterfaceName, SandboxId};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_core::cni;
use plexus_core::plan::{ConfigForm, DelegateConfig, RuntimeConfig};
use plexus_core::pod::PodIdentity;
use serde_json::{Value, json};

use super::*;

mod failures;
mod lifetime;
mod privileged;
mod reference;
mod verbs;

/// A temp dir with `bin/`, `cache/` and `log/`.
struct Fixture {
    _dir: tempfile::TempDir,
    bin: PathBuf,
    cache: PathBuf,
    log: PathBuf,
    pod: PodIdentity,
    id: SandboxId,
    ifname: InterfaceName,
}

fn sid(id: &str) -> SandboxId {
    SandboxId::new(id).unwrap()
}

fn ifn(name: &str) -> InterfaceName {
    InterfaceName::new(name).unwrap()
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (bin, cache, log) = (
            dir.path().join("bin"),
            dir.path().join("cache"),
            dir.path().join("log"),
        );
        for d in [&bin, &cache, &log] {
            std::fs::create_dir_all(d).unwrap();
        }
        Fixture {
            _dir: dir,
            bin,
            cache,
            log,
            pod: PodIdentity::new("ns1", "web-0", "uid-1"),
            id: sid("c1"),
            ifname: ifn("net1"),
        }
    }

    /// Installs plugin `name`: logs the call, stdin and `CNI_*` env, then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        let script = format!(
            "#!/bin/sh\nL='{log}'\necho \"{name} $CNI_COMMAND $CNI_CONTAINERID\" >> \"$L/calls\"\n\
             cat > \"$L/{name}-$CNI_COMMAND.stdin\"\nenv | grep '^CNI_' | sort > \"$L/{name}-$CNI_COMMAND.env\"\n{body}\n",
            log = self.log.display()
        );
        let tmp = self.bin.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, script).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, self.bin.join(name)).unwrap();
    }

    /// A plugin that prints `result` on ADD and succeeds on everything else.
    fn result_plugin(&self, name: &str, result: &str) {
        self.plugin(
            name,
            &format!("case \"$CNI_COMMAND\" in ADD) printf '%s' '{result}';; esac"),
        );
    }

    fn config(&self) -> Config {
        Config {
            timeout: Duration::from_secs(10),
            busy_retries: 20,
            busy_retry_delay: Duration::from_millis(50),
            ..Config::new(vec![self.bin.clone()], &self.cache)
        }
    }

    fn executor(&self) -> Executor {
        Executor::new(self.config())
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn stdin(&self, name: &str, verb: &str) -> Value {
        let path = self.log.join(format!("{name}-{verb}.stdin"));
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    }

    fn env(&self, name: &str, verb: &str) -> Vec<String> {
        std::fs::read_to_string(self.log.join(format!("{name}-{verb}.env")))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn invocation<'a>(
        &'a self,
        config: &'a DelegateConfig,
        rc: &'a RuntimeConfig,
    ) -> Invocation<'a> {
        Invocation {
            container_id: &self.id,
            netns: Some(Path::new("/var/run/netns/test")),
            ifname: &self.ifname,
            pod: &self.pod,
            config,
            runtime_config: rc,
            runtime_capabilities: None,
            extra_cni_args: &[],
            prev_result: None,
        }
    }
}

fn conflist(text: &str) -> DelegateConfig {
    let v: Value = serde_json::from_str(text).unwrap_or_default();
    DelegateConfig {
        form: ConfigForm::Conflist,
        name: v["name"].as_str().unwrap_or_default().to_owned(),
        cni_version: v["cniVersion"].as_str().unwrap_or_default().to_owned(),
        plugin_types: Vec::new(),
        bytes: text.as_bytes().to_vec(),
    }
}

fn conf(text: &str) -> DelegateConfig {
    DelegateConfig {
        form: ConfigForm::Conf,
        ..conflist(text)
    }
}

const CHAIN: &str = r#"{"cniVersion":"1.0.0","name":"chain","plugins":[{"type":"p1","capabilities":{"mac":true},"keep":{"z":1,"a":2}},{"type":"p2"}]}"#;

const P1_RESULT: &str = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/test"}],"ips":[{"version":"4","interface":0,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],"dns":{}}"#;

const P2_RESULT: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"net1","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/test"}],"ips":[{"interface":0,"address":"10.1.0.5/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}],"dns":{}}"#;

#[tokio::test]
async fn chain_add_passes_converted_prev_result_and_writes_the_libcni_cache() {
    let f = Fixture::new();
    f.result_plugin("p1", P1_RESULT);
    f.result_plugin("p2", P2_RESULT);
    let config = conflist(CHAIN);
    let rc = RuntimeConfig {
        mac: Some("02:00:00:00:00:01".into()),
        ..RuntimeConfig::default()
    };
    let out = f.executor().add(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(f.calls(), ["p1 ADD c1", "p2 ADD c1"]);
    assert_eq!(out.stdout, P2_RESULT.as_bytes());
    assert_eq!(
        out.result,
        cni::Result::parse(P2_RESULT.as_bytes(), "").unwrap()
    );

    // First plugin: name/cniVersion injected, own keys kept in order, runtimeConfig.
    let s1 = f.stdin("p1", "ADD");
    assert_eq!(
        serde_json::to_string(&s1).unwrap(),
        r#"{"type":"p1","capabilities":{"mac":true},"keep":{"z":1,"a":2},"name":"chain","cniVersion":"1.0.0","runtimeConfig":{"mac":"02:00:00:00:00:01"}}"#
    );
    // Second plugin: p1's 0.4.0 result converted to the list's 1.0.0 (no ips[].version).
    let s2 = f.stdin("p2", "ADD");
    assert_eq!(
        serde_json::to_string(&s2).unwrap(),
        format!(
            r#"{{"type":"p2","name":"chain","cniVersion":"1.0.0","prevResult":{}}}"#,
            P1_RESULT
                .replace("0.4.0", "1.0.0")
                .replace(r#""version":"4","#, "")
        )
    );

    let cache_file = f.cache.join("results/chain-c1-net1");
    let text = std::fs::read_to_string(&cache_file).unwrap();
    assert_eq!(
        text,
        r#"{"kind":"cniCacheV1","containerId":"c1","config":"eyJjbmlWZXJzaW9uIjoiMS4wLjAiLCJuYW1lIjoiY2hhaW4iLCJwbHVnaW5zIjpbeyJ0eXBlIjoicDEiLCJjYXBhYmlsaXRpZXMiOnsibWFjIjp0cnVlfSwia2VlcCI6eyJ6IjoxLCJhIjoyfX0seyJ0eXBlIjoicDIifV19","ifName":"net1","networkName":"chain","netns":"/var/run/netns/test","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAMESPACE","ns1"],["K8S_POD_NAME","web-0"],["K8S_POD_INFRA_CONTAINER_ID","c1"],["K8S_POD_UID","uid-1"]],"capabilityArgs":{"mac":"02:00:00:00:00:01"},"result":{"cniVersion":"1.0.0","dns":{},"interfaces":[{"mac":"02:00:00:00:00:01","name":"net1","sandbox":"/var/run/netns/test"}],"ips":[{"address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}],"routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]}}"#
    );
    let mode = std::fs::metadata(&cache_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(f.cache.join("results"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let entry = f
        .executor()
        .cached(&"chain".parse().unwrap(), &sid("c1"), &ifn("net1"))
        .unwrap()
        .unwrap();
    assert_eq!(entry.config, CHAIN.as_bytes());
    assert_eq!(
        f.executor().cached_attachments(Some("c1")).unwrap().len(),
        1
    );
    assert!(
        f.executor()
            .cached_attachments(Some("c2"))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn del_runs_in_reverse_with_the_cached_result_and_removes_the_cache() {
    let f = Fixture::new();
    f.result_plugin("p1", P1_RESULT);
    f.result_plugin("p2", P2_RESULT);
    let config = conflist(CHAIN);
    let rc = RuntimeConfig::default();
    let ex = f.executor();
    ex.add(&f.invocation(&config, &rc)).await.unwrap();
    ex.del(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(f.calls()[2..], ["p2 DEL c1", "p1 DEL c1"]);
    let prev = &f.stdin("p1", "DEL")["prevResult"];
    assert_eq!(prev, &serde_json::from_str::<Value>(P2_RESULT).unwrap());
    assert!(!f.cache.join("results/chain-c1-net1").exists());

    // Again, with the cache gone: still runs the plugins, without prevResult, and succeeds.
    ex.del(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(f.calls().len(), 6);
    assert!(f.stdin("p1", "DEL").get("prevResult").is_none());

    // A corrupt cache file never turns DEL into a no-op.
    std::fs::write(f.cache.join("results/chain-c1-net1"), "{not json").unwrap();
    ex.del(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(f.calls().len(), 8);
    assert!(!f.cache.join("results/chain-c1-net1").exists());
}

#[tokio::test]
async fn del_without_netns_passes_an_empty_cni_netns() {
    let f = Fixture::new();
    f.plugin("p1", "exit 0");
    let config = conf(r#"{"cniVersion":"0.3.1","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let inv = Invocation {
        netns: None,
        ..f.invocation(&config, &rc)
    };
    f.executor().del(&inv).await.unwrap();
    assert!(f.env("p1", "DEL").contains(&"CNI_NETNS=".to_owned()));
    // 0.3.1 predates prevResult on DEL.
    assert!(f.stdin("p1", "DEL").get("prevResult").is_none());
}

#[tokio::test]
async fn env_and_cni_args_are_set_like_libcni_plus_legacy_pairs() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    let config = conf(r#"{"cniVersion":"1.0.0","name":"one","type":"p1"}"#);
    let rc = RuntimeConfig::default();
    let extra = [
        ("MAC".to_owned(), "02:00:00:00:00:09".to_owned()),
        ("IP".to_owned(), "10.1.0.9/24,fd00::9/64".to_owned()),
    ];
    let second_bin = f.bin.with_file_name("bin2");
    let ex = Executor::new(Config {
        bin_dirs: vec![second_bin.clone(), f.bin.clone()],
        ..f.config()
    });
    let inv = Invocation {
        extra_cni_args: &extra,
        ..f.invocation(&config, &rc)
    };
    ex.add(&inv).await.unwrap();
    assert_eq!(
        f.env("p1", "ADD"),
        [
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=uid-1;MAC=02:00:00:00:00:09;IP=10.1.0.9/24,fd00::9/64".to_owned(),
            "CNI_COMMAND=ADD".to_owned(),
            "CNI_CONTAINERID=c1".to_owned(),
            "CNI_IFNAME=net1".to_owned(),
            "CNI_NETNS=/var/run/netns/test".to_owned(),
            format!("CNI_PATH={}:{}", second_bin.display(), f.bin.display()),
        ]
    );
}

#[tokio::test]
async fn capabilities_inject_only_declared_keys_and_accept_containerd_spelling() {
    let f = Fixture::new();
    f.result_plugin("p1", P2_RESULT);
    let config = conf(
        r#"{"cniVersion":"1.0.0","name":"one","type":"p1","capabilities":{"portMappings":true,"mac":true,"bandwidth":false,"dns":true},"runtimeConfig":{"stale":1}}"#,
    );
    let rc = RuntimeConfig {
        mac: Some("02:00:00:00:00:07".into()),
        ips: vec!["10.1.0.7/24".into()],
        ..RuntimeConfig::default()
    };
    let runtime = json!({
        "portMappings": [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}],
        "bandwidth": {"IngressRate": 1000, "IngressBurst": 4294967295u32},
        "dns": {"Servers": ["10.96.0.10"], "Searches": ["svc.cluster.local"], "Options": ["ndots:5"]},
        "io.kubernetes.cri.pod-annotations": {"A": "b"}
    });
    let runtime = runtime.as_object().unwrap();
    let inv = Invocation {
        runtime_capabilities: Some(runtime),
        ..f.invocation(&config, &rc)
    };
    f.executor().add(&inv).await.unwrap();
    assert_eq!(
        serde_json::to_string(&f.stdin("p1", "ADD")["runtimeConfig"]).unwrap(),
        r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}],"mac":"02:00:00:00:00:07","dns":{"servers":["10.96.0.10"],"searches":["svc.cluster.local"],"options":["ndots:5"]}}"#
    );

    // Nothing declared → no runtimeConfig key added (the plugin's own one is kept).
    let plain = conf(r#"{"cniVersion":"1.0.0","name":"two","type":"p1"}"#);
    let inv = Invocation {
        runtime_capabilities: Some(runtime),
        ..f.invocation(&plain, &rc)
    };
    f.executor().add(&inv).await.unwrap();
    assert!(f.stdin("p1", "ADD").get("runtimeConfig").is_none());
}

#[tokio::test]
async fn cni_versions_list_picks_the_highest_supported() {
    let f = Fixture::new();
    f.result_plugin("p1", r#"{"cniVersion":"1.1.0"}"#);
    let config = conflist(
        r#"{"cniVersion":"0.4.0","cniVersions":["0.4.0","1.1.0","9.0.0"],"name":"v","plugins":[{"type":"p1"}]}"#,
    );
    let rc = RuntimeConfig::default();
    f.executor().add(&f.invocation(&config, &rc)).await.unwrap();
    assert_eq!(f.stdin("p1", "ADD")["cniVersion"], "1.1.0");
}

#[test]
fn legacy_cache_files_are_bare_results() {
    let entry = cache::Entry::parse(P2_RESULT.as_bytes()).unwrap();
    assert!(entry.kind.is_empty());
    assert_eq!(entry.cni_result("1.0.0").unwrap().unwrap().ips.len(), 1);
    assert!(cache::Entry::parse(b"[]").is_err());
}
