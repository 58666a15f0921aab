//! Component tests of the Kubernetes adapter against plexus-kube-fake. The fake stands in for
//! the real API server, which cannot run on the machines where plexus is tested: it serves the
//! documented API over HTTPS with a bearer token and a generated kubeconfig, so kube-rs's real
//! client, TLS and auth code run.

mod client;
mod event;
mod nad;
mod pod;
mod rbac;
mod status;
mod support;
