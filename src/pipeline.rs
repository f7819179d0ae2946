//! The one path every probe takes, whoever asks for it — the scheduler, `/probe`,
//! `mailprobe probe` and `mailprobe diagnose`: run the probe, then judge it.
//!
//! ```text
//! probe(target)        the probe itself; the scheduler holds a concurrency slot only here
//! judge(probed)        at once when the server answered (refused, reset, TLS, login,
//!                      protocol): the site is evidently fine; otherwise on a site
//!                      snapshot measured after the probe started, waited for outside
//!                      the slot
//! -> Judged { result, fault, site }
//! ```
//!
//! The two halves are separate so that a failure waiting for fresh site evidence never
//! keeps a slot other targets need; [`Pipeline::run`] is both in one call.

use std::sync::Arc;

use tokio::time::Instant;

use crate::config::Target;
use crate::judge::{self, Judged};
use crate::probe::{self, ProbeEnv, ProbeResult};
use crate::site::SiteMonitor;

/// When a verdict waits for a fresh site snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// Only when the failure needs it (the agent: a success or a server's answer is
    /// judged at once, with the latest snapshot attached for reference).
    WhenNeeded,
    /// Always (the one-shot commands, which show the site's state with every result).
    Always,
}

/// What a probe needs to run and be judged: resolvers and verifiers, and the site
/// monitor whose snapshots the verdicts rest on.
#[derive(Debug, Clone)]
pub struct Pipeline {
    env: Arc<ProbeEnv>,
    site: Arc<SiteMonitor>,
    evidence: Evidence,
}

/// A probe that ran and has not been judged yet.
#[derive(Debug)]
pub struct Probed {
    target: Arc<Target>,
    result: ProbeResult,
    started: Instant,
}

impl Pipeline {
    /// A pipeline that waits for site evidence only when a failure needs it.
    pub fn new(env: Arc<ProbeEnv>, site: Arc<SiteMonitor>) -> Pipeline {
        Pipeline {
            env,
            site,
            evidence: Evidence::WhenNeeded,
        }
    }

    /// The same pipeline, waiting for site evidence as `evidence` says.
    #[must_use]
    pub fn with_evidence(mut self, evidence: Evidence) -> Pipeline {
        self.evidence = evidence;
        self
    }

    /// The probe environment.
    pub fn env(&self) -> &Arc<ProbeEnv> {
        &self.env
    }

    /// The site monitor.
    pub fn site(&self) -> &Arc<SiteMonitor> {
        &self.site
    }

    /// Runs `target` and judges the result: the one function every caller uses.
    pub async fn run(&self, target: &Arc<Target>) -> Judged {
        self.probe(target).await.judge(self).await
    }

    /// The first half: the probe itself, bounded by the target's timeout.
    pub async fn probe(&self, target: &Arc<Target>) -> Probed {
        let started = Instant::now();
        let result = probe::run(target, &self.env).await;
        Probed {
            target: Arc::clone(target),
            result,
            started,
        }
    }
}

impl Probed {
    /// What the probe found.
    pub fn result(&self) -> &ProbeResult {
        &self.result
    }

    /// Whether judging will wait for a fresh site snapshot.
    pub fn needs_site(&self, pipeline: &Pipeline) -> bool {
        pipeline.evidence == Evidence::Always || judge::needs_site(&self.result)
    }

    /// The second half: the verdict, on a site snapshot measured after the probe
    /// started when the failure needs one (at most two site measurements' wait), at
    /// once otherwise.
    pub async fn judge(self, pipeline: &Pipeline) -> Judged {
        let site = if self.needs_site(pipeline) {
            Some(pipeline.site.fresh_since(self.started).await)
        } else {
            pipeline.site.latest()
        };
        let fault = judge::classify(&self.result, site.as_deref());
        Judged {
            target: self.target,
            result: self.result,
            fault,
            site,
        }
    }
}
