//! The config's duration keys: each a duration in the one grammar
//! ([`plexus_core::duration`]), with its own bounds and its own words for "off".

use std::time::Duration;

use super::raw::invalid;
use crate::error::Result;

pub(super) fn duration(key: &'static str, text: &str) -> Result<Duration> {
    match super::parse_duration(text) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(invalid(
            key,
            format!("{text:?} is not a duration; write e.g. 1500ms, 1.5s, 2s or 1m"),
        )),
    }
}

/// Longest accepted `delegateTimeout`.
const MAX_DELEGATE_TIMEOUT: Duration = Duration::from_secs(3600);

/// `delegateTimeout`: a duration of at most 1h.
pub(super) fn delegate_timeout(key: &'static str, text: &str) -> Result<Duration> {
    match duration(key, text)? {
        d if d > MAX_DELEGATE_TIMEOUT => Err(invalid(
            key,
            format!(
                "{text:?} is above 1h: a plugin run holds its pod's start that long; write e.g. 10s or 2m"
            ),
        )),
        d => Ok(d),
    }
}

/// Shortest accepted `reconcile.interval`: each sweep reads every record.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// `reconcile.interval`: `None` when the sweep is off (`0`, `"0"`, `off`).
pub(super) fn sweep_interval(
    key: &'static str,
    value: &plexus_core::yaml::Value,
) -> Result<Option<Duration>> {
    let accepted = "write a duration of at least 1s (e.g. 30s, 5m), or 0 or off to disable";
    let text = match value {
        plexus_core::yaml::Value::Number(n) if n.as_u64() == Some(0) => return Ok(None),
        plexus_core::yaml::Value::Number(n) => {
            return Err(invalid(key, format!("{n} has no unit; {accepted}")));
        }
        plexus_core::yaml::Value::String(s) => s.trim(),
        other => {
            return Err(invalid(
                key,
                format!("{other:?} is not a duration; {accepted}"),
            ));
        }
    };
    if text == "off" || text == "0" {
        return Ok(None);
    }
    match super::parse_duration(text) {
        Some(d) if d.is_zero() => Ok(None),
        Some(d) if d >= MIN_SWEEP_INTERVAL => Ok(Some(d)),
        Some(_) => Err(invalid(key, format!("{text:?} is below 1s; {accepted}"))),
        None => Err(invalid(
            key,
            format!("{text:?} is not a duration; {accepted}"),
        )),
    }
}

/// Longest accepted `lockWait`: a rolling update waits for the old pod's grace period,
/// not for ever.
const MAX_LOCK_WAIT: Duration = Duration::from_secs(3600);

/// `lockWait`: how long a second plexusd waits for the state-directory lock; zero (`0`,
/// `off`) means not at all.
pub(super) fn lock_wait(key: &'static str, value: &plexus_core::yaml::Value) -> Result<Duration> {
    let accepted = "write a duration of at most 1h (e.g. 30s, 2m), or 0 or off to exit at once";
    let text = match value {
        plexus_core::yaml::Value::Number(n) if n.as_u64() == Some(0) => return Ok(Duration::ZERO),
        plexus_core::yaml::Value::Number(n) => {
            return Err(invalid(key, format!("{n} has no unit; {accepted}")));
        }
        plexus_core::yaml::Value::String(s) => s.trim(),
        other => {
            return Err(invalid(
                key,
                format!("{other:?} is not a duration; {accepted}"),
            ));
        }
    };
    if text == "off" || text == "0" {
        return Ok(Duration::ZERO);
    }
    match super::parse_duration(text) {
        Some(d) if d <= MAX_LOCK_WAIT => Ok(d),
        Some(_) => Err(invalid(key, format!("{text:?} is above 1h; {accepted}"))),
        None => Err(invalid(
            key,
            format!("{text:?} is not a duration; {accepted}"),
        )),
    }
}
