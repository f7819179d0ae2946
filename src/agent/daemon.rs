//! Wiring: configuration → pipeline → scheduler → exports (metrics, history, the
//! status page, logs, subscribers); the HTTP endpoints; discovery of `domain:` shorthands in the
//! background; reloads; and the one shutdown path.
//!
//! [`run`] takes an already bound listener and a shutdown future, so tests start the
//! real agent on port 0 and stop it the way a signal would.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::control::{Control, ReloadError, ReloadOutcome, ReloadRequest};
use super::scheduler::{Job, Judgement, OverrunHook, Scheduler};
use super::secrets;
use crate::config::{self, Config, Discovery, SeriesKey, Target};
use crate::discover::{self, Discovered};
use crate::export::{History, Metrics, Status};
use crate::judge::{Fault, Judged};
use crate::pipeline::Pipeline;
use crate::probe::ProbeEnv;
use crate::probe::env::EnvError;
use crate::site::SiteMonitor;
use crate::web::{self, OnDemand, ProbeContext};

/// A discovery that got every answer is repeated this often, so that a changed MX or
/// SRV record (a migration) is followed without a reload.
const DISCOVERY_REFRESH: Duration = Duration::from_secs(3600);
/// A discovery that lacked answers (the site's resolver failed) is tried again after
/// this long, doubling up to [`DISCOVERY_RETRY_MAX`].
const DISCOVERY_RETRY_FIRST: Duration = Duration::from_secs(30);
/// The longest wait between two attempts of a failing discovery.
const DISCOVERY_RETRY_MAX: Duration = Duration::from_secs(600);

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Resolvers or certificate verifiers could not be built.
    #[error("cannot prepare the probes: {0}")]
    Environment(#[from] EnvError),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// Runs the agent until `shutdown` completes: probes on schedule, serves the HTTP
/// endpoints on `listener`, discovers `domain:` shorthands in the background, reloads
/// on request. In-flight probes, discoveries and reloads are cancelled at shutdown and
/// the listener is closed before this returns.
///
/// # Errors
///
/// [`DaemonError`] when the probe environment cannot be built or the HTTP server fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    mut control: Control,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let env = Arc::new(ProbeEnv::new(&config)?);
    let outputs = Arc::new(Outputs {
        metrics: Arc::new(Metrics::new()),
        history: Arc::new(History::default()),
        status: Arc::new(Status::default()),
        on_demand: Arc::new(OnDemand::default()),
        results: control.results.clone(),
        last_states: Mutex::default(),
        discovered: Mutex::default(),
    });
    let stop_http = CancellationToken::new();
    let http_state = web::AppState::new(
        Arc::clone(&outputs.metrics),
        Arc::clone(&outputs.history),
        Arc::clone(&outputs.status),
        Arc::clone(&outputs.on_demand),
        control.reload_sender.clone(),
    );
    // The listener first: nothing below waits on the network, and discovery runs in
    // the background, so `/-/healthy` and `/metrics` answer at once.
    let server = tokio::spawn(web::serve(
        listener,
        http_state.clone(),
        stop_http.clone(),
        config.web.clone(),
    ));

    let mut running = Running::start(config, env, &outputs, control.reload_sender.clone());
    http_state.set_ready(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(request) = control.reloads.recv() => {
                // A reload reads files: it must not keep SIGTERM waiting.
                let outcome = tokio::select! {
                    () = &mut shutdown => {
                        let _ = request.reply.send(Err(ReloadError::ShuttingDown));
                        break;
                    }
                    outcome = running.reload(&outputs) => outcome,
                };
                // The requester may have gone away (HTTP client disconnected); the
                // reload happened regardless.
                let _ = request.reply.send(outcome);
            }
        }
    }
    tracing::info!("shutting down: cancelling probes and closing the listener");
    http_state.set_ready(false);
    running.stop().await;
    stop_http.cancel();
    match server.await {
        Ok(outcome) => outcome.map_err(DaemonError::Http),
        Err(join) => Err(DaemonError::Http(std::io::Error::other(join))),
    }
}

/// Where judged results go, and what outlives a reload.
struct Outputs {
    metrics: Arc<Metrics>,
    history: Arc<History>,
    status: Arc<Status>,
    on_demand: Arc<OnDemand>,
    results: broadcast::Sender<Arc<Judged>>,
    /// The last fault domain of each probe series, to log changes only.
    last_states: Mutex<HashMap<SeriesKey, Fault>>,
    /// The last discovery of each domain, so a reload starts with what was found.
    discovered: Mutex<HashMap<String, Discovered>>,
}

