//! Errors of the Kubernetes adapter. Each names the operation, the object and what to do;
//! a 403 names the verb and resource the service account lacks (see `docs/kubernetes.md`).

use std::path::PathBuf;

/// Errors of plexus-kube.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `nadSource.kubernetes` setting is unusable.
    #[error("nadSource.kubernetes.{field}: {reason}")]
    InvalidSettings {
        /// The setting (camelCase, as in the daemon file).
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The kubeconfig file cannot be read or does not describe a usable cluster.
    #[error(
        "kubeconfig {path}: {cause}; give a kubeconfig with a current-context (nadSource.kubernetes.kubeconfig) or run in a pod with a service account"
    )]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause (interpolated, so not a `source`).
        cause: String,
    },
    /// No kubeconfig was given and the in-cluster service account is not usable.
    #[error(
        "no kubeconfig given and not in a cluster: {cause}; set nadSource.kubernetes.kubeconfig or run plexusd in a pod with a service account (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount)"
    )]
    InCluster {
        /// The cause.
        cause: String,
    },
    /// The HTTP client cannot be built from the settings (TLS material, proxy).
    #[error("building the Kubernetes client: {cause}")]
    BuildClient {
        /// The cause.
        cause: String,
    },
    /// The service account lacks a permission.
    #[error(
        "forbidden: plexus needs `{verb}` on `{resource}`{scope}; grant it in the ClusterRole (see docs/kubernetes.md RBAC): {message}"
    )]
    Forbidden {
        /// The verb (`get`, `list`, `watch`, `patch`, `create`).
        verb: &'static str,
        /// The resource, with its group and subresource (`pods/status`,
        /// `network-attachment-definitions.k8s.cni.cncf.io`).
        resource: &'static str,
        /// ` in namespace X` or empty for cluster scope.
        scope: String,
        /// The API server's message.
        message: String,
    },
    /// The API server answered a request with an error status.
    #[error("{operation}: the API server answered {code}: {message}")]
    Api {
        /// What was being done (`GET network-attachment-definition ns/name`).
        operation: String,
        /// HTTP status code.
        code: u16,
        /// The Status message.
        message: String,
    },
    /// The API server could not be reached or the answer could not be read.
    #[error("{operation}: {cause}")]
    Transport {
        /// What was being done.
        operation: String,
        /// The cause.
        cause: String,
    },
    /// A request did not complete in time.
    #[error("{operation}: no answer from the API server within {timeout:?}")]
    Timeout {
        /// What was being done.
        operation: String,
        /// The limit.
        timeout: std::time::Duration,
    },
}

impl Error {
    /// Classifies a kube-rs error of `operation` (a 403 becomes [`Error::Forbidden`] naming
    /// `verb` on `resource`).
    pub(crate) fn from_kube(
        err: kube::Error,
        operation: impl Into<String>,
        verb: &'static str,
        resource: &'static str,
        namespace: Option<&str>,
    ) -> Self {
        match err {
            kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
                verb,
                resource,
                scope: scope(namespace),
                message: status.message.clone(),
            },
            kube::Error::Api(status) => Error::Api {
                operation: operation.into(),
                code: status.code,
                message: status.message.clone(),
            },
            other => Error::Transport {
                operation: operation.into(),
                cause: other.to_string(),
            },
        }
    }
}

/// ` in namespace X`, or empty for a cluster-wide request.
pub(crate) fn scope(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!(" in namespace {ns}"),
        None => " cluster-wide".to_string(),
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
