//! NADs from the API server give pods their interfaces; network-status and AddedInterface
//! events land on the pod object; a NAD created later is usable; a deleted NAD fails new
//! pods naming it while running pods keep their interfaces.

use std::time::Duration;

use plexus_integration::env::{BRIDGE, MACVLAN, NAMESPACE};
use plexus_integration::{Nad, PodSpec, require_privileged};
use plexus_kube_fake::Resource;
use serde_json::Value;

use super::{KubeEnv, PROMPT};
use crate::common::{secondary, wait_nothing_left};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_nads_from_the_api_attach_and_network_status_and_events_land_on_the_pod() {
    if !require_privileged() {
        return;
    }
    let k = KubeEnv::start().await;
    let want = PodSpec::new(NAMESPACE, "kube-a").networks(&format!("{MACVLAN},{BRIDGE}"));
    let (pod, spec) = k.run_pod(&want).await.unwrap();
    assert!(pod.interface("net1").is_ok() && pod.interface("net2").is_ok());

    // The annotation is exactly what plexusd renders (whose Multus shape the directory-mode
    // test checks key by key): eth0 first and default, then one entry per network.
    let published = k.api.wait_network_status(&pod, PROMPT).await;
    assert_eq!(published, k.env.plexus.network_status(&pod).await.unwrap());
    let status: Vec<Value> = serde_json::from_str(&published).unwrap();
    assert_eq!(status.len(), 3, "{published}");
    assert_eq!(status[0]["interface"], "eth0", "{published}");
    assert_eq!(status[0]["default"], true, "{published}");
    assert_eq!(status[1]["name"], format!("{NAMESPACE}/{MACVLAN}"));
    assert_eq!(status[1]["interface"], "net1");
    assert_eq!(
        status[1]["mac"],
        pod.interface("net1").unwrap().mac.as_str()
    );
    assert_eq!(status[2]["name"], format!("{NAMESPACE}/{BRIDGE}"));
    assert_eq!(status[2]["interface"], "net2");

    // One per interface, eth0 included (from the cluster network), as Multus records them.
    let events = k
        .api
        .wait_events(NAMESPACE, &spec.uid, "AddedInterface", 3, PROMPT)
        .await;
    let mut notes: Vec<&str> = events.iter().filter_map(|e| e["note"].as_str()).collect();
    notes.sort_unstable();
    assert_eq!(notes.len(), 3, "{events:?}");
    assert!(notes[0].starts_with("Add eth0 ["), "{notes:?}");
    let net1 = format!("from {NAMESPACE}/{MACVLAN}");
    assert!(
        notes[1].starts_with("Add net1 [") && notes[1].ends_with(&net1),
        "{notes:?}"
    );
    let net2 = format!("from {NAMESPACE}/{BRIDGE}");
    assert!(
        notes[2].starts_with("Add net2 [") && notes[2].ends_with(&net2),
        "{notes:?}"
    );
    for e in &events {
        assert_eq!(e["type"], "Normal");
        assert_eq!(e["regarding"]["name"], pod.name.as_str());
        assert_eq!(e["regarding"]["kind"], "Pod");
    }

    // plexusctl sees the API side: connected, NADs synced, nothing waiting.
    let state: Value = serde_json::from_str(
        &k.env
            .plexus
            .plexusctl(&["status", "--output", "json"])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["mode"], "kubernetes", "{state:#}");
    let kube = &state["kubernetes"];
    assert_eq!(kube["apiConnected"], true, "{state:#}");
    assert_eq!(kube["nadsSynced"], true, "{state:#}");
    assert_eq!(kube["nads"], k.env.nads.len(), "{state:#}");
    // ... and explains the pod as the API server has it (no manifest).
    let explained: Value = serde_json::from_str(
        &k.env
            .plexus
            .plexusctl(&[
                "explain",
                "--pod",
                &format!("{NAMESPACE}/{}", pod.name),
                "--output",
                "json",
            ])
            .unwrap(),
    )
    .unwrap();
    assert!(explained.get("error").is_none(), "{explained:#}");
    assert_eq!(explained["pod"]["uid"], spec.uid.as_str(), "{explained:#}");
    let text = explained.to_string();
    for network in [MACVLAN, BRIDGE] {
        assert!(
            text.contains(&format!("{NAMESPACE}/{network}")),
            "{network} in {explained:#}"
        );
    }

    // A NAD created after plexusd started is usable at once.
    let ipam = k.env.plexus.paths().ipam_dir.clone();
    let late = Nad::bridge(
        NAMESPACE,
        "late-net",
        &format!("pxl{}", std::process::id() % 100_000),
        "10.245.7.0/24",
        &ipam,
    );
    k.api.create_nad(&late).unwrap();
    let (later, _) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-late").networks("late-net"))
        .await
        .unwrap();
    let addr = &later.interface("net1").unwrap().addresses;
    assert!(addr.iter().any(|a| a.starts_with("10.245.7.")), "{addr:?}");
    let text = k.api.wait_network_status(&later, PROMPT).await;
    assert!(text.contains("\"default/late-net\""), "{text}");

    for p in [&pod, &later] {
        k.env.containerd.delete_pod(p).await.unwrap();
    }
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_deleted_nad_fails_new_pods_naming_it_and_running_pods_keep_their_interfaces() {
    if !require_privileged() {
        return;
    }
    let k = KubeEnv::start().await;
    let (running, _) = k
        .run_pod(&PodSpec::new(NAMESPACE, "kube-keep").networks(MACVLAN))
        .await
        .unwrap();
    let before = secondary(k.env.plexus.attachments_of(&running.id).await.unwrap());
    assert_eq!(before.len(), 1, "{before:?}");

    k.api
        .delete(Resource::NetworkAttachmentDefinition, NAMESPACE, MACVLAN)
        .unwrap();
    // plexusd's watch sees the deletion asynchronously: try new pods until one is refused
    // (a pod that still started is removed again).
    let deadline = tokio::time::Instant::now() + PROMPT;
    let mut attempt = 0;
    let (msg, uid) = loop {
        attempt += 1;
        let (spec, result) = {
            let spec = k.api.create_pod(
                &PodSpec::new(NAMESPACE, &format!("kube-new{attempt}")).networks(MACVLAN),
            );
            let r = k.env.containerd.run_pod(&spec).await;
            (spec, r)
        };
        match result {
            Err(err) => {
                let msg = err
                    .cri_message()
                    .unwrap_or_else(|| panic!("not a CRI error: {err}"));
                break (msg.to_owned(), spec.uid);
            }
            Ok(started) => {
                k.env.containerd.delete_pod(&started).await.unwrap();
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "pods still start with the deleted NAD after {PROMPT:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(
        msg.contains(MACVLAN),
        "message does not name {MACVLAN}: {msg}"
    );
    let warned = k
        .api
        .wait_events(NAMESPACE, &uid, "NoNetworkFound", 1, PROMPT)
        .await;
    assert_eq!(warned[0]["type"], "Warning", "{warned:?}");
    assert!(
        warned[0]["note"].as_str().unwrap().contains(MACVLAN),
        "{warned:?}"
    );

    // The running pod keeps its interface and its record.
    assert!(running.interface("net1").is_ok());
    let after = secondary(k.env.plexus.attachments_of(&running.id).await.unwrap());
    assert_eq!(after, before);
    k.env.containerd.delete_pod(&running).await.unwrap();
    wait_nothing_left(&k.env, Duration::from_secs(5)).await;
}
