//! A domain → the mail endpoints its DNS tells clients to use, with one set of rules for
//! the `targets: - domain: …` shorthand and for `mailprobe diagnose`:
//!
//! 1. Every RFC 6186/8314 SRV record (`_imaps._tcp`, `_submission._tcp`, …) gives an
//!    endpoint with the protocol and TLS mode the service name announces; a target of
//!    `.` says the service is not offered (it still counts as published).
//! 2. When the domain publishes none of them, the conventional names (`imap.D`,
//!    `smtp.D`, `mail.D`) are tried where they resolve.
//! 3. Every MX host gives an SMTP endpoint on port 25, *informational*: mail clients do
//!    not use it and many networks block outbound port 25, so it never fails an
//!    address in `diagnose` and is not scheduled by the shorthand (its `-mx` DNS
//!    target watches the MX record itself).
//!
//! The same endpoint (protocol, host, port, TLS) found twice is kept once.

use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;

use crate::config::{
    Config, Discovery, DnsQuery, Endpoint, Protocol, RecordKind, SmtpTarget, Target, TargetSpec,
    TlsMode,
};
use crate::probe::dial::dns_error;
use crate::probe::dns::lookup_records;
use crate::probe::{ErrorKind, ProbeEnv};

/// The RFC 6186/8314 service records, with the protocol and TLS mode each announces.
pub const MAIL_SRV: [(&str, Protocol, TlsMode); 6] = [
    ("_imaps._tcp", Protocol::Imap, TlsMode::Implicit),
    ("_imap._tcp", Protocol::Imap, TlsMode::Starttls),
    ("_pop3s._tcp", Protocol::Pop3, TlsMode::Implicit),
    ("_pop3._tcp", Protocol::Pop3, TlsMode::Starttls),
    ("_submissions._tcp", Protocol::Smtp, TlsMode::Implicit),
    ("_submission._tcp", Protocol::Smtp, TlsMode::Starttls),
];

/// Conventional server names tried when the domain publishes no mail SRV record:
/// `(service, name prefix, protocol, port)`, all implicit TLS.
pub const GUESSES: [(&str, &str, Protocol, u16); 3] = [
    ("imaps", "imap", Protocol::Imap, 993),
    ("submissions", "smtp", Protocol::Smtp, 465),
    ("imaps", "mail", Protocol::Imap, 993),
];

/// Where an endpoint came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This SRV record (`_imaps._tcp`).
    Srv(&'static str),
    /// An MX record (port 25, informational).
    Mx,
    /// A conventional name that resolves (`imap.DOMAIN`).
    Guess,
}

impl Source {
    /// For reports: `SRV _imaps._tcp`, `MX, informational`, `guessed name`.
    pub fn describe(&self) -> String {
        match self {
            Source::Srv(service) => format!("SRV {service}"),
            Source::Mx => "MX, informational".to_owned(),
            Source::Guess => "guessed name".to_owned(),
        }
    }
}

/// One mail endpoint a domain's DNS names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// `imaps`, `submission`, `smtp` …: the service label.
    pub service: &'static str,
    /// Where it came from.
    pub source: Source,
    /// The protocol spoken there.
    pub protocol: Protocol,
    /// Host name, without a trailing dot.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How TLS is used.
    pub tls: TlsMode,
}

impl Found {
    /// MX port 25: shown, never a fault, never scheduled by the shorthand.
    pub fn informational(&self) -> bool {
        self.source == Source::Mx
    }

    fn same_endpoint(&self, other: &Found) -> bool {
        self.protocol == other.protocol
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
            && self.tls == other.tls
    }
}

/// What discovery found for a domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovered {
    /// The endpoints, SRV first (in [`MAIL_SRV`] order), then guesses, then MX hosts.
    pub endpoints: Vec<Found>,
    /// Whether the endpoints are guesses (no mail SRV record published).
    pub guessed: bool,
    /// Whether every question got an answer (records, NXDOMAIN or NODATA). When not,
    /// the site's resolver failed and discovery is tried again soon.
    pub complete: bool,
}

