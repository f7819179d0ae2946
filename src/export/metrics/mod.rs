//! The Prometheus metrics: what every series exports, and the exposition.
//!
//! A measuring instrument must not bend what it measures. So:
//!
//! - every series keeps its values behind its own lock ([`series::SeriesState`]):
//!   recording a result locks that series for microseconds, and never waits for a
//!   render, which locks each series only while writing its lines;
//! - `/metrics` is rendered off the runtime threads ([`Metrics::exposition`]), straight
//!   into the format asked for (Prometheus text or OpenMetrics, one pass), into one
//!   buffer sized from the previous render (one allocation, no growth), held for at
//!   most [`RENDER_REUSE`]; concurrent scrapes share one render, and
//!   renders of a format are at most one per [`RENDER_REUSE`] (a scrape storm waits
//!   for the next render rather than causing more), yet no scrape is ever answered
//!   with values older than its own arrival;
//! - the series budget is small (docs/metrics.md): `mailprobe_fault` is one series at
//!   the current domain, and phase histograms are per protocol unless a target asks
//!   for its own (`phase_histogram: true`).
//!
//! Label values come only from the configuration (target names, resolver addresses)
//! or from closed enums; the only server-supplied values are short sanitised facts in
//! `_info` gauges (TLS version and issuer, the Autodiscover answer).

mod histogram;
mod render;
mod series;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::{ExchangeCheck, Protocol, Target};
use crate::export::process::ProcessStats;
use crate::judge::{Fault, Judged, site_fault};
use crate::probe::Phase;
use crate::site::{GatewayState, SiteContext};
use histogram::{Histogram, PHASE_BUCKETS};
pub use series::KNOWN_CAPABILITIES;
use series::SeriesState;
pub use text::Format;
use text::{Kind, Value, Writer, label_pairs};

/// The shortest time between two renders of one format: scrapers of one agent (two
/// Prometheus replicas, an administrator, a storm) cost at most one render a second,
/// however often they come; a scrape that arrives within it waits for the next render
/// (or reuses the last when nothing was recorded since).
pub const RENDER_REUSE: Duration = Duration::from_secs(1);

/// The source revision `mailprobe_build_info` reports: set once by the binary (from
/// the `MAILPROBE_REVISION` its release build was given), `unknown` otherwise.
static BUILD_REVISION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the revision `mailprobe_build_info{revision}` reports; the first call wins.
pub fn set_build_revision(revision: &'static str) {
    let _ = BUILD_REVISION.set(revision);
}

fn build_revision() -> &'static str {
    BUILD_REVISION.get().copied().unwrap_or("unknown")
}

/// The key of a series in the registry: ordered, so the exposition is stable.
type Key = (Arc<str>, Protocol, Option<ExchangeCheck>);

/// Every series the agent exports.
#[derive(Debug)]
pub struct Metrics {
    agent_wide: bool,
    series: RwLock<BTreeMap<Key, Arc<Mutex<SeriesState>>>>,
    /// Phase times of every probe, per protocol and phase.
    protocol_phases: Mutex<BTreeMap<(Protocol, Phase), Histogram>>,
    site: Mutex<SiteSeries>,
    reload_successful: AtomicI64,
    /// `f64` bits: when the configuration was last loaded (0: never).
    reload_success_timestamp: AtomicU64,
    targets: AtomicI64,
    overruns: AtomicU64,
    /// The size of the last render of each format: the next one's buffer capacity.
    last_size: [AtomicUsize; 2],
    /// Results recorded and series changed so far: a render tells whether it is
    /// still current by the count it saw.
    generation: AtomicU64,
    /// The last render of each format, with when it started and the generation it
    /// saw; the lock makes concurrent scrapes of a format share one render.
    cached: [tokio::sync::Mutex<Option<Rendered>>; 2],
}

/// One render kept for the next scrapes.
#[derive(Debug)]
struct Rendered {
    started: Instant,
    generation: u64,
    bytes: Bytes,
}

/// The site context's series.
#[derive(Debug, Default)]
struct SiteSeries {
    gateway: GatewaySeries,
    /// `(labels, up, seconds)` per resolver ever measured under this configuration.
    resolvers: Vec<(String, bool, f64)>,
    /// `(labels, up)` per canary.
    canaries: Vec<(String, bool)>,
    fault: Option<Fault>,
}

