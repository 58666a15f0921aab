//! plexus-kube: the Kubernetes adapter of plexusd. It owns every call to the API server —
//! the NAD reflector behind plexus-core's `NadSource`, the metadata-only watch of this
//! node's pods, the asynchronous network-status publisher and event recorder — and the
//! kubelet pod-resources client. It must not resolve networks or touch netlink: resolution
//! stays pure in plexus-core, execution in plexus-engine.
