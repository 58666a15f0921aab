//! Errors of the node service, and their one mapping to gRPC statuses.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a resolution failure should be reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveFailure {
    /// The request (annotation, selection, manifest) is malformed.
    Invalid,
    /// A referenced network does not exist.
    NotFound,
    /// The pod may not use the network (namespace isolation).
    Forbidden,
    /// Configuration or NAD store trouble on the node.
    Internal,
    /// The NAD store cannot answer yet (first list from the API server pending, or the API
    /// server unreachable for a NAD not cached); retrying later succeeds.
    Unavailable,
}

/// Why a read from the API server failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFailure {
    /// The object does not exist.
    NotFound,
    /// plexusd's service account lacks the permission (the message names verb and resource).
    Forbidden,
    /// The API server did not answer (down, slow, unreachable).
    Unavailable,
    /// Any other answer.
    Other,
}

/// Everything that can go wrong in plexusd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config {}: {error}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The config file is not valid YAML for plexusd (unknown key, wrong type).
    #[error("invalid config {}: {error}", path.display())]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// The parse error (names the key and position).
        error: plexus_core::yaml::Error,
    },
    /// The config file nests deeper than plexusd reads (checked before parsing).
    #[error("invalid config {}: {too_deep}", path.display())]
    ConfigTooDeep {
        /// The file.
        path: PathBuf,
        /// Where the limit was passed, and the limit.
        too_deep: plexus_core::nesting::TooDeep,
    },
    /// A config key has a value that is not accepted.
    #[error("invalid config key `{key}`: {message}")]
    ConfigValue {
        /// The key, as written in the file.
        key: &'static str,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The request itself is malformed (missing field, bad manifest).
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
    },
    /// The pod's network namespace path is malformed, not a network namespace, or the
    /// host's own.
    #[error("invalid request: netns_path {path}: {reason}")]
    InvalidNetns {
        /// The path as given (quoted, shortened).
        path: String,
        /// Why, and what is accepted.
        reason: String,
    },
    /// The pod's network namespace path does not exist (the pod is gone, or never was).
    #[error("netns_path {path} does not exist: {message}")]
    NetnsMissing {
        /// The path as given.
        path: String,
        /// The error opening it.
        message: String,
    },
    /// Resolution of the pod's networks failed.
    #[error("resolving networks of pod {pod}: {message}")]
    Resolve {
        /// `namespace/name` of the pod.
        pod: String,
        /// How to classify it.
        kind: ResolveFailure,
        /// The resolver's message (names the network and what is accepted).
        message: String,
    },
    /// Setting up a sandbox's networks failed; what was made is undone.
    #[error("setting up sandbox {sandbox_id}: {message}")]
    Setup {
        /// The sandbox.
        sandbox_id: String,
        /// The engine's message (names the network, the cause and what was undone).
        message: String,
        /// The engine's fixed reason (`plugin_failed`, `link_missing`, `ipam`, ...).
        reason: &'static str,
    },
    /// The pod's state forbids the change (e.g. the interface name is already taken in
    /// its netns, Multus F8); nothing was left behind.
    #[error("sandbox {sandbox_id}: {message}")]
    Conflict {
        /// The sandbox.
        sandbox_id: String,
        /// The engine's message (names the interface and what was undone).
        message: String,
    },
    /// Tearing down a sandbox failed.
    #[error("tearing down sandbox {sandbox_id}: {message}")]
    Teardown {
        /// The sandbox.
        sandbox_id: String,
        /// The engine's message.
        message: String,
    },
    /// Hot-plugging a network failed.
    #[error("attaching {network} to sandbox {sandbox_id}: {message}")]
    Attach {
        /// The sandbox.
        sandbox_id: String,
        /// The network requested.
        network: String,
        /// The engine's message.
        message: String,
        /// The engine's fixed reason (`plugin_failed`, `link_missing`, `ipam`, ...).
        reason: &'static str,
    },
    /// Hot-unplugging an interface failed.
    #[error("detaching {interface} from sandbox {sandbox_id}: {message}")]
    Detach {
        /// The sandbox.
        sandbox_id: String,
        /// The interface.
        interface: String,
        /// The engine's message.
        message: String,
    },
    /// The state store could not be read.
    #[error("reading state of {record}: {message}")]
    ReadState {
        /// Which record: `sandbox <id>` or `the sandbox records`.
        record: String,
        /// The engine's message.
        message: String,
    },
    /// The request's deadline passed; the message says what was undone.
    #[error("deadline exceeded while {operation}: {undone}")]
    DeadlineExceeded {
        /// What was being done.
        operation: String,
        /// What was undone (or that nothing had been done yet).
        undone: String,
    },
    /// No recorded sandbox matches the selector.
    #[error("no sandbox recorded for {selector}")]
    SandboxNotFound {
        /// The selector as given.
        selector: String,
    },
    /// The pod has no interface of that name.
    #[error("sandbox {sandbox_id} has no interface {interface}")]
    InterfaceNotFound {
        /// The sandbox.
        sandbox_id: String,
        /// The interface asked for.
        interface: String,
    },
    /// A detach named an interface plexus does not own: the pod's primary (the runtime's) or
    /// one that was already there when plexus adopted the pod. The message says which.
    #[error("{message}")]
    DetachPrimary {
        /// The engine's message (names the interface and who owns it).
        message: String,
    },
    /// The selector names a pod with more than one recorded sandbox.
    #[error("pod {pod} has {count} recorded sandboxes; select one by sandbox id")]
    AmbiguousPod {
        /// `namespace/name`.
        pod: String,
        /// How many sandboxes matched.
        count: usize,
    },
    /// Too many requests are running and queued.
    #[error(
        "too many requests: {max_parallel} running and {max_queued} queued (concurrency.maxParallel / maxQueued)"
    )]
    QueueFull {
        /// Configured parallelism.
        max_parallel: usize,
        /// Configured queue length.
        max_queued: usize,
    },
    /// The caller's uid may not use the socket.
    #[error("uid {uid} is not allowed to use plexusd (allowedUids)")]
    PermissionDenied {
        /// The caller's uid.
        uid: u32,
    },
    /// The caller's credentials could not be read from the socket.
    #[error("cannot read the caller's peer credentials")]
    NoPeerCredentials,
    /// A call this server does not implement yet.
    #[error("{what} is not implemented yet")]
    Unimplemented {
        /// What is missing.
        what: &'static str,
    },
    /// Preparing or binding the unix socket failed.
    #[error("cannot listen on {}: {error}", path.display())]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Another process holds the state-directory lock.
    #[error(
        "another plexusd ({}) holds the state directory {} (lock file {}){}; stop it first, or start this one with --lock-wait <duration> (config lockWait) to take over when it exits",
        holder.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")),
        dir.display(),
        dir.join(crate::lock::LOCK_FILE).display(),
        if waited.is_zero() { String::new() } else { format!(" and still held it after waiting {waited:?}") }
    )]
    StateLocked {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it (in its pid namespace), when readable.
        holder: Option<u32>,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// The state-directory lock file could not be opened or locked.
    #[error("cannot lock the state directory with {}: {error}", path.display())]
    LockState {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Opening the engine failed.
    #[error("opening the engine: {message}")]
    OpenEngine {
        /// The engine's message.
        message: String,
    },
    /// The Kubernetes client cannot be set up (kubeconfig, service account, node name).
    #[error("Kubernetes mode (nadSource.kubernetes): {message}")]
    Kubernetes {
        /// plexus-kube's message.
        message: String,
    },
    /// Kubernetes mode is needed for the call (plexusd reads NADs from a directory).
    #[error(
        "{what} needs Kubernetes mode (nadSource.kubernetes in the plexusd config); this plexusd reads NADs from a directory"
    )]
    NotKubernetesMode {
        /// What was asked.
        what: &'static str,
    },
    /// Reading an object from the API server failed.
    #[error("{message}")]
    ApiRead {
        /// How it failed.
        kind: ApiFailure,
        /// What was read and why it failed (names the object, or the verb and resource a
        /// 403 lacks).
        message: String,
    },
    /// Start-up recovery failed.
    #[error("recovering interrupted work: {message}")]
    Recover {
        /// The engine's message.
        message: String,
    },
    /// The gRPC server failed.
    #[error("serving gRPC: {error}")]
    Serve {
        /// The transport error.
        error: tonic::transport::Error,
    },
    /// A worker task died (panic) before answering.
    #[error("internal error: worker for {operation} stopped: {message}")]
    Worker {
        /// What it was doing.
        operation: String,
        /// The join error.
        message: String,
    },
}

