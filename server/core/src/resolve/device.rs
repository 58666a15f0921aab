//! Device-plugin networks (F22, F24): once the node knows which device ids the
//! kubelet (or DRA) allocated to the pod per resource name, each attachment whose NAD
//! names that resource (`k8s.v1.cni.cncf.io/resourceName`) takes the next id, in plan
//! order. The id is written into the config as `deviceID` and `pciBusID` (top level of
//! a conf, every plugin of a conflist) and, for secondary attachments, becomes
//! `runtimeConfig.deviceID`, overriding a `deviceID` from the selection element (F16).
//!
//! Looking the allocation up (kubelet PodResources, checkpoint file, DRA) is the
//! daemon's I/O; this is only the pure assignment.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::plan::{ConfigForm, DelegateConfig, Plan};

/// One device handed to an attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAssignment {
    /// Index of the attachment in the plan.
    pub index: usize,
    /// The resource the device came from.
    pub resource_name: String,
    /// The device id (usually a PCI address).
    pub device_id: String,
}

/// Hands the pod's allocated devices (`resource name -> device ids`) to the plan's
/// attachments that name a resource. Ids are taken in sorted order (Multus ≥ 4.3);
/// an attachment whose resource has no id left gets none (not an error, like Multus).
/// Attachments the runtime executes (`runtime_managed`) take no device.
pub fn assign_devices(
    plan: &mut Plan,
    allocated: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<DeviceAssignment>> {
    let mut pools: BTreeMap<&str, std::vec::IntoIter<String>> = allocated
        .iter()
        .map(|(resource, ids)| {
            let mut ids = ids.clone();
            ids.sort();
            (resource.as_str(), ids.into_iter())
        })
        .collect();
    let mut assigned = Vec::new();
    for a in plan.attachments.iter_mut().filter(|a| !a.runtime_managed) {
        let Some(resource) = a.resource_name.as_deref() else {
            continue;
        };
        let Some(id) = pools.get_mut(resource).and_then(Iterator::next) else {
            continue;
        };
        inject_device_id(&mut a.config, &a.network, &id)?;
        if !a.primary {
            a.runtime_config.device_id = Some(id.clone());
        }
        assigned.push(DeviceAssignment {
            index: a.index,
            resource_name: resource.to_string(),
            device_id: id,
        });
    }
    Ok(assigned)
}

/// Writes `deviceID` and `pciBusID` = `device_id` into the config (F24): at the top
/// level of a conf, into every plugin of a conflist. Other keys keep their order.
pub fn inject_device_id(config: &mut DelegateConfig, network: &str, device_id: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidNetworkConfig {
        network: network.to_string(),
        reason: format!("cannot add deviceID {device_id:?}: {reason}"),
    };
    let mut value: Value =
        serde_json::from_slice(&config.bytes).map_err(|_| invalid("the config is not JSON"))?;
    let set = |object: &mut serde_json::Map<String, Value>| {
        object.insert("deviceID".to_string(), Value::String(device_id.to_string()));
        object.insert("pciBusID".to_string(), Value::String(device_id.to_string()));
    };
    match (config.form, &mut value) {
        (ConfigForm::Conf, Value::Object(object)) => set(object),
        (ConfigForm::Conflist, Value::Object(object)) => {
            let Some(Value::Array(plugins)) = object.get_mut("plugins") else {
                return Err(invalid("unable to get plugin list"));
            };
            for (i, plugin) in plugins.iter_mut().enumerate() {
                let Value::Object(plugin) = plugin else {
                    return Err(invalid(&format!("plugin {i} is not an object")));
                };
                set(plugin);
            }
        }
        _ => return Err(invalid("the config is not a JSON object")),
    }
    config.bytes = serde_json::to_vec(&value).expect("a JSON value always serialises");
    Ok(())
}
