//! What every benchmark under `integration/benches` starts with: root, and its sizes from
//! the environment.

/// Exits with a message naming `bench` unless running as root (containerd and network
/// namespaces need it).
pub fn require_root(bench: &str) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "{bench} bench needs root (containerd, network namespaces): run make bench as root"
        );
        std::process::exit(1);
    }
}

/// The count in environment variable `var`, or `default` when it is unset or not a number.
pub fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The sides named in environment variable `var` (a comma list, each one of `accepted`),
/// as a test of one side's name; all of them when it is unset or empty. Exits with a
/// message naming the unknown side and the accepted ones, rather than running a bench
/// that measures less than was asked.
pub fn sides(var: &str, accepted: &[&str]) -> impl Fn(&str) -> bool + use<> {
    let listed: Vec<String> = std::env::var(var)
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = listed.iter().find(|s| !accepted.contains(&s.as_str())) {
        eprintln!(
            "{var}: unknown side {unknown:?}; accepted (comma-separated): {}",
            accepted.join(", ")
        );
        std::process::exit(2);
    }
    move |name| listed.is_empty() || listed.iter().any(|s| s == name)
}

/// CPU time (user and system, all threads, those ended included) process `pid` has used
/// so far, from `/proc/<pid>/stat`, to the kernel's clock tick (usually 10 ms); `None` when
/// the process is gone or the file cannot be read.
pub fn cpu_time(pid: u32) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| std::time::Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// This process's CPU time as getrusage reports it (to the microsecond).
    fn rusage_cpu() -> Duration {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes one rusage into the pointer, valid for writes.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
        assert_eq!(rc, 0, "getrusage");
        // SAFETY: getrusage succeeded, so it filled the rusage.
        let u = unsafe { usage.assume_init() };
        let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        Duration::from_micros(micros(u.ru_utime) + micros(u.ru_stime))
    }

    #[test]
    fn cpu_time_agrees_with_getrusage_and_is_none_for_a_gone_process() {
        // Spin until the kernel has counted 100 ms of CPU for this process, however loaded
        // the machine is; /proc's figure must then be within a few clock ticks of it.
        let mut x = 0u64;
        while rusage_cpu() < Duration::from_millis(100) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let used = super::cpu_time(std::process::id()).expect("own /proc stat");
        let counted = rusage_cpu();
        assert!(
            used >= Duration::from_millis(70),
            "cpu_time {used:?}, getrusage {counted:?}"
        );
        assert!(
            used <= counted + Duration::from_millis(30),
            "cpu_time {used:?}, getrusage {counted:?}"
        );
        // PIDs are below pid_max (at most 2^22), so this one never exists.
        assert_eq!(super::cpu_time(u32::MAX), None);
    }
}
