//! One task per target: a jittered first start, then a probe every `interval`, start to
//! start, with at most `max_concurrent_probes` running at once.
//!
//! A probe that cannot start on time (the previous one, or the wait for a free slot,
//! ran past the next start) does not queue: the missed starts are skipped and counted
//! as overruns. Memory therefore never grows with a slow or hung endpoint.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Target;

/// Runs one probe of a target and records it. Must itself be bounded in time (the
/// daemon's job is bounded by the target's timeout).
pub type Job = Arc<dyn Fn(Arc<Target>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Told how many scheduled starts of a target were skipped.
pub type OverrunHook = Arc<dyn Fn(&Target, u64) + Send + Sync>;

/// The running per-target tasks of one configuration.
#[derive(Debug)]
pub struct Scheduler {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Scheduler {
    /// Starts one task per target.
    /// `start_jitter` bounds the random delay before each target's first probe; `None`
    /// spreads first probes over the target's whole interval.
    pub fn start(
        targets: &[Arc<Target>],
        max_concurrent_probes: usize,
        start_jitter: Option<Duration>,
        job: Job,
        on_overrun: OverrunHook,
    ) -> Scheduler {
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(max_concurrent_probes));
        for target in targets {
            let spread = start_jitter.map_or(target.interval, |j| j.min(target.interval));
            tasks.spawn(run_target(
                Arc::clone(target),
                spread,
                Arc::clone(&slots),
                Arc::clone(&job),
                Arc::clone(&on_overrun),
                cancel.clone(),
            ));
        }
        tasks.close();
        Scheduler { cancel, tasks }
    }

    /// Cancels every task, including probes in flight, and waits until all have ended.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.wait().await;
    }
}

/// The first start: uniformly spread over `spread` (by default one interval) so that
/// a thousand targets loaded at once do not all probe in the same millisecond.
pub fn first_start(now: Instant, spread: Duration) -> Instant {
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return now;
    }
    now + Duration::from_nanos(fastrand::u64(0..nanos))
}

/// Given the slot a probe was scheduled for and the time it finished, the next slot
/// and how many slots were missed on the way.
pub fn next_slot(scheduled: Instant, now: Instant, interval: Duration) -> (Instant, u64) {
    let next = scheduled + interval;
    if now <= next {
        return (next, 0);
    }
    let behind = now - next;
    let missed =
        u64::try_from(behind.as_nanos() / interval.as_nanos().max(1) + 1).unwrap_or(u64::MAX);
    let skip = interval.saturating_mul(u32::try_from(missed).unwrap_or(u32::MAX));
    (next + skip, missed)
}

