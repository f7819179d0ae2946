//! Wiring: configuration → probe environment → scheduler → metrics, the HTTP endpoints,
//! reloads, and the one shutdown path.
//!
//! [`run`] takes an already bound listener and a shutdown future, so tests start the
//! real agent on port 0 and stop it the way a signal would.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ExchangeCheck, Protocol};
use crate::fault::Fault;
use crate::history::History;
use crate::http;
use crate::metrics::Metrics;
use crate::on_demand::{OnDemand, ProbeContext};
use crate::probe::{self, ProbeResult};
use crate::runtime::ProbeEnv;
use crate::scheduler::{Job, OverrunHook, Scheduler};
use crate::site::SiteMonitor;

/// Results kept for subscribers that fall behind; a slow subscriber loses the oldest.
const RESULT_CHANNEL_CAPACITY: usize = 1024;
/// Reload requests waiting to be handled; more than a few at once are redundant.
const RELOAD_QUEUE: usize = 4;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Resolvers or certificate verifiers could not be built.
    #[error("cannot prepare the probes: {0}")]
    Environment(String),
    /// The HTTP server failed.
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
}

/// A request to reload the configuration file, answered with the new target count or
/// the reason the running configuration was kept.
#[derive(Debug)]
pub struct ReloadRequest {
    reply: oneshot::Sender<Result<usize, String>>,
}

/// The daemon's side of its control channels.
#[derive(Debug)]
pub struct Control {
    reloads: mpsc::Receiver<ReloadRequest>,
    reload_sender: mpsc::Sender<ReloadRequest>,
    results: broadcast::Sender<Arc<ProbeResult>>,
}

/// The outside's side: ask for reloads (SIGHUP, tests) and watch results (tests,
/// later `/debug`).
#[derive(Debug, Clone)]
pub struct ControlHandle {
    reloads: mpsc::Sender<ReloadRequest>,
    results: broadcast::Sender<Arc<ProbeResult>>,
}

/// Creates the control channels for one daemon.
pub fn control() -> (Control, ControlHandle) {
    let (reload_sender, reloads) = mpsc::channel(RELOAD_QUEUE);
    let (results, _) = broadcast::channel(RESULT_CHANNEL_CAPACITY);
    (
        Control {
            reloads,
            reload_sender: reload_sender.clone(),
            results: results.clone(),
        },
        ControlHandle {
            reloads: reload_sender,
            results,
        },
    )
}

impl ControlHandle {
    /// Reloads the configuration file and waits for the outcome.
    ///
    /// # Errors
    ///
    /// The reason the new file was rejected (the running configuration stays), or a
    /// message when the daemon has stopped.
    pub async fn reload(&self) -> Result<usize, String> {
        request_reload(&self.reloads).await
    }

    /// Every probe result from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ProbeResult>> {
        self.results.subscribe()
    }
}

pub(crate) async fn request_reload(sender: &mpsc::Sender<ReloadRequest>) -> Result<usize, String> {
    let (reply, answer) = oneshot::channel();
    sender
        .send(ReloadRequest { reply })
        .await
        .map_err(|_| "the agent is shutting down".to_owned())?;
    answer
        .await
        .map_err(|_| "the agent is shutting down".to_owned())?
}

/// Runs the agent until `shutdown` completes: probes on schedule, serves the HTTP
/// endpoints on `listener`, reloads on request. In-flight probes are cancelled at
/// shutdown and the listener is closed before this returns.
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
    let env = Arc::new(ProbeEnv::new(&config).map_err(DaemonError::Environment)?);
    let config = with_discovered_targets(config, &env).await;
    let outputs = Outputs {
        metrics: Arc::new(Metrics::new()),
        history: Arc::new(History::default()),
        on_demand: Arc::new(OnDemand::default()),
        results: control.results.clone(),
    };
    let stop_http = CancellationToken::new();
    let http_state = http::AppState::new(
        Arc::clone(&outputs.metrics),
        Arc::clone(&outputs.history),
        Arc::clone(&outputs.on_demand),
        control.reload_sender.clone(),
    );
    let server = tokio::spawn(http::serve(
        listener,
        http_state.clone(),
        stop_http.clone(),
        config.web.clone(),
    ));

    let mut running = Running::start(config, env, &outputs);
    http_state.set_ready(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(request) = control.reloads.recv() => {
                let outcome = running.reload(&outputs).await;
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

/// Where probe results go: metrics, the `/debug` history, and subscribers.
#[derive(Clone)]
struct Outputs {
    metrics: Arc<Metrics>,
    history: Arc<History>,
    on_demand: Arc<OnDemand>,
    results: broadcast::Sender<Arc<ProbeResult>>,
}

/// The configuration in force, the scheduler running it, and the site monitor.
struct Running {
    config: Config,
    scheduler: Scheduler,
    site_rounds: CancellationToken,
}

impl Running {
    fn start(config: Config, env: Arc<ProbeEnv>, outputs: &Outputs) -> Running {
        let metrics = &outputs.metrics;
        for target in &config.targets {
            metrics.register_target(&target.name, target.protocol, target.check());
        }
        metrics.record_reload(true, config.targets.len());
        let site = Arc::new(SiteMonitor::new(&config, Arc::clone(&env)));
        // The site is measured once per round: the shortest target interval.
        let round = config
            .targets
            .iter()
            .map(|t| t.interval)
            .min()
            .unwrap_or(config::DEFAULT_INTERVAL);
        outputs.on_demand.publish(ProbeContext {
            config: config.clone(),
            targets: config
                .targets
                .iter()
                .fold(HashMap::new(), |mut by_name, t| {
                    by_name
                        .entry(t.name.to_string())
                        .or_insert_with(Vec::new)
                        .push(Arc::clone(t));
                    by_name
                }),
            env: Arc::clone(&env),
            site: Arc::clone(&site),
        });
        let site_rounds = CancellationToken::new();
        metrics.clear_site();
        tokio::spawn(measure_site_every(
            Arc::clone(&site),
            round,
            Arc::clone(metrics),
            site_rounds.clone(),
        ));
        let scheduler = Scheduler::start(
            &config.targets,
            config.max_concurrent_probes,
            config.start_jitter,
            probe_job(env, site, outputs.clone()),
            overrun_hook(Arc::clone(metrics)),
        );
        tracing::info!(
            file = %config.source.display(),
            targets = config.targets.len(),
            "configuration loaded"
        );
        Running {
            config,
            scheduler,
            site_rounds,
        }
    }

    /// Stops the probes (cancelling those in flight) and the site measurements.
    async fn stop(&self) {
        self.site_rounds.cancel();
        self.scheduler.stop().await;
    }

    /// Loads the file again; on any error keeps the running configuration.
    async fn reload(&mut self, outputs: &Outputs) -> Result<usize, String> {
        let metrics = &outputs.metrics;
        let prepared = config::load(&self.config.source)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                let env = ProbeEnv::new(&config)?;
                Ok((config, env))
            });
        let (config, env) = match prepared {
            Ok((config, env)) => (with_discovered_targets(config, &env).await, env),
            Err(reason) => {
                metrics.record_reload(false, 0);
                tracing::error!(error = %reason, "reload rejected; the running configuration stays in force");
                return Err(reason);
            }
        };
        if config.listen != self.config.listen {
            tracing::warn!(
                running = %self.config.listen,
                new = %config.listen,
                "`listen` changed: the agent keeps its current address until it is restarted"
            );
        }
        let kept: HashSet<(&str, Protocol, Option<ExchangeCheck>)> = config
            .targets
            .iter()
            .map(|t| (&*t.name, t.protocol, t.check()))
            .collect();
        for old in &self.config.targets {
            if !kept.contains(&(&*old.name, old.protocol, old.check())) {
                metrics.forget_target(&old.name, old.protocol, old.check());
                outputs.history.forget(&old.name, old.check());
            }
        }
        let count = config.targets.len();
        // Stop first so that the old and new schedules never run side by side and the
        // concurrency cap holds across the switch.
        self.stop().await;
        *self = Running::start(config, Arc::new(env), outputs);
        Ok(count)
    }
}

