//! The two text formats `/metrics` serves: OpenMetrics (what `prometheus-client`
//! encodes) and, for scrapers that do not ask for it, the Prometheus text format 0.0.4.

use prometheus_client::registry::Registry;

/// Renders `registry` in the OpenMetrics text format served at `/metrics`.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; an encoder error would only come from a metric whose
    // own encoding fails, and ours do not.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

/// Renders `registry` in the Prometheus text format 0.0.4 (for scrapers that do not ask
/// for OpenMetrics): no `# EOF` and no `# UNIT` lines, and a counter's `HELP`/`TYPE` name
/// its samples' `_total` name, as `promtool check metrics` expects.
pub fn render_prometheus(registry: &Registry) -> String {
    openmetrics_to_prometheus(&render(registry))
}

fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}
