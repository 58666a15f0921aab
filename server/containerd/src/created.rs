//! Pod sandboxes as the CRI plugin creates them, from containerd's event stream, so plexusd
//! can start a pod's network setup before the runtime's NRI `RunPodSandbox` asks for it.
//!
//! containerd 1.7 runs a sandbox in this order, as its events show: the sandbox container
//! is created (`/containers/create`, no netns yet), the netns is made and its path written
//! into the container's CRI metadata (`/containers/update`), the runtime's CNI ADD runs and
//! the pod's IP is written (`/containers/update` again), runc creates the task, NRI
//! `RunPodSandbox` is called, the task starts. From the update with the IP until the hook,
//! the pod's identity, annotations, netns and eth0 are all in place: plexusd sets the pod
//! up in that window (about 90 ms in the e2e test) and the hook finds it done.
//!
//! Only `/containers/update` events of the configured namespace are asked for; those of
//! sandbox containers are told apart by the labels in the event itself, so the stream is
//! read without calling back. The caller then reads each such container back
//! ([`Inspector::inspect`], in its own task). Everything returned is as containerd says it:
//! the caller validates it.

use std::path::PathBuf;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetContainerRequest, GetRequest, SubscribeRequest};
use containerd_client::tonic::Streaming;
use containerd_client::tonic::transport::Channel;
use containerd_client::types::Envelope;
use containerd_client::types::v1::Status as TaskStatus;
use prost::Message;

use crate::{Config, Error, KIND_LABEL, MAX_MESSAGE, Sandbox, call, connect, metadata, namespaced};

/// The event topic of a changed container: the CRI plugin creates a sandbox container
/// without a netns, then writes the netns path into its metadata, then, once the runtime's
/// CNI ADD has finished, the pod's IP.
pub const TOPIC: &str = "/containers/update";

/// A `ContainerUpdate` event: the container id and its labels (fields 1 and 3).
#[derive(Clone, PartialEq, prost::Message)]
struct ContainerUpdate {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(map = "string, string", tag = "3")]
    labels: std::collections::HashMap<String, String>,
}

/// A subscription to the changes of sandbox containers in one namespace.
pub struct Created {
    events: Streaming<Envelope>,
    inspector: Inspector,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("namespace", &self.inspector.namespace)
            .finish_non_exhaustive()
    }
}

/// Reads a sandbox container back; cheap to clone, so each can run in its own task.
#[derive(Clone)]
pub struct Inspector {
    containers: ContainersClient<Channel>,
    tasks: TasksClient<Channel>,
    namespace: String,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Created {
    /// Subscribes to `/containers/update` in `config.namespace`, within `config.timeout`.
    pub async fn subscribe(config: &Config) -> Result<Created, Error> {
        let subscribed = async {
            let channel = connect(&config.socket).await?;
            let mut client =
                EventsClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
            let filter = format!("topic=={TOPIC:?},namespace=={:?}", config.namespace);
            let events = client
                .subscribe(SubscribeRequest {
                    filters: vec![filter],
                })
                .await
                .map_err(|s| call("Events.Subscribe", s))?
                .into_inner();
            Ok(Created {
                events,
                inspector: Inspector {
                    containers: ContainersClient::new(channel.clone())
                        .max_decoding_message_size(MAX_MESSAGE),
                    tasks: TasksClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
                    namespace: config.namespace.clone(),
                },
            })
        };
        match tokio::time::timeout(config.timeout, subscribed).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                timeout: config.timeout,
            }),
        }
    }

    /// What reads the changed sandboxes back.
    pub fn inspector(&self) -> Inspector {
        self.inspector.clone()
    }

    /// The id of the next sandbox container changed, from the event alone (no call to
    /// containerd, so the stream is read as fast as containerd sends it): `Ok(Some(Ok(id)))`,
    /// `Ok(Some(Err(why)))` for an event passed over (another container, unreadable),
    /// `Ok(None)` when containerd ended the stream, `Err` when it broke.
    pub async fn next(&mut self) -> Result<Option<Result<String, String>>, Error> {
        let Some(envelope) = self
            .events
            .message()
            .await
            .map_err(|s| call("Events.Subscribe", s))?
        else {
            return Ok(None);
        };
        Ok(Some(sandbox_changed(&envelope, &self.inspector.namespace)))
    }
}

