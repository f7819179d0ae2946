//! The Prometheus text format 0.0.4 from prometheus-client's OpenMetrics output.

use std::collections::BTreeSet;

/// Converts OpenMetrics text (what prometheus-client writes) into the Prometheus text
/// format 0.0.4, for scrapers and people that do not ask for OpenMetrics: counter
/// families are named with their `_total` suffix, `info` families become gauges, and
/// `# UNIT` / `# EOF` lines are dropped.
pub fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or_else(|| line.strip_prefix("# TYPE "))
        {
            let keyword = &line[..7];
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = if counters.contains(name) {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            let tail = if tail == "info" { "gauge" } else { tail };
            out.push_str(keyword);
            out.push_str(&name);
            out.push(' ');
            out.push_str(tail);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_with_total_and_drops_eof() {
        let om = "# HELP mailprobe_probes Probes run.\n# TYPE mailprobe_probes counter\n\
                  mailprobe_probes_total{result=\"success\"} 1\n# TYPE x info\nx_info 1\n# EOF\n";
        let text = openmetrics_to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP mailprobe_probes_total Probes run.\n# TYPE mailprobe_probes_total counter\n\
             mailprobe_probes_total{result=\"success\"} 1\n# TYPE x gauge\nx_info 1\n"
        );
    }
}