/// The questions `diagnose` asks about a domain, in report order: the MX, the mail SRV
/// records, then what Autodiscover and autoconfig use.
pub fn questions(domain: &str) -> Vec<(String, RecordKind)> {
    let mut questions = vec![(fqdn("", domain), RecordKind::Mx)];
    questions.extend(
        MAIL_SRV
            .iter()
            .map(|(service, _, _)| (fqdn(service, domain), RecordKind::Srv)),
    );
    questions.push((fqdn("_autodiscover._tcp", domain), RecordKind::Srv));
    questions.push((fqdn("autodiscover", domain), RecordKind::A));
    questions.push((fqdn("autoconfig", domain), RecordKind::A));
    questions
}

/// `prefix.domain.` (or `domain.` for an empty prefix).
pub fn fqdn(prefix: &str, domain: &str) -> String {
    if prefix.is_empty() {
        format!("{domain}.")
    } else {
        format!("{prefix}.{domain}.")
    }
}

/// Rules 1 and 3: the endpoints in the SRV and MX answers. `srv` gives the records the
/// site sees for a service (`_imaps._tcp`). Returns the endpoints and whether any mail
/// SRV record is published at all.
pub fn from_records(srv: impl Fn(&str) -> Vec<String>, mx: &[String]) -> (Vec<Found>, bool) {
    let mut endpoints = Vec::new();
    let mut published = false;
    for (service, protocol, tls) in MAIL_SRV {
        for record in srv(service) {
            published = true;
            let Some((port, host)) = parse_srv(&record).filter(|(_, host)| *host != ".") else {
                continue;
            };
            push_unique(
                &mut endpoints,
                Found {
                    service: service_label(service),
                    source: Source::Srv(service),
                    protocol,
                    host: host.to_owned(),
                    port,
                    tls,
                },
            );
        }
    }
    for record in mx {
        if let Some(host) = record.split_whitespace().nth(1)
            && host != "."
        {
            push_unique(
                &mut endpoints,
                Found {
                    service: "smtp",
                    source: Source::Mx,
                    protocol: Protocol::Smtp,
                    host: host.trim_end_matches('.').to_owned(),
                    port: 25,
                    tls: TlsMode::Starttls,
                },
            );
        }
    }
    (endpoints, published)
}

/// Rule 2: the conventional names of `domain` that resolve, asked in parallel, each
/// bounded by `timeout`.
pub async fn guesses(resolver: &TokioResolver, domain: &str, timeout: Duration) -> Vec<Found> {
    let lookups = GUESSES.map(|(service, prefix, protocol, port)| async move {
        let host = format!("{prefix}.{domain}");
        let lookup = resolver.lookup_ip(format!("{host}."));
        let resolves = matches!(
            tokio::time::timeout(timeout, lookup).await,
            Ok(Ok(ips)) if ips.iter().next().is_some()
        );
        resolves.then_some(Found {
            service,
            source: Source::Guess,
            protocol,
            host,
            port,
            tls: TlsMode::Implicit,
        })
    });
    futures_util::future::join_all(lookups)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Inserts the guesses before the MX endpoints (rule order), skipping duplicates.
pub fn with_guesses(endpoints: Vec<Found>, guesses: Vec<Found>) -> Vec<Found> {
    let (mx, mut ordered): (Vec<Found>, Vec<Found>) =
        endpoints.into_iter().partition(Found::informational);
    for found in guesses.into_iter().chain(mx) {
        push_unique(&mut ordered, found);
    }
    ordered
}

/// Discovers `domain` the way the site's mail clients would: the site resolvers (as
/// a client asks them) answer the MX and SRV questions, each bounded by `timeout`.
pub async fn discover(domain: &str, env: &ProbeEnv, timeout: Duration) -> Discovered {
    let resolver = &env.dial_resolver;
    let ask = |name: String, kind: RecordKind| async move {
        let lookup = lookup_records(resolver, &name, kind);
        match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(records)) => Some(records),
            Ok(Err(error)) => {
                let kind = dns_error(&error, &name, None).kind;
                matches!(kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata).then(Vec::new)
            }
            Err(_) => None,
        }
    };
    let srv_lookups = MAIL_SRV.map(|(service, _, _)| ask(fqdn(service, domain), RecordKind::Srv));
    let (mx, srv) = tokio::join!(
        ask(fqdn("", domain), RecordKind::Mx),
        futures_util::future::join_all(srv_lookups),
    );
    let complete = mx.is_some() && srv.iter().all(Option::is_some);
    let srv_of = |service: &str| {
        MAIL_SRV
            .iter()
            .position(|(s, _, _)| *s == service)
            .and_then(|index| srv[index].clone())
            .unwrap_or_default()
    };
    let (endpoints, published) = from_records(srv_of, mx.as_deref().unwrap_or_default());
    let guessed = !published;
    let endpoints = if guessed {
        with_guesses(endpoints, guesses(resolver, domain, timeout).await)
    } else {
        endpoints
    };
    Discovered {
        endpoints,
        guessed,
        complete,
    }
}

