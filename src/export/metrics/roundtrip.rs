//! The round-trip families: the delivery time (a histogram and the last value) and
//! the late messages a sweep found.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::{FloatGauge, Series};
use crate::probe::roundtrip::RoundtripFacts;

/// Delivery-time buckets, in seconds: from a mailbox on the same server (1 s) to a
/// queue that held the message half an hour (30 min), the longest a round trip is
/// worth waiting for.
const DELIVERY_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

fn delivery_histogram() -> Histogram {
    Histogram::new(DELIVERY_BUCKETS)
}

/// The families only round-trip targets have.
#[derive(Debug)]
pub(super) struct RoundtripFamilies {
    delivery: Family<Series, Histogram, fn() -> Histogram>,
    last_delivery: Family<Series, FloatGauge>,
    late: Family<Series, Counter>,
}

impl RoundtripFamilies {
    pub(super) fn new() -> RoundtripFamilies {
        RoundtripFamilies {
            delivery: Family::new_with_constructor(delivery_histogram),
            last_delivery: Family::default(),
            late: Family::default(),
        }
    }

    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "mailprobe_roundtrip_delivery_seconds",
            "Round trips: time from the server accepting the message to it being visible in the mailbox",
            self.delivery.clone(),
        );
        registry.register(
            "mailprobe_roundtrip_last_delivery_seconds",
            "Round trips: delivery time of the last message found",
            self.last_delivery.clone(),
        );
        registry.register(
            "mailprobe_roundtrip_late",
            "Round trips: messages found by a sweep that arrived after their round had given up",
            self.late.clone(),
        );
    }

    /// Creates the counter at zero, so the first late message is an increase.
    pub(super) fn register_target(&self, t: &Series) {
        let _ = self.late.get_or_create(t);
    }

    pub(super) fn record(&self, t: &Series, facts: &RoundtripFacts) {
        if let Some(delivery) = facts.delivery() {
            let seconds = delivery.as_secs_f64();
            self.delivery.get_or_create(t).observe(seconds);
            self.last_delivery.get_or_create(t).set(seconds);
        }
        let late = facts.late();
        if late > 0 {
            self.late.get_or_create(t).inc_by(late);
        }
    }

    pub(super) fn forget(&self, t: &Series) {
        self.delivery.remove(t);
        self.last_delivery.remove(t);
        self.late.remove(t);
    }
}