/// The sandbox container id an event is about, or why it is passed over.
fn sandbox_changed(envelope: &Envelope, namespace: &str) -> Result<String, String> {
    // The filter is containerd's; check topic and namespace again rather than trust it.
    if envelope.topic != TOPIC || envelope.namespace != namespace {
        return Err(format!(
            "event {:?} in namespace {:?} was not asked for",
            envelope.topic, envelope.namespace
        ));
    }
    let event = envelope
        .event
        .as_ref()
        .ok_or_else(|| format!("a {TOPIC} event without a body"))?;
    let update = ContainerUpdate::decode(event.value.as_slice())
        .map_err(|e| format!("undecodable {TOPIC} event: {e}"))?;
    if update.labels.get(KIND_LABEL).map(String::as_str) != Some("sandbox") {
        return Err(format!("{}: not a pod sandbox", crate::shown(&update.id)));
    }
    Ok(update.id)
}

impl Inspector {
    /// Reads sandbox container `id` back: `Ok(Ok(sandbox))` while it is being created with
    /// its netns and the runtime's network in place (its task not made or not started yet),
    /// `Ok(Err(why))` otherwise, `Err` when containerd could not be asked.
    pub async fn inspect(&mut self, id: &str) -> Result<Result<Sandbox, String>, Error> {
        let got = self
            .containers
            .get(namespaced(
                GetContainerRequest { id: id.to_owned() },
                &self.namespace,
            )?)
            .await;
        let container = match got {
            Ok(answer) => answer.into_inner().container,
            // Removed again before it was read (a sandbox whose start failed).
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => None,
            Err(status) => return Err(call("Containers.Get", status)),
        };
        let Some(container) = container else {
            return Ok(Err(format!(
                "{}: gone before it was read",
                crate::shown(id)
            )));
        };
        if container.labels.get(KIND_LABEL).map(String::as_str) != Some("sandbox") {
            return Ok(Err(format!("{}: not a pod sandbox", crate::shown(id))));
        }
        let sandbox = match created_sandbox(&container) {
            Ok(sandbox) => sandbox,
            Err(why) => return Ok(Err(format!("{}: {why}", crate::shown(id)))),
        };
        // Only while it is being created: before its task exists or while the task is
        // CREATED (runc create has run; the runtime calls the NRI hook, then starts it). A
        // change of a running or stopped sandbox is never a reason to set it up.
        let task = self
            .tasks
            .get(namespaced(
                GetRequest {
                    container_id: id.to_owned(),
                    exec_id: String::new(),
                },
                &self.namespace,
            )?)
            .await;
        match task {
            Err(status) if status.code() == containerd_client::tonic::Code::NotFound => {
                Ok(Ok(sandbox))
            }
            Ok(answer) => {
                let status = answer.into_inner().process.map_or(-1, |p| p.status);
                if status == TaskStatus::Created as i32 {
                    return Ok(Ok(sandbox));
                }
                let status = TaskStatus::try_from(status)
                    .map(|s| s.as_str_name().to_owned())
                    .unwrap_or_else(|_| status.to_string());
                Ok(Err(format!(
                    "{}: its task is {status}, past creation",
                    crate::shown(id)
                )))
            }
            Err(status) => Err(call("Tasks.Get", status)),
        }
    }
}

