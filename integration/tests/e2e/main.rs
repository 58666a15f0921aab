//! End-to-end tests against a private containerd 1.7 with NRI: the harness alone
//! (`primary`), then plexusd + plexus-nri (`networks`, `failures`, `restart`), the CNI shim path
//! with NRI disabled (`shim`), and plexusd in Kubernetes mode against a fake API server (`kube`).
//!
//! One test binary so the suite links once; nextest runs the tests one at a time
//! (test group `e2e`). Each test owns its containerd, namespaces and run dir.

mod burst;
mod common;
mod daemonset;
mod early;
mod failures;
mod finishing;
mod image;
mod kube;
mod networks;
mod primary;
mod restart;
mod shim;
mod teardown;
mod traces;