impl Outputs {
    /// Metrics first: whoever reads the log line finds `/metrics` agreeing.
    fn publish(&self, judged: Judged) {
        self.metrics.record(&judged);
        self.log(&judged);
        let judged = Arc::new(judged);
        self.history.push(Arc::clone(&judged));
        self.status.record(&judged);
        // Nobody listening is normal (no test subscribed).
        let _ = self.results.send(judged);
    }

    /// Logs every result at debug, and changes (a new failure or a new fault domain at
    /// warn, recovery at info), so an unattended agent's log says when things changed
    /// without repeating the same failure every interval.
    fn log(&self, judged: &Judged) {
        let changed = {
            // Poisoning cannot corrupt a map of plain values; carry on with it.
            let mut states = self.last_states.lock().unwrap_or_else(|p| p.into_inner());
            states.insert(judged.target.series_key(), judged.fault) != Some(judged.fault)
        };
        let result = &judged.result;
        let target = result.display_name();
        let duration_ms = u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX);
        match result.failure() {
            Some(failure) if changed => tracing::warn!(
                target = %target,
                protocol = %result.protocol,
                phase = %failure.phase,
                reason = failure.kind.as_metrics_label(),
                domain = %judged.fault,
                "probe failed: {}", failure.message
            ),
            Some(failure) => tracing::debug!(
                target = %target,
                phase = %failure.phase,
                reason = failure.kind.as_metrics_label(),
                "probe still failing: {}", failure.message
            ),
            None if changed => tracing::info!(
                target = %target,
                protocol = %result.protocol,
                duration_ms,
                "probe succeeded"
            ),
            None => tracing::debug!(target = %target, duration_ms, "probe succeeded"),
        }
    }

    fn discovered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Discovered>> {
        // A map of plain values cannot be left inconsistent by a panic.
        self.discovered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The configuration in force: its pipeline, the scheduler running its targets, and
/// the background tasks (site rounds, discovery).
struct Running {
    config: Arc<Config>,
    scheduler: Arc<Scheduler>,
    targets: Arc<TargetSet>,
    background: CancellationToken,
    /// Where a changed secret file asks for a reload.
    reloads: mpsc::Sender<ReloadRequest>,
}

impl Running {
    fn start(
        config: Config,
        env: Arc<ProbeEnv>,
        outputs: &Arc<Outputs>,
        reloads: mpsc::Sender<ReloadRequest>,
    ) -> Running {
        for warning in &config.warnings {
            tracing::warn!(
                file = %warning.file.display(),
                line = warning.line,
                field = %warning.field,
                "configuration: {}", warning.message
            );
        }
        let config = Arc::new(config);
        let site = Arc::new(SiteMonitor::new(&config, Arc::clone(&env)));
        let pipeline = Pipeline::new(env, Arc::clone(&site));
        let background = CancellationToken::new();
        outputs.metrics.clear_site();
        outputs.status.clear_site();
        outputs.status.record_config(config.source.clone());
        tokio::spawn(record_site(
            Arc::clone(&site),
            Arc::clone(outputs),
            background.clone(),
        ));
        // The site is measured once per round: the shortest target interval.
        let round = config
            .targets
            .iter()
            .map(|t| t.interval)
            .chain(config.discover.iter().map(|d| d.interval))
            .min()
            .unwrap_or(config::DEFAULT_INTERVAL);
        tokio::spawn(measure_site_every(site, round, background.clone()));
        tokio::spawn(secrets::reload_on_change(
            config.secret_files.clone(),
            reloads.clone(),
            background.clone(),
        ));

        let scheduler = Arc::new(Scheduler::new(
            config.max_concurrent_probes,
            config.start_jitter,
            probe_job(pipeline.clone(), Arc::clone(outputs)),
            overrun_hook(Arc::clone(&outputs.metrics)),
        ));
        let mut configured = config.targets.clone();
        configured.extend(config.discover.iter().map(discover::mx_target));
        let targets = Arc::new(TargetSet {
            configured,
            discovered: Mutex::new(vec![Vec::new(); config.discover.len()]),
            config: Arc::clone(&config),
            pipeline,
            scheduler: Arc::clone(&scheduler),
            outputs: Arc::clone(outputs),
        });
        targets.start();
        for (index, discovery) in config.discover.iter().enumerate() {
            // What the last discovery of this domain found joins at once; the
            // background task then asks again.
            let known = outputs.discovered().get(&discovery.domain).cloned();
            if let Some(found) = known {
                targets.join(index, &found);
            }
            tokio::spawn(discover_every(
                index,
                discovery.clone(),
                Arc::clone(&targets),
                background.clone(),
            ));
        }
        // Metrics first: whoever reads the log line finds `/metrics` agreeing.
        outputs.metrics.record_reload(true, targets.series_count());
        tracing::info!(
            file = %config.source.display(),
            targets = config.targets.len(),
            domains = config.discover.len(),
            "configuration loaded"
        );
        Running {
            config,
            scheduler,
            targets,
            background,
            reloads,
        }
    }

    /// Stops the probes (cancelling those in flight), the site rounds and discovery.
    async fn stop(&self) {
        self.background.cancel();
        self.scheduler.stop().await;
    }

    /// Loads the file again (off the runtime threads); on any error keeps the running
    /// configuration.
    async fn reload(&mut self, outputs: &Arc<Outputs>) -> ReloadOutcome {
        let source = self.config.source.clone();
        let prepared = tokio::task::spawn_blocking(move || -> Result<_, ReloadError> {
            let config = config::load(&source)?;
            let env = ProbeEnv::new(&config)?;
            Ok((config, env))
        })
        .await
        .unwrap_or_else(|join| Err(ReloadError::from(join)));
        let (config, mut env) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                outputs.metrics.record_reload(false, 0);
                outputs.status.record_reload(Some(error.to_string()));
                tracing::error!(%error, "reload rejected; the running configuration stays in force");
                return Err(error);
            }
        };
        if config.listen != self.config.listen {
            tracing::warn!(
                running = %self.config.listen,
                new = %config.listen,
                "`listen` changed: the agent keeps its current address until it is restarted"
            );
        }
        // Stop first so that the old and new schedules never run side by side and the
        // concurrency cap holds across the switch.
        self.stop().await;
        let old = self.targets.all();
        // Tokens and login states outlive the configuration that made them.
        env.adopt(self.targets.pipeline.env(), &config);
        *self = Running::start(config, Arc::new(env), outputs, self.reloads.clone());
        outputs.status.record_reload(None);
        let kept: HashSet<SeriesKey> = self.targets.all().iter().map(|t| t.series_key()).collect();
        for target in old.iter().filter(|t| !kept.contains(&t.series_key())) {
            outputs.forget(target);
        }
        Ok(self.targets.series_count())
    }
}

