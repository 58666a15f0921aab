//! vlan driver: an 802.1q sub-interface of a host master, created straight into the pod.
//!
//! Mirrors the reference `vlan` plugin (v1.1.1): `master` and `vlanId` required, MTU at
//! most the master's, optional `linkInContainer`. Kernels without the 8021q module answer
//! `EOPNOTSUPP` ("Unknown device type"), seen as [`crate::Error::is_unsupported_kind`].

use rtnetlink::LinkVlan;

use super::{Link, PodLink, check_mtu, create_in_pod};
use crate::error::{Error, Result};
use crate::handle::Handle;

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSpec {
    /// Master link name.
    pub master: String,
    /// The master lives in the pod netns (CNI `linkInContainer`).
    pub master_in_pod: bool,
    /// 802.1q id, 0..=4094.
    pub id: u16,
    /// Name, mtu, mac and group in the pod.
    pub link: PodLink,
}

/// Creates the vlan link in the pod netns, up.
pub async fn add(host: &Handle, pod: &Handle, spec: &VlanSpec) -> Result<Link> {
    if spec.id > 4094 {
        return Err(Error::InvalidSpec {
            kind: "vlan",
            reason: format!("vlanId {} out of range; accepted: 0..=4094", spec.id),
        });
    }
    let creator = if spec.master_in_pod { pod } else { host };
    let master = creator.find_link(&spec.master).await?;
    check_mtu("vlan", spec.link.mtu, &master)?;
    let builder = LinkVlan::new(&spec.link.name, master.index, spec.id);
    create_in_pod(creator, pod, "vlan", builder, &spec.link).await
}

/// Deletes the pod's vlan link `name`; already gone is success.
pub async fn del(pod: &Handle, name: &str) -> Result<()> {
    pod.delete_link_by_name(name).await.map(|_| ())
}
