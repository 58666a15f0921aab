//! The default-route plan of an attachment (Multus F15, with Q10 fixed): after the
//! interface is made, remove the default routes of the named families *on that interface
//! only*, install the requested gateways, and make the recorded result say the same.

use std::net::IpAddr;

use ipnet::IpNet;
use plexus_core::cni;
use plexus_core::plan::DefaultRoutePlan;
use plexus_netlink::{Handle, OnExists, RouteSpec};

use crate::error::{Error, Result};

fn default_dst(v6: bool) -> IpNet {
    if v6 {
        "::/0".parse().expect("literal")
    } else {
        "0.0.0.0/0".parse().expect("literal")
    }
}

/// Applies `plan` to `ifname` in `pod`, editing `result` (when there is one) to match.
pub(crate) async fn apply(
    pod: &Handle,
    ifname: &str,
    plan: &DefaultRoutePlan,
    result: Option<&mut cni::Result>,
) -> Result<()> {
    if plan.is_noop() {
        return Ok(());
    }
    let nl = |op: String| {
        move |source| Error::Netlink {
            op,
            source: Box::new(source),
        }
    };
    let link = pod
        .find_link(ifname)
        .await
        .map_err(nl(format!("find {ifname} for the default-route plan")))?;
    let removes = |v6: bool| if v6 { plan.remove_v6 } else { plan.remove_v4 };
    if plan.remove_v4 || plan.remove_v6 {
        let routes = pod
            .default_routes(link.index, None)
            .await
            .map_err(nl(format!("list default routes of {ifname}")))?;
        for r in routes.iter().filter(|r| removes(r.dst.addr().is_ipv6())) {
            let mut spec = RouteSpec::new(r.dst);
            spec.gateway = r.gateway;
            spec.table = Some(r.table);
            spec.priority = r.priority;
            pod.delete_route(&link, &spec)
                .await
                .map_err(nl(format!("delete default route {} of {ifname}", r.dst)))?;
        }
    }
    for gw in &plan.install {
        let spec = RouteSpec::new(default_dst(gw.is_ipv6())).via(*gw);
        pod.add_route(&link, &spec, OnExists::Ignore)
            .await
            .map_err(nl(format!("add default route via {gw} on {ifname}")))?;
    }
    if let Some(result) = result {
        edit_result(result, plan);
    }
    Ok(())
}

/// The result edit alone: default routes of removed families go, installed ones are added.
pub(crate) fn edit_result(result: &mut cni::Result, plan: &DefaultRoutePlan) {
    result.routes.retain(|r| {
        let default = r.dst.prefix_len() == 0;
        !(default
            && if r.dst.addr().is_ipv6() {
                plan.remove_v6
            } else {
                plan.remove_v4
            })
    });
    for gw in &plan.install {
        let v6 = matches!(gw, IpAddr::V6(_));
        result
            .routes
            .push(cni::Route::new(default_dst(v6), Some(*gw)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_edit_strips_only_named_families_and_adds_gateways() {
        let mut r: cni::Result = serde_json::from_value(serde_json::json!({
            "cniVersion":"1.0.0",
            "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"::/0","gw":"fd00::1"},
                      {"dst":"10.9.0.0/16","gw":"10.0.0.1"}]
        }))
        .unwrap();
        let plan = DefaultRoutePlan {
            install: vec!["10.0.0.254".parse().unwrap()],
            remove_v4: true,
            remove_v6: false,
        };
        edit_result(&mut r, &plan);
        let routes: Vec<String> = r
            .routes
            .iter()
            .map(|r| format!("{} {}", r.dst, r.gw.unwrap()))
            .collect();
        assert_eq!(
            routes,
            vec![
                "::/0 fd00::1",
                "10.9.0.0/16 10.0.0.1",
                "0.0.0.0/0 10.0.0.254"
            ]
        );
    }
}
