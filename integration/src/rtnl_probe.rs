//! How long the kernel's rtnl lock keeps callers waiting, sampled from outside: a thread
//! asks for the loopback link (`RTM_GETLINK`, whose handler takes rtnl) every
//! [`INTERVAL`] and records how long each answer took. The lock is global across network
//! namespaces, so this sees the wait every link change on the machine faces at that
//! moment, plexus's and the runtime's alike. For the benchmarks: it tells a burst that
//! failed because the kernel held rtnl for seconds from one that failed for plexus's own
//! reasons.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_millis(20);

/// Waits at least this long are listed one by one.
pub const LONG: Duration = Duration::from_millis(500);

/// What the probe saw.
#[derive(Debug, Clone, Default)]
pub struct Waits {
    /// Samples answered.
    pub samples: usize,
    /// The longest wait.
    pub max: Duration,
    /// Waits of at least [`LONG`]: (when the request was sent, from the probe's start; how
    /// long it waited).
    pub long: Vec<(Duration, Duration)>,
}

impl std::fmt::Display for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "longest {:.0} ms over {} samples",
            self.max.as_secs_f64() * 1e3,
            self.samples
        )?;
        if !self.long.is_empty() {
            let list: Vec<String> = self
                .long
                .iter()
                .map(|(at, took)| {
                    format!(
                        "{:.0} ms at {:.1} s",
                        took.as_secs_f64() * 1e3,
                        at.as_secs_f64()
                    )
                })
                .collect();
            write!(
                f,
                "; {} of {} ms or more: {}",
                list.len(),
                LONG.as_millis(),
                list.join(", ")
            )?;
        }
        Ok(())
    }
}

/// A running probe; [`Probe::stop`] ends it and returns what it saw.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Waits>>,
}

impl Probe {
    /// Starts sampling in the calling thread's network namespace.
    pub fn start() -> std::io::Result<Self> {
        let socket = open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rtnl-probe".into())
            .spawn(move || sample(&socket, &flag))?;
        Ok(Self { stop, thread })
    }

    /// Stops sampling.
    pub fn stop(self) -> std::io::Result<Waits> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the rtnl probe thread panicked"))?
    }
}

fn open() -> std::io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A lost answer ends the probe with an error instead of blocking it for good.
    let timeout = libc::timeval {
        tv_sec: 30,
        tv_usec: 0,
    };
    // SAFETY: `timeout` is a valid timeval for SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// `RTM_GETLINK` for ifindex 1 (loopback): a 16-byte netlink header and a 16-byte ifinfomsg.
fn request(seq: u32) -> [u8; 32] {
    let mut msg = [0u8; 32];
    msg[0..4].copy_from_slice(&32u32.to_ne_bytes());
    msg[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // ifinfomsg: family AF_UNSPEC, pad, type 0, then the index.
    msg[20..24].copy_from_slice(&1i32.to_ne_bytes());
    msg
}

/// Sends one `RTM_GETLINK` and waits for its answer; returns how long that took.
fn ask(socket: &OwnedFd, seq: u32, buf: &mut [u8]) -> std::io::Result<Duration> {
    let msg = request(seq);
    let sent = Instant::now();
    // SAFETY: `msg` is valid for its length; the socket is open.
    let n = unsafe { libc::send(socket.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // One answer (the link, or an error): read until its sequence number comes back.
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n < 16 || u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]) != seq {
            continue;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if kind != libc::RTM_NEWLINK {
            return Err(std::io::Error::other(format!(
                "the kernel answered RTM_GETLINK for the loopback link with message type {kind}, not RTM_NEWLINK"
            )));
        }
        return Ok(sent.elapsed());
    }
}

fn sample(socket: &OwnedFd, stop: &AtomicBool) -> std::io::Result<Waits> {
    let start = Instant::now();
    let mut waits = Waits::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        seq = seq.wrapping_add(1);
        let sent = Instant::now();
        let took = ask(socket, seq, &mut buf)?;
        waits.samples += 1;
        waits.max = waits.max.max(took);
        if took >= LONG {
            waits.long.push((sent.duration_since(start), took));
        }
        std::thread::sleep(INTERVAL);
    }
    Ok(waits)
}

/// How many network namespaces the kernel holds, from the `net_namespace` cache in
/// `/proc/slabinfo` (its active objects): live ones, and removed ones the kernel is still
/// destroying (`cleanup_net`, whose device teardown runs under rtnl). SLUB counts
/// per-CPU slabs as active, so the figure is high by up to a few slabs of 7 (more after
/// a burst: [`Drain`]). `None` where slabinfo is unreadable or has no such cache.
pub fn namespaces_held() -> Option<u64> {
    held_in(&std::fs::read_to_string("/proc/slabinfo").ok()?)
}

/// The `net_namespace` cache's active objects in a slabinfo text.
fn held_in(slabinfo: &str) -> Option<u64> {
    slabinfo.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == "net_namespace").then_some(())?;
        fields.next()?.parse().ok()
    })
}

/// What [`settle`] waited for.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// How long it waited.
    pub waited: Duration,
    /// Namespaces held when it returned.
    pub held: Option<u64>,
    /// Whether both conditions held; false when it gave up at its limit.
    pub quiet: bool,
}

