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