impl Outputs {
    /// Gives a new target its series (metrics, status page) before its first result.
    fn register(&self, target: &Arc<Target>) {
        self.metrics.register(target);
        self.status.register(target);
    }

    /// Removes every trace of a target that left the configuration.
    fn forget(&self, target: &Target) {
        self.metrics.forget(target);
        self.history.forget(&target.name, target.check());
        self.status.forget(&target.name, target.check());
    }
}

/// The targets of one configuration: those it lists (with the `-mx` target of every
/// `domain:` shorthand) and those discovery found, shared with the discovery tasks.
struct TargetSet {
    configured: Vec<Arc<Target>>,
    /// Per `domain:` shorthand, in configuration order.
    discovered: Mutex<Vec<Vec<Arc<Target>>>>,
    config: Arc<Config>,
    pipeline: Pipeline,
    scheduler: Arc<Scheduler>,
    outputs: Arc<Outputs>,
}

impl TargetSet {
    /// Registers and schedules the configured targets.
    fn start(&self) {
        for target in &self.configured {
            self.outputs.register(target);
        }
        self.scheduler.add(&self.configured);
        self.publish();
    }

    /// Every target, configured then discovered.
    fn all(&self) -> Vec<Arc<Target>> {
        let discovered = self.lock();
        self.configured
            .iter()
            .chain(discovered.iter().flatten())
            .cloned()
            .collect()
    }

    fn series_count(&self) -> usize {
        self.configured.len() + self.lock().iter().map(Vec::len).sum::<usize>()
    }