/// How long a namespace count above the baseline must stay unchanged to count as drained.
pub const STEADY: Duration = Duration::from_secs(5);

/// Whether the namespace count has drained: at most `slack` above `baseline`, or unchanged
/// for [`STEADY`]. The second matters after a burst: the cache's partly used slabs (and
/// per-CPU ones, which SLUB counts as active) can leave the count tens above a fresh
/// machine's baseline with no namespace left to destroy (seen after a 200-pod burst: 36
/// counted for minutes while `lsns` listed 2), and the kernel frees dying ones in
/// batches, so a count that still falls is still draining.
#[derive(Debug)]
struct Drain {
    baseline: Option<u64>,
    slack: u64,
    last: Option<u64>,
    since: Instant,
}

impl Drain {
    fn new(baseline: Option<u64>, slack: u64, now: Instant) -> Self {
        Drain {
            baseline,
            slack,
            last: None,
            since: now,
        }
    }

    /// Takes the count `held` seen at `now`; whether it has drained.
    fn drained(&mut self, held: Option<u64>, now: Instant) -> bool {
        if held != self.last {
            self.last = held;
            self.since = now;
        }
        match (self.baseline, held) {
            (Some(b), Some(h)) => {
                h <= b + self.slack || now.saturating_duration_since(self.since) >= STEADY
            }
            _ => true,
        }
    }
}

/// Waits until the kernel has destroyed the namespaces of pods removed before: the count
/// drained ([`Drain`]: at most `slack` more held than `baseline`, or steady), and every rtnl
/// request of the last second answered within 50 ms. Gives up after `limit`.
pub fn settle(baseline: Option<u64>, slack: u64, limit: Duration) -> std::io::Result<Settled> {
    let socket = open()?;
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut quiet_since = Instant::now();
    let mut drain = Drain::new(baseline, slack, start);
    let mut seq = 0u32;
    loop {
        seq = seq.wrapping_add(1);
        let took = ask(&socket, seq, &mut buf)?;
        if took > Duration::from_millis(50) {
            quiet_since = Instant::now();
        }
        let held = namespaces_held();
        let drained = drain.drained(held, Instant::now());
        let quiet = drained && quiet_since.elapsed() >= Duration::from_secs(1);
        if quiet || start.elapsed() >= limit {
            return Ok(Settled {
                waited: start.elapsed(),
                held,
                quiet,
            });
        }
        std::thread::sleep(INTERVAL * 5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_gets_answers_for_the_loopback_link() {
        // Any user may read links: no privilege needed.
        let probe = Probe::start().expect("start the probe");
        std::thread::sleep(INTERVAL * 5);
        let waits = probe.stop().expect("stop the probe");
        assert!(waits.samples >= 2, "{waits:?}");
        assert!(
            waits.max > Duration::ZERO && waits.max < Duration::from_secs(5),
            "{waits:?}"
        );
    }

    #[test]
    fn long_waits_are_listed_with_when_they_began() {
        let waits = Waits {
            samples: 10,
            max: Duration::from_millis(1250),
            long: vec![(Duration::from_millis(3400), Duration::from_millis(1250))],
        };
        assert_eq!(
            waits.to_string(),
            "longest 1250 ms over 10 samples; 1 of 500 ms or more: 1250 ms at 3.4 s"
        );
    }

    #[test]
    fn held_namespaces_are_read_from_the_net_namespace_cache() {
        let text = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>\n\
net_namespace_x        9     56   4224    7    8\n\
net_namespace         28     56   4224    7    8 : tunables    0    0    0\n";
        assert_eq!(held_in(text), Some(28));
        assert_eq!(held_in("net_namespace\n"), None);
        assert_eq!(held_in(""), None);
    }

    #[test]
    fn settling_without_a_baseline_waits_for_one_quiet_second() {
        let s = settle(None, 0, Duration::from_secs(30)).expect("settle");
        assert!(s.quiet, "{s:?}");
        assert!(s.waited >= Duration::from_secs(1), "{s:?}");
    }

    #[test]
    fn a_count_drains_at_the_baseline_or_once_it_stops_falling() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut d = Drain::new(Some(14), 2, t0);
        assert!(!d.drained(Some(200), at(0)));
        assert!(!d.drained(Some(40), at(3_000)), "still falling");
        assert!(
            !d.drained(Some(40), at(7_999)),
            "steady for less than STEADY"
        );
        assert!(d.drained(Some(40), at(8_000)), "steady for STEADY");
        assert!(!d.drained(Some(41), at(8_100)), "it changed again");
        assert!(d.drained(Some(16), at(8_200)), "within the slack at once");
        assert!(
            Drain::new(None, 0, t0).drained(Some(500), t0),
            "no baseline"
        );
        assert!(Drain::new(Some(0), 0, t0).drained(None, t0), "no count");
    }

    #[test]
    fn settling_gives_up_at_its_limit() {
        // No kernel holds fewer than zero namespaces plus no slack, unless slabinfo is
        // unreadable (not root), where the count is not a condition.
        let s = settle(Some(0), 0, Duration::from_millis(300)).expect("settle");
        if s.held.is_some() {
            assert!(!s.quiet, "{s:?}");
            assert!(s.waited < Duration::from_secs(2), "{s:?}");
        }
    }
}
