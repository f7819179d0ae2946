//! Whose fault is it: the fault domains, the pure classifier, and the help-desk
//! sentences every face of the agent uses (`mailprobe probe`, `diagnose`, `/debug`,
//! the status page).
//!
//! Nothing here measures anything: a site snapshot arrives as plain data
//! ([`crate::site::SiteContext`]), so every rule is table-tested without a network.

mod classify;
mod fault;
pub mod json;
pub mod verdict;

use std::ops::Deref;
use std::sync::Arc;

pub use classify::{classify, needs_site, site_fault};
pub use fault::Fault;

use crate::config::Target;
use crate::probe::ProbeResult;
use crate::site::SiteContext;

/// A probe result with its verdict: the one thing the pipeline produces and every
/// exporter (metrics, history, logs, the commands) reads.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The target that was probed (for the verdict's host and port).
    pub target: Arc<Target>,
    /// What the probe found.
    pub result: ProbeResult,
    /// Whose fault a failure is (`none` for a success).
    pub fault: Fault,
    /// The site snapshot the verdict rests on: one measured after the probe started
    /// when the failure needed it, else the latest one known (`None`: none yet).
    pub site: Option<Arc<SiteContext>>,
}

impl Judged {
    /// The help-desk sentence: what is wrong, and whose side it is on.
    pub fn verdict(&self) -> String {
        verdict::sentence(self)
    }
}

/// A judged result reads like its probe result (`judged.is_success()`,
/// `judged.failure()`): the verdict only adds to it.
impl Deref for Judged {
    type Target = ProbeResult;

    fn deref(&self) -> &ProbeResult {
        &self.result
    }
}
