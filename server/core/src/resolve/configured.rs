//! The networks the node configures for every pod: the cluster network and the
//! default networks given by name or path (F28, F29), and the inline `delegates`
//! list used when no cluster network is set (F27).

use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::nad::{Nad, NadSource};
use crate::netconf::{self, NetConf};
use crate::plan::NetworkSource;

/// F28/F29: a configured network value: a path (contains `/`), else a NAD in the
/// multus namespace, else a CNI config of that name in the config directory.
pub(super) fn configured(
    config: &Config,
    nads: &dyn NadSource,
    role: &'static str,
    value: &str,
) -> Result<(NetConf, NetworkSource, String, Option<Nad>)> {
    if value.contains('/') {
        let (path, conf) = netconf::load_path(Path::new(value)).map_err(|e| match e {
            Error::ReadNetworkConfig { cause, path }
                if cause.kind() == std::io::ErrorKind::NotFound =>
            {
                Error::ConfiguredNetworkPathNotFound { role, path }
            }
            e => e,
        })?;
        let network = if conf.name.is_empty() {
            path.display().to_string()
        } else {
            conf.name.clone()
        };
        let source = NetworkSource::File {
            path: path.display().to_string(),
        };
        return Ok((conf, source, network, None));
    }
    if let Some(nad) = nads.get(&config.multus_namespace, value)? {
        let (conf, source) = netconf::from_nad(&nad, &config.conf_dir)?;
        return Ok((conf, source, nad.key(), Some(nad)));
    }
    match netconf::find_by_name(&config.conf_dir, value, value) {
        Ok((path, conf)) => {
            let source = NetworkSource::File {
                path: path.display().to_string(),
            };
            let network = conf.name.clone();
            Ok((conf, source, network, None))
        }
        Err(Error::NetworkConfigFileNotFound { .. } | Error::NoNetworkConfigs { .. }) => {
            Err(not_configured(config, role, value))
        }
        Err(Error::ReadNetworkConfig { cause, .. })
            if cause.kind() == std::io::ErrorKind::NotFound =>
        {
            Err(not_configured(config, role, value))
        }
        Err(e) => Err(e),
    }
}

fn not_configured(config: &Config, role: &'static str, value: &str) -> Error {
    Error::ConfiguredNetworkNotFound {
        role,
        value: value.to_string(),
        namespace: config.multus_namespace.clone(),
        conf_dir: config.conf_dir.clone(),
    }
}

/// F27: entry `position` of `delegates`, with its source and display name (its own
/// config `name`, F21, else `delegates[<position>]`).
pub(super) fn delegate(
    config: &Config,
    position: usize,
) -> Result<(NetConf, NetworkSource, String)> {
    let conf = config.delegate(position)?;
    let network = if conf.name.is_empty() {
        format!("delegates[{position}]")
    } else {
        conf.name.clone()
    };
    Ok((conf, NetworkSource::Delegate { position }, network))
}