/// Adds the targets discovered for every `targets: - domain: …` shorthand. A
/// discovered name that a configured target already uses is skipped (and said).
async fn with_discovered_targets(mut config: Config, env: &ProbeEnv) -> Config {
    for discovery in config.discover.clone() {
        let found = crate::diagnose::expand(&discovery, &config, env).await;
        let names: Vec<&str> = found.iter().map(|t| &*t.name).collect();
        tracing::info!(domain = %discovery.domain, targets = ?names, "discovered targets");
        for target in found {
            if config.targets.iter().any(|t| t.name == target.name) {
                tracing::warn!(target = %target.name, "a configured target has this name; the discovered one is skipped");
                continue;
            }
            config.targets.push(target);
        }
    }
    config
}

/// Measures the site context every `round` until cancelled.
async fn measure_site_every(
    site: Arc<SiteMonitor>,
    round: std::time::Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(round);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            context = site.measure() => metrics.record_site(&context),
        }
    }
}

fn probe_job(env: Arc<ProbeEnv>, site: Arc<SiteMonitor>, outputs: Outputs) -> Job {
    let last_state: Arc<Mutex<LastStates>> = Arc::default();
    Arc::new(move |target| {
        let env = Arc::clone(&env);
        let site = Arc::clone(&site);
        let outputs = outputs.clone();
        let last_state = Arc::clone(&last_state);
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let result = probe::run(&target, &env).await;
            let (fault, fresh_site) = site.judge(&result, started).await;
            if let Some(context) = fresh_site {
                outputs.metrics.record_site(&context);
            }
            // Metrics first: whoever reads the log line finds /metrics agreeing.
            outputs.metrics.record(&result, fault);
            log_result(&result, fault, &last_state);
            let result = Arc::new(result);
            outputs.history.push(Arc::clone(&result));
            // Nobody listening is normal (no test subscribed).
            let _ = outputs.results.send(result);
        })
    })
}

/// The last fault domain of each probe series (a target, or one check of it).
type LastStates = HashMap<(Arc<str>, Option<ExchangeCheck>), Fault>;

/// Logs every result at debug, and changes (a new failure or a new fault domain at
/// warn, recovery at info), so an unattended agent's log says when things changed
/// without repeating the same failure every interval.
fn log_result(result: &ProbeResult, fault: Fault, last_state: &Mutex<LastStates>) {
    // A change is up → down, down → up, or a failing target whose verdict moved
    // (the uplink came back but the server is still down, say).
    let changed = {
        // Poisoning cannot corrupt a map of plain values; carry on with it.
        let mut states = last_state.lock().unwrap_or_else(|p| p.into_inner());
        states.insert((Arc::clone(&result.target), result.check), fault) != Some(fault)
    };
    let target = result.display_name();
    match result.failure() {
        Some(failure) if changed => tracing::warn!(
            target = %target,
            protocol = %result.protocol,
            phase = %failure.phase,
            reason = failure.kind.as_metrics_label(),
            domain = %fault,
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
            duration_ms = result.duration.as_millis() as u64,
            "probe succeeded"
        ),
        None => {
            tracing::debug!(target = %target, duration_ms = result.duration.as_millis() as u64, "probe succeeded")
        }
    }
}

fn overrun_hook(metrics: Arc<Metrics>) -> OverrunHook {
    Arc::new(move |_target, missed| metrics.record_overruns(missed))
}
