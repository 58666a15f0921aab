//! Teardown without a readable record: what the libcni cache, the host-local leases and
//! the link group still say about a sandbox.

use std::path::PathBuf;

use plexus_core::id::{InterfaceName, SandboxId};
use plexus_core::plan::{ConfigForm, DelegateConfig, NetworkSource, Origin, PlannedAttachment};
use plexus_core::pod::PodIdentity;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{Error, Result, chain};
use crate::exec::ExecRequest;
use crate::ipam;
use crate::observe::{Call, Op, Outcome};
use crate::state::Driver;
use crate::teardown::{TeardownReport, open_pod};

/// Interfaces a fallback teardown never touches: the runtime's own (`lo`, and `eth0`
/// which the runtime's CNI tears down itself).
const RUNTIME_INTERFACES: &[&str] = &["lo", "eth0"];

impl Engine {
    /// Teardown without a readable record: libcni cache entries, host-local leases and
    /// the link group, each naming the sandbox. The unreadable record is kept aside as
    /// `<id>.json.corrupt` for inspection.
    pub(crate) async fn teardown_fallback(
        &self,
        sandbox_id: &SandboxId,
        call: Call,
    ) -> Result<TeardownReport> {
        // The netns held since the setup is let go when this teardown ends.
        let held = self.inner.held.take(sandbox_id);
        let path = self.inner.store.path(sandbox_id);
        let raw = std::fs::read(&path).unwrap_or_default();
        let netns = salvage_netns(&raw);
        tracing::warn!(%sandbox_id, record = %path.display(), "state record unreadable; tearing down from what can be found");
        let mut report = TeardownReport {
            known: true,
            fallback: true,
            ..Default::default()
        };
        let pod = match &netns {
            Some(p) => open_pod(p).await,
            None => None,
        };
        let dhcp = crate::ipam::dhcp::LeaseStore::new(&self.inner.cfg.dhcp_lease_dir);
        crate::ipam::dhcp::release_sandbox(&dhcp, sandbox_id.as_str(), held.as_ref()).await;
        match (&netns, &pod) {
            (Some(_), Some(pod)) => {
                if let Err(e) = pod.delete_group(self.inner.cfg.link_group).await {
                    report.unresolved.push(format!("link group delete: {e}"));
                }
            }
            (Some(p), None) => tracing::info!(netns = %p.display(), "pod netns already gone"),
            (None, _) => report
                .unresolved
                .push("pod netns path unknown: native links left to the netns removal".into()),
        }
        let pod_identity = PodIdentity::default();
        let cache = crate::delegate_exec::cached_entries(&self.inner.cfg, sandbox_id.as_str());
        match cache {
            Ok(entries) => {
                for entry in entries {
                    if RUNTIME_INTERFACES.contains(&entry.if_name.as_str()) {
                        continue;
                    }
                    // Listed by its file name, which the cache only gives to valid names.
                    let Ok(ifname) = InterfaceName::new(entry.if_name.as_str()) else {
                        report.unresolved.push(format!(
                            "cache entry of {} with an invalid interface name",
                            entry.network_name
                        ));
                        continue;
                    };
                    let att = attachment_from_cache(
                        &entry.network_name,
                        ifname,
                        entry.config,
                        entry.cni_args,
                    );
                    let prev = entry
                        .result
                        .and_then(|v| serde_json::from_value::<plexus_core::cni::Result>(v).ok());
                    let req = ExecRequest {
                        sandbox_id,
                        pod: &pod_identity,
                        netns: pod.as_ref().and(netns.as_deref()),
                        attachment: &att,
                        prev_result: prev.as_ref(),
                    };
                    let step = self.track(
                        "detach",
                        Op::Teardown,
                        call,
                        &att.network,
                        &att.interface,
                        Driver::Exec,
                    );
                    let deleted = self
                        .inner
                        .exec
                        .del(req)
                        .instrument(step.span())
                        .await
                        .map_err(|source| Error::Delegate {
                            verb: "DEL",
                            network: att.network.clone(),
                            interface: att.interface.to_string(),
                            source,
                        });
                    step.finish(&deleted, Outcome::Ok);
                    match deleted {
                        Ok(()) => report.removed.push(att.interface.to_string()),
                        Err(e) => report.unresolved.push(chain(&e)),
                    }
                }
            }
            Err(e) => report
                .unresolved
                .push(format!("libcni cache: {}", chain(&e))),
        }
        let dir = self.inner.cfg.ipam_data_dir.clone();
        let id = sandbox_id.to_string();
        let span = tracing::Span::current();
        let released = tokio::task::spawn_blocking(move || {
            span.in_scope(|| ipam::release_all_for_container(&dir, &id, RUNTIME_INTERFACES))
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?;
        match released {
            Ok(list) => {
                for (dir, ip, ifname) in list {
                    tracing::info!(lease = %dir.join(&ip).display(), ifname, "released lease of unreadable sandbox");
                    if !report.removed.contains(&ifname) {
                        report.removed.push(ifname);
                    }
                }
            }
            Err(e) => report
                .unresolved
                .push(format!("host-local leases: {}", chain(&e))),
        }
        report
            .unresolved
            .push("host-local leases under a config's own dataDir and moved host devices cannot be found without the record".into());
        for u in &report.unresolved {
            tracing::warn!(%sandbox_id, "fallback teardown: {u}");
        }
        let aside = PathBuf::from(format!("{}.corrupt", path.display()));
        if let Err(e) = std::fs::rename(&path, &aside) {
            tracing::warn!(error = %e, "could not move the unreadable record aside");
        }
        Ok(report)
    }
}

/// Best-effort: the `"netns":"…"` value of a damaged record.
fn salvage_netns(raw: &[u8]) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(raw);
    let start = text.find("\"netns\":\"")? + "\"netns\":\"".len();
    let end = text[start..].find('"')? + start;
    let p = &text[start..end];
    (!p.is_empty() && !p.contains('\\')).then(|| PathBuf::from(p))
}

fn attachment_from_cache(
    network: &str,
    ifname: InterfaceName,
    bytes: Vec<u8>,
    cni_args: Vec<(String, String)>,
) -> PlannedAttachment {
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let conflist = value.get("plugins").is_some_and(|p| p.is_array());
    let plugin_types = if conflist {
        value["plugins"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p["type"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        value["type"]
            .as_str()
            .map(|t| vec![t.to_string()])
            .unwrap_or_default()
    };
    PlannedAttachment {
        index: 0,
        network: network.to_string(),
        interface: ifname,
        origin: Origin::Annotation,
        primary: false,
        source: NetworkSource::File {
            path: String::new(),
        },
        config: DelegateConfig {
            form: if conflist {
                ConfigForm::Conflist
            } else {
                ConfigForm::Conf
            },
            name: network.to_string(),
            cni_version: value["cniVersion"].as_str().unwrap_or("").to_string(),
            plugin_types,
            bytes,
        },
        runtime_config: Default::default(),
        cni_args: None,
        extra_cni_args: cni_args
            .into_iter()
            .filter(|(k, _)| !k.starts_with("K8S_POD_") && k != "IgnoreUnknown")
            .collect(),
        default_route: None,
        route_plan: Default::default(),
        resource_name: None,
        force_exec: true,
        runtime_managed: false,
        release_on_teardown: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_is_salvaged_from_a_truncated_record() {
        let raw = br#"{"version":1,"sandbox_id":"x","pod":{"namespace":"a","name":"b","uid":""},"netns":"/var/run/netns/cni-1","attachments":[{"netw"#;
        assert_eq!(
            salvage_netns(raw),
            Some(PathBuf::from("/var/run/netns/cni-1"))
        );
        assert_eq!(salvage_netns(br#"{"version":1,"netns":"/var/ru"#), None);
        assert_eq!(salvage_netns(b""), None);
    }
}
