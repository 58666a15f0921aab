//! The libcni result cache, in libcni's own format so `cnitool`, containerd and Multus
//! tooling keep reading it: `<cache dir>/results/<network>-<container id>-<ifname>`,
//! directory 0700, file 0600, JSON `{"kind":"cniCacheV1","containerId","config"(base64 of
//! the raw config bytes),"ifName","networkName","netns","cniArgs","capabilityArgs","result"}`.
//! Map-typed fields (`capabilityArgs`, `result`) have their keys sorted, as Go writes maps.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use plexus_core::cni;
use plexus_core::id::{InterfaceName, NetworkName, SandboxId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Error, Result};

/// The `kind` of a current cache file.
pub const KIND_V1: &str = "cniCacheV1";

/// One cache file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Always [`KIND_V1`].
    pub kind: String,
    /// Container (sandbox) id.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The raw config bytes (base64 on disk).
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    /// Interface name.
    #[serde(rename = "ifName")]
    pub if_name: String,
    /// Network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// Netns path (libcni ≥ 1.2).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// `CNI_ARGS` pairs.
    #[serde(rename = "cniArgs", default, skip_serializing_if = "Vec::is_empty")]
    pub cni_args: Vec<(String, String)>,
    /// Capability args offered to the plugins (keys sorted on write).
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty"
    )]
    pub capability_args: Map<String, Value>,
    /// The final result, as the last plugin returned it (its own version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Recursively sorts object keys, as Go's `json.Marshal` of a `map[string]interface{}`.
