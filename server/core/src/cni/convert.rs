//! Parsing and rendering CNI results of every spec version, with libcni's conversion
//! rules (`pkg/types/{020,040,100}/types.go`, `libcni/api.go fixupResultVersion`).
//!
//! The canonical [`Result`] holds the 1.0.0 shape. Three wire families exist:
//! 0.1.0/0.2.0 (`ip4`/`ip6` objects), 0.3.0/0.3.1/0.4.0 (`ips[].version`) and
//! 1.0.0/1.1.0. Rendering writes exactly what Go's `json.Marshal` writes for the
//! corresponding libcni struct, including the always-present `"dns":{}`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::result::{Dns, Interface, IpConfig, Result, Route};
use super::{Error, version};

type Res<T> = std::result::Result<T, Error>;

/// The three result shapes of the spec's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V020,
    V040,
    V100,
}

fn family(version: &str) -> Res<Family> {
    match version {
        "0.1.0" | "0.2.0" => Ok(Family::V020),
        "0.3.0" | "0.3.1" | "0.4.0" => Ok(Family::V040),
        "1.0.0" | "1.1.0" => Ok(Family::V100),
        _ => Err(Error::UnsupportedVersion {
            version: version.to_owned(),
        }),
    }
}

#[derive(Serialize, Deserialize)]
struct Result020 {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<IpConfig020>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<IpConfig020>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct IpConfig020 {
    ip: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::result::lenient_ip"
    )]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
}

#[derive(Serialize, Deserialize)]
struct Result040 {
    #[serde(
        rename = "cniVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface040>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpConfig040>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct Interface040 {
    name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    mac: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sandbox: String,
}

#[derive(Serialize, Deserialize)]
struct IpConfig040 {
    #[serde(default)]
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNet,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::result::lenient_ip"
    )]
    gateway: Option<IpAddr>,
}

/// The 1.0.0 wire shape for output: like the canonical serialisation but with `dns`
/// always present, as Go writes it.
#[derive(Serialize)]
struct Out100<'a> {
    #[serde(rename = "cniVersion", skip_serializing_if = "str::is_empty")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    interfaces: &'a [Interface],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    ips: &'a [IpConfig],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [Route],
    dns: &'a Dns,
}

fn family_label(address: &IpNet) -> &'static str {
    match address {
        IpNet::V4(_) => "4",
        IpNet::V6(_) => "6",
    }
}

/// Go writes `int` fields with `omitempty`, so a zero there means "not set".
fn nonzero(v: Option<u32>) -> Option<u32> {
    v.filter(|n| *n != 0)
}

