//! Building the API client: `nadSource.kubernetes` settings, a kubeconfig when one is given,
//! the in-cluster service account otherwise, and a bearer token that follows its file.
//!
//! Bound service-account tokens expire (an hour by default; the kubelet rewrites the projected
//! file at 80% of the lifetime). kube-rs re-reads a `tokenFile` about once a minute; plexus
//! instead checks the file's identity (inode, size, mtime — the kubelet swaps a symlinked
//! directory, which changes all three) before every request and re-reads it when it changed,
//! so a rotated token is used from the next request on. A failed re-read keeps the last token
//! (the file may be removed after start to limit exposure, kubernetes#68164).
//!
//! kube-rs's own retry layer is switched off: the watchers back off on their own and the
//! publisher and event queues own their retry policy, so a 429 or 503 is seen where it is
//! handled. This module does no other I/O.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use http::HeaderValue;
use kube::client::{Body, ClientBuilder};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::{Error, Result};

/// Longest accepted namespace list in `nadSource.kubernetes.namespaces`.
pub const MAX_NAMESPACES: usize = 64;

/// `nadSource.kubernetes` of the daemon config, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeSettings {
    /// A kubeconfig file; `None`: the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces whose NADs are watched; empty: all namespaces (one cluster-wide watch).
    pub namespaces: Vec<String>,
    /// This node's name (pods are watched with `spec.nodeName=<node>`).
    pub node_name: String,
}

impl KubeSettings {
    /// Settings with the node name from `NODE_NAME`, else the hostname, and the namespaces
    /// checked with [`validate_namespaces`].
    pub fn new(kubeconfig: Option<PathBuf>, namespaces: Vec<String>) -> Result<Self> {
        Ok(Self {
            kubeconfig,
            namespaces: validate_namespaces(namespaces)?,
            node_name: node_name()?,
        })
    }
}

/// Checks `nadSource.kubernetes.namespaces`: at most [`MAX_NAMESPACES`], each a DNS label
/// (RFC 1123, at most 63 characters); duplicates are removed, order kept.
pub fn validate_namespaces(namespaces: Vec<String>) -> Result<Vec<String>> {
    if namespaces.len() > MAX_NAMESPACES {
        return Err(Error::InvalidSettings {
            field: "namespaces",
            reason: format!(
                "{} namespaces listed; at most {MAX_NAMESPACES} are accepted (leave the list empty to watch all namespaces)",
                namespaces.len()
            ),
        });
    }
    let mut checked: Vec<String> = Vec::with_capacity(namespaces.len());
    for ns in namespaces {
        if !is_dns_label(&ns) {
            return Err(Error::InvalidSettings {
                field: "namespaces",
                reason: format!(
                    "{:?} is not a namespace name; accepted: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
                    shorten(&ns, 80)
                ),
            });
        }
        if !checked.contains(&ns) {
            checked.push(ns);
        }
    }
    Ok(checked)
}

/// This node's name: `NODE_NAME` (set from `spec.nodeName` by the DaemonSet's downward API),
/// else the hostname. It must be a DNS subdomain (at most 253 characters).
pub fn node_name() -> Result<String> {
    let name = match std::env::var("NODE_NAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => nix::unistd::gethostname()
            .map_err(|e| Error::InvalidSettings {
                field: "nodeName",
                reason: format!("NODE_NAME is not set and the hostname cannot be read: {e}"),
            })?
            .to_string_lossy()
            .into_owned(),
    };
    if !is_dns_subdomain(&name) {
        return Err(Error::InvalidSettings {
            field: "nodeName",
            reason: format!(
                "node name {:?} (from NODE_NAME or the hostname) is not a DNS subdomain; set NODE_NAME from spec.nodeName",
                shorten(&name, 80)
            ),
        });
    }
    Ok(name)
}

/// Connects as the settings say: the kubeconfig's current context, or the in-cluster service
/// account. Nothing is sent yet; the first request shows whether the cluster answers.
pub async fn connect(settings: &KubeSettings) -> Result<kube::Client> {
    let config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig {
                path: path.clone(),
                cause: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::Kubeconfig {
                    path: path.clone(),
                    cause: e.to_string(),
                })?
        }
        None => kube::Config::incluster().map_err(|e| Error::InCluster {
            cause: e.to_string(),
        })?,
    };
    client_from_config(config)
}