/// A just-created sandbox container as a [`Sandbox`] (pid 0: its task does not exist yet).
/// Without a netns path in its metadata it has none to set up yet: passed over, as is a
/// host-network pod.
fn created_sandbox(
    container: &containerd_client::services::v1::Container,
) -> Result<Sandbox, String> {
    let extension = container
        .extensions
        .get(metadata::EXTENSION)
        .ok_or_else(|| format!("no CRI metadata ({})", metadata::EXTENSION))?;
    let cri = metadata::parse(&extension.value)?;
    if cri.host_network {
        return Err("a host-network pod".into());
    }
    if cri.netns.is_empty() {
        return Err("no netns path in its metadata yet".into());
    }
    // The runtime's primary network is still being added: its eth0 must be there first
    // (network-status describes it, and it is the one the hook would find).
    if cri.ip.is_empty() {
        return Err("the runtime's CNI ADD has not finished yet (no IP in its metadata)".into());
    }
    let netns = PathBuf::from(&cri.netns);
    Ok(Sandbox::of(&container.id, cri, netns, 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::services::v1::Container;
    use prost_types::Any;

    fn sandbox_container(meta: &serde_json::Value) -> Container {
        crate::tests::container(Some(&meta.to_string()))
    }

    fn meta(netns: &str, network: i32) -> serde_json::Value {
        serde_json::json!({"Version": "v1", "Metadata": {
            "Config": {"metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                       "annotations": {"k8s.v1.cni.cncf.io/networks": "mv"},
                       "linux": {"security_context": {"namespace_options": {"network": network}}}},
            "NetNSPath": netns, "IP": if netns.is_empty() { "" } else { "10.1.0.5" }}})
    }

    #[test]
    fn a_created_sandbox_carries_identity_annotations_and_netns() {
        let s = created_sandbox(&sandbox_container(&meta("/var/run/netns/cni-1", 0))).unwrap();
        assert_eq!(
            (s.id.as_str(), s.name.as_str(), s.namespace.as_str()),
            ("sb1", "p", "ns")
        );
        assert_eq!(s.uid, "u");
        assert_eq!(s.netns, PathBuf::from("/var/run/netns/cni-1"));
        assert_eq!(s.annotations["k8s.v1.cni.cncf.io/networks"], "mv");
        assert_eq!(s.pid, 0);
    }

    #[test]
    fn host_network_and_missing_netns_are_passed_over_with_why() {
        // NamespaceMode NODE = 2: the pod shares the node's network namespace.
        let host = created_sandbox(&sandbox_container(&meta("", 2))).unwrap_err();
        assert!(host.contains("host-network"), "{host}");
        let none = created_sandbox(&sandbox_container(&meta("", 0))).unwrap_err();
        assert!(none.contains("no netns path"), "{none}");
        let mut adding = meta("/var/run/netns/cni-1", 0);
        adding["Metadata"]["IP"] = "".into();
        let adding = created_sandbox(&sandbox_container(&adding)).unwrap_err();
        assert!(adding.contains("CNI ADD has not finished"), "{adding}");
        let mut bare = sandbox_container(&meta("/x", 0));
        bare.extensions.clear();
        let why = created_sandbox(&bare).unwrap_err();
        assert!(why.contains("no CRI metadata"), "{why}");
    }

    fn envelope(topic: &str, namespace: &str, kind: Option<&str>) -> Envelope {
        let mut update = ContainerUpdate {
            id: "sb1".to_owned(),
            labels: Default::default(),
        };
        if let Some(kind) = kind {
            update.labels.insert(KIND_LABEL.to_owned(), kind.to_owned());
        }
        Envelope {
            timestamp: None,
            namespace: namespace.to_owned(),
            topic: topic.to_owned(),
            event: Some(Any {
                type_url: "containerd.events.ContainerUpdate".to_owned(),
                value: update.encode_to_vec(),
            }),
        }
    }

    #[test]
    fn only_sandbox_updates_of_the_namespace_are_taken_from_the_event_alone() {
        assert_eq!(
            sandbox_changed(&envelope(TOPIC, "k8s.io", Some("sandbox")), "k8s.io"),
            Ok("sb1".to_owned())
        );
        let app = sandbox_changed(&envelope(TOPIC, "k8s.io", Some("container")), "k8s.io");
        assert!(app.unwrap_err().contains("not a pod sandbox"));
        let bare = sandbox_changed(&envelope(TOPIC, "k8s.io", None), "k8s.io");
        assert!(bare.unwrap_err().contains("not a pod sandbox"));
        let other = sandbox_changed(&envelope(TOPIC, "moby", Some("sandbox")), "k8s.io");
        assert!(other.unwrap_err().contains("not asked for"));
        let created = sandbox_changed(&envelope("/containers/create", "k8s.io", None), "k8s.io");
        assert!(created.unwrap_err().contains("not asked for"));
        let mut garbage = envelope(TOPIC, "k8s.io", Some("sandbox"));
        garbage.event.as_mut().unwrap().value = vec![0xff, 0xff, 0xff];
        assert!(
            sandbox_changed(&garbage, "k8s.io")
                .unwrap_err()
                .contains("undecodable")
        );
    }
}
