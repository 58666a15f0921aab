//! The character rules of the names plexus accepts, as small hand-written checks (they
//! replaced four anchored regular expressions): a Kubernetes DNS label, a Kubernetes
//! object name (DNS-subdomain characters), and a CNI name (conflist name, plugin type). Only the characters:
//! length limits stay with the callers, who name them in their errors.

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Non-empty, first and last byte satisfy `edge`, every byte between satisfies `inner`.
fn edged(s: &str, edge: fn(u8) -> bool, inner: fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    match b {
        [] => false,
        [one] => edge(*one),
        [first, middle @ .., last] => {
            edge(*first) && edge(*last) && middle.iter().all(|&c| inner(c))
        }
    }
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`: the characters of an RFC 1123 label (a namespace,
/// an interface-free network name).
pub fn is_dns_label(s: &str) -> bool {
    edged(s, lower_alnum, |c| lower_alnum(c) || c == b'-')
}

/// `^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`: the characters of a Kubernetes object name (RFC 1123
/// subdomain).
pub fn is_object_name(s: &str) -> bool {
    edged(s, lower_alnum, |c| lower_alnum(c) || c == b'-' || c == b'.')
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`: the characters of a CNI network config name (as libcni
/// checks them) and of a plugin `type` (a file name in the plugin directories).
pub fn is_cni_name(s: &str) -> bool {
    match s.as_bytes() {
        [] => false,
        [first, rest @ ..] => {
            first.is_ascii_alphanumeric()
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_label() {
        for ok in ["a", "0", "a-b", "abc123", "a--b", "9z"] {
            assert!(is_dns_label(ok), "{ok:?}");
        }
        for bad in [
            "", "-", "-a", "a-", "A", "a.b", "a_b", "a b", "a\n", "é", "a-B",
        ] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn object_name() {
        for ok in ["a", "a.b", "a-b.c", "x0.y1", "a..b"] {
            assert!(is_object_name(ok), "{ok:?}");
        }
        for bad in [
            "", ".", ".a", "a.", "-a", "a-", "A", "a_b", "a/b", "a\n", "\na",
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn cni_name() {
        for ok in ["a", "A", "0", "Net_1.conf-x", "a-", "a.", "a_"] {
            assert!(is_cni_name(ok), "{ok:?}");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "a\n", "ä"] {
            assert!(!is_cni_name(bad), "{bad:?}");
        }
    }
}
