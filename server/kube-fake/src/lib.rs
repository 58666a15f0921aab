//! A fake Kubernetes API server for tests, and only for tests: the real API server cannot
//! run on the machines where plexus is built and tested, so this crate stands in for it. It
//! serves the subset of the API that plexus uses over HTTPS (a per-server CA and a certificate
//! for `127.0.0.1`/`localhost`) with a bearer token, writes a kubeconfig and in-cluster style
//! service-account files for it, and follows the API's documented conventions rather than
//! what one client happens to send:
//!
//! - resources: `pods` (core v1, with `pods/status`), `network-attachment-definitions`
//!   (`k8s.cni.cncf.io/v1`, a custom resource) and `events` (`events.k8s.io/v1`), namespaced
//!   and cluster-wide collections;
//! - list with `metadata.resourceVersion`, `resourceVersion`/`resourceVersionMatch`
//!   semantics, `limit`/`continue`, `fieldSelector` (the fields each resource registers, e.g.
//!   `spec.nodeName`), `labelSelector`, and metadata-only answers
//!   (`Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`);
//! - watch streams (`ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`/`ERROR`) from a version, ending at
//!   `timeoutSeconds`; a compacted version is an `ERROR` event with a `410 Expired` Status on a
//!   200 stream (lists with an exact, compacted version get an HTTP 410);
//! - one global resourceVersion bumped by every write; merge, strategic-merge and JSON patches;
//!   a changed `metadata.uid` is `422 Invalid` ("field is immutable") and a stale
//!   `metadata.resourceVersion` is `409 Conflict`, as the real server answers;
//! - `events.k8s.io/v1` create validation (`422 Invalid` naming each field);
//! - every error is a `Status` object.
//!
//! Not implemented: server-side apply (415), graceful pod deletion (deletes are immediate),
//! admission, RBAC (every valid token may do everything), protobuf/CBOR/Table encodings,
//! HTTP/2. Use [`FakeApiServer::start`] inside a tokio runtime.

mod control;
mod discovery;
mod error;
mod event;
mod handle;
mod kubeconfig;
mod patch;
mod query;
mod read;
mod resource;
mod router;
mod select;
mod status;
mod store;
mod tls;
mod watch;

pub use control::{Failure, FailureKind, RequestRecord};
pub use error::{Error, Result};
pub use handle::FakeApiServer;
pub use resource::Resource;
