//! The standard `process_*` metrics of the scraping conventions, read from `/proc/self` on
//! each scrape: CPU seconds, resident and virtual memory, open and maximum file
//! descriptors, start time. Nothing is kept between scrapes.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Collects `process_*` for this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says, in the units the metrics use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: i64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: i64,
    /// Start time, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: i64,
    /// The soft limit on file descriptors.
    pub max_fds: i64,
}

/// Fields 14, 15 (utime, stime), 22 (starttime, ticks after boot), 23 (vsize, bytes) and
/// 24 (rss, pages) of `/proc/<pid>/stat`, counted after the `comm` field's closing paren.
pub fn parse_stat(stat: &str, ticks: f64, page: i64, boot_time: f64) -> Option<ProcessStats> {
    let rest = stat.rsplit_once(')')?.1;
    // `rest` starts with field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<i64>().ok());
    let cpu = (field(14)? + field(15)?) as f64 / ticks;
    Some(ProcessStats {
        cpu_seconds: cpu,
        resident_bytes: field(24)?.saturating_mul(page),
        virtual_bytes: field(23)?,
        start_time_seconds: boot_time + field(22)? as f64 / ticks,
        open_fds: 0,
        max_fds: 0,
    })
}

fn read() -> Option<ProcessStats> {
    // SAFETY: sysconf only reads constants of the running system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut stats = parse_stat(&stat, ticks.max(1) as f64, page.max(1), boot_time)?;
    stats.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we own.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got == 0 {
        stats.max_fds = i64::try_from(limit.rlim_cur).unwrap_or(i64::MAX);
    }
    Some(stats)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Without /proc (not Linux) the family is simply absent.
        let Some(s) = read() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                s.max_fds,
            ),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        ConstGauge::new(s.start_time_seconds).encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with spaces and a paren must not shift the fields.
        let stat = "4242 (plexus d) x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 150 0 0 20 0 \
                    8 0 12345 104857600 2560 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
        assert_eq!(s.cpu_seconds, 4.0);
        assert_eq!(s.resident_bytes, 2560 * 4096);
        assert_eq!(s.virtual_bytes, 104_857_600);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert_eq!(parse_stat("garbage", 100.0, 4096, 0.0), None);
    }

    #[test]
    fn this_process_is_read() {
        let s = read().expect("/proc/self");
        assert!(
            s.resident_bytes > 0 && s.open_fds > 0 && s.max_fds >= s.open_fds,
            "{s:?}"
        );
    }
}
