//! NetworkAttachmentDefinitions: the [`Nad`] type, the [`NadSource`] lookup trait the
//! resolver uses, an in-memory source and the `networks.d/` directory source.
//!
//! A NAD is data written by anyone allowed to create one; this module only carries it.
//! Interpreting `spec.config` is `netconf`'s job. The only I/O in plexus-core lives in
//! [`DirSource`], which reads manifest files; the Kubernetes-backed source belongs to
//! the daemon.

mod dir;
mod manifest;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use crate::error::Result;

pub use dir::{DirSource, MAX_FILE_BYTES};
pub use manifest::{API_VERSION, KIND, parse_documents};

/// NAD annotation naming the device-plugin resource (F22).
pub const RESOURCE_NAME: &str = "k8s.v1.cni.cncf.io/resourceName";
/// NAD annotation choosing the delegation path; `exec` forces a real CNI plugin exec.
pub const DELEGATION: &str = "plexus.io/delegation";

/// One NetworkAttachmentDefinition, reduced to what resolution reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nad {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.config`; empty for a spec-less NAD (config looked up on disk, F20).
    pub config: String,
}

/// How a NAD asks to be executed (annotation `plexus.io/delegation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delegation {
    /// Native driver when one fits, else exec (no annotation, or `auto`).
    Auto,
    /// Always exec the CNI plugin binaries (`exec`).
    Exec,
}

impl Nad {
    /// Builds a NAD with a `spec.config`.
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        config: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            annotations: BTreeMap::new(),
            config: config.into(),
        }
    }

    /// `namespace/name`, the network's display name (F21).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The device-plugin resource name, if annotated.
    pub fn resource_name(&self) -> Option<&str> {
        self.annotations
            .get(RESOURCE_NAME)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The requested delegation path; an unknown value is an error message naming
    /// what is accepted.
    pub fn delegation(&self) -> std::result::Result<Delegation, String> {
        match self.annotations.get(DELEGATION).map(|v| v.trim()) {
            None | Some("") | Some("auto") => Ok(Delegation::Auto),
            Some("exec") => Ok(Delegation::Exec),
            Some(other) => Err(format!(
                "annotation {DELEGATION} is {:?}; accepted: exec or auto",
                crate::error::shorten(other, 40)
            )),
        }
    }
}

/// Looks NADs up by namespace and name. Implementations must be cheap to call on the
/// pod-setup path (a cache, never a remote call per lookup).
pub trait NadSource: Send + Sync {
    /// The NAD `namespace/name`, `Ok(None)` when it does not exist. An error means the
    /// source cannot answer for this name (e.g. its definition is broken or ambiguous).
    fn get(&self, namespace: &str, name: &str) -> Result<Option<Nad>>;
}

/// A fixed set of NADs held in memory (tests, tooling, explain of a local file).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    nads: HashMap<(String, String), Nad>,
}

impl MemorySource {
    /// A source holding `nads` (a later NAD with the same key replaces an earlier one).
    pub fn new(nads: impl IntoIterator<Item = Nad>) -> Self {
        let mut source = Self::default();
        for nad in nads {
            source.insert(nad);
        }
        source
    }

    /// Adds or replaces a NAD.
    pub fn insert(&mut self, nad: Nad) {
        self.nads
            .insert((nad.namespace.clone(), nad.name.clone()), nad);
    }
}

impl NadSource for MemorySource {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<Nad>> {
        Ok(self
            .nads
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }
}

impl<T: NadSource + ?Sized> NadSource for std::sync::Arc<T> {
    fn get(&self, namespace: &str, name: &str) -> Result<Option<Nad>> {
        (**self).get(namespace, name)
    }
}
