//! containerd adapter of plexusd: lists the pod sandboxes the CRI plugin runs in one
//! containerd namespace (`k8s.io`), with what adopting them needs — pod identity,
//! annotations and network namespace — through containerd's own API (the
//! `containerd-client` crate), read-only.
//!
//! On the NRI path the runtime tells plexus its live pods (Synchronize). On the CNI shim
//! path nothing does: a pod started before plexusd was installed is known only to
//! containerd. For each sandbox container (label `io.cri-containerd.kind=sandbox`):
//! - its task must be running (the pause process; a stopped sandbox has no network left);
//! - identity and annotations come from the CRI plugin's metadata extension (see
//!   [`metadata`]); a sandbox without readable metadata is skipped, never guessed at;
//! - the netns is the path the CRI plugin gave CNI (`/var/run/netns/cni-…`), or, when it
//!   recorded none, `/proc/<task pid>/ns/net`; a host-network pod is reported with none.
//!
//! Everything returned is as containerd says it: the caller validates ids and paths at its
//! edge like any other input. The listing is bounded: one streamed container at a time,
//! at most [`MAX_SANDBOXES`], the whole call within the configured timeout.

pub mod created;
pub mod metadata;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{Container, GetRequest, ListContainersRequest};
use containerd_client::tonic::{Code, Request, transport::Channel};
use containerd_client::types::v1::Status as TaskStatus;
use futures::StreamExt;

/// The namespace the CRI plugin keeps Kubernetes' containers in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The label that marks a CRI pod sandbox container.
const KIND_LABEL: &str = "io.cri-containerd.kind";

/// The filter selecting sandbox containers (containerd's filter syntax).
const SANDBOX_FILTER: &str = "labels.\"io.cri-containerd.kind\"==sandbox";

/// Most sandboxes read in one listing (a node runs at most a few hundred pods).
pub const MAX_SANDBOXES: usize = 10_000;

/// Largest message accepted from containerd: one container with its OCI spec and CRI
/// metadata.
const MAX_MESSAGE: usize = 4 << 20;

/// Where and how to ask containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// containerd's gRPC socket (`/run/containerd/containerd.sock`; k3s:
    /// `/run/k3s/containerd/containerd.sock`).
    pub socket: PathBuf,
    /// The containerd namespace of the CRI plugin.
    pub namespace: String,
    /// Bound on one whole listing.
    pub timeout: Duration,
}

/// A running pod sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The sandbox id (the CNI container id).
    pub id: String,
    /// Pod name, namespace and uid, as the kubelet gave them.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid.
    pub uid: String,
    /// The pod's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The pod's network namespace; empty for a host-network pod.
    pub netns: PathBuf,
    /// The pause process.
    pub pid: u32,
}

/// One listing: the running sandboxes, and those passed over with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Running sandboxes with readable metadata.
    pub sandboxes: Vec<Sandbox>,
    /// `"<id>: <why>"` for each sandbox container not reported (not running, unreadable
    /// metadata, …).
    pub skipped: Vec<String>,
}

/// Why containerd could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No socket at the configured path.
    #[error(
        "no containerd socket at {}: set containerd.socket to the runtime's socket (k3s: /run/k3s/containerd/containerd.sock), or leave containerd.socket unset (no adoption on the shim path, no early setup on the NRI path; chart: plexusd.adoptThroughContainerd / plexusd.earlySetup false)",
        socket.display()
    )]
    NoSocket {
        /// The configured socket.
        socket: PathBuf,
    },
    /// The socket did not answer.
    #[error("connecting to containerd at {}: {source}", socket.display())]
    Connect {
        /// The configured socket.
        socket: PathBuf,
        /// The transport's error.
        source: containerd_client::tonic::transport::Error,
    },
    /// A call failed.
    #[error("containerd {call}: {}: {}", status.code(), status.message())]
    Call {
        /// Which call.
        call: &'static str,
        /// containerd's answer.
        status: Box<containerd_client::tonic::Status>,
    },
    /// The listing took longer than allowed.
    #[error("listing containerd's sandboxes took longer than {timeout:?}")]
    Timeout {
        /// The configured bound.
        timeout: Duration,
    },
    /// More sandboxes than any node runs.
    #[error(
        "containerd lists more than {MAX_SANDBOXES} sandboxes; not adopting from a listing that large"
    )]
    TooMany,
    /// The namespace is not a valid gRPC header value.
    #[error("containerd namespace {0:?} is not a valid namespace name")]
    Namespace(String),
}

