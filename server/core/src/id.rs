//! Validated identities that come from callers and end up in file names: [`SandboxId`],
//! [`InterfaceName`] (in `id/interface.rs`) and [`NetworkName`] (in `id/network.rs`).
//!
//! A sandbox id names the state record (`<state dir>/<id>.json`), the libcni cache entries
//! (`<network>-<id>-<ifname>`) and the host-local leases of a sandbox, so an id that is not
//! a plain name would let a caller read, write or rename files outside those directories.
//! The rule is the one libcni applies to `CNI_CONTAINERID` (the sandbox id *is* the CNI
//! container id) with a length cap: what containerd and CRI-O generate (64 lowercase hex
//! digits) and every hand-made id of the tests and the demo pass it; `.`, `..`, `/`, NUL,
//! the empty string and oversized ids cannot. Construct it once at the edge (the gRPC
//! conversion); nothing downstream builds a path from anything else. This module owns the
//! rule; it does no I/O.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The impls every validated string newtype of this module shares: shown and compared as
/// its text, converted from text through its validating `new`, and back into a `String`.
macro_rules! string_newtype {
    ($t:ident) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl TryFrom<String> for $t {
            type Error = crate::error::Error;
            fn try_from(text: String) -> Result<$t, crate::error::Error> {
                $t::new(text)
            }
        }

        impl TryFrom<&str> for $t {
            type Error = crate::error::Error;
            fn try_from(text: &str) -> Result<$t, crate::error::Error> {
                $t::new(text)
            }
        }

        impl std::str::FromStr for $t {
            type Err = crate::error::Error;
            fn from_str(text: &str) -> Result<$t, crate::error::Error> {
                $t::new(text)
            }
        }

        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.0
            }
        }
    };
}
use string_newtype;

mod interface;
mod network;
pub use interface::InterfaceName;
pub use network::{NETWORK_NAME_RULE, NetworkName};

/// Longest sandbox id accepted, in bytes.
pub const SANDBOX_ID_MAX_LEN: usize = 128;

/// The sandbox id rule, as quoted in every error about one.
pub const SANDBOX_ID_RULE: &str = "a sandbox id is 1 to 128 bytes of ASCII letters, digits, '_', '.' and '-', starting with a letter or digit (containerd and CRI-O generate 64 lowercase hex digits)";

/// Characters of a rejected id shown in an error (the rest is elided).
const SHOWN: usize = 40;

/// A runtime sandbox id (also the CNI container id) that is safe to use in a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxId(String);

impl SandboxId {
    /// Validates `id` against [`SANDBOX_ID_RULE`].
    pub fn new(id: impl Into<String>) -> Result<SandboxId, Error> {
        let id = id.into();
        match problem(&id) {
            None => Ok(SandboxId(id)),
            Some(reason) => Err(Error::InvalidSandboxId {
                id: shown(&id),
                reason,
            }),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What is wrong with `id`, or `None` when it follows the rule.
fn problem(id: &str) -> Option<String> {
    let bytes = id.as_bytes();
    let Some(&first) = bytes.first() else {
        return Some("it is empty".to_owned());
    };
    if bytes.len() > SANDBOX_ID_MAX_LEN {
        return Some(format!(
            "it is {} bytes long, more than {SANDBOX_ID_MAX_LEN}",
            bytes.len()
        ));
    }
    if !first.is_ascii_alphanumeric() {
        return Some(format!(
            "it starts with {:?}",
            id.chars().next().unwrap_or_default()
        ));
    }
    id.char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .map(|(at, c)| format!("it contains {c:?} at byte {at}"))
}

/// `id` for an error message: quoted, escaped, at most [`SHOWN`] characters.
fn shown(id: &str) -> String {
    let mut out: String = id.chars().take(SHOWN).collect();
    out = format!("{out:?}");
    if id.chars().count() > SHOWN {
        out.push_str(&format!("… ({} bytes)", id.len()));
    }
    out
}

string_newtype!(SandboxId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_and_hand_made_ids_are_accepted() {
        let containerd = "9f2a".repeat(16);
        for id in [
            containerd.as_str(),
            "sb1",
            "sb-hot",
            "sandbox-otlp-1",
            "0123456789abcdef",
            "Pod_1.a-b",
            &"a".repeat(SANDBOX_ID_MAX_LEN),
        ] {
            let parsed = SandboxId::new(id).unwrap();
            assert_eq!(parsed.as_str(), id);
        }
    }

    #[test]
    fn ids_that_could_name_another_file_are_refused_with_the_rule() {
        let long = "a".repeat(SANDBOX_ID_MAX_LEN + 1);
        for (id, why) in [
            ("", "it is empty"),
            (".", "it starts with '.'"),
            ("..", "it starts with '.'"),
            ("../../../../tmp/x", "it starts with '.'"),
            ("/tmp/x", "it starts with '/'"),
            ("a/b", "it contains '/' at byte 1"),
            ("a\0b", "it contains '\\0' at byte 1"),
            ("-x", "it starts with '-'"),
            ("_x", "it starts with '_'"),
            ("a b", "it contains ' ' at byte 1"),
            ("sbé", "it contains 'é' at byte 2"),
            (long.as_str(), "it is 129 bytes long, more than 128"),
        ] {
            let err = SandboxId::new(id).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.kind(), "invalid-sandbox-id", "{msg}");
            assert!(msg.contains(why), "{id:?}: {msg}");
            assert!(msg.contains(SANDBOX_ID_RULE), "{msg}");
        }
    }

    #[test]
    fn a_huge_id_is_shown_as_a_short_escaped_prefix() {
        let id = format!("\n{}", "x".repeat(1 << 20));
        let msg = SandboxId::new(id).unwrap_err().to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(msg.contains(r#""\nxxx"#), "{msg}");
        assert!(msg.contains("(1048577 bytes)"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let id: SandboxId = serde_json::from_str(r#""sb1""#).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""sb1""#);
        assert!(serde_json::from_str::<SandboxId>(r#""../x""#).is_err());
    }
}
