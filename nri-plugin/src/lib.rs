//! plexus-nri: the containerd NRI plugin of plexus. It speaks NRI's wire protocol
//! (a connection [`mux`] carrying hand-rolled [`ttrpc`]), registers with the runtime,
//! and forwards pod-sandbox events to plexusd's node API ([`event`]). It decides
//! nothing about networks: plexusd does. The local decisions are documented in
//! [`convert::needs_nothing`] and [`pending`].

pub mod config;
pub mod convert;
pub mod error;
pub mod event;
pub mod mux;
pub mod pending;
pub mod plugin;
pub mod service;
pub mod trace;
pub mod ttrpc;

pub use config::Config;
pub use error::{Error, Result};
pub use plugin::Plugin;