impl Error {
    /// A short fixed label for metrics (never a message: it must stay low-cardinality).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidRequest { .. } | Error::InvalidNetns { .. } => "invalid_request",
            Error::NetnsMissing { .. } => "netns_missing",
            Error::Resolve { kind, .. } => match kind {
                ResolveFailure::Invalid => "invalid_selection",
                ResolveFailure::NotFound => "network_not_found",
                ResolveFailure::Forbidden => "namespace_isolation",
                ResolveFailure::Internal => "resolver",
                ResolveFailure::Unavailable => "nad_store_unavailable",
            },
            Error::Setup { reason, .. } | Error::Attach { reason, .. } => reason,
            Error::Teardown { .. } | Error::Detach { .. } => "detach_failed",
            Error::DeadlineExceeded { .. } => "deadline_exceeded",
            Error::SandboxNotFound { .. } | Error::InterfaceNotFound { .. } => "not_found",
            Error::AmbiguousPod { .. } => "ambiguous_pod",
            Error::DetachPrimary { .. } => "primary",
            Error::Conflict { .. } => "interface_exists",
            Error::QueueFull { .. } => "queue_full",
            Error::PermissionDenied { .. } | Error::NoPeerCredentials => "permission_denied",
            Error::Unimplemented { .. } => "unimplemented",
            Error::NotKubernetesMode { .. } => "not_kubernetes_mode",
            Error::ApiRead { kind, .. } => match kind {
                ApiFailure::NotFound => "not_found",
                ApiFailure::Forbidden => "api_forbidden",
                ApiFailure::Unavailable => "api_unavailable",
                ApiFailure::Other => "api_error",
            },
            _ => "internal",
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic::Code;
        let code = match &err {
            Error::InvalidRequest { .. } | Error::InvalidNetns { .. } => Code::InvalidArgument,
            Error::NetnsMissing { .. } => Code::FailedPrecondition,
            Error::Resolve { kind, .. } => match kind {
                ResolveFailure::Invalid => Code::InvalidArgument,
                ResolveFailure::NotFound => Code::NotFound,
                ResolveFailure::Forbidden => Code::PermissionDenied,
                ResolveFailure::Internal => Code::Internal,
                ResolveFailure::Unavailable => Code::Unavailable,
            },
            Error::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Error::SandboxNotFound { .. } | Error::InterfaceNotFound { .. } => Code::NotFound,
            Error::AmbiguousPod { .. } | Error::Conflict { .. } | Error::DetachPrimary { .. } => {
                Code::FailedPrecondition
            }
            Error::QueueFull { .. } => Code::ResourceExhausted,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::NoPeerCredentials => Code::Unauthenticated,
            Error::Unimplemented { .. } => Code::Unimplemented,
            Error::NotKubernetesMode { .. } => Code::FailedPrecondition,
            Error::ApiRead { kind, .. } => match kind {
                ApiFailure::NotFound => Code::NotFound,
                ApiFailure::Forbidden => Code::PermissionDenied,
                ApiFailure::Unavailable => Code::Unavailable,
                ApiFailure::Other => Code::Internal,
            },
            Error::Setup { .. }
            | Error::Teardown { .. }
            | Error::Attach { .. }
            | Error::Detach { .. }
            | Error::ReadState { .. }
            | Error::Worker { .. } => Code::Internal,
            Error::ReadConfig { .. }
            | Error::ParseConfig { .. }
            | Error::ConfigTooDeep { .. }
            | Error::ConfigValue { .. }
            | Error::Listen { .. }
            | Error::StateLocked { .. }
            | Error::LockState { .. }
            | Error::OpenEngine { .. }
            | Error::Kubernetes { .. }
            | Error::Recover { .. }
            | Error::Serve { .. } => Code::Internal,
        };
        tonic::Status::new(code, err.to_string())
    }
}
