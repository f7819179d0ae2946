//! The probe contract: what every protocol probe produces, and how its phases are timed.
//!
//! A probe runs a sequence of [`Phase`]s. Each phase is timed by a [`Recorder`]; the first
//! phase that fails ends the probe with a typed [`ErrorKind`] and a human message. The
//! result is a [`ProbeResult`], which the metrics, the history and (later) the fault
//! classifier read. Protocol files (`tcp.rs`, `dns.rs`, …) only talk their protocol; the
//! shared dialling lives in [`dial`], certificate handling in [`tls`].

pub mod autodiscover;
pub mod dial;
pub mod dns;
pub mod exchange;
pub mod http;
pub mod imap;
pub mod lines;
pub mod mail;
pub mod pop3;
pub mod smtp;
pub mod tcp;
pub mod tls;
pub mod webmail;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ExchangeCheck, Protocol, Target, TargetSpec};
use crate::runtime::ProbeEnv;

/// One step of a probe. The label values are part of the metrics contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Turning a host name into addresses (or, for DNS targets, the lookup itself).
    Resolve,
    /// The TCP handshake.
    Connect,
    /// The TLS handshake and certificate verification.
    Tls,
    /// Waiting for the server's greeting (IMAP `* OK`, SMTP `220`, POP3 `+OK`).
    Greeting,
    /// Upgrading a plain connection with STARTTLS / STLS.
    Starttls,
    /// Logging in.
    Auth,
    /// The protocol command or HTTP request.
    Request,
    /// Reading an HTTP response.
    Response,
}

impl Phase {
    /// Every phase, in the order a probe runs them.
    pub const ALL: [Phase; 8] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Greeting,
        Phase::Starttls,
        Phase::Auth,
        Phase::Request,
        Phase::Response,
    ];

    /// The stable `phase` label value.
    pub fn as_metrics_label(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Greeting => "greeting",
            Phase::Starttls => "starttls",
            Phase::Auth => "auth",
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_metrics_label())
    }
}

/// Why a probe failed. Each variant has a stable metrics label (`reason`).
///
/// The set is closed for label cardinality, but marked `#[non_exhaustive]` because
/// protocols added later bring their own reasons.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The name does not exist (NXDOMAIN).
    DnsNxdomain,
    /// The name exists but has no record of the asked type (NOERROR, empty answer).
    DnsNodata,
    /// The resolver answered SERVFAIL.
    DnsServfail,
    /// The resolver answered REFUSED.
    DnsRefused,
    /// The resolver did not answer in time.
    DnsTimeout,
    /// The answer differs from the configured `expect` list.
    DnsUnexpectedAnswer,
    /// The site resolvers' answer differs from the reference resolvers' answer.
    DnsMismatch,
    /// The peer answered the TCP SYN with a RST: nothing listens on that port.
    ConnectRefused,
    /// The TCP handshake did not complete in time (packets silently dropped, host down).
    ConnectTimeout,
    /// No route to the network (ENETUNREACH, a blackhole route, no source address).
    NetUnreachable,
    /// No route to the host (EHOSTUNREACH, ICMP host/admin prohibited).
    HostUnreachable,
    /// The peer reset an established connection.
    ConnectionReset,
    /// The TLS handshake failed for a reason other than the certificate.
    TlsHandshake,
    /// The server certificate has expired.
    CertExpired,
    /// The server certificate is not valid yet.
    CertNotYetValid,
    /// The server certificate does not cover the name we asked for.
    CertNameMismatch,
    /// The server certificate does not chain to a trusted root.
    CertUntrusted,
    /// The server did not send its greeting in time.
    GreetingTimeout,
    /// The greeting was not what the protocol requires.
    BadGreeting,
    /// The server said it will not serve us (SMTP 421/554, IMAP BYE, POP3 -ERR).
    ServiceUnavailable,
    /// STARTTLS was required but not offered.
    StarttlsUnavailable,
    /// The credentials were rejected.
    AuthFailed,
    /// The server broke the protocol.
    ProtocolError,
    /// An HTTP status outside `expect_status`.
    HttpStatus,
    /// The HTTP body did not match `expect_body`.
    BodyMismatch,
    /// The probe ran out of time in a phase without a more specific timeout reason.
    Timeout,
}

