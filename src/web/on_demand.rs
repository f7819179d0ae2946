//! `/probe?target=NAME`: probe a configured target now and answer with that probe's
//! metrics alone (the multi-target pattern Prometheus users know from
//! blackbox_exporter), run and judged by the same pipeline as a scheduled probe.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Semaphore;

use crate::config::{self, AdhocError, Config, Target};
use crate::export::Metrics;
use crate::pipeline::Pipeline;

/// At most this many `/probe` requests run at once: each may hold a socket for its
/// target's timeout, and a scraper misconfigured to hammer the endpoint must not
/// exhaust the agent.
pub const MAX_CONCURRENT_REQUESTS: usize = 16;

/// What a `/probe` request needs from the running configuration.
#[derive(Debug)]
pub struct ProbeContext {
    /// The running configuration (for ad-hoc targets and `probe_endpoint.allow`).
    pub config: Arc<Config>,
    /// Configured and discovered targets by name (every check of an exchange target
    /// under its name).
    pub targets: HashMap<String, Vec<Arc<Target>>>,
    /// The pipeline that runs and judges them.
    pub pipeline: Pipeline,
}

/// Why a `/probe` request got no probe.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The agent has no configuration loaded yet.
    NotReady,
    /// No target of that name.
    UnknownTarget,
    /// Too many `/probe` requests at once.
    Busy,
    /// An ad-hoc request with an unknown module or a target that is not `host:port`.
    BadRequest(String),
    /// An ad-hoc target whose host `probe_endpoint.allow` does not permit.
    NotAllowed,
}

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeRequest {
    /// A configured target, by name.
    Configured(String),
    /// `module` against `host:port`, if `probe_endpoint.allow` permits the host.
    Adhoc {
        /// One of [`config::adhoc_modules`].
        module: String,
        /// `host:port`.
        target: String,
    },
}

/// The running configuration as `/probe` sees it; replaced on every (re)load.
#[derive(Debug)]
pub struct OnDemand {
    current: RwLock<Option<Arc<ProbeContext>>>,
    slots: Arc<Semaphore>,
}

impl Default for OnDemand {
    fn default() -> Self {
        OnDemand {
            current: RwLock::new(None),
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS)),
        }
    }
}

impl OnDemand {
    /// Makes `context` the one `/probe` uses.
    pub fn publish(&self, context: ProbeContext) {
        // Replacing an Arc cannot be left half-done by a panic.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(context));
    }

    /// Probes the configured target `name` now (every check of an exchange target, at
    /// once) and returns a registry with only those probes' series.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when there is no such target, no configuration yet, or too many
    /// requests at once.
    pub async fn probe(&self, request: &ProbeRequest) -> Result<Metrics, Refusal> {
        let context = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Refusal::NotReady)?;
        let targets = match request {
            ProbeRequest::Configured(name) => context
                .targets
                .get(name)
                .cloned()
                .ok_or(Refusal::UnknownTarget)?,
            ProbeRequest::Adhoc { module, target } => vec![Arc::new(
                config::adhoc_target(&context.config, module, target).map_err(
                    |error| match error {
                        AdhocError::NotAllowed => Refusal::NotAllowed,
                        AdhocError::UnknownModule => Refusal::BadRequest(format!(
                            "unknown module; expected one of {}",
                            config::adhoc_modules().join(", ")
                        )),
                        AdhocError::BadTarget => {
                            Refusal::BadRequest("target must be host:port".to_owned())
                        }
                    },
                )?,
            )],
        };
        let _slot = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)?;
        let metrics = Metrics::probe_only();
        let probes = targets.iter().map(|target| async {
            metrics.record(&context.pipeline.run(target).await);
        });
        futures_util::future::join_all(probes).await;
        Ok(metrics)
    }
}
