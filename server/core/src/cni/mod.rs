//! The CNI data model: results in every spec version (0.1.0–1.1.0) and conversion
//! between them, spec versions and the VERSION answer, the CNI error JSON, `CNI_ARGS`,
//! and validation of container ids, network and interface names. Pure data: nothing
//! here executes a plugin (that is `plexus_engine::delegate`).

mod args;
mod convert;
mod error;
pub(crate) mod json;
pub mod result;
pub mod validate;
pub mod version;

pub use args::{CniArgs, IGNORE_UNKNOWN};
pub use error::{Error, ErrorCode, PluginError};
pub use result::{Dns, Interface, IpConfig, Result, Route};
pub use version::VersionInfo;

#[cfg(test)]
mod tests;