async fn run_target(
    target: Arc<Target>,
    spread: Duration,
    slots: Arc<Semaphore>,
    job: Job,
    on_overrun: OverrunHook,
    cancel: CancellationToken,
) {
    let mut slot = first_start(Instant::now(), spread);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep_until(slot) => {}
        }
        let permit = tokio::select! {
            () = cancel.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; should that change, stopping is right.
                Err(_) => return,
            },
        };
        // How late against its slot this probe starts (timer slack, a wait for a free
        // slot): at debug, so a spread of start times can be read from the log.
        let late = Instant::now().saturating_duration_since(slot);
        tracing::debug!(
            target = %target.name,
            late_us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX),
            "probe starting"
        );
        // Each probe in its own task: should a probe ever panic, this target's loop
        // survives and the next round probes again.
        let mut probe = tokio::spawn(job(Arc::clone(&target)));
        tokio::select! {
            () = cancel.cancelled() => {
                probe.abort();
                return;
            }
            outcome = &mut probe => {
                if let Err(error) = outcome
                    && error.is_panic()
                {
                    tracing::error!(target = %target.name, "the probe panicked; this is a bug, please report it");
                }
            }
        }
        drop(permit);
        let (next, missed) = next_slot(slot, Instant::now(), target.interval);
        if missed > 0 {
            tracing::warn!(
                target = %target.name,
                missed,
                "probe could not start on time (previous probe or wait for a free slot ran long); skipped"
            );
            on_overrun(&target, missed);
        }
        slot = next;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::config::{Endpoint, Protocol, TargetSpec, TlsMode};

    fn target(name: &str, interval: Duration) -> Arc<Target> {
        Arc::new(Target {
            name: Arc::from(name),
            protocol: Protocol::Tcp,
            interval,
            timeout: interval,
            spec: TargetSpec::Tcp(Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
                tls: TlsMode::None,
                server_name: "127.0.0.1".into(),
                extra_roots: Arc::from(Vec::new()),
                auth: None,
            }),
        })
    }

    type Starts = Arc<Mutex<Vec<(String, Instant)>>>;

    /// A job that notes when it started and then takes `busy`.
    fn recording_job(busy: Duration) -> (Job, Starts) {
        let starts: Starts = Arc::default();
        let seen = Arc::clone(&starts);
        let job: Job = Arc::new(move |target: Arc<Target>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                seen.lock()
                    .unwrap()
                    .push((target.name.to_string(), Instant::now()));
                tokio::time::sleep(busy).await;
            })
        });
        (job, starts)
    }

    fn counting_overruns() -> (OverrunHook, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&count);
        let hook: OverrunHook = Arc::new(move |_, missed| {
            seen.fetch_add(missed, Ordering::SeqCst);
        });
        (hook, count)
    }

    #[tokio::test(start_paused = true)]
    async fn probes_start_exactly_one_interval_apart() {
        let interval = Duration::from_secs(10);
        let (job, starts) = recording_job(Duration::from_secs(1));
        let (hook, overruns) = counting_overruns();
        let t0 = Instant::now();
        let scheduler = Scheduler::start(&[target("a", interval)], 4, None, job, hook);
        tokio::time::sleep(Duration::from_secs(65)).await;
        scheduler.stop().await;
        let starts: Vec<Instant> = starts.lock().unwrap().iter().map(|(_, at)| *at).collect();
        assert!(starts.len() >= 6, "{} starts", starts.len());
        assert!(starts[0] - t0 < interval, "first start within one interval");
        for pair in starts.windows(2) {
            assert_eq!(pair[1] - pair[0], interval);
        }
        assert_eq!(overruns.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn first_starts_are_spread_within_one_interval() {
        let interval = Duration::from_secs(30);
        let (job, starts) = recording_job(Duration::from_millis(1));
        let (hook, _) = counting_overruns();
        let targets: Vec<_> = (0..100)
            .map(|i| target(&format!("t{i}"), interval))
            .collect();
        let t0 = Instant::now();
        let scheduler = Scheduler::start(&targets, 256, None, job, hook);
        // Just under one interval: every target has started exactly once.
        tokio::time::sleep(interval - Duration::from_millis(1)).await;
        scheduler.stop().await;
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), 100);
        let offsets: std::collections::BTreeSet<Duration> =
            starts.iter().map(|(_, at)| *at - t0).collect();
        assert!(offsets.iter().all(|offset| *offset < interval));
        assert!(
            offsets.len() > 50,
            "starts are spread, not bunched: {} distinct",
            offsets.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_running_past_its_slot_skips_and_counts_the_missed_starts() {
        let interval = Duration::from_secs(10);
        // 25 s per probe: each run misses the two slots that fall inside it.
        let (job, starts) = recording_job(Duration::from_secs(25));
        let (hook, overruns) = counting_overruns();
        let scheduler = Scheduler::start(&[target("slow", interval)], 4, None, job, hook);
        tokio::time::sleep(Duration::from_secs(100)).await;
        scheduler.stop().await;
        let starts: Vec<Instant> = starts.lock().unwrap().iter().map(|(_, at)| *at).collect();
        // Starts stay on the original grid, three slots apart; nothing is queued.
        for pair in starts.windows(2) {
            assert_eq!(pair[1] - pair[0], 3 * interval);
        }
        let completed = u64::try_from(starts.len()).unwrap() - 1;
        assert_eq!(overruns.load(Ordering::SeqCst), 2 * completed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_concurrency_cap_delays_probes_and_late_ones_count_as_overruns() {
        let interval = Duration::from_secs(10);
        // One slot, three targets that each hold it for 4 s: 12 s of work per 10 s.
        let (job, starts) = recording_job(Duration::from_secs(4));
        let (hook, overruns) = counting_overruns();
        let targets: Vec<_> = (0..3).map(|i| target(&format!("t{i}"), interval)).collect();
        let scheduler = Scheduler::start(&targets, 1, None, job, hook);
        tokio::time::sleep(Duration::from_secs(120)).await;
        scheduler.stop().await;
        let starts = starts.lock().unwrap();
        // Never two at once: consecutive starts are at least one probe apart.
        let mut times: Vec<Instant> = starts.iter().map(|(_, at)| *at).collect();
        times.sort();
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(4));
        }
        assert!(overruns.load(Ordering::SeqCst) > 0);
    }

    #[tokio::test(start_paused = true)]
    async fn start_jitter_bounds_the_first_start() {
        let interval = Duration::from_secs(60);
        let (job, starts) = recording_job(Duration::from_millis(1));
        let (hook, _) = counting_overruns();
        let targets: Vec<_> = (0..20)
            .map(|i| target(&format!("t{i}"), interval))
            .collect();
        let t0 = Instant::now();
        let scheduler = Scheduler::start(&targets, 64, Some(Duration::ZERO), job, hook);
        tokio::time::sleep(Duration::from_secs(1)).await;
        scheduler.stop().await;
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), 20);
        assert!(
            starts.iter().all(|(_, at)| *at == t0),
            "all start at once with zero jitter"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_probe_does_not_stop_its_target() {
        let interval = Duration::from_secs(10);
        let runs = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&runs);
        let job: Job = Arc::new(move |_| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in a probe");
                }
            })
        });
        let (hook, _) = counting_overruns();
        let scheduler =
            Scheduler::start(&[target("t", interval)], 4, Some(Duration::ZERO), job, hook);
        tokio::time::sleep(Duration::from_secs(25)).await;
        scheduler.stop().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "probed again after the panic"
        );
    }

    #[test]
    fn next_slot_skips_whole_intervals() {
        let t0 = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(next_slot(t0, t0 + Duration::from_secs(3), i), (t0 + i, 0));
        assert_eq!(next_slot(t0, t0 + i, i), (t0 + i, 0));
        assert_eq!(
            next_slot(t0, t0 + Duration::from_secs(11), i),
            (t0 + 2 * i, 1)
        );
        assert_eq!(
            next_slot(t0, t0 + Duration::from_secs(25), i),
            (t0 + 3 * i, 2)
        );
    }
}
