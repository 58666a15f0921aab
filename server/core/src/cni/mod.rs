//! The CNI data model: results in every spec version (0.1.0–1.1.0) and conversion
//! between them, CNI error JSON, and `CNI_ARGS`. Pure data, no exec.

mod result;

pub use result::{Dns, Interface, IpConfig, Result, Route};
