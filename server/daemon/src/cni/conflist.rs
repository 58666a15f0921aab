//! The runtime CNI config plexus generates (`00-plexus.conflist`), as pure functions: which
//! file in the runtime's conf dir is the primary it wraps, and the bytes written for it.
//!
//! Rules (each has a test): the primary is the lexically first `*.conf`, `*.conflist` or
//! `*.json` other than plexus's own files, hidden files and backup files; nothing is
//! generated unless it parses as a conf (top-level `type`) or conflist (non-empty
//! `plugins`) with a `cniVersion`; the generated list has the primary's `cniVersion`, one
//! plugin `plexus-cni` whose `capabilities` are the union of the primary's `true`
//! capabilities plus `io.kubernetes.cri.pod-annotations`, plexusd's socket, the DEL spool
//! and the primary embedded verbatim under `delegate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::request::{DELEGATE_KEY, POD_ANNOTATIONS, READINESS_KEY};

/// The generated file's name: sorts before any usual primary (`05-cilium.conflist`, ...).
pub const OWN_FILE: &str = "00-plexus.conflist";
/// The network name of the generated list.
pub const NETWORK_NAME: &str = "plexus";
/// The shim's plugin type (its binary name in the CNI bin dir).
pub const SHIM_TYPE: &str = "plexus-cni";
/// Largest primary config read.
pub const MAX_PRIMARY: u64 = 1 << 20;

/// What the generated config tells the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// plexusd's socket.
    pub socket: PathBuf,
    /// Where the shim spools DELs while plexusd is down.
    pub spool_dir: PathBuf,
    /// The readiness indicator file, if configured.
    pub readiness_file: Option<PathBuf>,
}

/// Why no config can be generated from a primary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The primary is not a JSON object.
    #[error("primary CNI config {file} is not a JSON object: {reason}")]
    NotJson {
        /// The primary's file name.
        file: String,
        /// The parse error.
        reason: String,
    },
    /// The primary lacks something a runtime needs.
    #[error("primary CNI config {file} is unusable: {reason}")]
    Unusable {
        /// The primary's file name.
        file: String,
        /// What is missing; what is accepted.
        reason: String,
    },
}

/// True for a file name the runtime would load as a network config (libcni `ConfFiles`
/// with `.conf`, `.conflist`, `.json`) that is neither plexus's own, hidden, nor a backup.
pub fn is_candidate(name: &str) -> bool {
    let config_ext = [".conf", ".conflist", ".json"]
        .iter()
        .any(|ext| name.ends_with(ext));
    let backup = [".bak", ".orig", ".old", ".save", ".dpkg-old", ".dpkg-dist"]
        .iter()
        .any(|b| name.contains(b))
        || name.ends_with('~');
    config_ext && !backup && !name.starts_with('.') && !name.starts_with("00-plexus")
}

/// The primary among `names`: the lexically first candidate.
pub fn select_primary<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names.into_iter().filter(|n| is_candidate(n)).min()
}

/// The generated conflist for the primary file `file` with content `bytes`.
pub fn generate(file: &str, bytes: &[u8], settings: &Settings) -> Result<Vec<u8>, GenerateError> {
    let unusable = |reason: &str| GenerateError::Unusable {
        file: file.to_owned(),
        reason: reason.to_owned(),
    };
    let primary: Map<String, Value> = match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(GenerateError::NotJson {
                file: file.to_owned(),
                reason: "not an object".to_owned(),
            });
        }
        Err(e) => {
            return Err(GenerateError::NotJson {
                file: file.to_owned(),
                reason: e.to_string(),
            });
        }
    };
    let version = match primary.get("cniVersion") {
        Some(Value::String(v)) if plexus_core::cni::version::is_supported(v) => v.clone(),
        Some(Value::String(v)) => {
            return Err(unusable(&format!(
                "cniVersion {v:?} is not one of {}",
                plexus_core::cni::version::SUPPORTED.join(", ")
            )));
        }
        _ => return Err(unusable("no \"cniVersion\" string")),
    };
    if !matches!(primary.get("name"), Some(Value::String(n)) if !n.is_empty()) {
        return Err(unusable("no \"name\""));
    }
    let mut capabilities: BTreeMap<String, bool> = BTreeMap::new();
    let mut collect = |plugin: &Map<String, Value>| {
        if let Some(Value::Object(caps)) = plugin.get("capabilities") {
            for (cap, on) in caps {
                if on.as_bool() == Some(true) {
                    capabilities.insert(cap.clone(), true);
                }
            }
        }
    };
    match (primary.get("type"), primary.get("plugins")) {
        (Some(Value::String(t)), _) if !t.is_empty() => collect(&primary),
        (_, Some(Value::Array(plugins))) if !plugins.is_empty() => {
            for plugin in plugins {
                match plugin {
                    Value::Object(p) if matches!(p.get("type"), Some(Value::String(t)) if !t.is_empty()) => {
                        collect(p)
                    }
                    _ => return Err(unusable("a \"plugins\" entry has no \"type\"")),
                }
            }
        }
        _ => {
            return Err(unusable(
                "neither a conf with \"type\" nor a conflist with a non-empty \"plugins\" list",
            ));
        }
    }
    capabilities.insert(POD_ANNOTATIONS.to_owned(), true);
    let mut plugin = Map::new();
    plugin.insert("type".into(), SHIM_TYPE.into());
    plugin.insert("capabilities".into(), json!(capabilities));
    plugin.insert("socket".into(), path_value(&settings.socket));
    plugin.insert("spoolDir".into(), path_value(&settings.spool_dir));
    if let Some(file) = &settings.readiness_file {
        plugin.insert(READINESS_KEY.into(), path_value(file));
    }
    plugin.insert("delegateFile".into(), file.into());
    plugin.insert(DELEGATE_KEY.into(), Value::Object(primary));
    let list = json!({
        "cniVersion": version,
        "name": NETWORK_NAME,
        "plugins": [Value::Object(plugin)],
    });
    let mut out = serde_json::to_vec_pretty(&list).expect("a JSON value always serialises");
    out.push(b'\n');
    Ok(out)
}

