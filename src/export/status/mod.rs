//! The state behind the status page (`/`) and `/api/v1/status`: for every probe series
//! its latest judged result, since when it is in its state, its last
//! [`RECENT_RESULTS`] results and its uptime over 1 h and 24 h; the site's latest
//! snapshot; the configuration in force and the last reload; the recent state changes.
//!
//! Bounded, whatever the uptime or the probe interval. Per series: the latest result
//! is the same `Arc` `/debug`'s history holds (a pointer here), the recent results are
//! 16-byte [`Sample`]s (480 bytes), and the uptime windows are probe counts in time
//! buckets — 60 one-minute buckets for the hour and 96 quarter-hour buckets for the
//! day, 4 bytes each (624 bytes). With the map entry that is about 1.3 KiB per series
//! (`memory_per_series_is_bounded` checks it). The list of changes keeps the newest
//! [`KEPT_CHANGES`] for the whole agent. Rendering reads a [`StatusSnapshot`] copied
//! out under the lock, so a page being written never holds up a probe's result.

mod window;

pub use window::{Buckets, Sample, Uptime, unix_millis};

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::config::{ExchangeCheck, SeriesKey, Target};
use crate::judge::{Fault, Judged, verdict};
use crate::site::SiteContext;

/// Results kept per series for the coloured bar and the sparkline: at the default
/// 30 s interval, the last quarter of an hour — what someone answering a call asks.
pub const RECENT_RESULTS: usize = 30;
/// State changes kept for the whole agent: a day of a few flapping targets, or one
/// outage across a hundred targets. Each is a sentence (about 200 bytes).
pub const KEPT_CHANGES: usize = 100;

/// The uptime window of the last hour: one-minute buckets.
pub type HourBuckets = Buckets<60, 60>;
/// The uptime window of the last day: quarter-hour buckets.
pub type DayBuckets = Buckets<900, 96>;

/// What one probe series went through, as the status page shows it.
#[derive(Debug)]
struct SeriesState {
    target: Arc<Target>,
    latest: Option<Arc<Judged>>,
    since: Option<SystemTime>,
    recent: VecDeque<Sample>,
    hour: HourBuckets,
    day: DayBuckets,
}

impl SeriesState {
    fn new(target: Arc<Target>) -> SeriesState {
        SeriesState {
            target,
            latest: None,
            since: None,
            recent: VecDeque::with_capacity(RECENT_RESULTS),
            hour: HourBuckets::default(),
            day: DayBuckets::default(),
        }
    }
}

/// How a series' state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// It started failing (or its first probe failed).
    Down,
    /// It succeeded again after failing.
    Up,
    /// It is still failing, and the failure is now someone else's fault.
    FaultChanged,
}

impl ChangeKind {
    /// The JSON value: `down`, `up`, `fault_changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Down => "down",
            ChangeKind::Up => "up",
            ChangeKind::FaultChanged => "fault_changed",
        }
    }
}

/// One state change of one series.
#[derive(Debug, Clone)]
pub struct Change {
    /// When the probe that showed it started.
    pub at: SystemTime,
    /// The target's name.
    pub target: Arc<str>,
    /// The Exchange check, for exchange targets.
    pub check: Option<ExchangeCheck>,
    /// What changed.
    pub kind: ChangeKind,
    /// The fault domain after the change (`none` for [`ChangeKind::Up`]).
    pub fault: Fault,
    /// The fault domain before it (`none` for a first failure).
    pub previous: Fault,
    /// The help-desk sentence of the result that showed it.
    pub verdict: String,
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    /// The file it was read from.
    pub file: PathBuf,
    /// When it was put in force.
    pub loaded_at: SystemTime,
}

/// The last reload request's outcome.
#[derive(Debug, Clone)]
pub struct ReloadInfo {
    /// When it was answered.
    pub at: SystemTime,
    /// `None` when it succeeded, else the error `/-/reload` answered with.
    pub error: Option<String>,
}

/// One series, copied out for rendering.
#[derive(Debug, Clone)]
pub struct SeriesSnapshot {
    /// The target (the check's, for an exchange target).
    pub target: Arc<Target>,
    /// The latest result (`None`: not probed yet).
    pub latest: Option<Arc<Judged>>,
    /// When the current state (up, or down) began, as far as this agent saw.
    pub since: Option<SystemTime>,
    /// The last results, oldest first.
    pub recent: Vec<Sample>,
    /// Successes out of probes in the last hour.
    pub uptime_hour: Uptime,
    /// Successes out of probes in the last 24 hours.
    pub uptime_day: Uptime,
}

/// Everything the status page shows, copied at one moment.
#[derive(Debug, Clone)]
pub struct StatusSnapshot {
    /// When it was taken.
    pub taken_at: SystemTime,
    /// Every probe series: failing first, then not yet probed, then healthy; by name.
    pub series: Vec<SeriesSnapshot>,
    /// State changes, newest first.
    pub changes: Vec<Change>,
    /// The site's latest measurement (`None`: not measured yet).
    pub site: Option<Arc<SiteContext>>,
    /// The configuration in force.
    pub config: Option<ConfigInfo>,
    /// The last reload's outcome (`None`: no reload since the start).
    pub reload: Option<ReloadInfo>,
}

