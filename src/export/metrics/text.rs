//! Writing the exposition formats, both in one pass: the Prometheus text format 0.0.4
//! and OpenMetrics 1.0 differ only in how a counter family is named in its `# HELP` /
//! `# TYPE` lines and in OpenMetrics' closing `# EOF`.

use std::fmt::Write as _;

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it names it
    /// (Prometheus does), else the text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        if accept.is_some_and(|accept| accept.contains("application/openmetrics-text")) {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic count; its samples end in `_total`.
    Counter,
    /// Buckets, sum and count.
    Histogram,
}

/// An exposition being written into one buffer.
pub struct Writer<'b> {
    out: &'b mut String,
    format: Format,
    /// The family whose `# HELP` and `# TYPE` lines wait for its first sample: a family
    /// without samples (no round trips configured, no login yet) is left out, as
    /// client_golang leaves it out. A `/probe` answer is then half as long.
    pending: Option<Family>,
}

/// A metric family's name, kind and help text.
#[derive(Clone, Copy)]
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

impl<'b> Writer<'b> {
    /// Writes into `out` (appending) in `format`.
    pub fn new(out: &'b mut String, format: Format) -> Self {
        Writer {
            out,
            format,
            pending: None,
        }
    }

    /// Starts family `name` (counters without `_total`): its `# HELP` and `# TYPE`
    /// lines come before its first sample, and not at all when it has none.
    pub fn family(&mut self, name: &'static str, kind: Kind, help: &'static str) {
        self.pending = Some(Family { name, kind, help });
    }

    /// The `# HELP` and `# TYPE` lines of `family`.
    fn header(&mut self, family: Family) {
        let Family { name, kind, help } = family;
        let (suffix, kind_name) = match kind {
            Kind::Gauge => ("", "gauge"),
            Kind::Histogram => ("", "histogram"),
            Kind::Counter => match self.format {
                Format::Prometheus => ("_total", "counter"),
                Format::OpenMetrics => ("", "counter"),
            },
        };
        for (keyword, tail) in [("# HELP ", help), ("# TYPE ", kind_name)] {
            self.out.push_str(keyword);
            self.out.push_str(name);
            self.out.push_str(suffix);
            self.out.push(' ');
            self.out.push_str(tail);
            self.out.push('\n');
        }
    }

    /// One sample: `name{labels,extra} value`. `labels` is already escaped
    /// (`target="a",protocol="imap"`); `extra` are more label pairs whose values are
    /// escaped here.
    pub fn sample(&mut self, name: &str, labels: &str, extra: &[(&str, &str)], value: Value) {
        if let Some(family) = self.pending.take() {
            self.header(family);
        }
        self.out.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            self.out.push('{');
            self.out.push_str(labels);
            for (index, (key, raw)) in extra.iter().enumerate() {
                if index > 0 || !labels.is_empty() {
                    self.out.push(',');
                }
                self.out.push_str(key);
                self.out.push_str("=\"");
                escape_into(self.out, raw);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write(self.out);
        self.out.push('\n');
    }

    /// Ends the exposition (`# EOF` for OpenMetrics).
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// A sample value.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    /// A whole number.
    Int(i64),
    /// A count.
    Count(u64),
    /// A real number.
    Float(f64),
}

impl Value {
    fn write(self, out: &mut String) {
        match self {
            Value::Int(value) => {
                if value < 0 {
                    out.push('-');
                }
                push_decimal(out, value.unsigned_abs());
            }
            Value::Count(value) => push_decimal(out, value),
            Value::Float(value) if value.is_nan() => out.push_str("NaN"),
            Value::Float(value) if value.is_infinite() => {
                out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
            }
            Value::Float(value) => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Int(i64::from(value))
    }
}

/// Appends `value` in decimal: most samples are whole numbers, and this is the hot
/// loop of a render at thousands of targets (no formatting machinery).
fn push_decimal(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for digit in &digits[start..] {
        out.push(char::from(*digit));
    }
}

/// Appends `raw` as a label value: `\`, `"` and line feeds escaped.
pub fn escape_into(out: &mut String, raw: &str) {
    if !raw.contains(['\\', '"', '\n']) {
        out.push_str(raw);
        return;
    }
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `key="value",…` with every value escaped: the label prefix of a series.
pub fn label_pairs(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_into(&mut out, value);
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_per_format_and_openmetrics_ends_with_eof() {
        for (format, expected) in [
            (
                Format::Prometheus,
                "# HELP mailprobe_probes_total Probes run\n# TYPE mailprobe_probes_total counter\n\
                 mailprobe_probes_total{target=\"a\\\"b\",result=\"success\"} 3\n",
            ),
            (
                Format::OpenMetrics,
                "# HELP mailprobe_probes Probes run\n# TYPE mailprobe_probes counter\n\
                 mailprobe_probes_total{target=\"a\\\"b\",result=\"success\"} 3\n# EOF\n",
            ),
        ] {
            let mut out = String::new();
            let mut writer = Writer::new(&mut out, format);
            writer.family("mailprobe_probes", Kind::Counter, "Probes run");
            let labels = label_pairs(&[("target", "a\"b")]);
            writer.sample(
                "mailprobe_probes_total",
                &labels,
                &[("result", "success")],
                Value::Count(3),
            );
            writer.finish();
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn a_family_without_samples_is_left_out() {
        let mut out = String::new();
        let mut writer = Writer::new(&mut out, Format::Prometheus);
        writer.family("mailprobe_empty", Kind::Gauge, "Nothing to say");
        writer.family("mailprobe_up", Kind::Gauge, "Up");
        writer.sample("mailprobe_up", "", &[], Value::Int(1));
        writer.family("mailprobe_empty_too", Kind::Counter, "Nothing either");
        writer.finish();
        assert_eq!(
            out,
            "# HELP mailprobe_up Up\n# TYPE mailprobe_up gauge\nmailprobe_up 1\n"
        );
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        let mut out = String::new();
        for value in [
            Value::Float(0.001),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NAN),
            Value::Int(-3),
            Value::from(true),
            Value::Int(i64::MIN),
            Value::Count(0),
            Value::Count(u64::MAX),
        ] {
            value.write(&mut out);
            out.push(' ');
        }
        assert_eq!(
            out,
            "0.001 +Inf NaN -3 1 -9223372036854775808 0 18446744073709551615 "
        );
        assert_eq!(label_pairs(&[("a", "x\ny\\")]), "a=\"x\\ny\\\\\"");
    }
}
