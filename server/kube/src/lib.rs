//! plexus-kube: the Kubernetes adapter of plexusd. It owns every call to the API server —
//! the NAD reflector behind plexus-core's `NadSource`, the metadata-only watch of this
//! node's pods, the asynchronous network-status publisher and event recorder. It must not
//! resolve networks or touch netlink: resolution stays pure in plexus-core, execution in
//! plexus-engine. Writes never sit on the pod-setup path: they go through bounded queues
//! that retry until the API server takes them.

pub mod client;
pub mod error;
pub mod event;
pub mod health;
pub mod nad;
mod outbox;
pub mod pod;
mod request;
pub mod status;
mod task;

pub use client::{KubeSettings, connect, node_name};
pub use error::{Error, Result};
pub use event::Recorder;
pub use health::{ApiHealth, HealthSnapshot, track};
/// The API client type the constructors take.
pub use kube::Client;
pub use nad::{NadCache, missing_nad};
pub use outbox::{QueueStats, RetryPolicy};
pub use pod::{PodMeta, PodWatch, patch_networks, read_pod};
pub use status::{PodKey, PublishError, Publisher};
