//! The Prometheus text format 0.0.4 from prometheus-client's OpenMetrics output.

/// Converts OpenMetrics text (what prometheus-client writes) into the Prometheus text
/// format 0.0.4, for scrapers and people that do not ask for OpenMetrics: counter
/// families are named with their `_total` suffix, `info` families become gauges, and
/// `# UNIT` / `# EOF` lines are dropped.
///
/// One pass, no allocation but the output: a family's `# HELP` line is held back until
/// its `# TYPE` line says whether the name needs `_total` (prometheus-client writes
/// HELP, then TYPE, then the samples); a HELP line not followed by its TYPE line is
/// written as it was. With 5,000 targets `/metrics` is megabytes, so this matters.
pub fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + openmetrics.len() / 64);
    // The held-back HELP line: the family name and the rest of the line.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            match help.take() {
                Some((help_name, text)) if help_name == name => {
                    push_comment(&mut out, "# HELP ", name, suffix, text);
                }
                Some((help_name, text)) => push_comment(&mut out, "# HELP ", help_name, "", text),
                None => {}
            }
            let kind = if kind == "info" { "gauge" } else { kind };
            push_comment(&mut out, "# TYPE ", name, suffix, kind);
            continue;
        }
        if let Some((help_name, text)) = help.take() {
            push_comment(&mut out, "# HELP ", help_name, "", text);
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if line != "# EOF" && !line.starts_with("# UNIT ") {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((help_name, text)) = help {
        push_comment(&mut out, "# HELP ", help_name, "", text);
    }
    out
}

/// `# HELP name_suffix text` or `# TYPE name_suffix kind`, with its line end.
fn push_comment(out: &mut String, keyword: &str, name: &str, suffix: &str, tail: &str) {
    out.push_str(keyword);
    out.push_str(name);
    out.push_str(suffix);
    out.push(' ');
    out.push_str(tail);
    out.push('\n');
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

    #[test]
    fn a_help_line_without_its_type_line_is_kept_as_it_was() {
        let om =
            "# HELP a Alone.\na 1\n# HELP b Other.\n# TYPE c counter\nc_total 2\n# HELP d End.\n";
        assert_eq!(
            openmetrics_to_prometheus_text(om),
            "# HELP a Alone.\na 1\n# HELP b Other.\n# TYPE c_total counter\nc_total 2\n# HELP d End.\n"
        );
    }

    #[test]
    fn the_conversion_of_a_real_registry_names_counters_once() {
        let mut registry = prometheus_client::registry::Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        counter.inc();
        registry.register("mailprobe_probes", "Probes run", counter);
        let gauge = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register("mailprobe_targets", "Targets", gauge);
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
        assert_eq!(
            openmetrics_to_prometheus_text(&om),
            "# HELP mailprobe_probes_total Probes run.\n# TYPE mailprobe_probes_total counter\n\
             mailprobe_probes_total 1\n# HELP mailprobe_targets Targets.\n\
             # TYPE mailprobe_targets gauge\nmailprobe_targets 0\n"
        );
    }
}
