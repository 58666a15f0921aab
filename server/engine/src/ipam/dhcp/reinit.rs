//! Back to INIT after a NAK or an expired lease: RFC 2131 §4.4.5 says the client must
//! stop using the address then, so it is removed from the interface, and a new
//! DISCOVER..ACK runs; on success the new address and routes go on the interface and the
//! lease file is rewritten. On failure the expired file stays, so each renewer pass tries
//! again for as long as the pod's netns exists.

use ipnet::IpNet;
use plexus_netlink::{Handle, Link, Netns, OnExists, RouteSpec};

use super::lease::{LeaseFile, LeaseStore, now_secs};
use super::{Granted, client};

/// Drops `lease`'s address and tries to bind anew.
pub(super) async fn reinit(store: &LeaseStore, mut lease: LeaseFile, netns: &Netns, why: &str) {
    let res: Result<Granted, String> = async {
        let clone = netns.try_clone().map_err(|e| e.to_string())?;
        let pod = Handle::open(clone).await.map_err(|e| e.to_string())?;
        let link = pod
            .find_link(&lease.ifname)
            .await
            .map_err(|e| e.to_string())?;
        let old = IpNet::V4(lease.granted.address_net());
        if lease.granted.lease_secs != 0 {
            match pod.delete_address(&link, old).await {
                Ok(()) => tracing::warn!(address = %old, why, "dhcp address removed"),
                Err(e) => tracing::debug!(address = %old, error = %e, "dhcp address already gone"),
            }
            // Remember that the address is off, so later passes only retry INIT.
            lease.granted.lease_secs = 0;
            lease.granted.t1_secs = 0;
            lease.granted.t2_secs = 0;
            if let Err(e) = store.save(&lease) {
                tracing::warn!(error = %e, "saving the unbound dhcp lease");
            }
        }
        let timeout =
            std::time::Duration::from_secs(lease.timeout_secs.clamp(1, super::MAX_TIMEOUT_SECS));
        let sock = client::open(netns, &lease.ifname)
            .await
            .map_err(|e| e.to_string())?;
        let g = client::acquire(&sock, lease.mac, timeout)
            .await
            .map_err(|e| e.to_string())?;
        apply(&pod, &link, &g).await?;
        Ok(g)
    }
    .await;
    match res {
        Ok(g) => {
            tracing::info!(address = %g.address_net(), "dhcp lease bound again");
            lease.granted = g;
            lease.bound_at = now_secs();
            if let Err(e) = store.save(&lease) {
                tracing::warn!(error = %e, "saving the new dhcp lease");
            }
        }
        Err(e) => tracing::warn!(error = %e, "dhcp INIT after losing the lease failed; will retry"),
    }
}

/// Adds the granted address and its routes (existing routes are left as they are).
async fn apply(pod: &Handle, link: &Link, g: &Granted) -> Result<(), String> {
    let alloc = g.allocation();
    pod.add_address(link, IpNet::V4(g.address_net()))
        .await
        .map_err(|e| format!("add address {}: {e}", g.address_net()))?;
    let gw = alloc.ips.first().and_then(|i| i.gateway);
    for r in &alloc.routes {
        let mut spec = RouteSpec::new(r.dst);
        if let Some(via) = r.gw.or(gw) {
            spec = spec.via(via);
        }
        pod.add_route(link, &spec, OnExists::Ignore)
            .await
            .map_err(|e| format!("add route {}: {e}", r.dst))?;
    }
    Ok(())
}