#[derive(Debug, Default)]
enum GatewaySeries {
    #[default]
    None,
    NoRoute,
    Checked {
        up: bool,
        labels: String,
    },
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series: the agent's own `/metrics`.
    pub fn new() -> Self {
        Self::build(true)
    }

    /// Only the per-target series: the answer to one `/probe` request.
    pub fn probe_only() -> Self {
        Self::build(false)
    }

    fn build(agent_wide: bool) -> Self {
        Metrics {
            agent_wide,
            series: RwLock::default(),
            protocol_phases: Mutex::default(),
            site: Mutex::new(SiteSeries {
                fault: Some(Fault::Unknown),
                ..SiteSeries::default()
            }),
            reload_successful: AtomicI64::new(0),
            reload_success_timestamp: AtomicU64::new(0f64.to_bits()),
            targets: AtomicI64::new(0),
            overruns: AtomicU64::new(0),
            last_size: [AtomicUsize::new(0), AtomicUsize::new(0)],
            generation: AtomicU64::new(0),
            cached: [tokio::sync::Mutex::new(None), tokio::sync::Mutex::new(None)],
        }
    }

    /// Makes a target's series exist from the start (its probe counters at 0, so
    /// `increase()` sees its first failure).
    pub fn register(&self, target: &Target) {
        self.series_for(
            &target.name,
            target.protocol,
            target.check(),
            target.phase_histogram,
        );
    }

    /// Removes every series of a target that left the configuration.
    pub fn forget(&self, target: &Target) {
        let key = (Arc::clone(&target.name), target.protocol, target.check());
        self.write_registry().remove(&key);
        self.changed();
    }

    /// Updates the series of one judged result (created on first use: an ad-hoc
    /// `/probe` target is never registered).
    pub fn record(&self, judged: &Judged) {
        let result = &judged.result;
        let series = self.series_for(
            &result.target,
            result.protocol,
            result.check,
            judged.target.phase_histogram,
        );
        let phases = lock(&series).record(judged, unix_now());
        // Agent-wide only: a `/probe` answer's histogram would hold one observation
        // and start again with every request, which no `rate()` can read.
        if self.agent_wide {
            let mut protocol_phases = lock(&self.protocol_phases);
            for (phase, seconds) in Phase::ALL.iter().zip(phases) {
                if let Some(seconds) = seconds {
                    protocol_phases
                        .entry((result.protocol, *phase))
                        .or_insert_with(|| Histogram::new(&PHASE_BUCKETS))
                        .observe(seconds);
                }
            }
        }
        self.changed();
    }

    fn series_for(
        &self,
        target: &Arc<str>,
        protocol: Protocol,
        check: Option<ExchangeCheck>,
        histograms: bool,
    ) -> Arc<Mutex<SeriesState>> {
        let key = (Arc::clone(target), protocol, check);
        if let Some(series) = self.read_registry().get(&key) {
            return Arc::clone(series);
        }
        let mut registry = self.write_registry();
        let series = Arc::clone(registry.entry(key).or_insert_with(|| {
            Arc::new(Mutex::new(SeriesState::new(
                target, protocol, check, histograms,
            )))
        }));
        drop(registry);
        self.changed();
        series
    }

    /// Forgets every site series (a new configuration may check other resolvers) and
    /// marks the site fault `unknown` until the first measurement.
    pub fn clear_site(&self) {
        *lock(&self.site) = SiteSeries {
            fault: Some(Fault::Unknown),
            ..SiteSeries::default()
        };
        self.changed();
    }

    /// Records one measurement of the site context.
    pub fn record_site(&self, site: &SiteContext) {
        let mut series = lock(&self.site);
        series.gateway = match &site.gateway {
            GatewayState::NotChecked => GatewaySeries::None,
            GatewayState::NoDefaultRoute => GatewaySeries::NoRoute,
            GatewayState::Checked {
                address,
                up,
                method,
            } => GatewaySeries::Checked {
                up: *up,
                labels: label_pairs(&[
                    ("gateway", &address.to_string()),
                    ("method", method.as_str()),
                ]),
            },
        };
        for resolver in &site.resolvers {
            let labels = label_pairs(&[
                ("resolver", &resolver.resolver),
                ("role", resolver.role.as_str()),
            ]);
            let seconds = resolver.duration.as_secs_f64();
            match series.resolvers.iter_mut().find(|(l, _, _)| *l == labels) {
                Some(entry) => (entry.1, entry.2) = (resolver.up, seconds),
                None => series.resolvers.push((labels, resolver.up, seconds)),
            }
        }
        for canary in &site.canaries {
            let labels = label_pairs(&[("canary", &canary.canary)]);
            match series.canaries.iter_mut().find(|(l, _)| *l == labels) {
                Some(entry) => entry.1 = canary.up,
                None => series.canaries.push((labels, canary.up)),
            }
        }
        series.fault = Some(site_fault(site));
        drop(series);
        self.changed();
    }