/// The `-mx` DNS target of a `domain:` shorthand: known without asking anything, so it
/// is scheduled at once and shows a DNS failure while discovery waits for an answer.
pub fn mx_target(discovery: &Discovery) -> Arc<Target> {
    Arc::new(Target {
        name: format!("{}-mx", discovery.name).into(),
        protocol: Protocol::Dns,
        interval: discovery.interval,
        timeout: discovery.timeout,
        phase_histogram: discovery.phase_histogram,
        spec: TargetSpec::Dns(DnsQuery {
            domain: fqdn("", &discovery.domain),
            record: RecordKind::Mx,
            expect: None,
            require_consistent: true,
        }),
    })
}

/// The targets a `domain:` shorthand schedules for what discovery found (besides its
/// [`mx_target`]): every endpoint but the informational MX hosts, named
/// `NAME-imaps`, `NAME-imaps-2`, … (SRV) or `NAME-imaps-imap` (a guessed name).
pub fn targets(discovery: &Discovery, found: &Discovered, config: &Config) -> Vec<Arc<Target>> {
    let ehlo = crate::config::default_ehlo_name();
    let mut targets: Vec<Arc<Target>> = Vec::new();
    let mut bases: Vec<String> = Vec::new();
    for endpoint in found.endpoints.iter().filter(|e| !e.informational()) {
        let base = match (&endpoint.source, endpoint.host.split('.').next()) {
            (Source::Guess, Some(prefix)) => {
                format!("{}-{}-{prefix}", discovery.name, endpoint.service)
            }
            _ => format!("{}-{}", discovery.name, endpoint.service),
        };
        // `imap` and `imaps` are different bases: count exact repeats only.
        let same_base = bases.iter().filter(|b| **b == base).count();
        let name = match same_base {
            0 => base.clone(),
            n => format!("{base}-{}", n + 1),
        };
        bases.push(base);
        let schedule = (
            discovery.interval,
            discovery.timeout,
            discovery.phase_histogram,
        );
        targets.push(endpoint_target(name, endpoint, config, &ehlo, schedule));
    }
    targets
}

/// How a discovered target is scheduled: `(interval, timeout, phase_histogram)`.
pub type Schedule = (Duration, Duration, bool);

/// A mail target for `found` (never logging in: discovery has no credentials), named
/// `name`, scheduled as `schedule` says.
pub fn endpoint_target(
    name: String,
    found: &Found,
    config: &Config,
    ehlo: &str,
    (interval, timeout, phase_histogram): Schedule,
) -> Arc<Target> {
    let endpoint = Endpoint {
        host: found.host.clone(),
        port: found.port,
        tls: found.tls,
        server_name: found.host.clone(),
        extra_roots: Arc::clone(&config.tls_roots),
        auth: None,
    };
    let spec = match found.protocol {
        Protocol::Imap => TargetSpec::Imap(endpoint),
        Protocol::Pop3 => TargetSpec::Pop3(endpoint),
        _ => TargetSpec::Smtp(SmtpTarget {
            endpoint,
            ehlo_name: ehlo.to_owned(),
        }),
    };
    Arc::new(Target {
        name: name.into(),
        protocol: found.protocol,
        interval,
        timeout,
        phase_histogram,
        spec,
    })
}