fn path_value(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(readiness: bool) -> Settings {
        Settings {
            socket: "/run/plexus/plexus.sock".into(),
            spool_dir: "/var/lib/plexus/cni-spool".into(),
            readiness_file: readiness.then(|| "/run/flannel/subnet.env".into()),
        }
    }

    fn golden(name: &str, got: &[u8]) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/cni/golden")
            .join(name);
        if std::env::var_os("PLEXUS_BLESS").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(String::from_utf8_lossy(got), want, "golden {name}");
    }

    const BRIDGE_CONFLIST: &str = r#"{"cniVersion":"1.0.0","name":"cbr0","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}},{"type":"portmap","capabilities":{"portMappings":true}},{"type":"bandwidth","capabilities":{"bandwidth":true,"portMappings":false}}]}"#;
    const FLANNEL_CONF: &str = r#"{"cniVersion":"0.3.1","name":"cbr0","type":"flannel","delegate":{"isDefaultGateway":true},"capabilities":{"dns":true}}"#;

    #[test]
    fn a_conflist_primary_is_wrapped_with_the_union_of_its_capabilities() {
        let got = generate(
            "10-bridge.conflist",
            BRIDGE_CONFLIST.as_bytes(),
            &settings(false),
        );
        golden("bridge.conflist", &got.unwrap());
    }

    #[test]
    fn a_conf_primary_keeps_its_version_and_the_readiness_file_is_passed() {
        let got = generate("10-flannel.conf", FLANNEL_CONF.as_bytes(), &settings(true));
        golden("flannel.conflist", &got.unwrap());
    }

    #[test]
    fn the_primary_is_embedded_verbatim() {
        let got = generate(
            "10-bridge.conflist",
            BRIDGE_CONFLIST.as_bytes(),
            &settings(false),
        );
        let v: Value = serde_json::from_slice(&got.unwrap()).unwrap();
        let embedded = &v["plugins"][0][DELEGATE_KEY];
        let original: Value = serde_json::from_str(BRIDGE_CONFLIST).unwrap();
        assert_eq!(embedded, &original);
        assert_eq!(v["cniVersion"], "1.0.0");
    }

    #[test]
    fn nothing_is_generated_from_an_unusable_primary() {
        let s = settings(false);
        for (bytes, why) in [
            ("", "not a JSON object"),
            ("{\"cniVersion\":", "not a JSON object"),
            ("[]", "not a JSON object"),
            (r#"{"name":"x","type":"bridge"}"#, "no \"cniVersion\""),
            (
                r#"{"cniVersion":"9.9.9","name":"x","type":"bridge"}"#,
                "is not one of",
            ),
            (r#"{"cniVersion":"1.0.0","type":"bridge"}"#, "no \"name\""),
            (r#"{"cniVersion":"1.0.0","name":"x"}"#, "neither a conf"),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
                "neither a conf",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{}]}"#,
                "has no \"type\"",
            ),
        ] {
            let err = generate("10-x.conf", bytes.as_bytes(), &s)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bytes}: {err}");
            assert!(err.contains("10-x.conf"), "{err}");
        }
    }

    #[test]
    fn the_primary_is_the_first_config_that_is_not_ours_hidden_or_a_backup() {
        let names = [
            "99-loopback.conf",
            "00-plexus.conflist",
            "00-plexus.conflist.tmp",
            ".00-plexus.tmp",
            "05-cilium.conflist.bak",
            "05-cilium.conflist~",
            "07-weave.conf.orig",
            "README",
            "10-calico.conflist",
            "10-bridge.conflist",
            "multus.d",
        ];
        assert_eq!(select_primary(names), Some("10-bridge.conflist"));
        assert_eq!(select_primary(["00-plexus.conflist", "x.txt"]), None);
        assert_eq!(
            select_primary(["50-a.json", "60-b.conf"]),
            Some("50-a.json")
        );
    }
}
