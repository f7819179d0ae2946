//! One task per target: a jittered first start, then a probe every `interval`, start to
//! start, with at most `max_concurrent_probes` probes running at once.
//!
//! A job has two stages (see [`crate::pipeline`]): the probe, which holds a concurrency
//! slot, and its judgement, which may wait for fresh site evidence and never holds one.
//! The judgement runs beside the target's next rounds; judgements of one target are
//! recorded in the order their probes ran.
//!
//! A probe that cannot start on time (the previous one, or the wait for a free slot,
//! ran past the next start) does not queue: the missed starts are skipped and counted
//! as overruns. Memory therefore never grows with a slow or hung endpoint. Targets can
//! join and leave while the scheduler runs (discovered targets, a discovery that
//! changed its mind).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::config::{SeriesKey, Target};
use crate::probe::later;

/// The second stage of a job: judge the probe and record the verdict. Not itself a
/// future, so that the first stage visibly hands it over rather than awaiting it.
pub struct Judgement(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Judgement {
    /// Wraps the work that judges and records one probe.
    pub fn new(work: impl Future<Output = ()> + Send + 'static) -> Judgement {
        Judgement(Box::pin(work))
    }
}
/// The first stage of a job: the probe itself, which yields its judgement.
pub type Probe = Pin<Box<dyn Future<Output = Judgement> + Send>>;
/// Runs one probe of a target. Both stages must be bounded in time (the probe by the
/// target's timeout, the judgement by the site checks' timeouts).
pub type Job = Arc<dyn Fn(Arc<Target>) -> Probe + Send + Sync>;

/// Told how many scheduled starts of a target were skipped.
pub type OverrunHook = Arc<dyn Fn(&Target, u64) + Send + Sync>;

/// The running per-target tasks.
pub struct Scheduler {
    cancel: CancellationToken,
    tasks: TaskTracker,
    slots: Arc<Semaphore>,
    start_jitter: Option<Duration>,
    job: Job,
    on_overrun: OverrunHook,
    running: Mutex<HashMap<SeriesKey, CancellationToken>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("targets", &self.lock().len())
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler with no targets yet.
    /// `start_jitter` bounds the random delay before each target's first probe; `None`
    /// spreads first probes over the target's whole interval.
    pub fn new(
        max_concurrent_probes: usize,
        start_jitter: Option<Duration>,
        job: Job,
        on_overrun: OverrunHook,
    ) -> Scheduler {
        Scheduler {
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(max_concurrent_probes)),
            start_jitter,
            job,
            on_overrun,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// A scheduler running `targets`.
    pub fn start(
        targets: &[Arc<Target>],
        max_concurrent_probes: usize,
        start_jitter: Option<Duration>,
        job: Job,
        on_overrun: OverrunHook,
    ) -> Scheduler {
        let scheduler = Scheduler::new(max_concurrent_probes, start_jitter, job, on_overrun);
        scheduler.add(targets);
        scheduler
    }

    /// Starts a task for each of `targets` (a target already running is left alone).
    pub fn add(&self, targets: &[Arc<Target>]) {
        let mut running = self.lock();
        for target in targets {
            let key = target.series_key();
            if running.contains_key(&key) || self.cancel.is_cancelled() {
                continue;
            }
            let cancel = self.cancel.child_token();
            running.insert(key, cancel.clone());
            let spread = self
                .start_jitter
                .map_or(target.interval, |j| j.min(target.interval));
            self.tasks.spawn(run_target(
                Arc::clone(target),
                spread,
                Arc::clone(&self.slots),
                Arc::clone(&self.job),
                Arc::clone(&self.on_overrun),
                cancel,
            ));
        }
    }

    /// Stops the task of `target` (its probe in flight is cancelled).
    pub fn remove(&self, target: &Target) {
        if let Some(cancel) = self.lock().remove(&target.series_key()) {
            cancel.cancel();
        }
    }

    /// Cancels every task, including probes in flight, and waits until all have ended.
    pub async fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SeriesKey, CancellationToken>> {
        // A map of cancellation tokens cannot be left inconsistent by a panic.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The first start: uniformly spread over `spread` (by default one interval) so that
/// a thousand targets loaded at once do not all probe in the same millisecond.
pub fn first_start(now: Instant, spread: Duration) -> Instant {
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return now;
    }
    later(now, Duration::from_nanos(fastrand::u64(0..nanos)))
}

/// Given the slot a probe was scheduled for and the time it finished, the next slot
/// and how many slots were missed on the way.
pub fn next_slot(scheduled: Instant, now: Instant, interval: Duration) -> (Instant, u64) {
    let next = later(scheduled, interval);
    if now <= next {
        return (next, 0);
    }
    let behind = now - next;
    let missed =
        u64::try_from(behind.as_nanos() / interval.as_nanos().max(1) + 1).unwrap_or(u64::MAX);
    let skip = interval.saturating_mul(u32::try_from(missed).unwrap_or(u32::MAX));
    (later(next, skip), missed)
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
    // The previous probe's judgement while it still runs: the next one is recorded
    // after it, so results arrive in the order the probes ran. Dropping it (this task
    // ends) aborts it and, through it, every judgement it waits for.
    let mut judging: Option<AbortOnDropHandle<()>> = None;
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
        let mut probe = AbortOnDropHandle::new(tokio::spawn(job(Arc::clone(&target))));
        let judgement = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = &mut probe => match outcome {
                Ok(judgement) => Some(judgement),
                Err(error) => {
                    report_panic(&target, &error);
                    None
                }
            },
        };
        // The slot is free once the probe itself is done: waiting for site evidence
        // must not keep other targets from probing.
        drop(permit);
        if let Some(judgement) = judgement {
            let previous = judging.take();
            let name = Arc::clone(&target);
            judging = Some(AbortOnDropHandle::new(tokio::spawn(async move {
                if let Some(previous) = previous {
                    // Its own panic was reported by its own task.
                    let _ = previous.await;
                }
                if let Err(error) = AbortOnDropHandle::new(tokio::spawn(judgement.0)).await {
                    report_panic(&name, &error);
                }
            })));
        }
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

fn report_panic(target: &Target, error: &tokio::task::JoinError) {
    if error.is_panic() {
        tracing::error!(target = %target.name, "the probe panicked; this is a bug, please report it");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::config::{Endpoint, Protocol, TargetSpec, TlsMode};

    fn target(name: &str, interval: Duration) -> Arc<Target> {
        target_with_port(name, interval, 1)
    }

    fn target_with_port(name: &str, interval: Duration, port: u16) -> Arc<Target> {
        Arc::new(Target {
            name: Arc::from(name),
            protocol: Protocol::Tcp,
            interval,
            timeout: interval,
            phase_histogram: false,
            spec: TargetSpec::Tcp(Endpoint {
                host: "127.0.0.1".into(),
                port,
                tls: TlsMode::None,
                server_name: "127.0.0.1".into(),
                extra_roots: Arc::from(Vec::new()),
                auth: None,
            }),
        })
    }

    type Starts = Arc<Mutex<Vec<(String, Instant)>>>;

    /// A job that notes when it started and then takes `busy`; its judgement is
    /// immediate.
    fn recording_job(busy: Duration) -> (Job, Starts) {
        judging_job(busy, |_| Duration::ZERO)
    }

    /// A job whose probe takes `busy` and whose judgement takes `judging(target)`.
    fn judging_job(busy: Duration, judging: fn(&Target) -> Duration) -> (Job, Starts) {
        let starts: Starts = Arc::default();
        let seen = Arc::clone(&starts);
        let job: Job = Arc::new(move |target: Arc<Target>| {
            let seen = Arc::clone(&seen);
            Box::pin(async move {
                seen.lock()
                    .unwrap()
                    .push((target.name.to_string(), Instant::now()));
                tokio::time::sleep(busy).await;
                let wait = judging(&target);
                Judgement::new(tokio::time::sleep(wait))
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
                Judgement::new(async {})
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

    /// Issue 11: a failure that waits 4 s for site evidence keeps no slot. With one
    /// slot, a 1 s interval and a neighbour probing every second, nothing overruns,
    /// and the judgements of the slow target are recorded in probe order.
    #[tokio::test(start_paused = true)]
    async fn issue_11_a_judgement_waiting_for_the_site_holds_no_slot() {
        let interval = Duration::from_secs(1);
        let (job, starts) = judging_job(Duration::from_millis(5), |target| {
            match target.spec.endpoint().map(|e| e.port) {
                Some(2) => Duration::from_secs(4),
                _ => Duration::ZERO,
            }
        });
        let (hook, overruns) = counting_overruns();
        let targets = [
            target_with_port("closed", interval, 2),
            target_with_port("healthy", interval, 1),
        ];
        let scheduler = Scheduler::start(&targets, 1, Some(Duration::ZERO), job, hook);
        tokio::time::sleep(Duration::from_secs(20) + Duration::from_millis(500)).await;
        scheduler.stop().await;
        assert_eq!(overruns.load(Ordering::SeqCst), 0);
        let starts = starts.lock().unwrap();
        for name in ["closed", "healthy"] {
            let times: Vec<Instant> = starts
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, at)| *at)
                .collect();
            assert_eq!(times.len(), 21, "{name} probed every second");
            for pair in times.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(
                    gap.abs_diff(interval) < Duration::from_millis(10),
                    "{name}: {gap:?}"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn judgements_of_one_target_are_recorded_in_probe_order() {
        let order: Arc<Mutex<Vec<u64>>> = Arc::default();
        let counter = Arc::new(AtomicU64::new(0));
        let (seen, count) = (Arc::clone(&order), Arc::clone(&counter));
        let job: Job = Arc::new(move |_| {
            let (seen, count) = (Arc::clone(&seen), Arc::clone(&count));
            Box::pin(async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                // The first judgement is the slowest: order must still hold.
                let wait = Duration::from_millis(if n == 0 { 3500 } else { 10 });
                Judgement::new(async move {
                    tokio::time::sleep(wait).await;
                    seen.lock().unwrap().push(n);
                })
            })
        });
        let (hook, _) = counting_overruns();
        let interval = Duration::from_secs(1);
        let scheduler =
            Scheduler::start(&[target("t", interval)], 1, Some(Duration::ZERO), job, hook);
        tokio::time::sleep(Duration::from_secs(6)).await;
        scheduler.stop().await;
        let order = order.lock().unwrap();
        assert!(order.len() >= 4, "{order:?}");
        assert!(
            order.windows(2).all(|pair| pair[0] + 1 == pair[1]),
            "{order:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn targets_join_and_leave_a_running_scheduler() {
        let interval = Duration::from_secs(1);
        let (job, starts) = recording_job(Duration::from_millis(1));
        let (hook, _) = counting_overruns();
        let scheduler =
            Scheduler::start(&[target("a", interval)], 4, Some(Duration::ZERO), job, hook);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let late = target("b", interval);
        scheduler.add(std::slice::from_ref(&late));
        scheduler.add(&[target("a", interval)]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        scheduler.remove(&late);
        tokio::time::sleep(Duration::from_secs(3)).await;
        scheduler.stop().await;
        let starts = starts.lock().unwrap();
        let count = |name: &str| starts.iter().filter(|(n, _)| n == name).count();
        assert_eq!(count("a"), 8, "a runs once per second, never twice");
        assert_eq!(count("b"), 2, "b ran while it was scheduled");
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
