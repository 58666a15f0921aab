//! One forwarded CNI invocation, read and validated: the verb, the `CNI_*` environment, the
//! pod identity from `CNI_ARGS`, the pod annotations from containerd's
//! `io.kubernetes.cri.pod-annotations` capability, the runtime's other capability args and
//! the wrapped primary config embedded by the generated conflist. Pure: no I/O.
//!
//! Every failure is a CNI error object with libcni's code for it (4 invalid environment,
//! 6 decode failure, 7 invalid network config), naming what was wrong and what is accepted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use plexus_core::cni::{self, CniArgs, ErrorCode, PluginError};
use plexus_core::id::InterfaceName;
use plexus_core::pod::PodIdentity;
use serde_json::{Map, Value};

/// Largest stdin accepted (a conflist with an embedded primary is a few KiB).
pub const MAX_STDIN: usize = 1 << 20;
/// Largest value of one environment variable accepted.
const MAX_ENV_VALUE: usize = 64 << 10;

/// The capability key under which containerd passes the pod's annotations.
pub const POD_ANNOTATIONS: &str = "io.kubernetes.cri.pod-annotations";
/// The key of the generated plugin config that holds the wrapped primary network.
pub const DELEGATE_KEY: &str = "delegate";
/// The key of the generated plugin config naming the readiness indicator file.
pub const READINESS_KEY: &str = "readinessIndicatorFile";

/// A CNI verb the daemon serves (VERSION is answered too, though the shim answers it itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Set the pod up.
    Add,
    /// Tear the pod down.
    Del,
    /// Check the pod's networks.
    Check,
    /// Is the network ready.
    Status,
    /// Remove what the runtime no longer uses.
    Gc,
    /// Supported spec versions.
    Version,
}

impl Verb {
    fn parse(text: &str) -> Result<Verb, PluginError> {
        Ok(match text {
            "ADD" => Verb::Add,
            "DEL" => Verb::Del,
            "CHECK" => Verb::Check,
            "STATUS" => Verb::Status,
            "GC" => Verb::Gc,
            "VERSION" => Verb::Version,
            other => {
                return Err(PluginError::new(
                    ErrorCode::INVALID_ENVIRONMENT,
                    "unknown CNI_COMMAND",
                    format!("{other:?}; accepted: ADD, DEL, CHECK, STATUS, GC, VERSION"),
                ));
            }
        })
    }

    /// The verb as it appears in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
            Verb::Status => "STATUS",
            Verb::Gc => "GC",
            Verb::Version => "VERSION",
        }
    }
}

/// A forwarded CNI invocation, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `CNI_COMMAND`.
    pub verb: Verb,
    /// `CNI_CONTAINERID` (the sandbox id); empty for STATUS, GC and VERSION.
    pub container_id: String,
    /// `CNI_NETNS`; `None` when empty (DEL after the netns is gone).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (`eth0` when absent on a verb that does not need it).
    pub ifname: InterfaceName,
    /// The pod from `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_UID`.
    pub pod: PodIdentity,
    /// The config's `cniVersion`: results and errors are labelled with it.
    pub cni_version: String,
    /// The pod annotations, when the runtime passed them.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The runtime's other capability args (portMappings, bandwidth, dns, ...).
    pub capabilities: Map<String, Value>,
    /// The wrapped primary network (a conf or conflist object), when the config embeds one.
    pub wrapped: Option<Value>,
    /// `readinessIndicatorFile` of the config, when set.
    pub readiness_file: Option<PathBuf>,
    /// GC: the container ids the runtime still uses (`cni.dev/valid-attachments`).
    pub valid_containers: Vec<String>,
}

fn invalid_env(msg: &str, details: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::INVALID_ENVIRONMENT, msg, details)
}

fn decode(msg: &str, details: impl Into<String>) -> PluginError {
    PluginError::new(ErrorCode::DECODING_FAILURE, msg, details)
}

