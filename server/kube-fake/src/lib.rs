//! A fake Kubernetes API server for tests, and only for tests: it serves the subset of the
//! real API that plexus uses over HTTPS with a bearer token, writes a kubeconfig for it, and
//! follows the API's documented conventions (list/watch with resourceVersion, 410 Gone,
//! field selectors, metadata-only lists, merge patches, events.k8s.io/v1 validation, Status
//! objects), with controls to stop, restart, inject failures, compact history and rotate the
//! token. The real kube-rs client, TLS and auth paths run against it.
