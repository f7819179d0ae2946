//! Bounded per-series records for the status page: the last results as compact
//! [`Sample`]s, and probe counts in fixed time buckets ([`Buckets`]) from which the
//! uptime over a sliding window is read without keeping every result.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::judge::{Fault, Judged};
use crate::probe::{ErrorKind, Phase};

/// One past result, in 16 bytes: when it started, how long it took, its fault domain
/// and, for a failure, the phase and reason. Enough to draw the coloured bar, the
/// duration sparkline and a tooltip; the full result stays in `/debug`'s history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Start, in milliseconds since the Unix epoch.
    at_ms: u64,
    /// Total duration in microseconds, saturating at about 71 minutes (longer than any
    /// probe timeout a site would configure).
    duration_us: u32,
    fault: Fault,
    phase: Option<Phase>,
    kind: Option<ErrorKind>,
}

impl Sample {
    /// The compact record of `judged`.
    pub fn of(judged: &Judged) -> Sample {
        let failure = judged.result.failure();
        Sample {
            at_ms: unix_millis(judged.result.started_at),
            duration_us: u32::try_from(judged.result.duration.as_micros()).unwrap_or(u32::MAX),
            fault: judged.fault,
            phase: failure.map(|f| f.phase),
            kind: failure.map(|f| f.kind),
        }
    }

    /// When the probe started.
    pub fn at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_ms)
    }

    /// How long it took.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(u64::from(self.duration_us))
    }

    /// Whether it succeeded.
    pub fn success(&self) -> bool {
        self.kind.is_none()
    }

    /// Its fault domain (`none` for a success).
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// The failing phase, for a failure.
    pub fn phase(&self) -> Option<Phase> {
        self.phase
    }

    /// The reason, for a failure.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.kind
    }
}

/// Milliseconds since the Unix epoch (0 for a time before it).
pub fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Successes and probes in one bucket. `u16` holds a bucket's probes at any interval
/// the configuration allows (1 s minimum: at most 900 in a 15-minute bucket).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    ok: u16,
    total: u16,
}

/// Probe counts over the last `N` buckets of `WIDTH` seconds each, in a ring: a
/// window of `N × WIDTH` seconds in `4 × N` bytes, whatever the probe interval.
/// The window read at a time covers the bucket it falls in and the `N - 1` before
/// it, so it spans between `(N - 1) × WIDTH` and `N × WIDTH` seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buckets<const WIDTH: u64, const N: usize> {
    /// The index (`unix seconds / WIDTH`) of the newest bucket written; 0 = none.
    newest: u64,
    counts: [Count; N],
}

impl<const WIDTH: u64, const N: usize> Default for Buckets<WIDTH, N> {
    fn default() -> Self {
        Buckets {
            newest: 0,
            counts: [Count::default(); N],
        }
    }
}

/// Successes out of probes in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uptime {
    /// Probes that succeeded.
    pub ok: u32,
    /// Probes in the window.
    pub total: u32,
}

impl Uptime {
    /// The share that succeeded, `None` when nothing was probed in the window.
    pub fn ratio(&self) -> Option<f64> {
        (self.total > 0).then(|| f64::from(self.ok) / f64::from(self.total))
    }
}

impl<const WIDTH: u64, const N: usize> Buckets<WIDTH, N> {
    /// Counts one probe that started at `at`. A probe older than the window (a clock
    /// stepped back) is not counted.
    pub fn record(&mut self, at: SystemTime, ok: bool) {
        let index = bucket(at, WIDTH);
        if self.newest == 0 {
            self.newest = index;
        }
        if index > self.newest {
            // Empty the buckets between the newest written and this one (at most all).
            let stale = (index - self.newest).min(N as u64);
            for step in 0..stale {
                self.counts[slot(index - step, N)] = Count::default();
            }
            self.newest = index;
        } else if index + (N as u64) <= self.newest {
            return;
        }
        let count = &mut self.counts[slot(index, N)];
        count.total = count.total.saturating_add(1);
        if ok {
            count.ok = count.ok.saturating_add(1);
        }
    }

    /// Successes and probes in the window that ends at `now`.
    pub fn uptime(&self, now: SystemTime) -> Uptime {
        let current = bucket(now, WIDTH).max(self.newest);
        let oldest = current.saturating_sub(N as u64 - 1).max(1);
        let mut uptime = Uptime::default();
        if self.newest == 0 {
            return uptime;
        }
        for index in oldest..=self.newest {
            let count = self.counts[slot(index, N)];
            uptime.ok += u32::from(count.ok);
            uptime.total += u32::from(count.total);
        }
        uptime
    }
}

fn bucket(at: SystemTime, width: u64) -> u64 {
    unix_millis(at) / 1000 / width
}

fn slot(index: u64, n: usize) -> usize {
    // The remainder is below `n`, a usize.
    (index % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn uptime_counts_only_the_window() {
        let mut hour = Buckets::<60, 60>::default();
        // Two hours of probes every 30 s: failing in the first hour, fine in the second.
        for step in 0..240 {
            hour.record(at(step * 30), step >= 120);
        }
        let now = at(239 * 30);
        let uptime = hour.uptime(now);
        assert_eq!(uptime.ok, uptime.total, "{uptime:?}");
        assert!((118..=120).contains(&uptime.total), "{uptime:?}");
        // An hour later with no probe at all, nothing is left in the window.
        assert_eq!(hour.uptime(at(239 * 30 + 3600)), Uptime::default());
        assert_eq!(hour.uptime(at(239 * 30 + 3600)).ratio(), None);
    }

    #[test]
    fn half_failing_is_half_up_and_old_results_are_ignored() {
        let mut day = Buckets::<900, 96>::default();
        for step in 0..100 {
            day.record(at(300_000 + step * 60), step % 2 == 0);
        }
        // A result from two days before (a clock stepped back) changes nothing.
        let before = day.clone();
        day.record(at(300_000 - 2 * 86_400), false);
        assert_eq!(day, before);
        let uptime = day.uptime(at(300_000 + 99 * 60));
        assert_eq!((uptime.ok, uptime.total), (50, 100));
        assert_eq!(uptime.ratio(), Some(0.5));
    }

    #[test]
    fn a_long_gap_clears_every_bucket() {
        let mut hour = Buckets::<60, 60>::default();
        hour.record(at(0), false);
        hour.record(at(10 * 86_400), true);
        let uptime = hour.uptime(at(10 * 86_400));
        assert_eq!((uptime.ok, uptime.total), (1, 1));
    }
}