    /// Makes what discovery found for shorthand `index` the scheduled set: new targets
    /// join, targets no longer found leave — but only when discovery got every answer,
    /// so a resolver outage never takes the targets it cannot see away.
    fn join(&self, index: usize, found: &Discovered) {
        let Some(discovery) = self.config.discover.get(index) else {
            return;
        };
        let candidates = discover::targets(discovery, found, &self.config);
        let (added, removed) = {
            let mut discovered = self.lock();
            let taken: HashSet<Arc<str>> = self
                .configured
                .iter()
                .chain(
                    discovered
                        .iter()
                        .enumerate()
                        .filter(|(other, _)| *other != index)
                        .flat_map(|(_, targets)| targets),
                )
                .map(|t| Arc::clone(&t.name))
                .collect();
            let mut fresh = Vec::with_capacity(candidates.len());
            for target in candidates {
                if taken.contains(&target.name) {
                    tracing::warn!(target = %target.name, "another target has this name; the discovered one is skipped");
                } else {
                    fresh.push(target);
                }
            }
            let current = &mut discovered[index];
            let same = |a: &Target, b: &Target| a.name == b.name && a.describe() == b.describe();
            let added: Vec<Arc<Target>> = fresh
                .iter()
                .filter(|new| !current.iter().any(|old| same(old, new)))
                .cloned()
                .collect();
            let removed: Vec<Arc<Target>> = if found.complete {
                current
                    .iter()
                    .filter(|old| !fresh.iter().any(|new| same(old, new)))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            current.retain(|old| !removed.iter().any(|gone| same(old, gone)));
            current.extend(added.iter().cloned());
            (added, removed)
        };
        for target in &removed {
            self.scheduler.remove(target);
            self.outputs.forget(target);
        }
        for target in &added {
            self.outputs.register(target);
        }
        self.scheduler.add(&added);
        if !added.is_empty() || !removed.is_empty() {
            let names = |targets: &[Arc<Target>]| {
                targets
                    .iter()
                    .map(|t| t.name.to_string())
                    .collect::<Vec<_>>()
            };
            tracing::info!(
                domain = %discovery.domain,
                added = ?names(&added),
                removed = ?names(&removed),
                "discovered targets changed"
            );
            self.outputs.metrics.set_targets(self.series_count());
            self.publish();
        }
    }

    /// Gives `/probe` the current targets.
    fn publish(&self) {
        let mut by_name: HashMap<String, Vec<Arc<Target>>> = HashMap::new();
        for target in self.all() {
            by_name
                .entry(target.name.to_string())
                .or_default()
                .push(target);
        }
        self.outputs.on_demand.publish(ProbeContext {
            config: Arc::clone(&self.config),
            targets: by_name,
            pipeline: self.pipeline.clone(),
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Arc<Target>>>> {
        // Lists of targets cannot be left inconsistent by a panic.
        self.discovered.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Discovers shorthand `index` now and again: every [`DISCOVERY_REFRESH`] while it
/// gets every answer, sooner (from [`DISCOVERY_RETRY_FIRST`], doubling) while not.
async fn discover_every(
    index: usize,
    discovery: Discovery,
    targets: Arc<TargetSet>,
    stop: CancellationToken,
) {
    let mut retry = DISCOVERY_RETRY_FIRST;
    loop {
        let env = targets.pipeline.env();
        let found = tokio::select! {
            () = stop.cancelled() => return,
            found = discover::discover(&discovery.domain, env, discovery.timeout) => found,
        };
        if found.complete {
            targets
                .outputs
                .discovered()
                .insert(discovery.domain.clone(), found.clone());
        } else {
            tracing::warn!(
                domain = %discovery.domain,
                retry_in = %humantime::format_duration(retry),
                "discovery got no answer to some questions (is the site's resolver down?)"
            );
        }
        targets.join(index, &found);
        let wait = if found.complete {
            retry = DISCOVERY_RETRY_FIRST;
            DISCOVERY_REFRESH
        } else {
            let wait = retry;
            retry = (retry * 2).min(DISCOVERY_RETRY_MAX);
            wait
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Measures the site context every `round` until cancelled.
async fn measure_site_every(site: Arc<SiteMonitor>, round: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(round);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = site.measure() => {}
        }
    }
}

/// Records every site snapshot the monitor publishes (rounds and fresh evidence alike)
/// in the metrics and on the status page.
async fn record_site(site: Arc<SiteMonitor>, outputs: Arc<Outputs>, stop: CancellationToken) {
    let mut snapshots = site.subscribe();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let latest = snapshots.borrow_and_update().clone();
        if let Some(snapshot) = latest {
            outputs.metrics.record_site(&snapshot.context);
            outputs.status.record_site(Arc::clone(&snapshot.context));
        }
    }
}

/// The scheduled job: the pipeline's probe (in the slot), then its judgement (outside
/// it), published to every output.
fn probe_job(pipeline: Pipeline, outputs: Arc<Outputs>) -> Job {
    Arc::new(move |target| {
        let pipeline = pipeline.clone();
        let outputs = Arc::clone(&outputs);
        Box::pin(async move {
            let probed = pipeline.probe(&target).await;
            Judgement::new(async move {
                let judged = probed.judge(&pipeline).await;
                outputs.publish(judged);
            })
        })
    })
}

fn overrun_hook(metrics: Arc<Metrics>) -> OverrunHook {
    Arc::new(move |_target, missed| metrics.record_overruns(missed))
}
