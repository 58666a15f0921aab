//! The CNI verbs over a whole conf/conflist, with libcni's list semantics
//! (`libcni/api.go`): ADD in order with `prevResult` chaining and the result cached at the
//! end; DEL in reverse with the cached result, cache removed on success; CHECK in order
//! (≥ 0.4.0); STATUS (≥ 1.1.0); GC deleting stale cached attachments then running GC on
//! every plugin, collecting all errors; VERSION probing cached per binary.

use std::future::Future;
use std::path::{Path, PathBuf};

use plexus_core::cni::{self, version};
use plexus_core::plan::DelegateConfig;
use serde_json::{Map, Value};
use tracing::Instrument;

use super::cache;
use super::error::{Error, Result};
use super::exec::{self, Env, Output, Runner};
use super::netconf::{self, NetworkList};
use super::{AddOutput, Executor, GcAttachment, Invocation};

/// A list read and its binaries resolved, with everything an invocation needs.
struct Prepared {
    list: NetworkList,
    binaries: Vec<PathBuf>,
    cni_args: Vec<(String, String)>,
    capability_args: Map<String, Value>,
}

/// Runs one plugin execution (`work`) in its `delegate` span and records its outcome.
async fn traced<T>(
    plugin_type: &str,
    command: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let step = crate::observe::StepSpan::new(crate::observe::delegate_span(plugin_type, command));
    let result = work.instrument(step.span()).await;
    step.finish(
        result
            .as_ref()
            .err()
            .map(|e| (crate::error::delegate_reason(e), crate::error::chain(e))),
    );
    result
}

impl Executor {
    /// The delegate config read, with the host-local lease root applied
    /// ([`NetworkList::set_ipam_data_dir`]) for every verb alike, so DEL finds what ADD made.
    fn network_list(&self, config: &DelegateConfig) -> Result<NetworkList> {
        let mut list = NetworkList::parse(config)?;
        list.set_ipam_data_dir(self.config.ipam_data_dir.as_deref())?;
        Ok(list)
    }

    fn runner(&self) -> Runner {
        Runner {
            timeout: self.config.timeout,
            busy_retries: self.config.busy_retries,
            busy_retry_delay: self.config.busy_retry_delay,
            host_netns: self.config.host_netns.clone(),
        }
    }