/// Builds the client of a kube-rs config with the rules of this module (token file followed,
/// no hidden retries).
pub fn client_from_config(mut config: kube::Config) -> Result<kube::Client> {
    config.default_retry = false;
    let token = match (&config.auth_info.token, config.auth_info.token_file.take()) {
        (None, Some(file)) => Some(TokenFile::open(Path::new(&file))?),
        (Some(_), Some(file)) => {
            // An inline token takes precedence, as in kubectl; keep kube-rs's choice.
            config.auth_info.token_file = Some(file);
            None
        }
        _ => None,
    };
    let builder = ClientBuilder::try_from(config).map_err(|e| Error::BuildClient {
        cause: e.to_string(),
    })?;
    Ok(match token {
        Some(token) => builder
            .with_layer(&tower::util::MapRequestLayer::new(
                move |mut req: http::Request<Body>| {
                    if let Some(value) = token.header() {
                        req.headers_mut().insert(http::header::AUTHORIZATION, value);
                    }
                    req
                },
            ))
            .build(),
        None => builder.build(),
    })
}

/// A bearer token read from a file, re-read when the file changes.
#[derive(Debug, Clone)]
struct TokenFile {
    path: PathBuf,
    state: Arc<Mutex<TokenState>>,
}

#[derive(Debug)]
struct TokenState {
    stamp: Option<Stamp>,
    header: Option<HeaderValue>,
}

/// What tells a rewritten file: inode, size, mtime (metadata follows symlinks).
type Stamp = (u64, u64, Option<SystemTime>);

impl TokenFile {
    /// Reads the token once; a missing or empty file at start is an error.
    fn open(path: &Path) -> Result<Self> {
        let file = TokenFile {
            path: path.to_path_buf(),
            state: Arc::new(Mutex::new(TokenState {
                stamp: None,
                header: None,
            })),
        };
        if file.header().is_none() {
            return Err(Error::BuildClient {
                cause: format!(
                    "the token file {} cannot be read or holds no token",
                    path.display()
                ),
            });
        }
        Ok(file)
    }

    /// The `Authorization` value, from the file as it is now (one `stat` per call; the file
    /// is read again only when it changed). A failed read keeps the last token.
    fn header(&self) -> Option<HeaderValue> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = stamp(&self.path);
        if stamp.is_some()
            && stamp != state.stamp
            && let Some(header) = read_token(&self.path)
        {
            state.header = Some(header);
            state.stamp = stamp;
        }
        state.header.clone()
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()))
}

/// Longest token file read (bound tokens are ~1 KiB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

fn read_token(path: &Path) -> Option<HeaderValue> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_TOKEN_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    let token = text.trim();
    if token.is_empty() {
        return None;
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(crate) fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_chars(s)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of any length.
fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS subdomain as the API server checks object names (apimachinery
/// `IsDNS1123Subdomain`): dot-separated labels, at most 253 characters in all (the API does
/// not limit each label to 63 here).
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_chars)
}

/// Shortens user text for messages.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_must_be_dns_labels_and_are_deduplicated() {
        let s = validate_namespaces(vec!["a".into(), "kube-system".into(), "a".into()]).unwrap();
        assert_eq!(s, ["a", "kube-system"]);
        for bad in ["", "Upper", "-x", "a_b", &"n".repeat(64)] {
            let err = validate_namespaces(vec![bad.to_string()]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("nadSource.kubernetes.namespaces: "),
                "{err}"
            );
        }
        let many = (0..=MAX_NAMESPACES).map(|i| format!("n{i}")).collect();
        assert!(validate_namespaces(many).is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("node-1.example.com"));
        assert!(!is_dns_subdomain("node_1"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn the_token_follows_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let token = TokenFile::open(&path).unwrap();
        assert_eq!(token.header().unwrap(), "Bearer first");
        // The kubelet replaces the file (a new inode); so does this.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second-token").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(token.header().unwrap(), "Bearer second-token");
        // A vanished or empty file keeps the last token.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(token.header().unwrap(), "Bearer second-token");
        std::fs::write(&path, "").unwrap();
        assert_eq!(token.header().unwrap(), "Bearer second-token");
    }

    #[test]
    fn a_missing_token_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = TokenFile::open(&dir.path().join("absent")).unwrap_err();
        assert!(err.to_string().contains("token file"), "{err}");
    }
}
