//! `mailprobe probe --config FILE [--json] TARGET`: one target, now, run and judged by
//! the same pipeline as the agent's, with the site's state and a verdict a help-desk
//! person can act on.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::config::{Config, Target};
use crate::discover;
use crate::judge::json::JudgedJson;
use crate::judge::{Judged, verdict};
use crate::pipeline::{Evidence, Pipeline};
use crate::probe::env::EnvError;
use crate::probe::{ProbeEnv, ProtocolFacts};
use crate::site::SiteMonitor;

/// No target of that name in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no target `{name}` in {file}; its targets are: {}", known.join(", "))]
pub struct UnknownTarget {
    /// The name asked for.
    pub name: String,
    /// The configuration file.
    pub file: String,
    /// The names it has (configured and discovered).
    pub known: Vec<String>,
}

/// Why `mailprobe probe` could not probe.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeCommandError {
    /// The resolvers or trust anchors cannot be used.
    #[error("cannot prepare the probes: {0}")]
    Environment(#[from] EnvError),
    /// No such target.
    #[error(transparent)]
    UnknownTarget(#[from] UnknownTarget),
}

/// Runs `name` from `config` once (an exchange target runs every check; `name/check`
/// runs one; a target a `domain:` shorthand discovers is found by discovering first).
///
/// # Errors
///
/// [`ProbeCommandError`] when the target does not exist or the probe environment
/// cannot be built.
pub async fn run(config: &Config, name: &str) -> Result<Vec<Judged>, ProbeCommandError> {
    let env = Arc::new(ProbeEnv::new(config)?);
    let mut targets = config.targets.clone();
    for discovery in &config.discover {
        targets.push(discover::mx_target(discovery));
        let found = discover::discover(&discovery.domain, &env, discovery.timeout).await;
        targets.extend(discover::targets(discovery, &found, config));
    }
    let chosen: Vec<Arc<Target>> = targets
        .iter()
        .filter(|t| &*t.name == name || t.display_name() == name)
        .cloned()
        .collect();
    if chosen.is_empty() {
        let mut known: Vec<String> = targets.iter().map(|t| t.name.to_string()).collect();
        known.dedup();
        return Err(UnknownTarget {
            name: name.to_owned(),
            file: config.source.display().to_string(),
            known,
        }
        .into());
    }
    let site = Arc::new(SiteMonitor::new(config, Arc::clone(&env)));
    // The command always shows the site's state: every verdict waits for a snapshot,
    // measured alongside the probes (polled after them, so it counts as fresh).
    let pipeline = Pipeline::new(env, Arc::clone(&site)).with_evidence(Evidence::Always);
    let probes = futures_util::future::join_all(chosen.iter().map(|t| pipeline.run(t)));
    let (judged, _) = tokio::join!(probes, site.measure());
    Ok(judged)
}

/// The results as one JSON document: an array of judged results.
pub fn to_json(judged: &[Judged]) -> String {
    let views: Vec<JudgedJson<'_>> = judged.iter().map(JudgedJson::of).collect();
    let mut text = serde_json::to_string_pretty(&views).expect("plain data serialises");
    text.push('\n');
    text
}

/// The result as text: phases, the failure, the site context, and the verdict.
pub fn render(judged: &Judged) -> String {
    let target = &judged.target;
    let result = &judged.result;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "target {} ({}, {})",
        target.display_name(),
        target.protocol,
        target.describe()
    );
    if let Some(peer) = result.peer {
        let _ = writeln!(out, "  address used: {peer}");
    }
    // A phase can run more than once (redirects, Autodiscover's methods): the failure
    // belongs to its last run.
    let failed_at = result.failure().and_then(|failure| {
        result
            .phases
            .iter()
            .rposition(|timing| timing.phase == failure.phase)
    });
    for (index, timing) in result.phases.iter().enumerate() {
        let failed = failed_at == Some(index);
        let _ = writeln!(
            out,
            "  {:<9} {:>9.1} ms{}",
            timing.phase.as_metrics_label(),
            timing.duration.as_secs_f64() * 1000.0,
            if failed { "  FAILED" } else { "" }
        );
    }
    match &result.facts {
        ProtocolFacts::Http(http) => {
            let _ = writeln!(out, "  http: {http}");
        }
        ProtocolFacts::Roundtrip(roundtrip) => {
            for line in roundtrip.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        _ => {}
    }
    if let Some(failure) = result.failure() {
        let _ = writeln!(out, "  reason: {} ({})", failure.kind, failure.message);
    }
    if let Some(site) = &judged.site {
        let _ = writeln!(out, "  site: {}", verdict::site_summary(site));
    }
    let _ = writeln!(out, "  fault domain: {}", judged.fault);
    let _ = writeln!(out, "\n{}", judged.verdict());
    out
}
