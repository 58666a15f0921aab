//! [`NetworkName`]: a CNI network name (a config's `name`), checked once where a config is
//! read.
//!
//! The name is part of file names: the libcni cache entry `<network>-<sandbox>-<ifname>`
//! and the host-local lease directory `<dataDir>/<network>/`. The rule is libcni's
//! `ValidateNetworkName` ([`crate::cni::validate::network_name`]): letters, digits, `.`,
//! `_` and `-`, starting with a letter or digit, so no name is `.`, `..` or holds a `/`.
//! The delegate's config reader constructs it; the cache paths take it as it is.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What a network name may be, as quoted in every error about one.
pub const NETWORK_NAME_RULE: &str =
    "accepted: letters, digits, '.', '_' and '-', starting with a letter or digit";

/// A validated CNI network name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NetworkName(String);

impl NetworkName {
    /// Validates `name` against libcni's rule; the error says what is wrong and what is
    /// accepted.
    pub fn new(name: impl Into<String>) -> Result<NetworkName, Error> {
        let name = name.into();
        match crate::cni::validate::network_name(&name) {
            Ok(()) => Ok(NetworkName(name)),
            Err(e) => Err(Error::InvalidNetworkName {
                name: crate::error::shorten(&name, 64),
                reason: e.msg,
            }),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

super::string_newtype!(NetworkName);

impl Deref for NetworkName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<String> for NetworkName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_are_accepted() {
        for name in ["cbr0", "k8s-pod-network", "macvlan-conf", "a.b_c-1", "1net"] {
            assert_eq!(NetworkName::new(name).unwrap(), name);
        }
    }

    #[test]
    fn names_that_could_name_another_file_are_refused_with_the_rule() {
        for name in [
            "", ".", "..", "../x", "a/b", "-a", ".hidden", "a b", "a\0b", "ü",
        ] {
            let err = NetworkName::new(name).unwrap_err();
            let msg = err.to_string();
            assert_eq!(err.kind(), "invalid-network-name", "{msg}");
            assert!(msg.contains(NETWORK_NAME_RULE), "{name:?}: {msg}");
        }
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let name: NetworkName = serde_json::from_str(r#""cbr0""#).unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), r#""cbr0""#);
        assert!(serde_json::from_str::<NetworkName>(r#""../x""#).is_err());
    }
}
