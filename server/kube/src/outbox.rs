//! The bounded retrying queue behind the network-status publisher and the event recorder:
//! one entry per key (a later push for the same key replaces the job — latest wins), one
//! worker delivering them in order of due time, exponential backoff (capped) per entry, and a
//! queue-wide pause when the API server itself is failing (connection errors, 5xx, 429 with
//! its `Retry-After`) so an outage costs one request per backoff step, not one per pod.
//! Nothing here knows what a job sends; [`Job::deliver`] says how it went.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::nad::lock;
use crate::task::Tasks;

#[cfg(test)]
mod tests;

/// Exponential backoff: `initial`, doubled per failed attempt, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 500 ms doubling to 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failed attempts (1 = the first failure).
    pub fn delay(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(30);
        self.initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// How a delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Done.
    Delivered,
    /// Will never succeed (the object is gone, not ours, or the job is invalid): forget it.
    Dropped(String),
    /// Try again later.
    Retry {
        /// The server asked to wait at least this long (`Retry-After`).
        after: Option<Duration>,
        /// The API server as a whole is failing: pause the whole queue.
        global: bool,
        /// What went wrong.
        error: String,
    },
}

/// Something the queue delivers.
pub(crate) trait Job: Clone + Send + Sync + 'static {
    /// Sends it once.
    fn deliver(&self, client: &kube::Client) -> impl Future<Output = Outcome> + Send;
}

/// Counters of a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Jobs waiting (queued, backing off or in flight).
    pub backlog: usize,
    /// Jobs delivered since start.
    pub delivered: u64,
    /// Jobs given up on (gone, not ours, invalid) since start.
    pub dropped: u64,
    /// Jobs refused because the queue was full.
    pub refused: u64,
    /// The last failure, cleared by the next delivery.
    pub last_error: Option<String>,
    /// How long the oldest waiting job has waited (since its key was first queued; a
    /// replacement keeps the age), `None` when nothing waits.
    pub oldest_pending: Option<Duration>,
}

pub(crate) struct Outbox<J> {
    shared: Arc<Shared<J>>,
    _tasks: Arc<Tasks>,
}

impl<J> Clone for Outbox<J> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _tasks: Arc::clone(&self._tasks),
        }
    }
}

struct Shared<J> {
    state: Mutex<State<J>>,
    wake: Notify,
    capacity: usize,
    policy: RetryPolicy,
    what: &'static str,
}

struct State<J> {
    entries: HashMap<String, Entry<J>>,
    seq: u64,
    paused_until: Option<Instant>,
    /// Consecutive queue-wide failures (reset by a delivery); sets the pause.
    failures: u32,
    stats: QueueStats,
}

struct Entry<J> {
    job: J,
    generation: u64,
    attempts: u32,
    due: Instant,
    seq: u64,
    in_flight: bool,
    /// When the key was first queued (kept by replacements).
    queued: Instant,
}

