//! The hand-trimmed NRI subset (`proto/nri/api.proto`) against upstream containerd/nri:
//! every field plexus declares is encoded, alone, through the generated types and its
//! key must carry the number and wire type of upstream's `pkg/api/api.proto` — v0.6.1
//! (vendored by containerd v1.7.24) and, for the later additions, main at 05777497e3dd.
//! The table below is the record of those numbers; a hand edit of the .proto that moves a
//! field breaks it. The Event values are checked the same way.

use std::collections::HashMap;

use plexus_proto::nri::{
    ConfigureRequest, ConfigureResponse, Container, ContainerUpdate, CreateContainerRequest, Event,
    LinuxNamespace, LinuxPodSandbox, PodSandbox, RegisterPluginRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StateChangeEvent, StopPodSandboxRequest, SynchronizeRequest,
    SynchronizeResponse,
};
use prost::Message;

/// The upstream version the header of api.proto names; kept in step with it.
const UPSTREAM: [&str; 2] = ["containerd/nri v0.6.1", "05777497e3dd"];

/// Protobuf wire types.
const VARINT: u64 = 0;
const LEN: u64 = 2;

/// The key (field number, wire type) of the first field in `bytes`.
fn first_key(bytes: &[u8]) -> (u64, u64) {
    let mut key = 0_u64;
    for (i, b) in bytes.iter().enumerate() {
        key |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (key >> 3, key & 7);
        }
    }
    panic!("no key in {bytes:02x?}");
}

fn key_of(m: &impl Message) -> (u64, u64) {
    let bytes = m.encode_to_vec();
    assert!(
        !bytes.is_empty(),
        "the field was not set to a non-default value"
    );
    first_key(&bytes)
}

fn s() -> String {
    "x".to_owned()
}