impl ErrorKind {
    /// Every reason, for removing a target's series and for tests.
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::DnsNxdomain,
        ErrorKind::DnsNodata,
        ErrorKind::DnsServfail,
        ErrorKind::DnsRefused,
        ErrorKind::DnsTimeout,
        ErrorKind::DnsUnexpectedAnswer,
        ErrorKind::DnsMismatch,
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::NetUnreachable,
        ErrorKind::HostUnreachable,
        ErrorKind::ConnectionReset,
        ErrorKind::TlsHandshake,
        ErrorKind::CertExpired,
        ErrorKind::CertNotYetValid,
        ErrorKind::CertNameMismatch,
        ErrorKind::CertUntrusted,
        ErrorKind::GreetingTimeout,
        ErrorKind::BadGreeting,
        ErrorKind::ServiceUnavailable,
        ErrorKind::StarttlsUnavailable,
        ErrorKind::AuthFailed,
        ErrorKind::ProtocolError,
        ErrorKind::HttpStatus,
        ErrorKind::BodyMismatch,
        ErrorKind::Timeout,
    ];

    /// The stable `reason` label value.
    pub fn as_metrics_label(self) -> &'static str {
        match self {
            ErrorKind::DnsNxdomain => "dns_nxdomain",
            ErrorKind::DnsNodata => "dns_nodata",
            ErrorKind::DnsServfail => "dns_servfail",
            ErrorKind::DnsRefused => "dns_refused",
            ErrorKind::DnsTimeout => "dns_timeout",
            ErrorKind::DnsUnexpectedAnswer => "dns_unexpected_answer",
            ErrorKind::DnsMismatch => "dns_mismatch",
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::NetUnreachable => "net_unreachable",
            ErrorKind::HostUnreachable => "host_unreachable",
            ErrorKind::ConnectionReset => "connection_reset",
            ErrorKind::TlsHandshake => "tls_handshake",
            ErrorKind::CertExpired => "cert_expired",
            ErrorKind::CertNotYetValid => "cert_not_yet_valid",
            ErrorKind::CertNameMismatch => "cert_name_mismatch",
            ErrorKind::CertUntrusted => "cert_untrusted",
            ErrorKind::GreetingTimeout => "greeting_timeout",
            ErrorKind::BadGreeting => "bad_greeting",
            ErrorKind::ServiceUnavailable => "service_unavailable",
            ErrorKind::StarttlsUnavailable => "starttls_unavailable",
            ErrorKind::AuthFailed => "auth_failed",
            ErrorKind::ProtocolError => "protocol_error",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::BodyMismatch => "body_mismatch",
            ErrorKind::Timeout => "timeout",
        }
    }

    /// The reason to report when the probe's deadline expires inside `phase`.
    pub fn timeout_in(phase: Phase) -> ErrorKind {
        match phase {
            Phase::Resolve => ErrorKind::DnsTimeout,
            Phase::Connect => ErrorKind::ConnectTimeout,
            Phase::Greeting => ErrorKind::GreetingTimeout,
            _ => ErrorKind::Timeout,
        }
    }

    /// True for the certificate problems (as opposed to a handshake that broke down).
    pub fn is_certificate_problem(self) -> bool {
        matches!(
            self,
            ErrorKind::CertExpired
                | ErrorKind::CertNotYetValid
                | ErrorKind::CertNameMismatch
                | ErrorKind::CertUntrusted
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_metrics_label())
    }
}

/// A failure inside one step, before the recorder has attached the phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    /// The typed reason.
    pub kind: ErrorKind,
    /// What happened, for people: never contains a secret.
    pub message: String,
}

impl ProbeError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProbeError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ProbeError {}

/// The failure that ended a probe: the phase it happened in, the reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The phase that failed.
    pub phase: Phase,
    /// The typed reason.
    pub kind: ErrorKind,
    /// What happened, for people.
    pub message: String,
}

/// How long one phase took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseTiming {
    /// Which phase.
    pub phase: Phase,
    /// Its wall-clock duration (monotonic clock).
    pub duration: Duration,
}

/// Facts about the TLS session and the certificate the server presented.
///
/// Filled in even when verification failed, so that an expired certificate still
/// reports its dates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// Negotiated protocol version (`TLSv1.3`), absent when the handshake failed.
    pub version: Option<String>,
    /// Leaf certificate notAfter, seconds since the Unix epoch.
    pub not_after: Option<i64>,
    /// Leaf certificate notBefore, seconds since the Unix epoch.
    pub not_before: Option<i64>,
    /// Issuer common name (or the full issuer DN when it has no CN).
    pub issuer: Option<String>,
    /// Subject DN of the leaf.
    pub subject: Option<String>,
    /// DNS names and IP addresses in the subjectAltName extension.
    pub sans: Vec<String>,
    /// Number of certificates the server sent.
    pub chain_len: usize,
}

/// Facts particular to one protocol.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ProtocolFacts {
    /// Nothing beyond the phases (plain TCP).
    #[default]
    None,
    /// A DNS target's answers, one per resolver asked.
    Dns(dns::DnsFacts),
    /// A mail session's banner and capabilities.
    Mail(mail::MailFacts),
    /// What an HTTP probe (webmail, Exchange) saw.
    Http(http::HttpFacts),
}