    fn cni_path(&self) -> String {
        let dirs: Vec<String> = self
            .config
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    fn resolve(&self, list: &NetworkList) -> Result<Vec<PathBuf>> {
        list.plugins
            .iter()
            .map(|p| exec::find_plugin(&p.plugin_type, &self.config.bin_dirs))
            .collect()
    }

    fn prepare(&self, inv: &Invocation<'_>) -> Result<Prepared> {
        let list = self.network_list(inv.config)?;
        // The container id and the interface name are valid by their types.
        let binaries = self.resolve(&list)?;
        let mut args = cni::CniArgs::new();
        let pairs = [
            (cni::IGNORE_UNKNOWN, "1"),
            ("K8S_POD_NAMESPACE", inv.pod.namespace.as_str()),
            ("K8S_POD_NAME", inv.pod.name.as_str()),
            ("K8S_POD_INFRA_CONTAINER_ID", inv.container_id.as_str()),
            ("K8S_POD_UID", inv.pod.uid.as_str()),
        ];
        let extra = inv
            .extra_cni_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        for (k, v) in pairs.into_iter().chain(extra) {
            args.set(k, v).map_err(|error| Error::CniArgs {
                network: list.name.to_string(),
                error,
            })?;
        }
        Ok(Prepared {
            capability_args: netconf::capability_args(inv.runtime_capabilities, inv.runtime_config),
            cni_args: args.pairs().to_vec(),
            binaries,
            list,
        })
    }

    fn env(&self, command: &'static str, inv: &Invocation<'_>, p: &Prepared) -> Env {
        Env {
            command,
            container_id: inv.container_id.to_string(),
            netns: inv
                .netns
                .map(|n| n.display().to_string())
                .unwrap_or_default(),
            ifname: inv.ifname.to_string(),
            args: render_args(&p.cni_args),
            path: self.cni_path(),
        }
    }

    /// ADD: runs the chain in order, each plugin getting the previous result (converted to
    /// the list's version) as `prevResult`; stops at the first error. On success the final
    /// result is written to the cache. On failure nothing is undone: call [`Executor::del`].
    pub async fn add(&self, inv: &Invocation<'_>) -> Result<AddOutput> {
        let p = self.prepare(inv)?;
        if self.config.probe_versions {
            for (plugin, binary) in p.list.plugins.iter().zip(&p.binaries) {
                let info = self.version_of(&plugin.plugin_type, binary).await?;
                if !info.supports(&p.list.cni_version) {
                    return Err(Error::IncompatibleVersion {
                        plugin: plugin.plugin_type.clone(),
                        version: p.list.cni_version.clone(),
                        supported: info.supported_versions,
                    });
                }
            }
        }
        let env = self.env("ADD", inv, &p);
        let runner = self.runner();
        let mut last: Option<(cni::Result, Output)> = None;
        for (plugin, binary) in p.list.plugins.iter().zip(&p.binaries) {
            let prev = match &last {
                Some((r, _)) => Some(netconf::prev_result_value(&p.list, r)?),
                None => None,
            };
            let stdin = plugin.stdin(&p.list, prev.as_ref(), &p.capability_args);
            let step = async {
                let out = runner
                    .run(&plugin.plugin_type, binary, &env, &stdin)
                    .await?;
                let result =
                    cni::Result::parse(&out.stdout, &p.list.cni_version).map_err(|error| {
                        Error::BadResult {
                            plugin: plugin.plugin_type.clone(),
                            verb: "ADD",
                            error,
                        }
                    })?;
                Ok((result, out))
            };
            last = Some(traced(&plugin.plugin_type, "ADD", step).await?);
        }
        let Some((result, out)) = last else {
            return Err(Error::InvalidConfig {
                network: p.list.name.to_string(),
                reason: "no plugins".to_owned(),
            });
        };
        let mut entry = cache::Entry {
            kind: cache::KIND_V1.to_owned(),
            container_id: inv.container_id.to_string(),
            config: inv.config.bytes.clone(),
            if_name: inv.ifname.to_string(),
            network_name: p.list.name.to_string(),
            netns: env.netns.clone(),
            cni_args: p.cni_args.clone(),
            capability_args: match cache::sort_keys(Value::Object(p.capability_args.clone())) {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            result: None,
        };
        entry.set_result(&result);
        crate::state::blocking(|| cache::write(&self.config.cache_dir, &entry))?;
        Ok(AddOutput {
            result,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    /// The `prevResult` for DEL/CHECK: the caller's, else the cached one. A cache file
    /// that is missing or unreadable means no `prevResult` (logged), never a skipped DEL.
    fn prev_for(&self, inv: &Invocation<'_>, p: &Prepared) -> Result<Option<Value>> {
        if let Some(r) = inv.prev_result {
            return netconf::prev_result_value(&p.list, r).map(Some);
        }
        let cached = match cache::read(
            &self.config.cache_dir,
            &p.list.name,
            inv.container_id,
            inv.ifname,
        ) {
            Ok(Some(Ok(entry))) => entry.cni_result(&p.list.cni_version),
            Ok(None) => None,
            Ok(Some(Err(reason))) => {
                tracing::warn!(network = %p.list.name, container = %inv.container_id, %reason, "corrupt cni cache file, running without prevResult");
                None
            }
            Err(e) => {
                tracing::warn!(network = %p.list.name, error = %e, "unreadable cni cache file, running without prevResult");
                None
            }
        };
        match cached {
            Some(Ok(r)) => Ok(netconf::prev_result_value(&p.list, &r).ok()),
            Some(Err(e)) => {
                tracing::warn!(network = %p.list.name, error = %e, "cached cni result does not parse, running without prevResult");
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// DEL: runs the chain in reverse with the cached (or given) result as `prevResult`
    /// (spec ≥ 0.4.0), stops at the first error, and removes the cache file on success.
    /// A missing cache file is fine: deleting what is already gone is the plugins' job.
    pub async fn del(&self, inv: &Invocation<'_>) -> Result<()> {
        let p = self.prepare(inv)?;
        let with_prev = version::at_least(&p.list.cni_version, "0.4.0").unwrap_or(false);
        let prev = if with_prev {
            self.prev_for(inv, &p)?
        } else {
            None
        };
        let env = self.env("DEL", inv, &p);
        let runner = self.runner();
        for (plugin, binary) in p.list.plugins.iter().zip(&p.binaries).rev() {
            let stdin = plugin.stdin(&p.list, prev.as_ref(), &p.capability_args);
            let run = runner.run(&plugin.plugin_type, binary, &env, &stdin);
            traced(&plugin.plugin_type, "DEL", run).await?;
        }
        crate::state::blocking(|| {
            cache::remove(
                &self.config.cache_dir,
                &p.list.name,
                inv.container_id,
                inv.ifname,
            )
        })
    }

    /// CHECK: runs the chain in order with the cached (or given) result. Configs older
    /// than 0.4.0 are refused; `disableCheck` makes it a no-op.
    pub async fn check(&self, inv: &Invocation<'_>) -> Result<()> {
        let p = self.prepare(inv)?;
        if !version::at_least(&p.list.cni_version, "0.4.0").unwrap_or(false) {
            return Err(Error::VerbUnsupported {
                network: p.list.name.to_string(),
                version: p.list.cni_version,
                verb: "CHECK",
            });
        }
        if p.list.disable_check {
            return Ok(());
        }
        let prev = self.prev_for(inv, &p)?;
        let env = self.env("CHECK", inv, &p);
        let runner = self.runner();
        for (plugin, binary) in p.list.plugins.iter().zip(&p.binaries) {
            let stdin = plugin.stdin(&p.list, prev.as_ref(), &p.capability_args);
            let run = runner.run(&plugin.plugin_type, binary, &env, &stdin);
            traced(&plugin.plugin_type, "CHECK", run).await?;
        }
        Ok(())
    }

    /// STATUS: asks every plugin whether it is ready; a no-op before spec 1.1.0. The
    /// plugin's error (code 50/51) comes back as [`Error::Plugin`].
    pub async fn status(&self, config: &DelegateConfig) -> Result<()> {
        let list = self.network_list(config)?;
        if !version::at_least(&list.cni_version, "1.1.0").unwrap_or(false) {
            return Ok(());
        }
        let binaries = self.resolve(&list)?;
        let env = Env {
            command: "STATUS",
            path: self.cni_path(),
            ..Env::default()
        };
        let runner = self.runner();
        for (plugin, binary) in list.plugins.iter().zip(&binaries) {
            let stdin = plugin.stdin(&list, None, &Map::new());
            let run = runner.run(&plugin.plugin_type, binary, &env, &stdin);
            traced(&plugin.plugin_type, "STATUS", run).await?;
        }
        Ok(())
    }

    /// GC (libcni ≥ 1.2 `GCNetworkList`): DELs every cached attachment of this network
    /// that is not in `valid`, then (spec ≥ 1.1.0) runs GC on every plugin with
    /// `cni.dev/valid-attachments`. All failures are collected into [`Error::Gc`].
    pub async fn gc(&self, config: &DelegateConfig, valid: &[GcAttachment]) -> Result<()> {
        let list = self.network_list(config)?;
        if list.disable_gc {
            return Ok(());
        }
        let binaries = self.resolve(&list)?;
        let mut errors = Vec::new();
        for entry in cache::list(&self.config.cache_dir, None)? {
            if entry.network_name != list.name.as_str()
                || valid
                    .iter()
                    .any(|a| a.container_id == entry.container_id && a.ifname == entry.if_name)
            {
                continue;
            }
            if let Err(e) = self.del_stale(config, &entry).await {
                errors.push(e);
            }
        }
        if version::at_least(&list.cni_version, "1.1.0").unwrap_or(false) {
            let attachments = serde_json::to_value(valid).unwrap_or_default();
            let env = Env {
                command: "GC",
                path: self.cni_path(),
                ..Env::default()
            };
            let runner = self.runner();
            for (plugin, binary) in list.plugins.iter().zip(&binaries) {
                let mut object: Map<String, Value> =
                    serde_json::from_slice(&plugin.stdin(&list, None, &Map::new()))
                        .unwrap_or_default();
                object.insert("cni.dev/valid-attachments".into(), attachments.clone());
                object.insert("cni.dev/attachments".into(), attachments.clone());
                let stdin = serde_json::to_vec(&object).unwrap_or_default();
                let run = runner.run(&plugin.plugin_type, binary, &env, &stdin);
                if let Err(e) = traced(&plugin.plugin_type, "GC", run).await {
                    errors.push(e);
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Gc {
                network: list.name.to_string(),
                errors,
            })
        }
    }

    /// DEL of a stale cached attachment with what the cache remembers.
    async fn del_stale(&self, config: &DelegateConfig, entry: &cache::Entry) -> Result<()> {
        let arg = |key: &str| {
            entry
                .cni_args
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        let pod = plexus_core::pod::PodIdentity::new(
            arg("K8S_POD_NAMESPACE"),
            arg("K8S_POD_NAME"),
            arg("K8S_POD_UID"),
        );
        let known = [
            "IgnoreUnknown",
            "K8S_POD_NAMESPACE",
            "K8S_POD_NAME",
            "K8S_POD_INFRA_CONTAINER_ID",
            "K8S_POD_UID",
        ];
        let extra: Vec<(String, String)> = entry
            .cni_args
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .cloned()
            .collect();
        let netns = (!entry.netns.is_empty()).then(|| Path::new(&entry.netns));
        let requested = plexus_core::plan::RuntimeConfig::default();
        // Read from disk: checked like any caller's.
        let (_, container_id, ifname) = cache::entry_names(entry)?;
        let inv = Invocation {
            container_id: &container_id,
            netns,
            ifname: &ifname,
            pod: &pod,
            config,
            runtime_config: &requested,
            runtime_capabilities: Some(&entry.capability_args),
            extra_cni_args: &extra,
            prev_result: None,
        };
        self.del(&inv).await
    }

    /// VERSION of a plugin type (cached per binary and modification time).
    pub async fn version(&self, plugin_type: &str) -> Result<cni::VersionInfo> {
        let binary = exec::find_plugin(plugin_type, &self.config.bin_dirs)?;
        self.version_of(plugin_type, &binary).await
    }

    async fn version_of(&self, plugin: &str, binary: &Path) -> Result<cni::VersionInfo> {
        let mtime = std::fs::metadata(binary).and_then(|m| m.modified()).ok();
        let key = (binary.to_owned(), mtime);
        if let Some(info) = self.lock_versions().get(&key) {
            return Ok(info.clone());
        }
        let env = Env {
            command: "VERSION",
            netns: "dummy".into(),
            ifname: "dummy".into(),
            path: "dummy".into(),
            ..Env::default()
        };
        let stdin = format!(r#"{{"cniVersion":"{}"}}"#, version::CURRENT);
        let runner = self.runner();
        let run = runner.run(plugin, binary, &env, stdin.as_bytes());
        let info = match traced(plugin, "VERSION", run).await {
            Ok(out) => cni::VersionInfo::parse(&out.stdout).map_err(|error| Error::BadResult {
                plugin: plugin.to_owned(),
                verb: "VERSION",
                error,
            })?,
            // Pre-VERSION plugins answer this; libcni then assumes 0.1.0 (`GetVersionInfo`).
            Err(Error::Plugin { error, .. })
                if error.msg.contains("unknown CNI_COMMAND: VERSION") =>
            {
                cni::VersionInfo::legacy()
            }
            Err(e) => return Err(e),
        };
        self.lock_versions().insert(key, info.clone());
        Ok(info)
    }

    fn lock_versions(&self) -> std::sync::MutexGuard<'_, super::VersionCache> {
        // A poisoned map only holds finished answers; keep using it.
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `K=V;K=V` (the pairs were validated when they were collected).
fn render_args(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}
