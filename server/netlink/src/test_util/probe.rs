//! The kernel probe behind kernel-feature skips: each [`KernelFeature`] is tried once per
//! process by creating it in a scratch netns on a veth master, and the answer is cached.
//!
//! Only the kernel's answer for a missing link kind or feature, `EOPNOTSUPP` on
//! `RTM_NEWLINK` ([`crate::Error::is_unsupported_kind`], matched by errno), says "lacks";
//! any other failure of the probe fails the test that asked. So a test skips only when the
//! probe said so, and a driver failing later (a wrongly chosen master answering
//! `EOPNOTSUPP`, say) is a test failure, not a counted skip.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use rtnetlink::packet_route::link::IpVlanMode;
use rtnetlink::{LinkBridge, LinkIpVlan, LinkVlan};

use super::{KernelFeature, TestNetns};
use crate::error::Result;
use crate::handle::Handle;

static PROBED: OnceLock<BTreeMap<KernelFeature, bool>> = OnceLock::new();

/// Whether the kernel lacks `feature`, probed once per process (needs root; call it after
/// [`super::require_privileged`]). Panics when the probe fails for any other reason than
/// the feature being absent.
pub fn kernel_lacks(feature: KernelFeature) -> bool {
    let probed = PROBED.get_or_init(|| {
        // Tests run on their own runtimes; the probe gets a runtime of its own on a
        // dedicated thread so that it can be awaited from any of them.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the kernel probe")
                .block_on(probe_all())
        })
        .join()
        .unwrap_or_else(|_| panic!("the kernel-feature probe panicked (see above)"))
    });
    probed[&feature]
}

/// When the probe found the kernel without `feature`, records the named skip of `test`
/// (printed, logged for the Makefile, checked against the machine's allowlist of expected
/// skips, failing the test when unexpected) and returns `true`: the test returns.
pub fn skip_if_kernel_lacks(test: &str, feature: KernelFeature) -> bool {
    if !kernel_lacks(feature) {
        return false;
    }
    plexus_testkit::skip::record_kernel_skip(test, feature);
    true
}

async fn probe_all() -> BTreeMap<KernelFeature, bool> {
    let ns = TestNetns::new().await;
    let h = ns.handle().await;
    let master = ns
        .veth_pair("probe0", "probe1")
        .await
        .unwrap_or_else(|e| panic!("kernel probe: veth master in {}: {e}", ns.name()));
    let mut out = BTreeMap::new();
    for feature in KernelFeature::ALL {
        let created = match feature {
            KernelFeature::Ipvlan => {
                let msg = LinkIpVlan::new("probeipvl", master.index, IpVlanMode::L2).build();
                h.create_link("ipvlan", "probeipvl", msg).await
            }
            KernelFeature::Vlan => {
                let msg = LinkVlan::new("probevlan", master.index, 7).build();
                h.create_link("vlan", "probevlan", msg).await
            }
            KernelFeature::BridgeVlanFiltering => {
                let msg = LinkBridge::new("probebr").vlan_filtering(true).build();
                h.create_link("bridge", "probebr", msg).await
            }
        };
        out.insert(feature, lacks(&h, feature, created).await);
    }
    out
}

/// Classifies one probe: created (and deleted again) → present; `EOPNOTSUPP` → lacking;
/// anything else panics.
async fn lacks(h: &Handle, feature: KernelFeature, created: Result<()>) -> bool {
    match created {
        Ok(()) => {
            let name = match feature {
                KernelFeature::Ipvlan => "probeipvl",
                KernelFeature::Vlan => "probevlan",
                KernelFeature::BridgeVlanFiltering => "probebr",
            };
            let link = h.find_link(name).await;
            let Ok(link) = link else {
                panic!("kernel probe for {feature}: created but not found: {link:?}");
            };
            if feature == KernelFeature::BridgeVlanFiltering && link.vlan_filtering != Some(true) {
                // The bridge was made but the option was ignored: the feature is absent.
                return true;
            }
            false
        }
        Err(e) if e.is_unsupported_kind() => true,
        Err(e) => panic!(
            "kernel probe for {feature} failed for another reason than a missing feature: {e:?}"
        ),
    }
}