/// Everything one run of one probe found out.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    /// The configured target name.
    pub target: Arc<str>,
    /// The target's protocol.
    pub protocol: Protocol,
    /// The Exchange check, for exchange targets (the `check` label).
    pub check: Option<ExchangeCheck>,
    /// When the probe started (wall clock).
    pub started_at: SystemTime,
    /// Total time the probe took.
    pub duration: Duration,
    /// The phases that ran, in order, with their durations.
    pub phases: Vec<PhaseTiming>,
    /// `Ok` when the probe succeeded, else the failing phase, reason and message.
    pub outcome: Result<(), Failure>,
    /// The address the connection was made to, when one was made.
    pub peer: Option<SocketAddr>,
    /// TLS facts when a TLS handshake was attempted.
    pub tls: Option<TlsFacts>,
    /// Protocol-specific facts.
    pub facts: ProtocolFacts,
    /// What happened, step by step, for `/debug` (bounded, never a secret).
    pub log: Vec<String>,
}

impl ProbeResult {
    /// True when the probe succeeded.
    pub fn is_success(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The failure, if any.
    pub fn failure(&self) -> Option<&Failure> {
        self.outcome.as_ref().err()
    }

    /// `target`, or `target/check` for an Exchange check: what logs call this series.
    pub fn display_name(&self) -> String {
        match self.check {
            Some(check) => format!("{}/{check}", self.target),
            None => self.target.to_string(),
        }
    }
}

/// Marker returned when a phase has failed; the failure itself is held by the [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// Times phases and collects facts while a probe runs.
///
/// The probe's deadline is enforced outside the protocol code (see [`run`]): when it
/// expires, the future is dropped and the recorder still knows which phase was running,
/// so the timeout is reported against that phase.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    log: Vec<String>,
    phases: Vec<PhaseTiming>,
    current: Option<(Phase, Instant)>,
    failure: Option<Failure>,
    /// The address used for the connection, set by the dialler.
    pub peer: Option<SocketAddr>,
    /// TLS facts, set by the TLS step.
    pub tls: Option<TlsFacts>,
    /// Protocol facts, set by the protocol.
    pub facts: ProtocolFacts,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            origin: Instant::now(),
            log: Vec::new(),
            phases: Vec::with_capacity(Phase::ALL.len()),
            current: None,
            failure: None,
            peer: None,
            tls: None,
            facts: ProtocolFacts::None,
        }
    }

    /// Runs `step` as `phase`: times it, and records the failure if it fails.
    ///
    /// # Errors
    ///
    /// Returns [`Failed`] when `step` fails; the recorder then holds the failure.
    pub async fn phase<T>(
        &mut self,
        phase: Phase,
        step: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, Failed> {
        let started = Instant::now();
        self.current = Some((phase, started));
        let outcome = step.await;
        self.current = None;
        let duration = started.elapsed();
        self.phases.push(PhaseTiming { phase, duration });
        let ms = duration.as_secs_f64() * 1000.0;
        match &outcome {
            Ok(_) => self.note(format!("{phase}: ok in {ms:.1} ms")),
            Err(error) => self.note(format!(
                "{phase}: FAILED in {ms:.1} ms: {}: {}",
                error.kind, error.message
            )),
        }
        outcome.map_err(|error| {
            self.failure = Some(Failure {
                phase,
                kind: error.kind,
                message: error.message,
            });
            Failed
        })
    }

    /// Adds a line to the probe's log, stamped with the time since the probe began.
    /// The log is bounded; callers never pass secrets (server text is sanitised).
    pub fn note(&mut self, text: impl Into<String>) {
        match self.log.len() {
            n if n < MAX_LOG_LINES => {
                let ms = self.origin.elapsed().as_secs_f64() * 1000.0;
                self.log.push(format!("{ms:>9.1} ms  {}", text.into()));
            }
            n if n == MAX_LOG_LINES => self.log.push("… further events dropped".to_owned()),
            _ => {}
        }
    }

    /// Records a failure found after the phase's I/O finished (a wrong answer, say).
    pub fn fail(&mut self, phase: Phase, error: ProbeError) -> Failed {
        self.note(format!(
            "{phase}: FAILED: {}: {}",
            error.kind, error.message
        ));
        self.failure = Some(Failure {
            phase,
            kind: error.kind,
            message: error.message,
        });
        Failed
    }

    /// Takes the recorded failure away: a step that may fail without failing the probe
    /// (one of several Autodiscover methods) keeps it aside.
    fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// Puts back a failure taken with [`Recorder::take_failure`].
    fn restore_failure(&mut self, failure: Failure) {
        self.failure = Some(failure);
    }

    /// Records that the time allowed (the probe's, or a step's share of it) ran out,
    /// blaming the phase that was running.
    fn deadline_expired(&mut self, timeout: Duration) {
        let phase = match self.current.take() {
            Some((phase, started)) => {
                self.phases.push(PhaseTiming {
                    phase,
                    duration: started.elapsed(),
                });
                phase
            }
            // The deadline expired between phases: blame the last one that ran.
            None => self
                .phases
                .last()
                .map_or(Phase::Connect, |timing| timing.phase),
        };
        self.note(format!(
            "{phase}: the time allowed ({}) ran out",
            humantime::format_duration(rounded_to_ms(timeout))
        ));
        self.failure = Some(Failure {
            phase,
            kind: ErrorKind::timeout_in(phase),
            message: format!(
                "no answer within {}",
                humantime::format_duration(rounded_to_ms(timeout))
            ),
        });
    }

    fn finish(self, target: &Target, started_at: SystemTime, duration: Duration) -> ProbeResult {
        ProbeResult {
            target: target.name.clone(),
            protocol: target.protocol,
            check: target.check(),
            started_at,
            duration,
            phases: self.phases,
            outcome: self.failure.map_or(Ok(()), Err),
            peer: self.peer,
            tls: self.tls,
            facts: self.facts,
            log: self.log,
        }
    }
}

