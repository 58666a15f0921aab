//! [`InterfaceName`]: an interface name inside a pod, checked once where it enters.
//!
//! An interface name is a kernel link name and also part of file names: the libcni cache
//! entry `<network>-<sandbox>-<ifname>` and a DHCP lease file. The rule is the CNI one
//! ([`crate::cni::validate::ifname_problem`], libcni's `ValidateInterfaceName`): 1 to 15
//! bytes, not `.` or `..`, no `/`, `:`, NUL or whitespace. The annotation parser, the
//! planner and the node API construct it; the plan, the records, the CNI cache and the
//! primary-interface lookup take it as it is, without checking again.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::annotation::validate_ifname;
use crate::error::Error;

/// A validated interface name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InterfaceName(String);

impl InterfaceName {
    /// Validates `name` against the CNI rule; the error says what is wrong and what is
    /// accepted.
    pub fn new(name: impl Into<String>) -> Result<InterfaceName, Error> {
        let name = name.into();
        match validate_ifname(&name) {
            Ok(()) => Ok(InterfaceName(name)),
            Err(reason) => Err(Error::InvalidInterfaceName { reason }),
        }
    }

    /// `net<index>`, the name of the index-th network when none was asked for (an index of
    /// more than 12 digits makes no valid name and is refused like any other).
    pub fn numbered(index: usize) -> Result<InterfaceName, Error> {
        InterfaceName::new(format!("net{index}"))
    }

    /// `eth0`, the runtime's primary interface by default.
    pub fn eth0() -> InterfaceName {
        InterfaceName("eth0".to_owned())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::string_newtype!(InterfaceName);

impl Deref for InterfaceName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for InterfaceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<String> for InterfaceName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<InterfaceName> for str {
    fn eq(&self, other: &InterfaceName) -> bool {
        self == other.0
    }
}

impl PartialEq<InterfaceName> for &str {
    fn eq(&self, other: &InterfaceName) -> bool {
        *self == other.0
    }
}

impl PartialEq<InterfaceName> for String {
    fn eq(&self, other: &InterfaceName) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_accepted() {
        for name in [
            "eth0",
            "net1",
            "net-storage",
            "a",
            "abcdefghijklmno",
            "vlan.100",
        ] {
            assert_eq!(InterfaceName::new(name).unwrap(), name);
        }
    }

    #[test]
    fn names_that_are_no_link_or_could_name_another_file_are_refused_with_the_rule() {
        for (name, why) in [
            ("", "is empty"),
            (".", "is not a valid name"),
            ("..", "is not a valid name"),
            ("a/b", "contains '/'"),
            ("../../x", "contains '/'"),
            ("a:b", "contains '/', ':'"),
            ("a b", "whitespace"),
            ("a\0b", "contains NUL"),
            ("abcdefghijklmnop", "16 bytes, longer than 15"),
        ] {
            let err = InterfaceName::new(name).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.kind(), "invalid-interface-name", "{msg}");
            assert!(msg.contains(why), "{name:?}: {msg}");
            assert!(msg.contains("accepted: 1 to 15 bytes"), "{msg}");
        }
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let name: InterfaceName = serde_json::from_str(r#""net1""#).unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""net1""#);
        assert!(serde_json::from_str::<InterfaceName>(r#""../x""#).is_err());
    }
}
