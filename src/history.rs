//! Recent results per target, for `/debug`: the last few successes and a longer tail of
//! failures (a failure is what someone comes to read about, often hours later).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use crate::config::ExchangeCheck;
use crate::probe::{ProbeResult, ProtocolFacts};

/// Successes kept per target: enough to see the usual timings.
pub const KEPT_SUCCESSES: usize = 5;
/// Failures kept per target: at a 30 s interval, ten minutes of an outage.
pub const KEPT_FAILURES: usize = 20;
/// Results per target that keep their step-by-step log; older ones keep only their
/// phases, reason and message. The log is most of a result's size, and thousands of
/// targets failing at once must not hold twenty logs each.
pub const KEPT_LOGS: usize = 3;

#[derive(Debug, Default)]
struct TargetHistory {
    successes: VecDeque<Arc<ProbeResult>>,
    failures: VecDeque<Arc<ProbeResult>>,
}

/// One series: a target, and for exchange targets one of its checks.
type SeriesKey = (Arc<str>, Option<ExchangeCheck>);

/// The recent results of every target (of every check of an exchange target).
#[derive(Debug, Default)]
pub struct History {
    targets: Mutex<HashMap<SeriesKey, TargetHistory>>,
}

impl History {
    /// Remembers a result, dropping the oldest of its kind beyond the limits.
    pub fn push(&self, result: Arc<ProbeResult>) {
        let mut targets = self.lock();
        let history = targets
            .entry((Arc::clone(&result.target), result.check))
            .or_default();
        let (queue, limit) = if result.is_success() {
            (&mut history.successes, KEPT_SUCCESSES)
        } else {
            (&mut history.failures, KEPT_FAILURES)
        };
        if queue.len() == limit {
            queue.pop_front();
        }
        if let Some(aging) = queue.len().checked_sub(KEPT_LOGS)
            && let Some(old) = queue.get_mut(aging)
            && !old.log.is_empty()
        {
            let mut summary = ProbeResult::clone(old);
            summary.log = Vec::new();
            *old = Arc::new(summary);
        }
        queue.push_back(result);
    }

    /// Forgets a target that left the configuration.
    pub fn forget(&self, target: &str, check: Option<ExchangeCheck>) {
        self.lock()
            .retain(|(name, kept), _| &**name != target || *kept != check);
    }