#[test]
fn the_header_names_the_upstream_version_this_table_follows() {
    let proto = include_str!("../../proto/nri/api.proto");
    let header: String = proto
        .lines()
        .take_while(|l| l.starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    for version in UPSTREAM {
        assert!(
            header.contains(version),
            "api.proto header lacks {version}:\n{header}"
        );
    }
}

#[test]
fn every_declared_field_has_upstreams_number_and_wire_type() {
    let pod = || PodSandbox {
        id: s(),
        ..Default::default()
    };
    // (upstream message.field, upstream number, wire type, key of our encoding)
    let table: Vec<(&str, u64, u64, (u64, u64))> = vec![
        (
            "RegisterPluginRequest.plugin_name",
            1,
            LEN,
            key_of(&RegisterPluginRequest {
                plugin_name: s(),
                ..Default::default()
            }),
        ),
        (
            "RegisterPluginRequest.plugin_idx",
            2,
            LEN,
            key_of(&RegisterPluginRequest {
                plugin_idx: s(),
                ..Default::default()
            }),
        ),
        (
            "RegisterPluginRequest.NRI_version",
            3,
            LEN,
            key_of(&RegisterPluginRequest {
                nri_version: s(),
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.config",
            1,
            LEN,
            key_of(&ConfigureRequest {
                config: s(),
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.runtime_name",
            2,
            LEN,
            key_of(&ConfigureRequest {
                runtime_name: s(),
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.runtime_version",
            3,
            LEN,
            key_of(&ConfigureRequest {
                runtime_version: s(),
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.registration_timeout",
            4,
            VARINT,
            key_of(&ConfigureRequest {
                registration_timeout: 1,
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.request_timeout",
            5,
            VARINT,
            key_of(&ConfigureRequest {
                request_timeout: 1,
                ..Default::default()
            }),
        ),
        (
            "ConfigureRequest.NRI_version",
            6,
            LEN,
            key_of(&ConfigureRequest {
                nri_version: s(),
                ..Default::default()
            }),
        ),
        (
            "ConfigureResponse.events",
            2,
            VARINT,
            key_of(&ConfigureResponse { events: 1 }),
        ),
        (
            "SynchronizeRequest.pods",
            1,
            LEN,
            key_of(&SynchronizeRequest {
                pods: vec![pod()],
                ..Default::default()
            }),
        ),
        (
            "SynchronizeRequest.containers",
            2,
            LEN,
            key_of(&SynchronizeRequest {
                containers: vec![Container::default()],
                ..Default::default()
            }),
        ),
        (
            "SynchronizeRequest.more",
            3,
            VARINT,
            key_of(&SynchronizeRequest {
                more: true,
                ..Default::default()
            }),
        ),
        (
            "SynchronizeResponse.update",
            1,
            LEN,
            key_of(&SynchronizeResponse {
                update: vec![ContainerUpdate::default()],
                ..Default::default()
            }),
        ),
        (
            "SynchronizeResponse.more",
            2,
            VARINT,
            key_of(&SynchronizeResponse {
                more: true,
                ..Default::default()
            }),
        ),
        (
            "StateChangeEvent.event",
            1,
            VARINT,
            key_of(&StateChangeEvent {
                event: 1,
                ..Default::default()
            }),
        ),
        (
            "StateChangeEvent.pod",
            2,
            LEN,
            key_of(&StateChangeEvent {
                pod: Some(pod()),
                ..Default::default()
            }),
        ),
        (
            "StateChangeEvent.container",
            3,
            LEN,
            key_of(&StateChangeEvent {
                container: Some(Container::default()),
                ..Default::default()
            }),
        ),
        (
            "RunPodSandboxRequest.pod",
            1,
            LEN,
            key_of(&RunPodSandboxRequest { pod: Some(pod()) }),
        ),
        (
            "StopPodSandboxRequest.pod",
            1,
            LEN,
            key_of(&StopPodSandboxRequest { pod: Some(pod()) }),
        ),
        (
            "CreateContainerRequest.pod",
            1,
            LEN,
            key_of(&CreateContainerRequest {
                pod: Some(pod()),
                container: None,
            }),
        ),
        (
            "CreateContainerRequest.container",
            2,
            LEN,
            key_of(&CreateContainerRequest {
                pod: None,
                container: Some(Container::default()),
            }),
        ),
        (
            "RemovePodSandboxRequest.pod",
            1,
            LEN,
            key_of(&RemovePodSandboxRequest { pod: Some(pod()) }),
        ),
        ("PodSandbox.id", 1, LEN, key_of(&pod())),
        (
            "PodSandbox.name",
            2,
            LEN,
            key_of(&PodSandbox {
                name: s(),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.uid",
            3,
            LEN,
            key_of(&PodSandbox {
                uid: s(),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.namespace",
            4,
            LEN,
            key_of(&PodSandbox {
                namespace: s(),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.labels",
            5,
            LEN,
            key_of(&PodSandbox {
                labels: HashMap::from([(s(), s())]),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.annotations",
            6,
            LEN,
            key_of(&PodSandbox {
                annotations: HashMap::from([(s(), s())]),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.runtime_handler",
            7,
            LEN,
            key_of(&PodSandbox {
                runtime_handler: s(),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.linux",
            8,
            LEN,
            key_of(&PodSandbox {
                linux: Some(LinuxPodSandbox::default()),
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.pid",
            9,
            VARINT,
            key_of(&PodSandbox {
                pid: 1,
                ..Default::default()
            }),
        ),
        (
            "PodSandbox.ips",
            10,
            LEN,
            key_of(&PodSandbox {
                ips: vec![s()],
                ..Default::default()
            }),
        ),
        (
            "LinuxPodSandbox.cgroup_parent",
            3,
            LEN,
            key_of(&LinuxPodSandbox {
                cgroup_parent: s(),
                ..Default::default()
            }),
        ),
        (
            "LinuxPodSandbox.cgroups_path",
            4,
            LEN,
            key_of(&LinuxPodSandbox {
                cgroups_path: s(),
                ..Default::default()
            }),
        ),
        (
            "LinuxPodSandbox.namespaces",
            5,
            LEN,
            key_of(&LinuxPodSandbox {
                namespaces: vec![LinuxNamespace::default()],
                ..Default::default()
            }),
        ),
        (
            "LinuxNamespace.type",
            1,
            LEN,
            key_of(&LinuxNamespace {
                r#type: s(),
                ..Default::default()
            }),
        ),
        (
            "LinuxNamespace.path",
            2,
            LEN,
            key_of(&LinuxNamespace {
                path: s(),
                ..Default::default()
            }),
        ),
        (
            "Container.id",
            1,
            LEN,
            key_of(&Container {
                id: s(),
                ..Default::default()
            }),
        ),
        (
            "Container.pod_sandbox_id",
            2,
            LEN,
            key_of(&Container {
                pod_sandbox_id: s(),
                ..Default::default()
            }),
        ),
        (
            "Container.name",
            3,
            LEN,
            key_of(&Container {
                name: s(),
                ..Default::default()
            }),
        ),
        (
            "ContainerUpdate.container_id",
            1,
            LEN,
            key_of(&ContainerUpdate {
                container_id: s(),
                ..Default::default()
            }),
        ),
        (
            "ContainerUpdate.ignore_failure",
            3,
            VARINT,
            key_of(&ContainerUpdate {
                ignore_failure: true,
                ..Default::default()
            }),
        ),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(_, number, wire, got)| *got != (*number, *wire))
        .map(|(field, number, wire, got)| {
            format!("{field}: upstream ({number}, wire {wire}), ours {got:?}")
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn event_values_are_upstreams() {
    let upstream = [
        (Event::Unknown, 0),
        (Event::RunPodSandbox, 1),
        (Event::StopPodSandbox, 2),
        (Event::RemovePodSandbox, 3),
        (Event::CreateContainer, 4),
        (Event::PostCreateContainer, 5),
        (Event::StartContainer, 6),
        (Event::PostStartContainer, 7),
        (Event::UpdateContainer, 8),
        (Event::PostUpdateContainer, 9),
        (Event::StopContainer, 10),
        (Event::RemoveContainer, 11),
        (Event::UpdatePodSandbox, 12),
        (Event::PostUpdatePodSandbox, 13),
        (Event::ValidateContainerAdjustment, 14),
    ];
    for (event, value) in upstream {
        assert_eq!(event as i32, value, "{event:?}");
    }
    // The subscription mask plexus sends: bit (event - 1) for RunPodSandbox,
    // StopPodSandbox and CreateContainer (not RemovePodSandbox: see `EVENT_MASK`).
    assert_eq!(
        plexus_nri::service::EVENT_MASK,
        (1 << (Event::RunPodSandbox as i32 - 1))
            | (1 << (Event::StopPodSandbox as i32 - 1))
            | (1 << (Event::CreateContainer as i32 - 1))
    );
}