/// Lists the running pod sandboxes of `config.namespace`, within `config.timeout`.
pub async fn list_sandboxes(config: &Config) -> Result<Listing, Error> {
    match tokio::time::timeout(config.timeout, list(config)).await {
        Ok(result) => result,
        Err(_) => Err(Error::Timeout {
            timeout: config.timeout,
        }),
    }
}

async fn list(config: &Config) -> Result<Listing, Error> {
    let channel = connect(&config.socket).await?;
    let namespace = config.namespace.as_str();
    let mut containers =
        ContainersClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
    let mut tasks = TasksClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut stream = containers
        .list_stream(namespaced(
            ListContainersRequest {
                filters: vec![SANDBOX_FILTER.to_owned()],
            },
            namespace,
        )?)
        .await
        .map_err(|s| call("Containers.ListStream", s))?
        .into_inner();
    let mut listing = Listing::default();
    let mut seen = 0usize;
    while let Some(message) = stream.next().await {
        let message = message.map_err(|s| call("Containers.ListStream", s))?;
        let Some(container) = message.container else {
            continue;
        };
        seen += 1;
        if seen > MAX_SANDBOXES {
            return Err(Error::TooMany);
        }
        // The filter is containerd's; check the label again rather than trust it.
        if container.labels.get(KIND_LABEL).map(String::as_str) != Some("sandbox") {
            continue;
        }
        let task = tasks
            .get(namespaced(
                GetRequest {
                    container_id: container.id.clone(),
                    exec_id: String::new(),
                },
                namespace,
            )?)
            .await;
        let process = match task {
            Ok(answer) => answer.into_inner().process,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(call("Tasks.Get", status)),
        };
        match sandbox(&container, process.map(|p| (p.pid, p.status))) {
            Ok(found) => listing.sandboxes.push(found),
            Err(why) => listing
                .skipped
                .push(format!("{}: {why}", shown(&container.id))),
        }
    }
    Ok(listing)
}

/// A sandbox container and its task's (pid, status) as a [`Sandbox`], or why not.
fn sandbox(container: &Container, task: Option<(u32, i32)>) -> Result<Sandbox, String> {
    let pid = match task {
        None => return Err("no task: the sandbox is not running".to_owned()),
        Some((pid, status)) if status == TaskStatus::Running as i32 && pid > 0 => pid,
        Some((_, status)) => {
            let status = TaskStatus::try_from(status)
                .map(|s| s.as_str_name().to_owned())
                .unwrap_or_else(|_| status.to_string());
            return Err(format!("its task is {status}, not RUNNING"));
        }
    };
    let extension = container
        .extensions
        .get(metadata::EXTENSION)
        .ok_or_else(|| format!("no CRI metadata ({})", metadata::EXTENSION))?;
    let cri = metadata::parse(&extension.value)?;
    let netns = if cri.host_network {
        PathBuf::new()
    } else if cri.netns.is_empty() {
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    } else {
        PathBuf::from(&cri.netns)
    };
    Ok(Sandbox::of(&container.id, cri, netns, pid))
}

impl Sandbox {
    /// Sandbox `id` from its CRI metadata, with its netns and pause process.
    fn of(id: &str, cri: metadata::CriSandbox, netns: PathBuf, pid: u32) -> Sandbox {
        Sandbox {
            id: id.to_owned(),
            name: cri.name,
            namespace: cri.namespace,
            uid: cri.uid,
            annotations: cri.annotations,
            netns,
            pid,
        }
    }
}

async fn connect(socket: &Path) -> Result<Channel, Error> {
    if !socket.exists() {
        return Err(Error::NoSocket {
            socket: socket.to_owned(),
        });
    }
    containerd_client::connect(socket)
        .await
        .map_err(|source| Error::Connect {
            socket: socket.to_owned(),
            source,
        })
}

