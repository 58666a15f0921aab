//! Helpers shared by the end-to-end tests: waiting for eventual conditions and checking
//! that nothing is left behind.

use std::future::Future;
use std::time::Duration;

use plexus_integration::{Env, Pod};
use plexus_proto::v1::Attachment;

/// Polls `probe` every 100 ms until it returns true; panics with `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first IPv4 address of `ifname` in `pod`, without prefix.
pub fn ipv4_of(pod: &Pod, ifname: &str) -> String {
    let i = pod.interface(ifname).unwrap();
    let a = i
        .addresses
        .iter()
        .find(|a| !a.contains(':'))
        .unwrap_or_else(|| panic!("{ifname} of {} has no IPv4: {i:?}", pod.name));
    a.split('/').next().unwrap().to_owned()
}

/// Asserts that plexus holds nothing any more: no attachment, no lease, no host link.
pub async fn assert_nothing_left(env: &Env) {
    let atts = env.plexus.attachments().await.unwrap();
    assert!(atts.is_empty(), "attachments left: {atts:?}");
    assert!(
        env.plexus_leases().is_empty(),
        "leases left: {:?}",
        env.plexus_leases()
    );
    let links = env.host_links_left().unwrap();
    assert!(links.is_empty(), "host-side links left: {links:?}");
}

/// Waits until plexus holds nothing any more (teardown may finish after the CRI call).
pub async fn wait_nothing_left(env: &Env, timeout: Duration) {
    eventually(
        "plexus to release every attachment and lease",
        timeout,
        || async {
            env.plexus
                .attachments()
                .await
                .map(|a| a.is_empty())
                .unwrap_or(false)
                && env.plexus_leases().is_empty()
                && env.host_links_left().map(|v| v.is_empty()).unwrap_or(false)
        },
    )
    .await;
    assert_nothing_left(env).await;
}

/// The attachments plexus made itself (without the runtime's eth0 record).
pub fn secondary(atts: Vec<Attachment>) -> Vec<Attachment> {
    atts.into_iter().filter(|a| a.driver != "runtime").collect()
}

/// The pod's interface names: the runtime's first (`lo`, `eth0`), then the secondaries
/// sorted. They are made at once, so the kernel's index order between them (what `ip addr`
/// lists) is not the plan's.
pub fn interface_names(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = pod
        .interfaces()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    if names.len() > 2 {
        names[2..].sort();
    }
    names
}