impl Call {
    /// Reads a forwarded invocation. `env` is the shim's `CNI_*` environment.
    pub fn parse(env: &HashMap<String, String>, stdin: &[u8]) -> Result<Call, PluginError> {
        if let Some((key, _)) = env.iter().find(|(_, v)| v.len() > MAX_ENV_VALUE) {
            return Err(invalid_env(
                "environment variable too long",
                format!("{key} is longer than {MAX_ENV_VALUE} bytes"),
            ));
        }
        let get = |key: &str| env.get(key).map(String::as_str).unwrap_or("");
        let verb = Verb::parse(get("CNI_COMMAND"))?;
        if stdin.len() > MAX_STDIN {
            return Err(decode(
                "config too large",
                format!(
                    "stdin is {} bytes; at most {MAX_STDIN} accepted",
                    stdin.len()
                ),
            ));
        }
        let config: Map<String, Value> = match serde_json::from_slice(stdin) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(decode("config is not a JSON object", "")),
            // VERSION ignores stdin (skel); a broken one still gets an answer.
            Err(_) if verb == Verb::Version => Map::new(),
            Err(e) => return Err(decode("config is not JSON", e.to_string())),
        };
        let cni_version = match config.get("cniVersion") {
            Some(Value::String(v)) => v.clone(),
            None => cni::version::IMPLICIT.to_owned(),
            Some(_) => return Err(decode("cniVersion must be a string", "")),
        };
        if verb != Verb::Version && !cni::version::is_supported(&cni_version) {
            return Err(PluginError::new(
                ErrorCode::INCOMPATIBLE_VERSION,
                "unsupported CNI version",
                format!(
                    "{cni_version:?}; accepted: {}",
                    cni::version::SUPPORTED.join(", ")
                ),
            ));
        }
        let per_container = matches!(verb, Verb::Add | Verb::Del | Verb::Check);
        let container_id = get("CNI_CONTAINERID").to_owned();
        if per_container {
            cni::validate::container_id(&container_id)?;
        }
        let ifname = match get("CNI_IFNAME") {
            "" if per_container => return Err(invalid_env("missing CNI_IFNAME", "")),
            "" => "eth0".to_owned(),
            name => name.to_owned(),
        };
        if per_container {
            cni::validate::ifname(&ifname)?;
        }
        // Checked above by the same rule where it matters; a verb that names no
        // interface gets eth0 for a name it never uses.
        let ifname = InterfaceName::new(ifname).unwrap_or_else(|_| InterfaceName::eth0());
        let netns = Some(get("CNI_NETNS"))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        if matches!(verb, Verb::Add | Verb::Check) {
            match &netns {
                None => return Err(invalid_env("missing CNI_NETNS", "")),
                Some(p) if !p.is_absolute() => {
                    return Err(PluginError::new(
                        ErrorCode::INVALID_NETNS,
                        "CNI_NETNS must be an absolute path",
                        p.display().to_string(),
                    ));
                }
                Some(_) => {}
            }
        }
        let args = CniArgs::parse(get("CNI_ARGS"))
            .map_err(|e| invalid_env("invalid CNI_ARGS", e.to_string()))?;
        let arg = |k: &str| args.get(k).unwrap_or("").to_owned();
        let pod = PodIdentity {
            namespace: arg("K8S_POD_NAMESPACE"),
            name: arg("K8S_POD_NAME"),
            uid: arg("K8S_POD_UID"),
        };
        if verb == Verb::Add && (pod.namespace.is_empty() || pod.name.is_empty()) {
            return Err(invalid_env(
                "CNI_ARGS lacks the pod",
                "K8S_POD_NAMESPACE and K8S_POD_NAME are required on ADD (a Kubernetes runtime passes them)",
            ));
        }
        let mut capabilities = match config.get("runtimeConfig") {
            Some(Value::Object(map)) => map.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => return Err(decode("runtimeConfig must be an object", "")),
        };
        let annotations = match capabilities.remove(POD_ANNOTATIONS) {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(
                map.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k, s)),
                        _ => Err(decode(
                            "pod annotation values must be strings",
                            format!("{POD_ANNOTATIONS}: {k}"),
                        )),
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()?,
            ),
            Some(_) => {
                return Err(decode(
                    "pod annotations must be an object of strings",
                    POD_ANNOTATIONS,
                ));
            }
        };
        let wrapped = match config.get(DELEGATE_KEY) {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => {
                return Err(PluginError::new(
                    ErrorCode::INVALID_NETWORK_CONFIG,
                    "the wrapped primary network must be a conf or conflist object",
                    DELEGATE_KEY,
                ));
            }
        };
        let readiness_file = match config.get(READINESS_KEY) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) if s.starts_with('/') => Some(PathBuf::from(s)),
            Some(_) => {
                return Err(PluginError::new(
                    ErrorCode::INVALID_NETWORK_CONFIG,
                    "readinessIndicatorFile must be an absolute path",
                    "",
                ));
            }
        };
        let valid_containers = match (verb, config.get("cni.dev/valid-attachments")) {
            (Verb::Gc, Some(Value::Array(list))) => list
                .iter()
                .filter_map(|a| a.get("containerID")?.as_str().map(str::to_owned))
                .collect(),
            (Verb::Gc, None) => Vec::new(),
            (Verb::Gc, Some(_)) => {
                return Err(decode("cni.dev/valid-attachments must be a list", ""));
            }
            _ => Vec::new(),
        };
        Ok(Call {
            verb,
            container_id,
            netns,
            ifname,
            pod,
            cni_version,
            annotations,
            capabilities,
            wrapped,
            readiness_file,
            valid_containers,
        })
    }
}
