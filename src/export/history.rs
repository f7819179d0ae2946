//! Recent judged results per target, for `/debug`: the last few successes and a longer
//! tail of failures (a failure is what someone comes to read about, often hours later),
//! each with its fault domain, its verdict and the site snapshot it rests on.
//!
//! What is kept is the judged result itself, shared with the other exports, and the
//! text is written only when `/debug` asks. Memory stays small at thousands of
//! targets: a failure that repeats the previous one exactly (the same phase, reason,
//! message and domain: a target that stays down) is counted on that entry rather than
//! kept again; only the newest results keep their step-by-step log, and only the
//! newest of each kind keeps its protocol and TLS facts (dropped in place, no copy);
//! results judged on the same site snapshot share it.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{ExchangeCheck, SeriesKey};
use crate::judge::{Judged, verdict};
use crate::probe::ProtocolFacts;

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
    successes: VecDeque<Kept>,
    failures: VecDeque<Kept>,
}

/// One entry: the newest of a run of identical failures (or one success), how many
/// the run holds and when it began.
#[derive(Debug)]
struct Kept {
    judged: Arc<Judged>,
    repeats: u32,
    first_at: SystemTime,
}

impl Kept {
    fn new(judged: Arc<Judged>) -> Kept {
        Kept {
            first_at: judged.result.started_at,
            judged,
            repeats: 1,
        }
    }

    /// Whether `judged` repeats this entry's failure exactly.
    fn repeated_by(&self, judged: &Judged) -> bool {
        match (self.judged.failure(), judged.failure()) {
            (Some(old), Some(new)) => old == new && self.judged.fault == judged.fault,
            _ => false,
        }
    }

    /// Drops what only the newest results need: the log (older than
    /// [`KEPT_LOGS`]) or also the facts (older than the newest).
    fn shrink(&mut self, keep_log: bool) {
        let needs = |result: &crate::probe::ProbeResult| {
            !(keep_log || result.log.is_empty())
                || !matches!(result.facts, ProtocolFacts::None)
                || result.tls.is_some()
        };
        if !needs(&self.judged.result) {
            return;
        }
        let trim = |judged: &mut Judged| {
            if !keep_log {
                judged.result.log.clear();
            }
            judged.result.facts = ProtocolFacts::None;
            judged.result.tls = None;
        };
        match Arc::get_mut(&mut self.judged) {
            // Nobody else holds it (the usual case): shrink it in place.
            Some(only) => trim(only),
            // A subscriber still reads it: keep a smaller copy.
            None => {
                let mut copy = Judged::clone(&self.judged);
                trim(&mut copy);
                self.judged = Arc::new(copy);
            }
        }
    }
}

/// The recent results of every target (of every check of an exchange target).
#[derive(Debug, Default)]
pub struct History {
    targets: Mutex<HashMap<SeriesKey, TargetHistory>>,
}

