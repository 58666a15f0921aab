//! Errors of the domain model. Every variant a user can cause says what was wrong,
//! where, and what is accepted.
//!
//! Callers classify errors with [`Error::kind`] (a stable kebab-case name, also used in
//! explain output), never by matching message text.

use std::path::PathBuf;

/// Errors of plexus-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A whole annotation value is unusable (size, JSON syntax, shape).
    #[error("annotation {annotation}: {reason}")]
    InvalidAnnotation {
        /// Annotation key.
        annotation: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// One network selection (an item of the comma list or an element of the JSON list)
    /// is unusable.
    #[error("annotation {annotation}: item {position} ({item}): {reason}")]
    InvalidSelection {
        /// Annotation key (or `selection` for a hot-plug request).
        annotation: String,
        /// 1-based position of the item.
        position: usize,
        /// The item's text, shortened.
        item: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// More than one element in `v1.multus-cni.io/default-network` (F6).
    #[error(
        "more than one default network is specified: {value} (v1.multus-cni.io/default-network takes exactly one network: [namespace/]name[@interface] or a one-element JSON list)"
    )]
    MultipleDefaultNetworks {
        /// The annotation value, shortened.
        value: String,
    },
    /// The pod default-network override cannot be honoured in this mode.
    #[error(
        "pod {pod}: v1.multus-cni.io/default-network is not supported when the runtime sets up the cluster network (NRI mode); remove the annotation or use the plexus-cni shim"
    )]
    DefaultNetworkUnsupported {
        /// `namespace/name` of the pod.
        pod: String,
    },
    /// Two attachments of one pod would get the same interface name.
    #[error(
        "pod {pod}: interface name {interface} is used by both {first} and {second}; give each network a distinct interface (ns/name@ifname or \"interface\")"
    )]
    DuplicateInterface {
        /// `namespace/name` of the pod.
        pod: String,
        /// The colliding name.
        interface: String,
        /// The network that took the name first.
        first: String,
        /// The network that wanted it again.
        second: String,
    },
    /// A selection refers to another namespace while namespace isolation is on (F31).
    #[error(
        "namespace isolation enabled, annotation violates permission, pod is in namespace {pod_namespace} but refers to target namespace {target_namespace} (network {network}; allowed: the pod's namespace and {allowed})"
    )]
    NamespaceIsolation {
        /// The pod's namespace.
        pod_namespace: String,
        /// The namespace the selection refers to.
        target_namespace: String,
        /// `namespace/name` of the selected network.
        network: String,
        /// The global namespaces, comma-separated.
        allowed: String,
    },
    /// Default-route gateways ask for ECMP (F15).
    #[error(
        "default-route: more than one IPv{family} gateway requested ({gateways}); multus does not support ECMP for default-route, give at most one gateway per family across all networks"
    )]
    DefaultRouteEcmp {
        /// 4 or 6.
        family: u8,
        /// The gateways, with their networks.
        gateways: String,
    },
    /// A hot-plug selection asks for something only pod creation can do.
    #[error("selection {selection}: {reason}")]
    UnsupportedHotplug {
        /// The selection, shortened.
        selection: String,
        /// What is not supported and what is accepted.
        reason: String,
    },
    /// A referenced NetworkAttachmentDefinition does not exist.
    #[error(
        "pod {pod}: cannot find a network-attachment-definition ({name}) in namespace ({namespace}), requested by {requested_by}; create it there or fix the reference"
    )]
    NetworkNotFound {
        /// `namespace/name` of the pod.
        pod: String,
        /// Where the reference was written (annotation item, default-network, hot-plug).
        requested_by: String,
        /// NAD namespace.
        namespace: String,
        /// NAD name.
        name: String,
    },
    /// The configured cluster network (or one of the default networks) cannot be found.
    #[error(
        "failed to get {role} {value} in namespace {namespace}: neither a network-attachment-definition {namespace}/{value} nor a CNI config named {value} in {conf_dir}"
    )]
    ConfiguredNetworkNotFound {
        /// `clusterNetwork` or `defaultNetworks`.
        role: &'static str,
        /// The configured value.
        value: String,
        /// The namespace searched for a NAD.
        namespace: String,
        /// The directory searched for a config file.
        conf_dir: PathBuf,
    },
    /// The cluster network (or a default network) is given as a path that does not
    /// exist (F28).
    #[error(
        "failed to get {role} {path}: no such file or directory; accepted: a CNI config file (.conf or .json with \"type\", .conflist with \"plugins\") or a directory holding one"
    )]
    ConfiguredNetworkPathNotFound {
        /// `clusterNetwork` or `defaultNetworks`.
        role: &'static str,
        /// The configured path.
        path: PathBuf,
    },
    /// A resolver setting is unusable.
    #[error("resolver config {field}: {reason}")]
    InvalidConfig {
        /// The setting (camelCase, as in the daemon file).
        field: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// No cluster network is configured although plexus must execute it (shim mode, F27).
    #[error(
        "at least one delegate/clusterNetwork must be specified: plexus executes the cluster network (shim mode), so set clusterNetwork (a NAD name, a CNI config name or a path) or delegates (inline CNI configs), or name the pod's network in v1.multus-cni.io/default-network"
    )]
    ClusterNetworkMissing,
    /// The NAD store failed to answer.
    #[error("network-attachment-definition store: {reason}")]
    NadStore {
        /// What failed.
        reason: String,
    },
    /// The NAD store cannot answer yet (its first list from the API server has not
    /// completed); the lookup succeeds when retried later.
    #[error("network-attachment-definition {namespace}/{name}: {reason}")]
    NadStoreNotReady {
        /// NAD namespace.
        namespace: String,
        /// NAD name.
        name: String,
        /// What is awaited.
        reason: String,
    },
    /// A NAD manifest directory cannot be listed.
    #[error("cannot read network directory {path}: {cause}")]
    ReadNadDir {
        /// The directory.
        path: PathBuf,
        /// The cause (interpolated into the message, so not a `source`).
        cause: std::io::Error,
    },
    /// A NAD manifest file cannot be read.
    #[error("cannot read network file {path}: {cause}")]
    ReadNadFile {
        /// The file.
        path: PathBuf,
        /// The cause (interpolated into the message, so not a `source`).
        cause: std::io::Error,
    },
    /// A NAD manifest file is larger than plexusd reads.
    #[error("network file {path} is {size} bytes, more than the {limit} accepted")]
    NadFileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// A NAD was not found, and files of the directory that may define it are unusable.
    #[error(
        "cannot find network-attachment-definition {namespace}/{name} in {dir}, and it may be defined in a file plexusd cannot use: {problems}; fix or remove those files"
    )]
    NadFilesUnusable {
        /// NAD namespace.
        namespace: String,
        /// NAD name.
        name: String,
        /// The NAD directory.
        dir: PathBuf,
        /// The unusable files and why, shortened.
        problems: String,
    },
    /// One document of a NAD manifest file is malformed.
    #[error("network file {path}, document {document}: {reason}")]
    ParseNad {
        /// The file.
        path: PathBuf,
        /// 1-based document index within the file.
        document: usize,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// The same NAD is defined in two files.
    #[error(
        "network-attachment-definition {namespace}/{name} is defined twice, in {first} and {second}; keep one"
    )]
    DuplicateNad {
        /// NAD namespace.
        namespace: String,
        /// NAD name.
        name: String,
        /// One file.
        first: PathBuf,
        /// The other file.
        second: PathBuf,
    },
    /// A network's CNI config (NAD spec.config or file) is unusable.
    #[error("network {network}: {reason}")]
    InvalidNetworkConfig {
        /// Display name of the network (`namespace/name` or a file path).
        network: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A plugin `type` is not a bare plugin name.
    #[error(
        "network {network}: plugin {plugin_index} has type {plugin_type:?}: {reason}; a type must be a bare plugin name matching ^[A-Za-z0-9][A-Za-z0-9._-]*$ (at most 64 bytes)"
    )]
    InvalidPluginType {
        /// Display name of the network.
        network: String,
        /// 0-based index of the plugin in the chain.
        plugin_index: usize,
        /// The offending type, shortened.
        plugin_type: String,
        /// What is wrong.
        reason: String,
    },
    /// No CNI config with the wanted name in the on-disk config directory (F20).
    #[error(
        "network {network}: no network available in the name {name} in cni dir {dir} (without a spec.config, a CNI config file whose \"name\" is {name} must be there)"
    )]
    NetworkConfigFileNotFound {
        /// Display name of the network.
        network: String,
        /// The config `name` searched for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// No usable CNI config with the wanted name on disk, and some files there could not be
    /// read or parsed (one of them may be it).
    #[error(
        "network {network}: no usable CNI config named {name} in {dir}, and these files there cannot be used (one may be it): {problems}"
    )]
    UnusableNetworkConfigs {
        /// Display name of the network.
        network: String,
        /// The config `name` searched for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
        /// The unusable files and why.
        problems: String,
    },
    /// The on-disk CNI config directory holds no config file at all (F20).
    #[error(
        "network {network}: no networks found in {dir} (no .conf, .conflist or .json file there)"
    )]
    NoNetworkConfigs {
        /// Display name of the network.
        network: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A pod manifest given to explain is unusable.
    #[error("pod manifest: {reason}")]
    InvalidPodManifest {
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A sandbox id given by a caller is not a plain name (see [`crate::id::SandboxId`]).
    #[error("sandbox id {id}: {reason}; {rule}", rule = crate::id::SANDBOX_ID_RULE)]
    InvalidSandboxId {
        /// The id, quoted, escaped and shortened.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A CNI network name breaks libcni's rule (see [`crate::id::NetworkName`]).
    #[error("network name {name:?}: {reason}; {rule}", rule = crate::id::NETWORK_NAME_RULE)]
    InvalidNetworkName {
        /// The name, shortened.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An interface name given by a caller breaks the CNI rule (see
    /// [`crate::id::InterfaceName`]).
    #[error("{reason}")]
    InvalidInterfaceName {
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A CNI config file or directory cannot be read.
    #[error("cannot read CNI config {path}: {cause}")]
    ReadNetworkConfig {
        /// The file or directory.
        path: PathBuf,
        /// The cause (interpolated into the message, so not a `source`).
        cause: std::io::Error,
    },
}

impl Error {
    /// A stable kebab-case name for the kind of error (used by explain and APIs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidAnnotation { .. } => "invalid-annotation",
            Error::InvalidSelection { .. } => "invalid-selection",
            Error::MultipleDefaultNetworks { .. } => "multiple-default-networks",
            Error::DefaultNetworkUnsupported { .. } => "default-network-unsupported",
            Error::DuplicateInterface { .. } => "duplicate-interface",
            Error::NamespaceIsolation { .. } => "namespace-isolation",
            Error::DefaultRouteEcmp { .. } => "default-route-ecmp",
            Error::UnsupportedHotplug { .. } => "unsupported-hotplug",
            Error::NetworkNotFound { .. } => "network-not-found",
            Error::ConfiguredNetworkNotFound { .. }
            | Error::ConfiguredNetworkPathNotFound { .. } => "configured-network-not-found",
            Error::ClusterNetworkMissing => "cluster-network-missing",
            Error::InvalidConfig { .. } => "invalid-config",
            Error::NadStore { .. } => "nad-store",
            Error::NadStoreNotReady { .. } => "nad-store-not-ready",
            Error::ReadNadDir { .. } => "read-nad-dir",
            Error::ReadNadFile { .. } | Error::NadFileTooLarge { .. } => "read-nad-file",
            Error::NadFilesUnusable { .. } => "unusable-nad-files",
            Error::ParseNad { .. } => "parse-nad",
            Error::DuplicateNad { .. } => "duplicate-nad",
            Error::InvalidNetworkConfig { .. } => "invalid-network-config",
            Error::InvalidPluginType { .. } => "invalid-plugin-type",
            Error::NetworkConfigFileNotFound { .. } | Error::NoNetworkConfigs { .. } => {
                "network-config-file-not-found"
            }
            Error::ReadNetworkConfig { .. } | Error::UnusableNetworkConfigs { .. } => {
                "read-network-config"
            }
            Error::InvalidPodManifest { .. } => "invalid-pod-manifest",
            Error::InvalidSandboxId { .. } => "invalid-sandbox-id",
            Error::InvalidInterfaceName { .. } => "invalid-interface-name",
            Error::InvalidNetworkName { .. } => "invalid-network-name",
        }
    }

    /// True when the same lookup can succeed if retried later without any change to the
    /// pod or the node (the NAD store is still syncing).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::NadStoreNotReady { .. })
    }

    /// True when the error was caused by the pod's own input (annotations, selections)
    /// rather than by the node's configuration or the NAD store.
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidAnnotation { .. }
                | Error::InvalidSelection { .. }
                | Error::MultipleDefaultNetworks { .. }
                | Error::DuplicateInterface { .. }
                | Error::NamespaceIsolation { .. }
                | Error::DefaultRouteEcmp { .. }
                | Error::UnsupportedHotplug { .. }
                | Error::NetworkNotFound { .. }
                | Error::DefaultNetworkUnsupported { .. }
                | Error::InvalidPodManifest { .. }
                | Error::InvalidSandboxId { .. }
                | Error::InvalidInterfaceName { .. }
        )
    }
}

/// Shortens user text for messages: at most `max` characters, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max).collect();
        s.push('…');
        s
    }
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
