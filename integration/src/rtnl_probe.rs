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

fn sample(socket: &OwnedFd, stop: &AtomicBool) -> std::io::Result<Waits> {
    let start = Instant::now();
    let mut waits = Waits::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut seq = 0u32;
    while !stop.load(Ordering::Relaxed) {
        seq = seq.wrapping_add(1);
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
            let n =
                unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
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
            break;
        }
        let took = sent.elapsed();
        waits.samples += 1;
        waits.max = waits.max.max(took);
        if took >= LONG {
            waits.long.push((sent.duration_since(start), took));
        }
        std::thread::sleep(INTERVAL);
    }
    Ok(waits)
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
}
