//! A fixed-bucket histogram: a count per bucket, the sum and the count.

use super::text::{Kind, Value, Writer};

/// The upper bounds of a histogram's buckets (ascending, `+Inf` implied), with their
/// `le` labels written out once instead of formatting a float per bucket per render.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    /// `bounds` as Rust's `Display` writes them (`1`, not `1.0`: the label values the
    /// series have always had, so dashboards keep one series per bucket).
    labels: &'static [&'static str],
}

/// Phase histogram buckets, in seconds: from a LAN round trip (1 ms) to a probe that
/// used most of a long timeout (30 s).
pub static PHASE_BUCKETS: Buckets = Buckets {
    bounds: &[
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ],
    labels: &[
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10", "30",
    ],
};

/// Round-trip delivery buckets, in seconds: from a mailbox on the submission server
/// itself (1 s) to a queue that held the message half an hour (30 min), the longest a
/// round trip is worth waiting for.
pub static DELIVERY_BUCKETS: Buckets = Buckets {
    bounds: &[
        1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
    ],
    labels: &[
        "1", "2", "5", "10", "20", "30", "60", "120", "300", "600", "900", "1800",
    ],
};

/// Observations in buckets with fixed upper bounds (`+Inf` implied).
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: &'static Buckets,
    /// Observations per bucket (not cumulative), `+Inf` last.
    counts: Box<[u64]>,
    sum: f64,
}

impl Histogram {
    /// An empty histogram over `buckets`.
    pub fn new(buckets: &'static Buckets) -> Histogram {
        Histogram {
            buckets,
            counts: vec![0; buckets.bounds.len() + 1].into_boxed_slice(),
            sum: 0.0,
        }
    }

    /// Adds one observation.
    pub fn observe(&mut self, value: f64) {
        let bucket = self
            .buckets
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.buckets.bounds.len());
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
        let mut sample_name = String::with_capacity(name.len() + 7);
        sample_name.push_str(name);
        sample_name.push_str("_bucket");
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count;
            let le = self.buckets.labels.get(index).copied().unwrap_or("+Inf");
            let value = Value::Count(cumulative);
            // No allocation for the usual one extra label or none.
            match extra {
                [] => writer.sample(&sample_name, labels, &[("le", le)], value),
                [one] => writer.sample(&sample_name, labels, &[*one, ("le", le)], value),
                more => {
                    let mut all = more.to_vec();
                    all.push(("le", le));
                    writer.sample(&sample_name, labels, &all, value);
                }
            }
        }
        sample_name.truncate(name.len());
        sample_name.push_str("_sum");
        writer.sample(&sample_name, labels, extra, Value::Float(self.sum));
        sample_name.truncate(name.len());
        sample_name.push_str("_count");
        writer.sample(&sample_name, labels, extra, Value::Count(cumulative));
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
        static BUCKETS: Buckets = Buckets {
            bounds: &[0.5, 1.0],
            labels: &["0.5", "1"],
        };
        let mut histogram = Histogram::new(&BUCKETS);
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

    #[test]
    fn each_label_is_its_bound_as_display_writes_it() {
        for buckets in [&PHASE_BUCKETS, &DELIVERY_BUCKETS] {
            assert_eq!(buckets.bounds.len(), buckets.labels.len());
            for (bound, label) in buckets.bounds.iter().zip(buckets.labels) {
                assert_eq!(bound.to_string(), *label);
            }
            assert!(buckets.bounds.windows(2).all(|pair| pair[0] < pair[1]));
        }
    }
}
