//! One deadline per request, computed once where the request enters plexusd and handed
//! down as instants: until when work may go on, and until when what was made may be undone
//! (the answer follows at once). The whole budget, from containerd to the engine, is in
//! `docs/deadlines.md`.
//!
//! From a caller's timeout `T` (gRPC `grpc-timeout`, received at `r`): a reserve of a
//! quarter of `T` (at least 20 ms, at most 2 s) is kept back from the work; three quarters
//! of the reserve are for undoing, the last quarter for the answer. So work ends at
//! `r + T - reserve`, undo at `r + T - reserve/4`. From a budget of plexusd's own `B`
//! (SetupPod: `nri.deadlineBudget`), work ends at `r + B` and undo gets a third of `B` more
//! (again 20 ms to 2 s). With both, each instant is the earlier of the two.

use std::time::{Duration, Instant};

/// Smallest reserve kept for undo and the answer.
const MIN_RESERVE: Duration = Duration::from_millis(20);
/// Largest reserve kept for undo and the answer.
const MAX_RESERVE: Duration = Duration::from_secs(2);

/// When a request's work must stop, and when undoing it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    work: Instant,
    undo: Instant,
}

impl Deadline {
    /// The deadline of a request received at `received` with the caller's `timeout` and
    /// plexusd's own `budget` for it; `None` when there is neither.
    pub fn for_request(
        received: Instant,
        timeout: Option<Duration>,
        budget: Option<Duration>,
    ) -> Option<Deadline> {
        let from_timeout = timeout.map(|t| {
            let reserve = (t / 4).clamp(MIN_RESERVE, MAX_RESERVE);
            Deadline {
                work: received + t.saturating_sub(reserve),
                undo: received + t.saturating_sub(reserve / 4),
            }
        });
        let from_budget = budget.map(|b| {
            let work = received + b;
            Deadline {
                work,
                undo: work + (b / 3).clamp(MIN_RESERVE, MAX_RESERVE),
            }
        });
        match (from_timeout, from_budget) {
            (Some(a), Some(b)) => Some(Deadline {
                work: a.work.min(b.work),
                undo: a.undo.min(b.undo),
            }),
            (a, b) => a.or(b),
        }
    }

    /// The deadline of a budget that starts now (work for `budget`, undo a third more).
    pub fn from_now(budget: Duration) -> Deadline {
        let now = Instant::now();
        Deadline {
            work: now + budget,
            undo: now + budget + (budget / 3).clamp(MIN_RESERVE, MAX_RESERVE),
        }
    }

    /// Until when work may go on.
    pub fn work(&self) -> Instant {
        self.work
    }

    /// Until when what was made may be undone; the answer goes out then at the latest.
    pub fn undo(&self) -> Instant {
        self.undo
    }

    /// Whether the work deadline has passed.
    pub fn passed(&self) -> bool {
        Instant::now() >= self.work
    }

    /// Time left for work from now (zero once passed).
    pub fn work_left(&self) -> Duration {
        self.work.saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_timeout_keeps_a_reserve_for_undo_and_the_answer() {
        let r = Instant::now();
        assert_eq!(Deadline::for_request(r, None, None), None);
        // containerd's 2 s, through plexus-nri (1.5 s, 90% sent): 1350 ms.
        let d = Deadline::for_request(r, Some(1350 * MS), None).unwrap();
        assert_eq!(d.work() - r, Duration::from_micros(1_012_500));
        assert_eq!(d.undo() - r, Duration::from_micros(1_265_625));
        // The reserve has a floor and a ceiling.
        let d = Deadline::for_request(r, Some(40 * MS), None).unwrap();
        assert_eq!((d.work() - r, d.undo() - r), (20 * MS, 35 * MS));
        let d = Deadline::for_request(r, Some(Duration::from_secs(60)), None).unwrap();
        assert_eq!(d.work() - r, Duration::from_secs(58));
        // A timeout below the floor leaves no time for work, never a time before `r`.
        let d = Deadline::for_request(r, Some(10 * MS), None).unwrap();
        assert!(d.work() >= r && d.work() <= d.undo());
    }

    #[test]
    fn a_budget_bounds_work_with_or_without_a_timeout() {
        let r = Instant::now();
        let budget = Some(1500 * MS);
        let d = Deadline::for_request(r, None, budget).unwrap();
        assert_eq!((d.work() - r, d.undo() - r), (1500 * MS, 2000 * MS));
        // A long timeout: the budget decides.
        let d = Deadline::for_request(r, Some(Duration::from_secs(60)), budget).unwrap();
        assert_eq!((d.work() - r, d.undo() - r), (1500 * MS, 2000 * MS));
        // A short timeout: it decides.
        let d = Deadline::for_request(r, Some(1000 * MS), budget).unwrap();
        assert_eq!(
            (d.work() - r, d.undo() - r),
            (750 * MS, 937_500 * MS / 1000)
        );
    }

    #[test]
    fn a_budget_from_now_gives_a_third_as_undo_grace() {
        let d = Deadline::from_now(900 * MS);
        assert_eq!(d.undo() - d.work(), 300 * MS);
        let d = Deadline::from_now(Duration::ZERO);
        assert_eq!(d.undo() - d.work(), 20 * MS);
    }
}
