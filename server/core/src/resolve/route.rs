//! Default-route planning (Multus F15) with Q10 fixed.
//!
//! Multus counts the gateways of all `default-route` requests and rejects more than one
//! per family (no ECMP) — kept. It then deletes default routes of *all* families from
//! every interface not asking for that family, and `[]` strips every interface's
//! default route (#1011, #1444). plexus instead:
//! - a gateway of family F on attachment A installs it on A and removes family-F
//!   default routes from every other interface (the primary included: the user asked)
//!   and the ones the delegate itself put on A; other families are untouched;
//! - `[]` on A removes default routes (both families) from A only.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::plan::PlannedAttachment;

/// Fills `route_plan` of every attachment from their `default_route` requests.
pub(super) fn plan_default_routes(attachments: &mut [PlannedAttachment]) -> Result<()> {
    if attachments.iter().all(|a| a.default_route.is_none()) {
        return Ok(());
    }
    let mut gateways: Vec<(usize, IpAddr)> = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        for gw in a.default_route.iter().flatten() {
            gateways.push((i, *gw));
        }
    }
    for (family, is_family) in [
        (4u8, IpAddr::is_ipv4 as fn(&IpAddr) -> bool),
        (6, IpAddr::is_ipv6),
    ] {
        let of_family: Vec<_> = gateways.iter().filter(|(_, gw)| is_family(gw)).collect();
        if of_family.len() > 1 {
            let listed: Vec<String> = of_family
                .iter()
                .map(|(i, gw)| format!("{gw} on {}", attachments[*i].network))
                .collect();
            return Err(Error::DefaultRouteEcmp {
                family,
                gateways: listed.join(", "),
            });
        }
    }
    for (owner, gw) in &gateways {
        for (i, a) in attachments.iter_mut().enumerate() {
            let plan = &mut a.route_plan;
            if gw.is_ipv4() {
                plan.remove_v4 = true;
            } else {
                plan.remove_v6 = true;
            }
            if i == *owner {
                plan.install.push(*gw);
            }
        }
    }
    for a in attachments.iter_mut() {
        if a.default_route.as_ref().is_some_and(Vec::is_empty) {
            a.route_plan.remove_v4 = true;
            a.route_plan.remove_v6 = true;
        }
    }
    Ok(())
}