impl<J: Job> Outbox<J> {
    /// A queue of at most `capacity` keys whose worker sends with `client`. `what` names the
    /// queue in logs.
    pub(crate) fn start(
        client: kube::Client,
        capacity: usize,
        policy: RetryPolicy,
        what: &'static str,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                entries: HashMap::new(),
                seq: 0,
                paused_until: None,
                failures: 0,
                stats: QueueStats::default(),
            }),
            wake: Notify::new(),
            capacity,
            policy,
            what,
        });
        let mut tasks = Tasks::default();
        tasks.spawn(work(client, Arc::clone(&shared)));
        Self {
            shared,
            _tasks: Arc::new(tasks),
        }
    }

    /// Queues `job` under `key`, replacing a job not yet delivered for the same key (it
    /// keeps that entry's backoff). False when the key is new and the queue is full.
    pub(crate) fn push(&self, key: String, job: J) -> bool {
        let mut state = lock(&self.shared.state);
        state.seq += 1;
        let seq = state.seq;
        if let Some(entry) = state.entries.get_mut(&key) {
            entry.job = job;
            entry.generation += 1;
        } else if state.entries.len() >= self.shared.capacity {
            state.stats.refused += 1;
            drop(state);
            tracing::warn!(
                queue = self.shared.what,
                key,
                capacity = self.shared.capacity,
                "queue full; dropping the newest job"
            );
            return false;
        } else {
            state.entries.insert(
                key,
                Entry {
                    job,
                    generation: 0,
                    attempts: 0,
                    due: Instant::now(),
                    seq,
                    in_flight: false,
                    queued: Instant::now(),
                },
            );
        }
        drop(state);
        self.shared.wake.notify_one();
        true
    }

    /// Makes every waiting job due now and lifts a queue-wide pause (the API server is
    /// known to be back).
    pub(crate) fn resume(&self) {
        let mut state = lock(&self.shared.state);
        let now = Instant::now();
        state.paused_until = None;
        state.failures = 0;
        for entry in state.entries.values_mut() {
            entry.due = entry.due.min(now);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    /// The queue's counters.
    pub(crate) fn stats(&self) -> QueueStats {
        let state = lock(&self.shared.state);
        let now = Instant::now();
        QueueStats {
            backlog: state.entries.len(),
            oldest_pending: state
                .entries
                .values()
                .map(|e| now.saturating_duration_since(e.queued))
                .max(),
            ..state.stats.clone()
        }
    }
}

/// What the worker does next.
enum Next<J> {
    Idle,
    Wait(Instant),
    Send(String, J, u64),
}

fn next<J: Job>(state: &mut State<J>, now: Instant) -> Next<J> {
    let Some((key, entry)) = state
        .entries
        .iter_mut()
        .filter(|(_, e)| !e.in_flight)
        .min_by_key(|(_, e)| (e.due, e.seq))
    else {
        return Next::Idle;
    };
    let at = match state.paused_until {
        Some(p) if p > entry.due => p,
        _ => entry.due,
    };
    if at > now {
        return Next::Wait(at);
    }
    entry.in_flight = true;
    Next::Send(key.clone(), entry.job.clone(), entry.generation)
}

async fn work<J: Job>(client: kube::Client, shared: Arc<Shared<J>>) {
    loop {
        let step = next(&mut lock(&shared.state), Instant::now());
        match step {
            Next::Idle => shared.wake.notified().await,
            Next::Wait(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = shared.wake.notified() => {}
                }
            }
            Next::Send(key, job, generation) => {
                let outcome = job.deliver(&client).await;
                settle(&shared, &key, generation, outcome);
            }
        }
    }
}

/// Records a delivery's outcome for the entry `key` sent at `generation`.
fn settle<J>(shared: &Shared<J>, key: &str, generation: u64, outcome: Outcome) {
    let mut state = lock(&shared.state);
    let now = Instant::now();
    let Some(entry) = state.entries.get_mut(key) else {
        return;
    };
    entry.in_flight = false;
    let replaced = entry.generation != generation;
    match outcome {
        Outcome::Delivered | Outcome::Dropped(_) if replaced => {
            // A newer job arrived meanwhile: it goes next, from a clean slate.
            entry.attempts = 0;
            entry.due = now;
            if outcome == Outcome::Delivered {
                state.stats.delivered += 1;
                state.stats.last_error = None;
                state.failures = 0;
            }
        }
        Outcome::Delivered => {
            state.entries.remove(key);
            state.stats.delivered += 1;
            state.stats.last_error = None;
            state.failures = 0;
        }
        Outcome::Dropped(why) => {
            state.entries.remove(key);
            state.stats.dropped += 1;
            tracing::info!(queue = shared.what, key, reason = %why, "giving up on a job");
        }
        Outcome::Retry {
            after,
            global,
            error,
        } => {
            entry.attempts += 1;
            let after = after.unwrap_or_default();
            let mut delay = shared.policy.delay(entry.attempts).max(after);
            entry.due = now + delay;
            if global {
                state.failures += 1;
                delay = shared.policy.delay(state.failures).max(after);
                state.paused_until = Some(now + delay);
            }
            tracing::warn!(queue = shared.what, key, retry_in = ?delay, %error, "delivery failed");
            state.stats.last_error = Some(error);
        }
    }
}
