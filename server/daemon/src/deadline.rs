//! Request deadlines from the `grpc-timeout` header.
//!
//! tonic's server drops a handler's future when the caller's `grpc-timeout` passes, which
//! would cancel work half-way. So the service runs work on its own task and gives the engine
//! an earlier deadline, keeping a reserve for undoing what was done and answering
//! `DEADLINE_EXCEEDED` before the caller gives up. An operation may also have a budget of
//! its own (SetupPod: `nri.deadlineBudget`), which bounds it even when the caller sent no
//! timeout; the earlier of the two wins.

use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

/// Smallest reserve kept for undo and the answer.
const MIN_RESERVE: Duration = Duration::from_millis(20);

/// Parses a `grpc-timeout` value (`<digits><unit>`, unit one of H M S m u n; at most 8 digits).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The caller's timeout, if it sent one.
pub fn request_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// The deadline handed to the engine: the caller's timeout less a reserve for undo and the
/// answer (a quarter of it, at least 20 ms, at most 2 s), or `received + budget` when that is
/// earlier. `None` only when there is neither a timeout nor a budget.
pub fn work_deadline(
    received: Instant,
    timeout: Option<Duration>,
    budget: Option<Duration>,
) -> Option<Instant> {
    let from_timeout = timeout.map(|timeout| {
        let reserve = (timeout / 4).clamp(MIN_RESERVE, Duration::from_secs(2));
        received + timeout.saturating_sub(reserve)
    });
    let from_budget = budget.map(|budget| received + budget);
    match (from_timeout, from_budget) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_rejects_garbage() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "12", "1x", "-1S", "123456789S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn work_deadline_keeps_a_reserve() {
        let now = Instant::now();
        assert_eq!(work_deadline(now, None, None), None);
        let d = work_deadline(now, Some(Duration::from_millis(400)), None).unwrap();
        assert_eq!(d - now, Duration::from_millis(300));
        let d = work_deadline(now, Some(Duration::from_millis(40)), None).unwrap();
        assert_eq!(d - now, Duration::from_millis(20));
        let d = work_deadline(now, Some(Duration::from_secs(60)), None).unwrap();
        assert_eq!(d - now, Duration::from_secs(58));
    }

    #[test]
    fn a_budget_bounds_work_with_or_without_a_timeout() {
        let now = Instant::now();
        let budget = Some(Duration::from_millis(1500));
        // No timeout from the caller: the budget alone.
        let d = work_deadline(now, None, budget).unwrap();
        assert_eq!(d - now, Duration::from_millis(1500));
        // A long timeout: the budget is earlier.
        let d = work_deadline(now, Some(Duration::from_secs(60)), budget).unwrap();
        assert_eq!(d - now, Duration::from_millis(1500));
        // A short timeout: its deadline (less the reserve) is earlier.
        let d = work_deadline(now, Some(Duration::from_millis(1000)), budget).unwrap();
        assert_eq!(d - now, Duration::from_millis(750));
    }
}
