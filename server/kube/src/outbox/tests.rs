//! The queue's policy with scripted jobs (no API server): coalescing, backoff, pause,
//! capacity. Time is tokio's paused clock, so backoff waits take no real time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::*;
use crate::request::dead_client;

/// Outcomes handed out in order (then `Delivered`), every delivery reported on `sent`.
#[derive(Clone)]
struct Scripted {
    id: u32,
    script: Arc<Mutex<VecDeque<Outcome>>>,
    sent: mpsc::UnboundedSender<(u32, Instant)>,
    /// When set, a delivery waits for a permit (holds the job in flight).
    gate: Option<Arc<Semaphore>>,
}

impl Job for Scripted {
    async fn deliver(&self, _client: &kube::Client) -> Outcome {
        let _ = self.sent.send((self.id, Instant::now()));
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate open").forget();
        }
        lock(&self.script).pop_front().unwrap_or(Outcome::Delivered)
    }
}

struct Harness {
    outbox: Outbox<Scripted>,
    script: Arc<Mutex<VecDeque<Outcome>>>,
    sent_tx: mpsc::UnboundedSender<(u32, Instant)>,
    sent: mpsc::UnboundedReceiver<(u32, Instant)>,
    gate: Option<Arc<Semaphore>>,
}

impl Harness {
    fn new(capacity: usize, gated: bool) -> Self {
        let (sent_tx, sent) = mpsc::unbounded_channel();
        Harness {
            outbox: Outbox::start(dead_client(), capacity, POLICY, "test"),
            script: Arc::default(),
            sent_tx,
            sent,
            gate: gated.then(|| Arc::new(Semaphore::new(0))),
        }
    }

    fn job(&self, id: u32) -> Scripted {
        Scripted {
            id,
            script: Arc::clone(&self.script),
            sent: self.sent_tx.clone(),
            gate: self.gate.clone(),
        }
    }

    fn push(&self, key: &str, id: u32) -> bool {
        self.outbox.push(key.to_string(), self.job(id))
    }

    fn script(&self, outcomes: impl IntoIterator<Item = Outcome>) {
        lock(&self.script).extend(outcomes);
    }

    async fn next_sent(&mut self) -> (u32, Instant) {
        self.sent.recv().await.expect("worker alive")
    }

