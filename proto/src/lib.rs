//! Wire types of plexus, and nothing else: the `plexus.v1` node API (gRPC, with tonic
//! client and server stubs), the NRI / ttrpc messages the NRI plugin speaks and the
//! kubelet's pod-resources API (`v1.PodResourcesLister`) plexusd reads.
//!
//! Generated code only. Domain code never sees these types: each edge converts them
//! in its own `convert` module.

#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// The plexus node API.
pub mod v1 {
    tonic::include_proto!("plexus.v1");

    /// Encoded file descriptor set of the node API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("plexus_v1_descriptor");
}

/// The kubelet's pod-resources API (`v1.PodResourcesLister`, the subset plexus reads: the
/// device ids allocated to a pod per resource name), client and server stubs.
pub mod podresources {
    tonic::include_proto!("v1");
}

/// NRI plugin API messages (package `nri.pkg.api.v1alpha1`, subset).
pub mod nri {
    include!(concat!(env!("OUT_DIR"), "/nri.pkg.api.v1alpha1.rs"));
}

/// The ttrpc envelope and status messages.
pub mod ttrpc {
    include!(concat!(env!("OUT_DIR"), "/ttrpc.rs"));
}
