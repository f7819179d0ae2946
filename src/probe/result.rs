//! What a probe produces: the phases it ran, the outcome, and the facts it learned.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{ErrorKind, dns, http, mail, roundtrip};
use crate::config::{ExchangeCheck, Protocol};

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
    /// Getting an OAuth2 access token from the identity provider (its resolve,
    /// connect, TLS and request, timed together and named in the probe's log).
    Token,
    /// A round trip's SMTP transaction: `MAIL FROM` up to the `250` after `DATA`.
    Submit,
    /// A round trip's wait until the message is visible over IMAP.
    Deliver,
    /// A round trip's deletion of its message (and the sweep of older ones).
    Cleanup,
}

impl Phase {
    /// Every phase: a probe's own in the order it runs them, then a login's `token`
    /// (which comes just before its `auth`), then a round trip's.
    pub const ALL: [Phase; 12] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::Tls,
        Phase::Greeting,
        Phase::Starttls,
        Phase::Auth,
        Phase::Request,
        Phase::Response,
        Phase::Token,
        Phase::Submit,
        Phase::Deliver,
        Phase::Cleanup,
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
            Phase::Token => "token",
            Phase::Submit => "submit",
            Phase::Deliver => "deliver",
            Phase::Cleanup => "cleanup",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_metrics_label())
    }
}

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
    /// What a mail round trip did: the submission, where and when the message was
    /// found, its transit, the cleanup.
    Roundtrip(Box<roundtrip::RoundtripFacts>),
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
    /// TLS facts when a TLS handshake was attempted. Boxed, as `login`: the history
    /// keeps thousands of results, most with neither (a result is 280 bytes instead
    /// of 560).
    pub tls: Option<Box<TlsFacts>>,
    /// Protocol-specific facts.
    pub facts: ProtocolFacts,
    /// What happened, step by step, for `/debug` (bounded, never a secret).
    pub log: Log,
    /// The login's state, for targets with credentials.
    pub login: Option<Box<LoginFacts>>,
}

/// What a probe knows about its target's login: whether the credential was sent or
/// held back (too many rejections in a row), and, for OAuth2, the token's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginFacts {
    /// Whether this probe sent the credential (a login, an Authorization header).
    pub sent: bool,
    /// Whether the credential is held back: the login was rejected too often in a
    /// row, and this probe stopped at the login offer.
    pub suspended: bool,
    /// Rejected logins in a row so far.
    pub consecutive_failures: u32,
    /// When the credential was last really sent.
    pub last_attempt: Option<SystemTime>,
    /// While suspended: the earliest the credential is sent again.
    pub next_attempt: Option<SystemTime>,
    /// OAuth2: the identity provider's host (where the `token` phase goes).
    pub identity_provider: Option<String>,
    /// OAuth2: when the access token this probe used expires.
    pub token_expiry: Option<SystemTime>,
    /// OAuth2: the app roles the token carries (Microsoft), to explain a refusal.
    pub token_roles: Vec<String>,
    /// OAuth2 with a certificate: its notAfter, Unix seconds.
    pub client_certificate_not_after: Option<i64>,
    /// The SASL mechanism used (`XOAUTH2`, `OAUTHBEARER`).
    pub mechanism: Option<&'static str>,
    /// The step that is missing, when the provider's answer names one (consent, a
    /// service principal, a mailbox permission, SMTP AUTH disabled).
    pub advice: Option<String>,
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

/// A probe's step-by-step log: lines in one buffer (one allocation for the whole log,
/// not one per line), bounded by the recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log {
    text: String,
    lines: usize,
}

impl Log {
    /// Appends one line (a line end inside `line` is replaced, so lines stay lines).
    pub fn push(&mut self, line: &str) {
        if self.lines > 0 {
            self.text.push('\n');
        }
        if line.contains('\n') {
            self.text.push_str(&line.replace('\n', " "));
        } else {
            self.text.push_str(line);
        }
        self.lines += 1;
    }

    /// The lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n').take(self.lines)
    }

    /// How many lines it holds.
    pub fn len(&self) -> usize {
        self.lines
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Drops every line and frees the buffer.
    pub fn clear(&mut self) {
        *self = Log::default();
    }
}

impl<S: AsRef<str>> FromIterator<S> for Log {
    fn from_iter<I: IntoIterator<Item = S>>(lines: I) -> Log {
        let mut log = Log::default();
        for line in lines {
            log.push(line.as_ref());
        }
        log
    }
}

#[cfg(test)]
mod tests {
    use super::Log;

    #[test]
    fn a_log_keeps_its_lines_in_one_buffer() {
        let mut log: Log = ["first", "second\nhalf"].into_iter().collect();
        log.push("");
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            ["first", "second half", ""]
        );
        assert_eq!(log.len(), 3);
        log.clear();
        assert!(log.is_empty());
        assert_eq!(log.lines().count(), 0);
    }
}
