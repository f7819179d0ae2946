//! A fixed-bucket histogram: a count per bucket, the sum and the count.

use super::text::{Kind, Value, Writer};

/// Phase histogram buckets, in seconds: from a LAN round trip (1 ms) to a probe that
/// used most of a long timeout (30 s).
pub const PHASE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Round-trip delivery buckets, in seconds: from a mailbox on the submission server
/// itself (1 s) to a queue that held the message half an hour (30 min), the longest a
/// round trip is worth waiting for.
pub const DELIVERY_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

/// Observations in buckets with fixed upper bounds (`+Inf` implied).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), `+Inf` last.
    counts: Box<[u64]>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1].into_boxed_slice(),
            sum: 0.0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum += value;
    }

    /// Writes `name_bucket`, `name_sum` and `name_count` with `labels`.
    pub fn write(&self, writer: &mut Writer<'_>, name: &str, labels: &str, extra: (&str, &str)) {
        self.write_labelled(writer, name, labels, &[extra]);
    }

    /// [`Histogram::write`] with any number of extra labels (none for a series'
    /// own histogram, such as a round trip's delivery time).
    pub fn write_labelled(
        &self,
        writer: &mut Writer<'_>,
        name: &str,
        labels: &str,
        extra: &[(&str, &str)],
    ) {
        let mut cumulative = 0;
        let mut bucket_name = String::with_capacity(name.len() + 7);
        bucket_name.push_str(name);
        bucket_name.push_str("_bucket");
        let mut le = String::new();
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count;
            le.clear();
            match self.bounds.get(index) {
                Some(bound) => {
                    use std::fmt::Write as _;
                    let _ = write!(le, "{bound}");
                }
                None => le.push_str("+Inf"),
            }
            let value = Value::Count(cumulative);
            // No allocation for the usual one extra label or none.
            match extra {
                [] => writer.sample(&bucket_name, labels, &[("le", &le)], value),
                [one] => writer.sample(&bucket_name, labels, &[*one, ("le", &le)], value),
                more => {
                    let mut all = more.to_vec();
                    all.push(("le", &le));
                    writer.sample(&bucket_name, labels, &all, value);
                }
            }
        }
        writer.sample(
            &format!("{name}_sum"),
            labels,
            extra,
            Value::Float(self.sum),
        );
        writer.sample(
            &format!("{name}_count"),
            labels,
            extra,
            Value::Count(cumulative),
        );
    }

    /// The family kind, for headers.
    pub const KIND: Kind = Kind::Histogram;
}

#[cfg(test)]
mod tests {
    use super::super::text::Format;
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inf_counts_everything() {
        static BOUNDS: [f64; 2] = [0.5, 1.0];
        let mut histogram = Histogram::new(&BOUNDS);
        for value in [0.1, 0.7, 3.0] {
            histogram.observe(value);
        }
        let mut out = String::new();
        let mut writer = Writer::new(&mut out, Format::Prometheus);
        histogram.write(&mut writer, "h", "p=\"x\"", ("phase", "tls"));
        assert_eq!(
            out,
            "h_bucket{p=\"x\",phase=\"tls\",le=\"0.5\"} 1\nh_bucket{p=\"x\",phase=\"tls\",le=\"1\"} 2\n\
             h_bucket{p=\"x\",phase=\"tls\",le=\"+Inf\"} 3\nh_sum{p=\"x\",phase=\"tls\"} 3.8\n\
             h_count{p=\"x\",phase=\"tls\"} 3\n"
        );
    }
}