pub fn sort_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut pairs: Vec<(String, Value)> = map.into_iter().collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(pairs.into_iter().map(|(k, v)| (k, sort_keys(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

impl Entry {
    /// Stores the final result, keys sorted as Go writes a map.
    pub fn set_result(&mut self, result: &cni::Result) {
        self.result = result.to_value(&result.cni_version).ok().map(sort_keys);
    }

    /// Parses a cache file. A file whose `kind` is not [`KIND_V1`] is a bare legacy
    /// result (libcni's rule); it comes back with only `result` set.
    pub fn parse(bytes: &[u8]) -> std::result::Result<Entry, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if value.get("kind").and_then(Value::as_str) == Some(KIND_V1) {
            return serde_json::from_value(value).map_err(|e| e.to_string());
        }
        if !value.is_object() {
            return Err("not a JSON object".to_owned());
        }
        Ok(Entry {
            kind: String::new(),
            container_id: String::new(),
            config: Vec::new(),
            if_name: String::new(),
            network_name: String::new(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: Some(value),
        })
    }

    /// The cached result, parsed (its own version; `fallback_version` when unlabelled).
    pub fn cni_result(
        &self,
        fallback_version: &str,
    ) -> Option<std::result::Result<cni::Result, cni::Error>> {
        let value = self.result.as_ref()?;
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Some(cni::Result::parse(&bytes, fallback_version))
    }

    /// The file text.
    pub fn render(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The cache file path of one attachment. Every part is a plain name by its type, so no
/// caller can name a file outside `<cache_dir>/results`.
pub fn path(
    cache_dir: &Path,
    network: &NetworkName,
    container_id: &SandboxId,
    if_name: &InterfaceName,
) -> PathBuf {
    cache_dir
        .join("results")
        .join(format!("{network}-{container_id}-{if_name}"))
}

/// The path of an entry read back or built elsewhere: its container id and interface name
/// are checked by the same rules as everywhere (an entry names them as plain text).
fn entry_path(cache_dir: &Path, entry: &Entry) -> Result<PathBuf> {
    let (network, id, ifname) = entry_names(entry)?;
    Ok(path(cache_dir, &network, &id, &ifname))
}

/// An entry's network, container id and interface name, checked by the rules of their
/// types.
pub(crate) fn entry_names(entry: &Entry) -> Result<(NetworkName, SandboxId, InterfaceName)> {
    let arg = |what, error: plexus_core::Error| Error::InvalidArgument {
        what,
        network: entry.network_name.clone(),
        error: Box::new(cni::PluginError::new(
            cni::ErrorCode::INVALID_ENVIRONMENT,
            error.to_string(),
            "",
        )),
    };
    let network =
        NetworkName::new(entry.network_name.as_str()).map_err(|error| Error::InvalidConfig {
            network: entry.network_name.clone(),
            reason: error.to_string(),
        })?;
    let id = SandboxId::new(entry.container_id.as_str()).map_err(|e| arg("container id", e))?;
    let ifname =
        InterfaceName::new(entry.if_name.as_str()).map_err(|e| arg("interface name", e))?;
    Ok((network, id, ifname))
}

/// Writes an entry (directory 0700, file 0600, via a fsynced temporary file, a rename and
/// a directory fsync: a reader never sees half a file, a power loss never loses it).
pub fn write(cache_dir: &Path, entry: &Entry) -> Result<PathBuf> {
    let file = entry_path(cache_dir, entry)?;
    let err = |source| Error::Cache {
        path: file.clone(),
        source,
    };
    let dir = cache_dir.join("results");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(err)?;
    let tmp = dir.join(temp_name(
        std::process::id(),
        file.file_name().unwrap_or_default(),
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(entry.render().as_bytes()).map_err(err)?;
    crate::state::fsync(&f).map_err(err)?;
    std::fs::rename(&tmp, &file).map_err(err)?;
    // The rename itself survives a power loss only once the directory is synced.
    crate::state::sync_dir(&dir).map_err(err)?;
    Ok(file)
}

/// The name of [`write`]'s temp file for the cache file `name`: `.tmp-{pid}-{name}`.
pub(crate) fn temp_name(pid: u32, name: &std::ffi::OsStr) -> std::ffi::OsString {
    let mut tmp = std::ffi::OsString::from(format!(".tmp-{pid}-"));
    tmp.push(name);
    tmp
}

/// True when `name` is one of [`write`]'s temp files: `.tmp-`, a decimal pid, `-` and a
/// non-empty name. libcni writes its cache files in place, so none of its files match.
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(".tmp-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, file)| {
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !file.is_empty()
        })
}

/// Removes the temp files [`write`] left in `<cache_dir>/results` when a process was killed
/// between write and rename (only names matching [`is_temp_name`]); returns their paths.
/// Only safe while nobody writes there: at start, under the state-dir lock.
pub fn remove_stale_temp_files(cache_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::state::remove_matching(&cache_dir.join("results"), is_temp_name)
}

/// Reads an entry; `Ok(None)` when the file does not exist. A file that exists but does
/// not parse is reported as `Err(reason)` inside the `Ok`, so callers decide.
pub fn read(
    cache_dir: &Path,
    network: &NetworkName,
    container_id: &SandboxId,
    if_name: &InterfaceName,
) -> Result<Option<std::result::Result<Entry, String>>> {
    let file = path(cache_dir, network, container_id, if_name);
    match std::fs::read(&file) {
        Ok(bytes) => Ok(Some(Entry::parse(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Cache { path: file, source }),
    }
}

/// Removes an entry; a missing file is not an error.
pub fn remove(
    cache_dir: &Path,
    network: &NetworkName,
    container_id: &SandboxId,
    if_name: &InterfaceName,
) -> Result<()> {
    let file = path(cache_dir, network, container_id, if_name);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Cache { path: file, source }),
    }
}

/// Every parseable v1 entry in the cache (invalid and legacy files are skipped, as
/// libcni's `GetCachedAttachments` does), optionally only those of one container.
pub fn list(cache_dir: &Path, container_id: Option<&str>) -> Result<Vec<Entry>> {
    let dir = cache_dir.join("results");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Cache { path: dir, source }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().as_encoded_bytes().starts_with(b".tmp-") {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        let Ok(parsed) = Entry::parse(&bytes) else {
            continue;
        };
        if parsed.kind != KIND_V1 || parsed.container_id.is_empty() || parsed.if_name.is_empty() {
            continue;
        }
        if container_id.is_some_and(|id| id != parsed.container_id) {
            continue;
        }
        out.push(parsed);
    }
    out.sort_by(|a, b| {
        (&a.network_name, &a.container_id, &a.if_name).cmp(&(
            &b.network_name,
            &b.container_id,
            &b.if_name,
        ))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(id: &str) -> SandboxId {
        SandboxId::new(id).unwrap()
    }

    fn ifn(name: &str) -> InterfaceName {
        InterfaceName::new(name).unwrap()
    }

    #[test]
    fn no_path_is_built_from_a_part_that_could_leave_the_results_dir() {
        let dir = Path::new("/var/lib/cni");
        let net = NetworkName::new("net-a").unwrap();
        assert_eq!(
            path(dir, &net, &sid("sb1"), &ifn("net1")),
            Path::new("/var/lib/cni/results/net-a-sb1-net1")
        );
        // Every part is valid by its type; what could leave the directory cannot be one.
        for network in ["../x", "a/b", "", ".", ".."] {
            assert!(NetworkName::new(network).is_err(), "{network:?}");
        }
    }

    #[test]
    fn an_entry_naming_a_bad_container_or_interface_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let good = Entry {
            kind: KIND_V1.to_owned(),
            container_id: "sb1".to_owned(),
            config: b"{}".to_vec(),
            if_name: "net1".to_owned(),
            network_name: "net-a".to_owned(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: None,
        };
        write(dir.path(), &good).unwrap();
        for (network, id, ifname) in [
            ("net-a", "../../../tmp/x", "net1"),
            ("net-a", "/tmp/x", "net1"),
            ("net-a", "", "net1"),
            ("net-a", "sb1", "a/b"),
            ("net-a", "sb1", ".."),
            ("net-a", "sb1", "way-too-long-ifname"),
            ("../x", "sb1", "net1"),
            ("a/b", "sb1", "net1"),
            ("..", "sb1", "net1"),
        ] {
            let bad = Entry {
                network_name: network.to_owned(),
                container_id: id.to_owned(),
                if_name: ifname.to_owned(),
                ..good.clone()
            };
            let err = write(dir.path(), &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidArgument { .. } | Error::InvalidConfig { .. }
                ),
                "{network:?} {id:?} {ifname:?}: {err}"
            );
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["net-a-sb1-net1"]);
    }
}
