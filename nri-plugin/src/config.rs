//! Plugin settings and their validation, plus the small pure helpers that compute
//! timing: the SetupPod deadline and the reconnect backoff.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Default NRI socket of containerd.
pub const DEFAULT_NRI_SOCKET: &str = "/var/run/nri/nri.sock";
/// Default plexusd socket.
pub const DEFAULT_PLEXUSD_SOCKET: &str = "/run/plexus/plexus.sock";
/// Default SetupPod deadline, below containerd's 2 s `plugin_request_timeout`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1500);

/// Everything the plugin needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The runtime's NRI socket.
    pub nri_socket: PathBuf,
    /// plexusd's node API socket.
    pub plexusd_socket: PathBuf,
    /// Upper bound for one pod event, including the call to plexusd.
    pub deadline: Duration,
    /// Two-digit plugin index (orders plugins in the runtime).
    pub plugin_idx: String,
    /// Plugin name.
    pub plugin_name: String,
    /// How long to wait for the RegisterPlugin response.
    pub register_timeout: Duration,
    /// How long background calls (Reconcile, teardowns outliving their event) may take.
    pub background_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            nri_socket: DEFAULT_NRI_SOCKET.into(),
            plexusd_socket: DEFAULT_PLEXUSD_SOCKET.into(),
            deadline: DEFAULT_DEADLINE,
            plugin_idx: "10".into(),
            plugin_name: "plexus".into(),
            register_timeout: Duration::from_secs(5),
            background_timeout: Duration::from_secs(30),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Checks name and index the way the runtime will (`api.CheckPluginIndex`).
    pub fn validate(&self) -> Result<()> {
        let name_ok = !self.plugin_name.is_empty()
            && self
                .plugin_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(Error::InvalidPluginName {
                name: self.plugin_name.clone(),
            });
        }
        let idx = self.plugin_idx.as_bytes();
        if idx.len() != 2 || !idx.iter().all(u8::is_ascii_digit) {
            return Err(Error::InvalidPluginIdx {
                idx: self.plugin_idx.clone(),
            });
        }
        Ok(())
    }
}

/// Parses a duration in plexus's one grammar (`plexus_core::duration`: `1500ms`, `1.5s`,
/// `2m`), the same as plexusd's config; a bare number is refused.
pub fn parse_duration(value: &str) -> Result<Duration> {
    plexus_core::duration::parse(value).map_err(|_| Error::InvalidDuration {
        value: value.to_owned(),
    })
}

/// The deadline for one pod event: the configured one, lowered to 75% of the runtime's
/// request timeout (Configure, NRI >= 0.7) and of the call's own `timeout_nano`, so the
/// plugin always answers before the runtime gives up on it (which would let the pod
/// start without its networks).
pub fn effective_deadline(
    configured: Duration,
    request_timeout: Option<Duration>,
    call_timeout: Option<Duration>,
) -> Duration {
    [request_timeout, call_timeout]
        .into_iter()
        .flatten()
        .map(|t| t.mul_f64(0.75))
        .fold(configured, Duration::min)
}

/// Exponential reconnect delay: doubles from `min` up to `max`, reset after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Back to `min`, after a successful registration.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_one_grammar() {
        // The same table as plexusd's config parser.
        for (text, want) in plexus_core::duration::EXAMPLES {
            assert_eq!(parse_duration(text).ok(), *want, "{text:?}");
        }
        let err = parse_duration("250").unwrap_err().to_string();
        assert!(err.contains("invalid duration \"250\""), "{err}");
    }

    #[test]
    fn plugin_index_must_be_two_digits() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        for bad in ["1", "100", "a1", ""] {
            c.plugin_idx = bad.into();
            assert!(matches!(c.validate(), Err(Error::InvalidPluginIdx { .. })));
        }
        c.plugin_idx = "00".into();
        c.plugin_name = String::new();
        assert!(matches!(c.validate(), Err(Error::InvalidPluginName { .. })));
        c.plugin_name = "a/b".into();
        assert!(matches!(c.validate(), Err(Error::InvalidPluginName { .. })));
    }

    #[test]
    fn deadline_stays_below_the_runtime_timeouts() {
        let d = Duration::from_millis;
        assert_eq!(effective_deadline(d(1500), None, None), d(1500));
        assert_eq!(effective_deadline(d(1500), Some(d(1000)), None), d(750));
        assert_eq!(effective_deadline(d(1500), Some(d(5000)), None), d(1500));
        assert_eq!(effective_deadline(d(1500), None, Some(d(1800))), d(1350));
        assert_eq!(
            effective_deadline(d(1500), Some(d(1200)), Some(d(2000))),
            d(900)
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
