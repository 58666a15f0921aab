//! Validation of the names a runtime passes to a plugin, with libcni's rules and error
//! codes (`pkg/utils/utils.go`). The errors are CNI error objects, ready to hand back to
//! a runtime.

use super::{ErrorCode, PluginError};

/// Longest interface name the kernel accepts (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the pattern for container ids and network names.
fn is_cni_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a container id (`CNI_CONTAINERID`).
pub fn container_id(id: &str) -> Result<(), PluginError> {
    if id.is_empty() {
        return Err(PluginError::new(
            ErrorCode::UNKNOWN_CONTAINER,
            "missing containerID",
            "",
        ));
    }
    if !is_cni_name(id) {
        return Err(PluginError::new(
            ErrorCode::INVALID_ENVIRONMENT,
            "invalid characters in containerID",
            id,
        ));
    }
    Ok(())
}

/// Checks a network `name`.
pub fn network_name(name: &str) -> Result<(), PluginError> {
    if name.is_empty() {
        return Err(PluginError::new(
            ErrorCode::INVALID_NETWORK_CONFIG,
            "missing network name",
            "",
        ));
    }
    if !is_cni_name(name) {
        return Err(PluginError::new(
            ErrorCode::INVALID_NETWORK_CONFIG,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(())
}

/// Why an interface name breaks the CNI rule (libcni `ValidateInterfaceName`). The one
/// rule for every place a name enters (annotation, CNI_IFNAME, the node API, the cache);
/// each edge renders it in its own protocol's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfnameProblem {
    /// No name.
    Empty,
    /// Longer than 15 bytes (the length).
    TooLong(usize),
    /// `.` or `..`.
    Dot,
    /// Contains `/`, `:` or whitespace.
    BadChar,
    /// Contains NUL (not in libcni's rule, but no kernel name can hold it).
    Nul,
}

/// The CNI rule for interface names: 1–15 bytes, not `.` or `..`, no `/`, `:`, NUL or
/// whitespace. `None` when `name` follows it.
pub fn ifname_problem(name: &str) -> Option<IfnameProblem> {
    if name.is_empty() {
        Some(IfnameProblem::Empty)
    } else if name.len() > MAX_IFNAME_LEN {
        Some(IfnameProblem::TooLong(name.len()))
    } else if name == "." || name == ".." {
        Some(IfnameProblem::Dot)
    } else if name.contains(['/', ':']) || name.chars().any(char::is_whitespace) {
        Some(IfnameProblem::BadChar)
    } else if name.contains('\0') {
        Some(IfnameProblem::Nul)
    } else {
        None
    }
}

/// Checks an interface name (`CNI_IFNAME`) by [`ifname_problem`], with libcni's messages.
pub fn ifname(name: &str) -> Result<(), PluginError> {
    let (msg, details) = match ifname_problem(name) {
        None => return Ok(()),
        Some(IfnameProblem::Empty) => ("interface name is empty", String::new()),
        Some(IfnameProblem::TooLong(_)) => (
            "interface name is too long",
            format!(
                "interface name should be less than {} characters",
                MAX_IFNAME_LEN + 1
            ),
        ),
        Some(IfnameProblem::Dot) => ("interface name is . or ..", String::new()),
        Some(IfnameProblem::BadChar) => (
            "interface name contains / or : or whitespace characters",
            String::new(),
        ),
        Some(IfnameProblem::Nul) => ("interface name contains NUL", String::new()),
    };
    Err(PluginError::new(
        ErrorCode::INVALID_ENVIRONMENT,
        msg,
        details,
    ))
}