/// `_imaps._tcp` → `imaps`.
fn service_label(service: &'static str) -> &'static str {
    service
        .strip_prefix('_')
        .and_then(|s| s.strip_suffix("._tcp"))
        .unwrap_or(service)
}

fn push_unique(endpoints: &mut Vec<Found>, found: Found) {
    if !endpoints.iter().any(|e| e.same_endpoint(&found)) {
        endpoints.push(found);
    }
}

/// `priority weight port target.` → `(port, target without its dot)`, `.` kept as is.
pub fn parse_srv(record: &str) -> Option<(u16, &str)> {
    let mut fields = record.split_whitespace();
    let port = fields.nth(2)?.parse().ok()?;
    let host = fields.next()?;
    Some((
        port,
        if host == "." {
            host
        } else {
            host.trim_end_matches('.')
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_answers_give_port_and_host() {
        assert_eq!(
            parse_srv("0 5 993 mail.example.test."),
            Some((993, "mail.example.test"))
        );
        assert_eq!(parse_srv("0 0 0 ."), Some((0, ".")));
        assert_eq!(parse_srv("garbage"), None);
    }

    #[test]
    fn discovery_asks_mx_srv_and_autodiscover_names() {
        let names: Vec<String> = questions("example.test")
            .into_iter()
            .map(|(name, record)| format!("{} {name}", record.as_str()))
            .collect();
        assert_eq!(names[0], "MX example.test.");
        assert!(names.contains(&"SRV _submissions._tcp.example.test.".to_owned()));
        assert!(names.contains(&"SRV _autodiscover._tcp.example.test.".to_owned()));
        assert!(names.contains(&"A autoconfig.example.test.".to_owned()));
        assert_eq!(names.len(), 10);
    }

    /// Issue 11: one set of rules. SRV endpoints come first and are deduplicated, a `.`
    /// target publishes without an endpoint, and MX hosts are informational SMTP on 25.
    #[test]
    fn issue_11_srv_then_mx_with_mx_informational() {
        let srv = |service: &str| match service {
            "_imaps._tcp" => vec![
                "0 1 993 mail.example.test.".to_owned(),
                "0 1 993 MAIL.example.test.".to_owned(),
            ],
            "_pop3._tcp" => vec!["0 0 0 .".to_owned()],
            _ => Vec::new(),
        };
        let (found, published) = from_records(srv, &["10 mx.example.test.".to_owned()]);
        assert!(published);
        let summary: Vec<(&str, u16, bool)> = found
            .iter()
            .map(|f| (f.service, f.port, f.informational()))
            .collect();
        assert_eq!(summary, [("imaps", 993, false), ("smtp", 25, true)]);
        let (none, published) = from_records(|_| Vec::new(), &[]);
        assert!(none.is_empty() && !published);
    }

    #[test]
    fn guesses_go_before_the_mx_hosts() {
        let mx = Found {
            service: "smtp",
            source: Source::Mx,
            protocol: Protocol::Smtp,
            host: "mx.example.test".into(),
            port: 25,
            tls: TlsMode::Starttls,
        };
        let guess = Found {
            service: "imaps",
            source: Source::Guess,
            protocol: Protocol::Imap,
            host: "imap.example.test".into(),
            port: 993,
            tls: TlsMode::Implicit,
        };
        let ordered = with_guesses(vec![mx.clone()], vec![guess.clone()]);
        assert_eq!(ordered, [guess, mx]);
    }
}
