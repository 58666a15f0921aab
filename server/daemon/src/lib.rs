//! plexusd, the plexus node service: serves the `plexus.v1.Node` gRPC API on a unix socket.
//!
//! It owns the daemon's configuration file ([`config`]), admission control and per-sandbox
//! serialisation ([`admission`]), deadlines ([`deadline`]), the service logic over two seams
//! — [`attacher::Attacher`] (the engine: netlink, plugins, state) and [`planner::Planner`]
//! (resolution in plexus-core) — Kubernetes mode ([`kubernetes`], with the kubelet's
//! pod-resources client in [`pod_resources`]), the gRPC adapter ([`service`], [`convert`]) and the socket
//! ([`server`]). It must not parse annotations or touch netlink itself: resolution belongs to
//! plexus-core, execution to plexus-engine.

pub mod admission;
pub mod attacher;
pub mod cni;
pub mod config;
pub mod containerd_adopt;
pub mod containerd_early;
pub mod convert;
pub mod daemon;
pub mod deadline;
pub mod engine;
pub mod entry;
pub mod error;
pub mod hotplug_controller;
pub mod kubernetes;
pub mod listener;
pub mod lock;
pub mod model;
pub mod nad_watch;
pub mod node;
pub mod planner;
pub mod pod_resources;
mod recurring;
pub mod resolver;
pub mod server;
pub mod service;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use error::{Error, Result};
