//! The sandbox-id rule, checked locally so a bad `--sandbox` fails before any call.
//!
//! plexusd is the authority (it validates every id it receives, with the same rule and the
//! same text); this copy only saves a round trip and gives the same answer. The server's
//! test suite checks that both agree.

/// Longest sandbox id accepted, in bytes.
pub const MAX_LEN: usize = 128;

/// The rule, word for word as plexusd states it.
pub const RULE: &str = "a sandbox id is 1 to 128 bytes of ASCII letters, digits, '_', '.' and '-', starting with a letter or digit (containerd and CRI-O generate 64 lowercase hex digits)";

/// Checks `id` against [`RULE`]; the error names what is wrong and states the rule.
pub fn check(id: &str) -> Result<(), String> {
    let bytes = id.as_bytes();
    let problem = match bytes.first() {
        None => Some("it is empty".to_owned()),
        Some(_) if bytes.len() > MAX_LEN => Some(format!(
            "it is {} bytes long, more than {MAX_LEN}",
            bytes.len()
        )),
        Some(first) if !first.is_ascii_alphanumeric() => Some(format!(
            "it starts with {:?}",
            id.chars().next().unwrap_or_default()
        )),
        Some(_) => id
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .map(|(at, c)| format!("it contains {c:?} at byte {at}")),
    };
    match problem {
        None => Ok(()),
        Some(why) => {
            let shown: String = id.chars().take(40).collect();
            let more = if id.chars().count() > 40 {
                format!("… ({} bytes)", id.len())
            } else {
                String::new()
            };
            Err(format!("sandbox id {shown:?}{more}: {why}; {RULE}"))
        }
    }
}

/// [`check`] as a clap value parser.
pub fn parse(id: &str) -> Result<String, String> {
    check(id).map(|()| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runtime_ids_and_refuses_paths() {
        assert!(check(&"ab12".repeat(16)).is_ok());
        assert!(check("sb-1.a_b").is_ok());
        for bad in ["", ".", "..", "../x", "/tmp/x", "a/b", "a\0b", "-a"] {
            let err = check(bad).unwrap_err();
            assert!(err.ends_with(RULE), "{err}");
        }
        let err = check(&"a".repeat(1 << 20)).unwrap_err();
        assert!(err.len() < 400, "{err}");
    }
}