#[derive(Debug, Default)]
struct Inner {
    series: HashMap<SeriesKey, SeriesState>,
    changes: VecDeque<Change>,
    site: Option<Arc<SiteContext>>,
    config: Option<ConfigInfo>,
    reload: Option<ReloadInfo>,
}

/// The status page's state for one agent.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

impl Status {
    /// Lists a probe series (a new target, or the same one from a reloaded
    /// configuration: its history is kept).
    pub fn register(&self, target: &Arc<Target>) {
        let mut inner = self.lock();
        inner
            .series
            .entry(target.series_key())
            .and_modify(|state| state.target = Arc::clone(target))
            .or_insert_with(|| SeriesState::new(Arc::clone(target)));
    }

    /// Forgets a series that left the configuration.
    pub fn forget(&self, target: &str, check: Option<ExchangeCheck>) {
        self.lock()
            .series
            .retain(|(name, kept), _| &**name != target || *kept != check);
    }

    /// Records a judged result of a listed series (others are ignored: a result that
    /// arrives after its target left the configuration).
    pub fn record(&self, judged: &Arc<Judged>) {
        let at = judged.result.started_at;
        let ok = judged.is_success();
        let mut inner = self.lock();
        let Some(state) = inner.series.get_mut(&judged.target.series_key()) else {
            return;
        };
        let before = state.latest.as_ref().map(|l| l.fault);
        let change = match (before, judged.fault) {
            (None, Fault::None) => None,
            (None, fault) => Some((ChangeKind::Down, fault, Fault::None)),
            (Some(Fault::None), Fault::None) => None,
            (Some(Fault::None), fault) => Some((ChangeKind::Down, fault, Fault::None)),
            (Some(previous), Fault::None) => Some((ChangeKind::Up, Fault::None, previous)),
            (Some(previous), fault) if previous != fault => {
                Some((ChangeKind::FaultChanged, fault, previous))
            }
            (Some(_), _) => None,
        };
        let went_up_or_down =
            before.is_none() || change.is_some_and(|(kind, _, _)| kind != ChangeKind::FaultChanged);
        if went_up_or_down {
            state.since = Some(at);
        }
        state.latest = Some(Arc::clone(judged));
        if state.recent.len() == RECENT_RESULTS {
            state.recent.pop_front();
        }
        state.recent.push_back(Sample::of(judged));
        state.hour.record(at, ok);
        state.day.record(at, ok);
        if let Some((kind, fault, previous)) = change {
            if inner.changes.len() == KEPT_CHANGES {
                inner.changes.pop_front();
            }
            inner.changes.push_back(Change {
                at,
                target: Arc::clone(&judged.target.name),
                check: judged.target.check(),
                kind,
                fault,
                previous,
                verdict: verdict::sentence(judged),
            });
        }
    }

    /// Records the site's latest measurement.
    pub fn record_site(&self, site: Arc<SiteContext>) {
        self.lock().site = Some(site);
    }

    /// Forgets the site measurement (a new configuration may check other resolvers).
    pub fn clear_site(&self) {
        self.lock().site = None;
    }

    /// Records the configuration put in force now, read from `file`.
    pub fn record_config(&self, file: PathBuf) {
        self.lock().config = Some(ConfigInfo {
            file,
            loaded_at: SystemTime::now(),
        });
    }

    /// Records a reload's outcome: `None` when it succeeded, else its error message.
    pub fn record_reload(&self, error: Option<String>) {
        self.lock().reload = Some(ReloadInfo {
            at: SystemTime::now(),
            error,
        });
    }

    /// Copies out what the page shows, with the uptime windows read at `now`.
    pub fn snapshot(&self, now: SystemTime) -> StatusSnapshot {
        let inner = self.lock();
        let mut series: Vec<SeriesSnapshot> = inner
            .series
            .values()
            .map(|state| SeriesSnapshot {
                target: Arc::clone(&state.target),
                latest: state.latest.clone(),
                since: state.since,
                recent: state.recent.iter().copied().collect(),
                uptime_hour: state.hour.uptime(now),
                uptime_day: state.day.uptime(now),
            })
            .collect();
        let changes = inner.changes.iter().rev().cloned().collect();
        let snapshot_rest = (
            inner.site.clone(),
            inner.config.clone(),
            inner.reload.clone(),
        );
        drop(inner);
        series.sort_by(|a, b| {
            (order(a), &a.target.name, a.target.check()).cmp(&(
                order(b),
                &b.target.name,
                b.target.check(),
            ))
        });
        let (site, config, reload) = snapshot_rest;
        StatusSnapshot {
            taken_at: now,
            series,
            changes,
            site,
            config,
            reload,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values, each updated in one step: a panic cannot leave them torn.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Failing series first, then those not probed yet, then healthy ones.
fn order(series: &SeriesSnapshot) -> u8 {
    match &series.latest {
        Some(latest) if !latest.is_success() => 0,
        None => 1,
        Some(_) => 2,
    }
}

pub mod fixtures;
#[cfg(test)]
mod tests;
