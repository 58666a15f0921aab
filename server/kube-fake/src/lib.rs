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
//! # What the real server answers, and where that comes from
//!
//! - A patch whose result carries a different `metadata.uid`: the generic registry's update
//!   (`rest.BeforeUpdate` in `k8s.io/apiserver/pkg/registry/rest/update.go`) validates object
//!   meta against the stored object, and `uid` is immutable there, so the answer is
//!   `422 Invalid`, `Pod "p" is invalid: metadata.uid: Invalid value: "...": field is
//!   immutable`. An empty uid takes the stored one; `creationTimestamp`, `generation` and a set
//!   `deletionTimestamp` are silently restored, not refused.
//! - A `metadata.resourceVersion` that is not the stored one: the registry's optimistic lock,
//!   `409 Conflict` "the object has been modified; please apply your changes to the latest
//!   version and try again". Checked before the uid.
//! - Watch from a compacted version: HTTP 200 and one event
//!   `{"type":"ERROR","object":{"kind":"Status",...,"message":"too old resource version: X (Y)","reason":"Expired","code":410}}`;
//!   a list with `resourceVersionMatch=Exact` (or a continue token) older than the history:
//!   HTTP 410 `The resourceVersion for the provided list is too old.` (API concepts,
//!   "410 Gone responses").
//! - kube-rs (5.x) lists with `limit=500` and no resourceVersion (`ListSemantic::MostRecent`),
//!   then watches with `allowWatchBookmarks=true&timeoutSeconds=290`; it does not send
//!   `sendInitialEvents` unless streaming lists are enabled (served here too). It re-reads a
//!   kubeconfig `tokenFile` about a minute after reading it, not on a 401.
//! - pods/status writes persist metadata (annotations, labels) and status but not the spec
//!   or owner references; writes to the pod itself do not change its status.
//! - events.k8s.io/v1 create: `eventTime`, `reportingController` (a qualified name),
//!   `reportingInstance`, `action`, `reason` required (each at most 128 characters), `type`
//!   `Normal` or `Warning`, `note` at most 1024, `regarding.namespace` equal to the event's,
//!   the `deprecated*` fields unset (`ValidateEventCreate`).
//!
//! - RBAC: every valid token authenticates as [`USER`] and may do everything except what a
//!   test denied ([`FakeApiServer::deny`]); a denied request is `403 Forbidden` with the
//!   authorizer's message shape (`pods "p" is forbidden: User "..." cannot patch resource
//!   "pods/status" in API group "" in the namespace "default"`).
//!
//! Not implemented: server-side apply (415), graceful deletion through the API (HTTP deletes
//! are immediate; [`FakeApiServer::mark_terminating`] sets a pod terminating), admission,
//! RBAC roles and bindings (only the denials above), protobuf/CBOR/Table and aggregated discovery,
//! HTTP/2, waiting for a watch version the server has not reached. Use
//! [`FakeApiServer::start`] inside a tokio runtime.

mod control;
mod discovery;
mod error;
mod event;
mod handle;
mod kubeconfig;
mod meta;
mod patch;
mod query;
mod rbac;
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
pub use rbac::{Denial, USER};
pub use resource::Resource;
