//! The one duration grammar of plexus, for every binary's flags and plexusd's config:
//! a decimal number and a unit, `ms`, `s`, `m` or `h` (`1500ms`, `1.5s`, `2m`, `1h`, `0s`).
//! A number without a unit is refused (is `1500` milliseconds or seconds?), and so are
//! negative, non-finite and out-of-range values; input is at most 32 bytes.

use std::time::Duration;

/// Longest accepted text.
const MAX_LEN: usize = 32;

/// A duration that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {shown:?}: {reason}; accepted: a number and a unit ms, s, m or h, \
     e.g. 1500ms, 1.5s, 2m"
)]
pub struct DurationError {
    /// The text as given (at most [`MAX_LEN`] characters of it).
    pub shown: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Parses `text` (surrounding whitespace ignored).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        shown: text.chars().take(MAX_LEN).collect(),
        reason,
    };
    if text.len() > MAX_LEN {
        return Err(fail("too long"));
    }
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| fail("no unit"))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(fail("unknown unit")),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(fail("no number before the unit"));
    }
    let n: f64 = number.parse().map_err(|_| fail("not a number"))?;
    Duration::try_from_secs_f64(n * scale).map_err(|_| fail("out of range"))
}

/// Renders `d` in the grammar, in the largest unit that keeps it exact (`1500ms`, `2s`).
pub fn render(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{}ms", d.as_secs_f64() * 1e3);
    }
    match ms {
        0 => "0s".to_owned(),
        ms if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        ms if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        ms if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

/// The grammar's examples: text and what it means (`None`: refused). Every parser of
/// durations in plexus is tested against this one table.
pub const EXAMPLES: &[(&str, Option<Duration>)] = &[
    ("1500ms", Some(Duration::from_millis(1500))),
    ("1.5s", Some(Duration::from_millis(1500))),
    ("2s", Some(Duration::from_secs(2))),
    ("0.25s", Some(Duration::from_millis(250))),
    ("2m", Some(Duration::from_secs(120))),
    ("1h", Some(Duration::from_secs(3600))),
    ("0s", Some(Duration::ZERO)),
    (" 10s ", Some(Duration::from_secs(10))),
    ("1500", None),
    ("1.5", None),
    ("s", None),
    (".5s", None),
    ("1.s", None),
    ("-1s", None),
    ("1x", None),
    ("1e3ms", None),
    ("1 s", None),
    ("", None),
    ("99999999999999999999999h", None),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_examples_hold() {
        for (text, want) in EXAMPLES {
            assert_eq!(parse(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn errors_name_the_text_and_the_grammar() {
        let err = parse("1500").unwrap_err().to_string();
        assert!(err.contains("\"1500\"") && err.contains("no unit"), "{err}");
        assert!(err.contains("1500ms, 1.5s, 2m"), "{err}");
        let long = "1".repeat(100) + "s";
        let err = parse(&long).unwrap_err();
        assert_eq!(err.reason, "too long");
        assert_eq!(err.shown.len(), MAX_LEN);
    }

    #[test]
    fn rendering_round_trips() {
        for d in [0, 1, 250, 1500, 2000, 120_000, 3_600_000, 5_400_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse(&render(d)).unwrap(), d, "{}", render(d));
        }
        assert_eq!(render(Duration::from_millis(1500)), "1500ms");
        assert_eq!(render(Duration::from_secs(90)), "90s");
    }
}