impl Result {
    /// Parses a plugin's stdout. The result's own `cniVersion` chooses the shape; a
    /// result without one (or `null` output) takes `config_version`, libcni's
    /// `fixupResultVersion`. The canonical result keeps the version it was labelled with.
    pub fn parse(stdout: &[u8], config_version: &str) -> Res<Self> {
        let fallback = if config_version.is_empty() {
            version::IMPLICIT
        } else {
            config_version
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(stdout).map_err(|error| Error::ParseResult {
                version: fallback.to_owned(),
                error,
            })?;
        if value.is_null() {
            value = serde_json::Value::Object(serde_json::Map::new());
        }
        let labelled = match value.get("cniVersion") {
            Some(serde_json::Value::String(v)) if !v.is_empty() => v.clone(),
            _ => fallback.to_owned(),
        };
        if let Some(object) = value.as_object_mut() {
            object.insert("cniVersion".to_owned(), labelled.clone().into());
        }
        Self::from_value(&labelled, value)
    }

    /// Parses a result that is known to be of `version` (its own label is ignored).
    pub fn parse_as(version: &str, json: &[u8]) -> Res<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|error| Error::ParseResult {
                version: version.to_owned(),
                error,
            })?;
        Self::from_value(version, value)
    }

    /// Reads a JSON value in the shape of `version`.
    pub fn from_value(version: &str, value: serde_json::Value) -> Res<Self> {
        let fam = family(version)?;
        let parse_err = |error| Error::ParseResult {
            version: version.to_owned(),
            error,
        };
        let mut out = match fam {
            Family::V020 => {
                let r: Result020 = serde_json::from_value(value).map_err(parse_err)?;
                let mut out = Result {
                    dns: r.dns,
                    ..Result::default()
                };
                for ip in [r.ip4, r.ip6].into_iter().flatten() {
                    out.ips.push(IpConfig {
                        interface: None,
                        address: ip.ip,
                        gateway: ip.gateway,
                    });
                    out.routes.extend(ip.routes);
                }
                out
            }
            Family::V040 => {
                let r: Result040 = serde_json::from_value(value).map_err(parse_err)?;
                Result {
                    cni_version: String::new(),
                    interfaces: r
                        .interfaces
                        .into_iter()
                        .map(|i| Interface {
                            name: i.name,
                            mac: i.mac,
                            sandbox: i.sandbox,
                            ..Interface::default()
                        })
                        .collect(),
                    ips: r
                        .ips
                        .into_iter()
                        .map(|ip| IpConfig {
                            interface: ip.interface,
                            address: ip.address,
                            gateway: ip.gateway,
                        })
                        .collect(),
                    routes: r.routes,
                    dns: r.dns,
                }
            }
            Family::V100 => serde_json::from_value(value).map_err(parse_err)?,
        };
        out.cni_version = version.to_owned();
        for iface in &mut out.interfaces {
            iface.mtu = nonzero(iface.mtu);
        }
        for route in &mut out.routes {
            route.mtu = nonzero(route.mtu);
            route.advmss = nonzero(route.advmss);
            route.priority = nonzero(route.priority);
        }
        Ok(out)
    }

    /// The result as a JSON value of `version`, converted with libcni's rules: 1.x → 0.4
    /// adds `ips[].version` and drops interface `mtu`/`socketPath`/`pciID`; → 0.2 keeps the
    /// first IPv4 and first IPv6 address, routes by destination family, and fails when
    /// there is no address.
    pub fn to_value(&self, version: &str) -> Res<serde_json::Value> {
        let value = match family(version)? {
            Family::V100 => serde_json::to_value(Out100 {
                cni_version: version,
                interfaces: &self.interfaces,
                ips: &self.ips,
                routes: &self.routes,
                dns: &self.dns,
            }),
            Family::V040 => serde_json::to_value(self.to_040(version)),
            Family::V020 => serde_json::to_value(self.to_020(version)?),
        };
        // Serialising these plain structs cannot fail (string keys, no maps of non-strings).
        Ok(value.unwrap_or_default())
    }

    /// The result as compact JSON text of `version`, byte-identical to what libcni prints.
    pub fn render(&self, version: &str) -> Res<String> {
        let text = match family(version)? {
            Family::V100 => super::json::marshal(&Out100 {
                cni_version: version,
                interfaces: &self.interfaces,
                ips: &self.ips,
                routes: &self.routes,
                dns: &self.dns,
            }),
            Family::V040 => super::json::marshal(&self.to_040(version)),
            Family::V020 => super::json::marshal(&self.to_020(version)?),
        };
        Ok(text.unwrap_or_default())
    }

    /// The result as it reads after a round trip through `version` (what a consumer of
    /// that version sees), labelled `version`.
    pub fn convert(&self, version: &str) -> Res<Result> {
        Self::from_value(version, self.to_value(version)?)
    }

    fn to_040(&self, version: &str) -> Result040 {
        Result040 {
            cni_version: version.to_owned(),
            interfaces: self
                .interfaces
                .iter()
                .map(|i| Interface040 {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    sandbox: i.sandbox.clone(),
                })
                .collect(),
            ips: self
                .ips
                .iter()
                .map(|ip| IpConfig040 {
                    version: family_label(&ip.address).to_owned(),
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes: self.routes.clone(),
            dns: self.dns.clone(),
        }
    }

    fn to_020(&self, version: &str) -> Res<Result020> {
        let pick = |v4: bool| {
            self.ips
                .iter()
                .find(|ip| matches!(ip.address, IpNet::V4(_)) == v4)
                .map(|ip| IpConfig020 {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: self
                        .routes
                        .iter()
                        .filter(|r| matches!(r.dst, IpNet::V4(_)) == v4)
                        .map(|r| Route::new(r.dst, r.gw))
                        .collect(),
                })
        };
        let (ip4, ip6) = (pick(true), pick(false));
        if ip4.is_none() && ip6.is_none() {
            return Err(Error::ConvertResult {
                to: version.to_owned(),
                reason: "no valid ip addresses",
            });
        }
        Ok(Result020 {
            cni_version: version.to_owned(),
            ip4,
            ip6,
            dns: self.dns.clone(),
        })
    }
}