    /// The recent results of `target`, newest first, as text; `None` for an unknown
    /// target. Contains no secret: results never hold one.
    pub fn render(&self, target: &str) -> Option<String> {
        let targets = self.lock();
        let mut results: Vec<&Arc<ProbeResult>> = targets
            .iter()
            .filter(|((name, _), _)| &**name == target)
            .flat_map(|(_, history)| history.successes.iter().chain(&history.failures))
            .collect();
        if results.is_empty() {
            return None;
        }
        results.sort_by_key(|r| std::cmp::Reverse(r.started_at));
        let mut out = format!(
            "target {target}: {} recent results (last {KEPT_SUCCESSES} successes, last {KEPT_FAILURES} failures{}), newest first\n",
            results.len(),
            if results.iter().any(|r| r.check.is_some()) {
                " of each check"
            } else {
                ""
            }
        );
        for result in results {
            out.push('\n');
            render_result(&mut out, result);
        }
        Some(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SeriesKey, TargetHistory>> {
        // A map of immutable results cannot be left inconsistent by a panic.
        self.targets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn render_result(out: &mut String, result: &ProbeResult) {
    let started = result
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let verdict = match result.failure() {
        None => "success".to_owned(),
        Some(f) => format!("FAILURE phase={} reason={}", f.phase, f.kind),
    };
    let check = result
        .check
        .map_or_else(String::new, |check| format!("check {check}: "));
    let _ = writeln!(
        out,
        "== {started:.3} ({}) {check}{verdict} in {:.1} ms",
        humantime::format_rfc3339_millis(result.started_at),
        result.duration.as_secs_f64() * 1000.0
    );
    if let Some(peer) = result.peer {
        let _ = writeln!(out, "   peer: {peer}");
    }
    for timing in &result.phases {
        let _ = writeln!(
            out,
            "   phase {:<9} {:>9.3} ms",
            timing.phase.as_metrics_label(),
            timing.duration.as_secs_f64() * 1000.0
        );
    }
    if let Some(failure) = result.failure() {
        let _ = writeln!(out, "   error: {}", failure.message);
    }
    if let Some(tls) = &result.tls {
        let _ = writeln!(
            out,
            "   tls: version={} issuer={} subject={} not_after={} sans=[{}] chain={}",
            tls.version.as_deref().unwrap_or("-"),
            tls.issuer.as_deref().unwrap_or("-"),
            tls.subject.as_deref().unwrap_or("-"),
            tls.not_after.map_or("-".to_owned(), |t| t.to_string()),
            tls.sans.join(", "),
            tls.chain_len
        );
    }
    for line in &result.log {
        let _ = writeln!(out, "   | {line}");
    }
    match &result.facts {
        ProtocolFacts::None => {}
        ProtocolFacts::Mail(mail) => {
            let _ = writeln!(out, "   banner: {}", mail.banner);
            let capabilities = &mail.capabilities;
            let _ = writeln!(out, "   capabilities: {}", capabilities.keywords_text());
            let _ = writeln!(
                out,
                "   auth mechanisms: {}",
                capabilities.mechanisms_text()
            );
        }
        ProtocolFacts::Http(http) => {
            let _ = writeln!(out, "   http: {http}");
        }
        ProtocolFacts::Dns(dns) => {
            if let Some(consistent) = dns.consistent {
                let _ = writeln!(out, "   consistent with reference: {consistent}");
            }
            for answer in &dns.answers {
                let what = match &answer.outcome {
                    Ok(records) => records.join(", "),
                    Err(e) => format!("{} ({})", e.kind, e.message),
                };
                let _ = writeln!(
                    out,
                    "   {} {} ({:.1} ms): {what}",
                    answer.role.as_str(),
                    answer.resolver,
                    answer.duration.as_secs_f64() * 1000.0
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Protocol;
    use crate::probe::{ErrorKind, Failure, Phase};

    fn result(ok: bool, at: u64) -> Arc<ProbeResult> {
        Arc::new(ProbeResult {
            target: Arc::from("t"),
            protocol: Protocol::Tcp,
            check: None,
            started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
            duration: Duration::from_millis(3),
            phases: Vec::new(),
            outcome: if ok {
                Ok(())
            } else {
                Err(Failure {
                    phase: Phase::Connect,
                    kind: ErrorKind::ConnectRefused,
                    message: "refused".into(),
                })
            },
            peer: None,
            tls: None,
            facts: ProtocolFacts::None,
            log: vec!["1.0 ms  connect: FAILED".to_owned()],
        })
    }

    #[test]
    fn only_the_newest_results_keep_their_log() {
        let history = History::default();
        for at in 0..10 {
            let mut result = ProbeResult::clone(&result(false, at));
            result.log = vec!["step".to_owned()];
            history.push(Arc::new(result));
        }
        let targets = history.lock();
        let failures = &targets.values().next().unwrap().failures;
        let with_log = failures.iter().filter(|r| !r.log.is_empty()).count();
        assert_eq!(with_log, KEPT_LOGS);
        assert!(failures.back().is_some_and(|r| !r.log.is_empty()));
    }

    #[test]
    fn failures_outlive_successes() {
        let history = History::default();
        history.push(result(false, 1));
        for at in 2..100 {
            history.push(result(true, at));
        }
        let text = history.render("t").unwrap();
        assert_eq!(text.matches("== ").count(), KEPT_SUCCESSES + 1);
        assert!(text.contains("FAILURE phase=connect reason=connect_refused"));
        assert!(history.render("unknown").is_none());
    }
}
