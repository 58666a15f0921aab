//! Differential test against the real Go plugins (no root needed): host-local from
//! `/usr/lib/cni` prints its result with libcni's own types in every version it supports;
//! parsing it and rendering it back in the same version must give the same JSON, key
//! order included (plugins indent their output, so both sides are compared compacted).

use super::*;

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

fn compact(bytes: &[u8]) -> String {
    let v: Value = serde_json::from_slice(bytes).unwrap();
    serde_json::to_string(&v).unwrap()
}

#[tokio::test]
async fn host_local_results_round_trip_byte_for_byte_in_every_version() {
    assert!(
        Path::new(HOST_LOCAL).is_file(),
        "{HOST_LOCAL} is missing: install the reference CNI plugins (containernetworking-plugins)"
    );
    let work = tempfile::tempdir().unwrap();
    let ex = Executor::new(Config::new(
        vec![PathBuf::from("/usr/lib/cni")],
        work.path().join("cache"),
    ));
    let pod = PodIdentity::new("default", "diff", "uid-diff");
    let rc = RuntimeConfig::default();
    for (n, v) in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
        .iter()
        .enumerate()
    {
        let text = json!({
            "cniVersion": v,
            "name": "diff",
            "type": "host-local",
            "ipam": {
                "type": "host-local",
                "dataDir": work.path().join("ipam"),
                "ranges": [[{"subnet": "10.88.0.0/24", "gateway": "10.88.0.1"}], [{"subnet": "fd88::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd88::1"}]
            }
        })
        .to_string();
        let config = conf(&text);
        let id = super::sid(&format!("diff{n}"));
        let ifname = super::ifn("eth0");
        let inv = Invocation {
            container_id: &id,
            netns: Some(Path::new("/nonexistent")),
            ifname: &ifname,
            pod: &pod,
            config: &config,
            runtime_config: &rc,
            runtime_capabilities: None,
            extra_cni_args: &[],
            prev_result: None,
        };
        let out = ex.add(&inv).await.unwrap();
        assert_eq!(out.result.cni_version, *v);
        assert_eq!(out.result.ips.len(), 2, "{v}: {:?}", out.result);
        assert_eq!(
            out.result.render(v).unwrap(),
            compact(&out.stdout),
            "version {v}"
        );
        ex.del(&inv).await.unwrap();
    }
}