/// `message` with containerd's namespace header.
fn namespaced<T>(message: T, namespace: &str) -> Result<Request<T>, Error> {
    let mut request = Request::new(message);
    let value = namespace
        .parse()
        .map_err(|_| Error::Namespace(namespace.to_owned()))?;
    request.metadata_mut().insert("containerd-namespace", value);
    Ok(request)
}

fn call(call: &'static str, status: containerd_client::tonic::Status) -> Error {
    Error::Call {
        call,
        status: Box::new(status),
    }
}

/// An id from containerd in a message: escaped, at most 80 characters.
fn shown(id: &str) -> String {
    let head: String = id.chars().take(80).collect();
    format!("{head:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Any;

    /// A sandbox container with the CRI metadata `meta` (also used by `created`'s tests).
    pub(crate) fn container(meta: Option<&str>) -> Container {
        let mut c = Container {
            id: "sb1".to_owned(),
            ..Default::default()
        };
        c.labels.insert(KIND_LABEL.to_owned(), "sandbox".to_owned());
        if let Some(json) = meta {
            c.extensions.insert(
                metadata::EXTENSION.to_owned(),
                Any {
                    type_url: "github.com/containerd/containerd/pkg/cri/store/sandbox/Metadata"
                        .to_owned(),
                    value: json.as_bytes().to_vec(),
                },
            );
        }
        c
    }

    fn meta(netns: &str, network: i32) -> String {
        serde_json::json!({"Version": "v1", "Metadata": {
            "Config": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                       "linux": {"security_context": {"namespace_options": {"network": network}}}},
            "NetNSPath": netns}})
        .to_string()
    }

    const RUNNING: i32 = TaskStatus::Running as i32;

    #[test]
    fn the_netns_is_the_cri_path_then_the_pause_process_then_none_for_host_network() {
        let got = sandbox(
            &container(Some(&meta("/var/run/netns/cni-9", 0))),
            Some((42, RUNNING)),
        );
        assert_eq!(got.unwrap().netns, PathBuf::from("/var/run/netns/cni-9"));
        let got = sandbox(&container(Some(&meta("", 0))), Some((42, RUNNING))).unwrap();
        assert_eq!(got.netns, PathBuf::from("/proc/42/ns/net"));
        assert_eq!((got.name.as_str(), got.pid), ("p", 42));
        let got = sandbox(&container(Some(&meta("", 2))), Some((42, RUNNING))).unwrap();
        assert_eq!(got.netns, PathBuf::new());
    }

    #[test]
    fn a_sandbox_not_running_or_without_metadata_is_passed_over_with_why() {
        let c = container(Some(&meta("/var/run/netns/cni-9", 0)));
        assert!(sandbox(&c, None).unwrap_err().contains("not running"));
        let stopped = sandbox(&c, Some((42, TaskStatus::Stopped as i32))).unwrap_err();
        assert!(stopped.contains("STOPPED"), "{stopped}");
        let bare = sandbox(&container(None), Some((42, RUNNING))).unwrap_err();
        assert!(bare.contains("no CRI metadata"), "{bare}");
        let broken = sandbox(&container(Some("{")), Some((42, RUNNING))).unwrap_err();
        assert!(broken.starts_with("CRI metadata:"), "{broken}");
    }

    #[test]
    fn a_namespace_that_cannot_be_a_header_is_refused() {
        assert!(matches!(
            namespaced((), "k8s\nio"),
            Err(Error::Namespace(_))
        ));
        assert!(namespaced((), CRI_NAMESPACE).is_ok());
    }

    #[tokio::test]
    async fn a_missing_socket_says_which_setting_to_change() {
        let config = Config {
            socket: PathBuf::from("/nonexistent/plexus-test/containerd.sock"),
            namespace: CRI_NAMESPACE.to_owned(),
            timeout: Duration::from_secs(1),
        };
        let err = list_sandboxes(&config).await.unwrap_err().to_string();
        assert!(err.contains("containerd.socket"), "{err}");
        assert!(err.contains("/run/k3s/containerd/containerd.sock"), "{err}");
    }
}