/// `1.234s` rather than `1s 234ms 567us 890ns`.
fn rounded_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Lines kept in one probe's log: a mail session with STARTTLS and login logs about
/// twenty; the bound only matters for a misbehaving dialogue.
pub const MAX_LOG_LINES: usize = 64;

/// Runs one probe of `target`, bounded by the target's timeout.
///
/// Never fails: every problem is a [`Failure`] inside the result.
pub async fn run(target: &Target, env: &ProbeEnv) -> ProbeResult {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let deadline = started + target.timeout;
    let mut recorder = Recorder::new();
    let within_deadline = tokio::time::timeout_at(deadline, async {
        // The protocol code records its own failure; `Failed` carries nothing more.
        let _ = match &target.spec {
            TargetSpec::Tcp(endpoint) => tcp::probe(endpoint, deadline, env, &mut recorder).await,
            TargetSpec::Dns(query) => dns::probe(query, deadline, env, &mut recorder).await,
            TargetSpec::Imap(endpoint) => {
                mail::session(
                    imap::Imap::default(),
                    endpoint,
                    deadline,
                    env,
                    &mut recorder,
                )
                .await
            }
            TargetSpec::Pop3(endpoint) => {
                mail::session(pop3::Pop3, endpoint, deadline, env, &mut recorder).await
            }
            TargetSpec::Smtp(smtp) => {
                let dialogue = smtp::Smtp::new(smtp.ehlo_name.clone());
                mail::session(dialogue, &smtp.endpoint, deadline, env, &mut recorder).await
            }
            TargetSpec::Https(https) => webmail::probe(https, deadline, env, &mut recorder).await,
            TargetSpec::Exchange(exchange) => {
                exchange::probe(exchange, deadline, env, &mut recorder).await
            }
        };
    })
    .await;
    if within_deadline.is_err() {
        recorder.deadline_expired(target.timeout);
    }
    recorder.finish(target, started_at, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_distinct_snake_case_label() {
        let kinds = ErrorKind::ALL;
        let labels: std::collections::BTreeSet<_> =
            kinds.iter().map(|k| k.as_metrics_label()).collect();
        assert_eq!(labels.len(), kinds.len());
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_phase_is_recorded_with_its_reason() {
        let mut recorder = Recorder::new();
        let ok: Result<u8, Failed> = recorder.phase(Phase::Resolve, async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let failed: Result<(), Failed> = recorder
            .phase(Phase::Connect, async {
                Err(ProbeError::new(ErrorKind::ConnectRefused, "refused"))
            })
            .await;
        assert_eq!(failed, Err(Failed));
        let phases: Vec<_> = recorder.phases.iter().map(|p| p.phase).collect();
        assert_eq!(phases, [Phase::Resolve, Phase::Connect]);
        let failure = recorder.failure.expect("failure recorded");
        assert_eq!(
            (failure.phase, failure.kind),
            (Phase::Connect, ErrorKind::ConnectRefused)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_deadline_blames_the_running_phase() {
        let mut recorder = Recorder::new();
        let never = std::future::pending::<Result<(), ProbeError>>();
        let timed = tokio::time::timeout(
            Duration::from_secs(1),
            recorder.phase(Phase::Greeting, never),
        )
        .await;
        assert!(timed.is_err());
        recorder.deadline_expired(Duration::from_secs(1));
        let failure = recorder.failure.expect("failure recorded");
        assert_eq!(
            (failure.phase, failure.kind),
            (Phase::Greeting, ErrorKind::GreetingTimeout)
        );
        assert_eq!(recorder.phases.len(), 1);
    }
}
