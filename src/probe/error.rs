//! Why a probe failed: the typed reasons ([`ErrorKind`], each with a stable metrics
//! label) and the failure of one step before the recorder attaches its phase.

use std::fmt;

use super::Phase;

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
    /// A redirect led where the probe may not follow: a loopback, link-local or
    /// unspecified address, or from HTTPS down to plain HTTP (`allow_redirects`).
    RedirectRefused,
    /// The agent's own limits, not the network's or the server's: out of file
    /// descriptors (EMFILE, ENFILE), buffers or memory (ENOBUFS, ENOMEM), or local
    /// ports (EADDRNOTAVAIL).
    LocalResources,
    /// The identity provider refused to issue an OAuth2 token: the client, its secret
    /// or certificate, the consent or the scope (`invalid_client`,
    /// `unauthorized_client`, an AADSTS code).
    TokenRejected,
    /// A round trip's message was accepted but did not appear in the mailbox in time.
    NotDelivered,
    /// A round trip's message appeared in a junk folder.
    DeliveredToJunk,
    /// The SMTP server refused the message with a 5xx reply (permanent).
    SendRejected,
    /// The SMTP server refused the message with a 4xx reply (temporary: greylisting,
    /// rate limits).
    SendDeferred,
    /// No answer to the end of `DATA` in time: the message may or may not have been
    /// accepted, so the round trip cannot count it as sent.
    SendUncertain,
}

impl ErrorKind {
    /// Every reason, for removing a target's series and for tests.
    pub const ALL: [ErrorKind; 34] = [
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
        ErrorKind::RedirectRefused,
        ErrorKind::LocalResources,
        ErrorKind::TokenRejected,
        ErrorKind::NotDelivered,
        ErrorKind::DeliveredToJunk,
        ErrorKind::SendRejected,
        ErrorKind::SendDeferred,
        ErrorKind::SendUncertain,
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
            ErrorKind::RedirectRefused => "redirect_refused",
            ErrorKind::LocalResources => "local_resources",
            ErrorKind::TokenRejected => "token_rejected",
            ErrorKind::NotDelivered => "not_delivered",
            ErrorKind::DeliveredToJunk => "delivered_to_junk",
            ErrorKind::SendRejected => "send_rejected",
            ErrorKind::SendDeferred => "send_deferred",
            ErrorKind::SendUncertain => "send_uncertain",
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

/// The error numbers that mean the agent's own limits were hit (see
/// [`ErrorKind::LocalResources`]).
const LOCAL_LIMITS: [i32; 5] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::EADDRNOTAVAIL,
];

/// When `error` is one of the agent's own limits: a [`ErrorKind::LocalResources`]
/// error describing `doing` (logged at `error` the first time, with the limit).
pub fn local_limit(error: &std::io::Error, doing: &str) -> Option<ProbeError> {
    let errno = error.raw_os_error().filter(|e| LOCAL_LIMITS.contains(e))?;
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::error!(
            %error,
            limit = %limit_for(errno),
            "the agent hit one of its own limits; probes fail with reason local_resources \
             (not the network's or the provider's fault) until it recovers"
        );
    });
    Some(ProbeError::new(
        ErrorKind::LocalResources,
        format!(
            "{doing} failed on this agent's own limit ({}): {error}",
            limit_for(errno)
        ),
    ))
}

/// The limit an errno names, with its value where the kernel tells it.
fn limit_for(errno: i32) -> String {
    match errno {
        libc::EMFILE => {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit(2) writes into the struct we own; no other memory.
            let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
            if ok {
                format!(
                    "open files per process, RLIMIT_NOFILE {} (LimitNOFILE in the unit)",
                    limit.rlim_cur
                )
            } else {
                "open files per process (RLIMIT_NOFILE)".to_owned()
            }
        }
        libc::ENFILE => "open files on the system (fs.file-max)".to_owned(),
        libc::EADDRNOTAVAIL => {
            let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
                .map(|r| r.split_whitespace().collect::<Vec<_>>().join("-"))
                .unwrap_or_default();
            format!("local ports (net.ipv4.ip_local_port_range {range})")
        }
        _ => "kernel buffers or memory".to_owned(),
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
}