    /// Waits (on the paused clock) until the queue is empty.
    async fn drained(&self) {
        while self.outbox.stats().backlog > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

const POLICY: RetryPolicy = RetryPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_millis(800),
};

fn down() -> Outcome {
    Outcome::Retry {
        after: None,
        global: true,
        error: "API server unreachable".to_string(),
    }
}

#[test]
fn delay_doubles_up_to_the_cap() {
    let delays: Vec<u64> = (1..=6)
        .map(|n| POLICY.delay(n).as_millis() as u64)
        .collect();
    assert_eq!(delays, [100, 200, 400, 800, 800, 800]);
    assert_eq!(POLICY.delay(u32::MAX), POLICY.max);
    assert_eq!(RetryPolicy::default().delay(100), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn publishes_during_an_outage_coalesce_into_one_delivery_of_the_latest() {
    let mut h = Harness::new(16, false);
    // The API server is down for the first three attempts.
    h.script([down(), down(), down()]);
    assert!(h.push("ns/pod", 1));
    assert_eq!(h.next_sent().await.0, 1);
    for id in 2..=10 {
        assert!(h.push("ns/pod", id));
    }
    // Attempts continue with backoff; each sends the latest job only.
    h.drained().await;
    let mut ids = Vec::new();
    while let Ok((id, _)) = h.sent.try_recv() {
        ids.push(id);
    }
    assert_eq!(
        ids,
        [10, 10, 10],
        "two failed attempts and one delivery, all of the latest"
    );
    let stats = h.outbox.stats();
    assert_eq!((stats.delivered, stats.backlog), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_between_attempts_and_honours_retry_after() {
    let mut h = Harness::new(16, false);
    h.script([
        down(),
        down(),
        Outcome::Retry {
            after: Some(Duration::from_secs(5)),
            global: true,
            error: "429".to_string(),
        },
    ]);
    h.push("ns/pod", 1);
    let mut times = Vec::new();
    for _ in 0..4 {
        times.push(h.next_sent().await.1);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[0], Duration::from_millis(100));
    assert_eq!(gaps[1], Duration::from_millis(200));
    assert_eq!(
        gaps[2],
        Duration::from_secs(5),
        "Retry-After beats the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_server_pauses_every_job_not_only_the_failed_one() {
    let mut h = Harness::new(16, false);
    h.script([down()]);
    h.push("ns/a", 1);
    let (_, t0) = h.next_sent().await;
    h.push("ns/b", 2);
    let (first, t1) = h.next_sent().await;
    assert_eq!(t1 - t0, POLICY.initial, "b waited for the pause");
    // Ordered by due time: b was due at push time, a after its backoff.
    assert_eq!(first, 2);
    assert_eq!(h.next_sent().await.0, 1);
    h.drained().await;
}

#[tokio::test(start_paused = true)]
async fn dropped_jobs_end_and_conflicts_retry_only_their_own_job() {
    let mut h = Harness::new(16, false);
    h.script([
        Outcome::Dropped("pod is gone".to_string()),
        Outcome::Retry {
            after: None,
            global: false,
            error: "409".to_string(),
        },
    ]);
    h.push("ns/gone", 1);
    assert_eq!(h.next_sent().await.0, 1);
    h.push("ns/conflict", 2);
    let (_, t0) = h.next_sent().await;
    h.push("ns/other", 3);
    let (id, t1) = h.next_sent().await;
    assert_eq!((id, t1), (3, t0), "a 409 does not pause other pods");
    let (id, t2) = h.next_sent().await;
    assert_eq!((id, t2 - t0), (2, POLICY.initial));
    h.drained().await;
    let stats = h.outbox.stats();
    assert_eq!((stats.delivered, stats.dropped), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn a_job_replaced_while_in_flight_is_sent_again_with_the_new_content() {
    let mut h = Harness::new(16, true);
    h.push("ns/pod", 1);
    assert_eq!(h.next_sent().await.0, 1);
    // In flight: the replacement must not be lost when the first delivery succeeds.
    h.push("ns/pod", 2);
    h.gate.as_ref().unwrap().add_permits(2);
    assert_eq!(h.next_sent().await.0, 2);
    h.drained().await;
    assert_eq!(h.outbox.stats().delivered, 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_new_keys_but_still_replaces_queued_ones() {
    let mut h = Harness::new(2, true);
    assert!(h.push("ns/a", 1));
    assert_eq!(h.next_sent().await.0, 1);
    assert!(h.push("ns/b", 2));
    assert!(!h.push("ns/c", 3), "third key refused");
    assert!(h.push("ns/b", 4), "an existing key is replaced");
    let stats = h.outbox.stats();
    assert_eq!((stats.backlog, stats.refused), (2, 1));
    h.gate.as_ref().unwrap().add_permits(2);
    assert_eq!(h.next_sent().await.0, 4);
    h.drained().await;
}

#[tokio::test(start_paused = true)]
async fn resume_lifts_the_pause() {
    let mut h = Harness::new(16, false);
    h.script([Outcome::Retry {
        after: Some(Duration::from_secs(3600)),
        global: true,
        error: "429".to_string(),
    }]);
    h.push("ns/pod", 1);
    let (_, t0) = h.next_sent().await;
    while h.outbox.stats().last_error.is_none() {
        tokio::task::yield_now().await;
    }
    h.outbox.resume();
    let (_, t1) = h.next_sent().await;
    assert_eq!(t1, t0, "sent again at once");
    h.drained().await;
}