impl History {
    /// Remembers a judged result, dropping the oldest of its kind beyond the limits.
    pub fn push(&self, judged: Arc<Judged>) {
        let mut targets = self.lock();
        let history = targets.entry(judged.target.series_key()).or_default();
        let (queue, limit) = if judged.is_success() {
            (&mut history.successes, KEPT_SUCCESSES)
        } else {
            (&mut history.failures, KEPT_FAILURES)
        };
        if let Some(newest) = queue.back_mut()
            && newest.repeated_by(&judged)
        {
            newest.judged = judged;
            newest.repeats = newest.repeats.saturating_add(1);
            return;
        }
        if queue.len() == limit {
            queue.pop_front();
        }
        let kept = queue.len();
        for (age, entry) in queue.iter_mut().rev().enumerate() {
            // `age` 0 is the newest before this push: it becomes the second newest.
            entry.shrink(age + 2 <= KEPT_LOGS && kept > 0);
        }
        queue.push_back(Kept::new(judged));
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
        let mut results: Vec<&Kept> = targets
            .iter()
            .filter(|((name, _), _)| &**name == target)
            .flat_map(|(_, history)| history.successes.iter().chain(&history.failures))
            .collect();
        if results.is_empty() {
            return None;
        }
        results.sort_by_key(|r| std::cmp::Reverse(r.judged.result.started_at));
        let mut out = format!(
            "target {target}: {} recent results (last {KEPT_SUCCESSES} successes, last {KEPT_FAILURES} failures{}), newest first\n",
            results.len(),
            if results.iter().any(|r| r.judged.result.check.is_some()) {
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

fn render_result(out: &mut String, kept: &Kept) {
    let judged = &kept.judged;
    let result = &judged.result;
    let started = result
        .started_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let outcome = match result.failure() {
        None => "success".to_owned(),
        Some(f) => format!(
            "FAILURE phase={} reason={} domain={}",
            f.phase, f.kind, judged.fault
        ),
    };
    let check = result
        .check
        .map_or_else(String::new, |check| format!("check {check}: "));
    let repeats = if kept.repeats > 1 {
        format!(
            " ({} times in a row since {})",
            kept.repeats,
            humantime::format_rfc3339_millis(kept.first_at)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "== {started:.3} ({}) {check}{outcome} in {:.1} ms{repeats}",
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
        let _ = writeln!(out, "   verdict: {}", verdict::sentence(judged));
        match &judged.site {
            Some(site) => {
                let _ = writeln!(
                    out,
                    "   site (measured {}): {}",
                    humantime::format_rfc3339_millis(site.measured_at),
                    verdict::site_summary(site)
                );
            }
            None if crate::judge::needs_site(result) => {
                let _ = writeln!(out, "   site: not measured yet");
            }
            None => {
                let _ = writeln!(
                    out,
                    "   site: not needed for this verdict (the server itself answered)"
                );
            }
        }
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
    if let Some(login) = &result.login {
        render_login(out, login);
    }
    for line in result.log.lines() {
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
        ProtocolFacts::Roundtrip(roundtrip) => {
            for line in roundtrip.lines() {
                let _ = writeln!(out, "   {line}");
            }
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

/// The login's state: held back or not, the last real attempt, the token's facts and
/// the missing step.
fn render_login(out: &mut String, login: &crate::probe::LoginFacts) {
    let time = |at: std::time::SystemTime| humantime::format_rfc3339_seconds(at).to_string();
    let state = if login.suspended {
        format!(
            "SUSPENDED after {} rejected logins in a row (the credential is held back until {})",
            login.consecutive_failures,
            login.next_attempt.map_or_else(|| "-".to_owned(), time)
        )
    } else if login.consecutive_failures > 0 {
        format!("{} rejected in a row", login.consecutive_failures)
    } else {
        "ok".to_owned()
    };
    let _ = writeln!(
        out,
        "   login: {state}; last attempt {}",
        login.last_attempt.map_or_else(|| "never".to_owned(), time)
    );
    if let Some(provider) = &login.identity_provider {
        let _ = writeln!(
            out,
            "   oauth2: identity provider {provider}, mechanism {}, token expires {}{}",
            login.mechanism.unwrap_or("-"),
            login.token_expiry.map_or_else(|| "-".to_owned(), time),
            login
                .client_certificate_not_after
                .map_or_else(String::new, |t| format!(
                    ", client certificate notAfter {t}"
                ))
        );
    }
    if let Some(advice) = &login.advice {
        let _ = writeln!(out, "   next step: {advice}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::{Endpoint, Protocol, Target, TargetSpec, TlsMode};
    use crate::judge::Fault;
    use crate::probe::{ErrorKind, Failure, Phase, ProbeResult};

    fn target() -> Arc<Target> {
        Arc::new(Target {
            name: Arc::from("t"),
            protocol: Protocol::Tcp,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            phase_histogram: false,
            spec: TargetSpec::Tcp(Endpoint {
                host: "192.0.2.25".into(),
                port: 25,
                tls: TlsMode::None,
                server_name: "192.0.2.25".into(),
                extra_roots: Arc::from(Vec::new()),
                auth: None,
            }),
        })
    }

    fn judged(ok: bool, at: u64) -> Judged {
        Judged {
            target: target(),
            result: ProbeResult {
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
                log: ["1.0 ms  connect: FAILED"].into_iter().collect(),
                login: None,
            },
            fault: if ok {
                Fault::None
            } else {
                Fault::ServerService
            },
            site: None,
        }
    }

    /// A failure that differs from the previous one (here: its message).
    fn distinct_failure(at: u64) -> Judged {
        let mut failed = judged(false, at);
        if let Err(failure) = &mut failed.result.outcome {
            failure.message = format!("refused, round {at}");
        }
        failed.result.facts = ProtocolFacts::Http(Default::default());
        failed
    }

    #[test]
    fn only_the_newest_results_keep_their_log_and_the_newest_its_facts() {
        let history = History::default();
        let mut held = Vec::new();
        for at in 0..10 {
            let result = Arc::new(distinct_failure(at));
            // A subscriber that holds on to one: its copy keeps its log.
            if at == 1 {
                held.push(Arc::clone(&result));
            }
            history.push(result);
        }
        let targets = history.lock();
        let failures = &targets.values().next().unwrap().failures;
        assert_eq!(failures.len(), 10);
        let with_log = failures
            .iter()
            .filter(|r| !r.judged.result.log.is_empty())
            .count();
        assert_eq!(with_log, KEPT_LOGS);
        let with_facts = failures
            .iter()
            .filter(|r| !matches!(r.judged.result.facts, ProtocolFacts::None))
            .count();
        assert_eq!(with_facts, 1, "only the newest keeps its facts");
        assert!(
            failures
                .back()
                .is_some_and(|r| !r.judged.result.log.is_empty())
        );
        assert!(!held[0].result.log.is_empty());
    }

    /// Issue 15: a target that stays down the same way costs one entry, not twenty,
    /// and `/debug` says how long the run is.
    #[test]
    fn issue_15_a_repeated_failure_is_counted_not_kept_again() {
        let history = History::default();
        for at in 0..50 {
            history.push(Arc::new(judged(false, at)));
        }
        let targets = history.lock();
        let failures = &targets.values().next().unwrap().failures;
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].repeats, 50);
        drop(targets);
        let text = history.render("t").unwrap();
        assert!(
            text.contains("(50 times in a row since 1970-01-01T00:00:00.000Z)"),
            "{text}"
        );
    }

    #[test]
    fn failures_outlive_successes() {
        let history = History::default();
        history.push(Arc::new(judged(false, 1)));
        for at in 2..100 {
            history.push(Arc::new(judged(true, at)));
        }
        let text = history.render("t").unwrap();
        assert_eq!(text.matches("== ").count(), KEPT_SUCCESSES + 1);
        assert!(history.render("unknown").is_none());
    }

    /// Issue 11: `/debug` names the fault domain and the verdict of each failure.
    #[test]
    fn issue_11_a_failure_shows_its_fault_domain_and_verdict() {
        let history = History::default();
        history.push(Arc::new(judged(false, 1)));
        let text = history.render("t").unwrap();
        assert!(
            text.contains("FAILURE phase=connect reason=connect_refused domain=server_service"),
            "{text}"
        );
        assert!(
            text.contains("verdict: 192.0.2.25 refused the connection on port 25"),
            "{text}"
        );
        assert!(
            text.contains("site: not needed for this verdict (the server itself answered)"),
            "{text}"
        );
    }
}
