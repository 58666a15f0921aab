//! Client construction against the fake API server (standing in for the real one).

use plexus_kube::{KubeSettings, NadCache, PodKey, Publisher};

use crate::support::{self, FAST};

#[tokio::test]
async fn a_rotated_token_is_used_from_the_next_request_on() {
    let fake = support::fake().await;
    let uid = support::create_pod(&fake, "default", "web", "node-a");
    // The kubeconfig names a token file, as the in-cluster service account does.
    let client = support::settings_client(fake.kubeconfig_token_file_path()).await;
    let cache = NadCache::start(client.clone(), &[]);
    cache.wait_synced().await;
    let publisher = Publisher::start_with(client, 8, FAST);
    publisher
        .publish(
            PodKey {
                namespace: "default".into(),
                name: "web".into(),
                uid: uid.clone(),
            },
            "[1]",
        )
        .unwrap();
    support::wait_status(&fake, "default", "web", "[1]").await;
    // The old token is refused from now on (401); the file holds the new one.
    fake.rotate_token().unwrap();
    fake.clear_requests();
    publisher
        .publish(
            PodKey {
                namespace: "default".into(),
                name: "web".into(),
                uid,
            },
            "[2]",
        )
        .unwrap();
    support::wait_status(&fake, "default", "web", "[2]").await;
    let unauthorized: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.status == 401)
        .collect();
    assert!(
        unauthorized.is_empty(),
        "the stale token was sent: {unauthorized:?}"
    );
}

#[tokio::test]
async fn an_unreadable_kubeconfig_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, "not: [a kubeconfig").unwrap();
    let settings = KubeSettings {
        kubeconfig: Some(path.clone()),
        namespaces: Vec::new(),
        node_name: "n".into(),
    };
    let Err(err) = plexus_kube::connect(&settings).await else {
        panic!("a broken kubeconfig is refused");
    };
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("kubeconfig {}", path.display())),
        "{text}"
    );
}
