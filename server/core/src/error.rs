//! Errors of the domain model. Every variant a user can cause says what was wrong,
//! where, and what is accepted.

/// Errors of plexus-core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Placeholder until the resolution errors land.
    #[error("{0}")]
    Other(String),
}

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