    /// Records the outcome of a configuration (re)load.
    pub fn record_reload(&self, successful: bool, targets: usize) {
        self.reload_successful
            .store(i64::from(successful), Ordering::Relaxed);
        if successful {
            self.reload_success_timestamp
                .store(unix_now().to_bits(), Ordering::Relaxed);
            self.set_targets(targets);
        }
        self.changed();
    }

    /// Sets `mailprobe_targets` (discovery changed the set between loads).
    pub fn set_targets(&self, targets: usize) {
        self.targets.store(
            i64::try_from(targets).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.changed();
    }

    /// Counts `skipped` scheduled probes that could not start on time.
    pub fn record_overruns(&self, skipped: u64) {
        self.overruns.fetch_add(skipped, Ordering::Relaxed);
        self.changed();
    }

    /// The exposition in `format`, rendered on a blocking thread (never on the
    /// runtime threads that time probes). Concurrent scrapes share one render; a render
    /// that started after this scrape arrived, or after which nothing changed, is
    /// served as it is; otherwise a new render starts, but not sooner than
    /// [`RENDER_REUSE`] after the last one.
    pub async fn exposition(self: &Arc<Self>, format: Format) -> Bytes {
        let arrived = Instant::now();
        let mut cached = self.cached[format_index(format)].lock().await;
        if let Some(last) = cached.as_ref() {
            if last.started >= arrived || last.generation == self.current_generation() {
                return last.bytes.clone();
            }
            tokio::time::sleep_until(last.started + RENDER_REUSE).await;
        }
        let started = Instant::now();
        let generation = self.current_generation();
        let metrics = Arc::clone(self);
        let rendered = tokio::task::spawn_blocking(move || metrics.render(format))
            .await
            // A panic while rendering is a bug; an empty answer is still a valid
            // exposition and keeps the agent serving.
            .unwrap_or_default();
        let bytes = Bytes::from(rendered.into_bytes());
        *cached = Some(Rendered {
            started,
            generation,
            bytes: bytes.clone(),
        });
        self.release_after_reuse(format, started);
        bytes
    }

    /// Drops the render of `format` that started at `started` once it can no longer be
    /// reused: at 5,000 targets each format's render is megabytes, not worth holding
    /// through the 15 s or more between two scrapes.
    fn release_after_reuse(self: &Arc<Self>, format: Format, started: Instant) {
        let metrics = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(started + RENDER_REUSE).await;
            let Some(metrics) = metrics.upgrade() else {
                return;
            };
            let mut cached = metrics.cached[format_index(format)].lock().await;
            if cached.as_ref().is_some_and(|last| last.started == started) {
                *cached = None;
            }
        });
    }

    fn current_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Notes that something a render shows has changed.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The exposition in `format`, rendered on the calling thread.
    pub fn render(&self, format: Format) -> String {
        let size = &self.last_size[format_index(format)];
        // One allocation of the right size: the previous render's, with room to grow.
        let previous = size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(previous + previous / 8 + 4096);
        let series: Vec<Arc<Mutex<SeriesState>>> =
            self.read_registry().values().map(Arc::clone).collect();
        let mut writer = Writer::new(&mut out, format);
        render::per_series(&mut writer, &series);
        drop(series);
        if self.agent_wide {
            let protocol_phases: Vec<(&'static str, &'static str, Histogram)> =
                lock(&self.protocol_phases)
                    .iter()
                    .map(|((protocol, phase), h)| {
                        (protocol.as_str(), phase.as_metrics_label(), h.clone())
                    })
                    .collect();
            render::per_protocol(&mut writer, &protocol_phases);
            self.render_agent(&mut writer);
        }
        writer.finish();
        size.store(out.len(), Ordering::Relaxed);
        out
    }

    fn render_agent(&self, writer: &mut Writer<'_>) {
        let value = |atomic: &AtomicI64| Value::Int(atomic.load(Ordering::Relaxed));
        writer.family(
            "mailprobe_config_last_reload_successful",
            Kind::Gauge,
            "1 if the last configuration (re)load succeeded",
        );
        let name = "mailprobe_config_last_reload_successful";
        writer.sample(name, "", &[], value(&self.reload_successful));
        writer.family(
            "mailprobe_config_last_reload_success_timestamp_seconds",
            Kind::Gauge,
            "When the configuration was last loaded successfully (Unix time)",
        );
        let at = f64::from_bits(self.reload_success_timestamp.load(Ordering::Relaxed));
        let name = "mailprobe_config_last_reload_success_timestamp_seconds";
        writer.sample(name, "", &[], Value::Float(at));
        self.render_site(writer);
        writer.family(
            "mailprobe_targets",
            Kind::Gauge,
            "Probe series in the running configuration",
        );
        writer.sample("mailprobe_targets", "", &[], value(&self.targets));
        writer.family(
            "mailprobe_probe_overruns",
            Kind::Counter,
            "Scheduled probes skipped because the previous one had not finished",
        );
        let overruns = Value::Count(self.overruns.load(Ordering::Relaxed));
        writer.sample("mailprobe_probe_overruns_total", "", &[], overruns);
        writer.family(
            "mailprobe_build_info",
            Kind::Gauge,
            "Version and source revision of this build",
        );
        let labels = [
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", build_revision()),
        ];
        writer.sample("mailprobe_build_info", "", &labels, Value::Int(1));
        if let Some(stats) = ProcessStats::read() {
            stats.write(writer);
        }
    }

    fn render_site(&self, writer: &mut Writer<'_>) {
        let site = lock(&self.site);
        writer.family(
            "mailprobe_site_gateway_up",
            Kind::Gauge,
            "1 if the default gateway answered (ICMP echo, or TCP where ICMP is not permitted)",
        );
        match &site.gateway {
            GatewaySeries::None => {}
            GatewaySeries::NoRoute => {
                writer.sample("mailprobe_site_gateway_up", "", &[], Value::Int(0));
            }
            GatewaySeries::Checked { up, .. } => {
                writer.sample("mailprobe_site_gateway_up", "", &[], Value::from(*up));
            }
        }
        writer.family(
            "mailprobe_site_gateway_info",
            Kind::Gauge,
            "The gateway checked and how",
        );
        if let GatewaySeries::Checked { labels, .. } = &site.gateway {
            writer.sample("mailprobe_site_gateway_info", labels, &[], Value::Int(1));
        }
        writer.family(
            "mailprobe_site_resolver_up",
            Kind::Gauge,
            "1 if the resolver answered the site check (NOERROR, NXDOMAIN or NODATA)",
        );
        for (labels, up, _) in &site.resolvers {
            writer.sample("mailprobe_site_resolver_up", labels, &[], Value::from(*up));
        }
        writer.family(
            "mailprobe_site_resolver_duration_seconds",
            Kind::Gauge,
            "Time the resolver took to answer the site check",
        );
        for (labels, _, seconds) in &site.resolvers {
            let name = "mailprobe_site_resolver_duration_seconds";
            writer.sample(name, labels, &[], Value::Float(*seconds));
        }
        writer.family(
            "mailprobe_site_canary_up",
            Kind::Gauge,
            "1 if the canary was reachable over TCP",
        );
        for (labels, up) in &site.canaries {
            writer.sample("mailprobe_site_canary_up", labels, &[], Value::from(*up));
        }
        render::site_fault(writer, site.fault.unwrap_or(Fault::Unknown));
    }

    fn read_registry(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Arc<Mutex<SeriesState>>>> {
        // A map of Arcs: a panic cannot leave it half-changed.
        self.series.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_registry(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Key, Arc<Mutex<SeriesState>>>> {
        self.series.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn format_index(format: Format) -> usize {
    match format {
        Format::Prometheus => 0,
        Format::OpenMetrics => 1,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain values: a panic elsewhere cannot leave them inconsistent in a way worse
    // than losing one update.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
