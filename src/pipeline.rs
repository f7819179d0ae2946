//! The one path every probe takes, whoever asks for it — the scheduler, `/probe`,
//! `mailprobe probe` and `mailprobe diagnose`: run the probe, then judge it.
//!
//! ```text
//! probe(target)        the probe itself; the scheduler holds a concurrency slot only here
//!                      (a round trip: only its submission)
//! judge(probed)        first a round trip's wait for its message; then the verdict: at
//!                      once when the server answered (refused, reset, TLS, login,
//!                      protocol): the site is evidently fine; otherwise on a site
//!                      snapshot measured after the probe started, waited for outside
//!                      the slot
//! -> Judged { result, fault, site }
//! ```
//!
//! The two halves are separate so that a failure waiting for fresh site evidence, or a
//! round trip waiting minutes for delivery, never keeps a slot other targets need;
//! [`Pipeline::run`] is both in one call.

use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

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

/// A probe that ran (a round trip: that submitted) and has not been judged yet.
#[derive(Debug)]
pub struct Probed {
    target: Arc<Target>,
    stage: Stage,
    started: Instant,
}

/// Where a probe is when its first half returns.
#[derive(Debug)]
enum Stage {
    /// Finished.
    Done(Box<ProbeResult>),
    /// A round trip waiting for its message, in a task of its own: the wait starts as
    /// soon as the message is accepted, however late the judgement is polled (the
    /// scheduler judges a target's rounds one after the other), and is aborted if the
    /// probe is dropped.
    Waiting(AbortOnDropHandle<ProbeResult>),
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

    /// The first half: the probe itself, bounded by the target's timeout (a round
    /// trip: its submission, bounded by its share of the timeout; its wait for the
    /// message starts at once, in a task of its own, outside this half).
    pub async fn probe(&self, target: &Arc<Target>) -> Probed {
        let started = Instant::now();
        let stage = match probe::start(target, &self.env).await {
            probe::Started::Done(result) => Stage::Done(result),
            waiting @ probe::Started::Waiting(_) => {
                let (target, env) = (Arc::clone(target), Arc::clone(&self.env));
                Stage::Waiting(AbortOnDropHandle::new(tokio::spawn(async move {
                    waiting.finish(&target, &env).await
                })))
            }
        };
        Probed {
            target: Arc::clone(target),
            stage,
            started,
        }
    }
}

impl Probed {
    /// What the probe found, when it is finished (a round trip is not until judged).
    pub fn result(&self) -> Option<&ProbeResult> {
        match &self.stage {
            Stage::Done(result) => Some(result),
            Stage::Waiting(_) => None,
        }
    }

    /// The second half: a round trip's wait for its message, then the verdict, on a
    /// site snapshot measured after the probe started when the failure needs one (at
    /// most two site measurements' wait), at once otherwise.
    pub async fn judge(self, pipeline: &Pipeline) -> Judged {
        let waited = matches!(self.stage, Stage::Waiting(_));
        let result = match self.stage {
            Stage::Done(result) => *result,
            Stage::Waiting(wait) => match wait.await {
                Ok(result) => result,
                // A panic in the wait is a bug: it goes on to whoever reports panics
                // (the scheduler's task). The handle is never aborted while awaited;
                // only a runtime shutting down cancels the task.
                Err(error) => std::panic::resume_unwind(
                    error
                        .try_into_panic()
                        .unwrap_or_else(|_| Box::new("the round trip's wait was cancelled")),
                ),
            },
        };
        // A round trip's failure after its wait is judged on the site as it is then,
        // not as it was when the message went out minutes before.
        let since = if waited { Instant::now() } else { self.started };
        let needs_site = pipeline.evidence == Evidence::Always || judge::needs_site(&result);
        let site = if needs_site {
            Some(pipeline.site.fresh_since(since).await)
        } else {
            pipeline.site.latest()
        };
        let fault = judge::classify(&result, site.as_deref());
        Judged {
            target: self.target,
            result,
            fault,
            site,
        }
    }
}
