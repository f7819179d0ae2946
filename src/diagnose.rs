//! `mailprobe diagnose ADDRESS`: the help-desk checklist for one mail address.
//!
//! From nothing but `user@domain` (or `domain`) it discovers what mail clients would
//! use — MX, the RFC 6186/8314 SRV records, `_autodiscover._tcp`, the
//! `autodiscover.`/`autoconfig.` names — asking every site resolver and every
//! reference resolver separately (the DNS probe, on generated DNS targets), turns the
//! answers into IMAP/POP3/SMTP targets, probes them all (never logging in) alongside
//! one site-context measurement, and judges every failure with [`classify`].
//! [`report`] renders the result as text or JSON.

mod report;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::classify::classify;
use crate::config::Discovery;
use crate::config::{
    Config, DnsQuery, Endpoint, ExchangeCheck, ExchangeTarget, Protocol, RecordKind, SmtpTarget,
    Target, TargetSpec, TlsMode,
};
use crate::fault::Fault;
use crate::oneshot::Report;
use crate::probe::{self, ErrorKind, ProbeResult, ProtocolFacts};
use crate::runtime::{ProbeEnv, ResolverRole};
use crate::site::{SiteContext, SiteMonitor};

pub use report::{render, to_json};

/// Probes running at once: enough to finish a dozen checks in one timeout, few enough
/// not to look like a scan to the provider.
pub const MAX_CONCURRENT_CHECKS: usize = 8;

/// The RFC 6186/8314 service records, with the protocol and TLS mode each announces.
pub const MAIL_SRV: [(&str, Protocol, TlsMode); 6] = [
    ("_imaps._tcp", Protocol::Imap, TlsMode::Implicit),
    ("_imap._tcp", Protocol::Imap, TlsMode::Starttls),
    ("_pop3s._tcp", Protocol::Pop3, TlsMode::Implicit),
    ("_pop3._tcp", Protocol::Pop3, TlsMode::Starttls),
    ("_submissions._tcp", Protocol::Smtp, TlsMode::Implicit),
    ("_submission._tcp", Protocol::Smtp, TlsMode::Starttls),
];

/// Conventional server names tried when the domain publishes no mail SRV record.
const GUESSES: [(&str, &str, Protocol, u16); 3] = [
    ("imaps", "imap", Protocol::Imap, 993),
    ("submissions", "smtp", Protocol::Smtp, 465),
    ("imaps", "mail", Protocol::Imap, 993),
];

/// A checked `user@domain` or `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part, when one was given.
    pub user: Option<String>,
    /// The domain, lower case, without a trailing dot.
    pub domain: String,
}

/// Checks `text` as `user@domain` or `domain`.
///
/// # Errors
///
/// A message saying what is wrong with it.
pub fn parse_address(text: &str) -> Result<Address, String> {
    let bad = |why: &str| format!("`{text}` is not a mail address or domain: {why}");
    if text.chars().any(char::is_whitespace) {
        return Err(bad("it contains spaces"));
    }
    let (user, domain) = match text.rsplit_once('@') {
        Some((user, domain)) => (Some(user), domain),
        None => (None, text),
    };
    if let Some(user) = user
        && (user.is_empty()
            || user.contains(['@', ' ', '\t', '<', '>', ','])
            || user.chars().any(char::is_control))
    {
        return Err(bad(
            "the part before `@` is empty or has characters an address cannot have",
        ));
    }
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty() {
        return Err(bad("the domain is empty"));
    }
    if domain.len() > 253 {
        return Err(bad("the domain is longer than 253 characters"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad(
            "the domain needs at least two labels (like example.com)",
        ));
    }
    for label in &labels {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !valid {
            return Err(bad(&format!(
                "`{label}` is not a valid domain label (letters, digits and inner hyphens only)"
            )));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad("that is an IP address, not a domain"));
    }
    Ok(Address {
        user: user.map(str::to_owned),
        domain,
    })
}

/// How `diagnose` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Upper bound on each check.
    pub timeout: Duration,
    /// Print one line per finished check on stderr.
    pub progress: bool,
}

impl Options {
    /// Progress lines exactly when stderr is a terminal.
    pub fn new(timeout: Duration) -> Options {
        Options {
            timeout,
            progress: std::io::stderr().is_terminal(),
        }
    }
}

/// What a DNS question found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsStatus {
    /// The site resolvers answered with records (and agree with the references).
    Found,
    /// No such record anywhere: the domain does not publish it.
    Absent,
    /// A failure that is somebody's fault.
    Fault,
}

/// One discovery question and its outcome.
#[derive(Debug)]
pub struct DnsCheck {
    /// The generated DNS target.
    pub target: Arc<Target>,
    /// The probe result and its verdict.
    pub report: Report,
    /// How to read it.
    pub status: DnsStatus,
    /// The records the site's clients see (the reference's when the site has none).
    pub records: Vec<String>,
}

impl DnsCheck {
    /// The question asked.
    pub fn query(&self) -> &DnsQuery {
        match &self.target.spec {
            TargetSpec::Dns(query) => query,
            _ => unreachable!("DnsCheck always holds a DNS target"),
        }
    }
}

/// Where a mail endpoint came from.
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
    /// For reports.
    pub fn describe(&self) -> String {
        match self {
            Source::Srv(service) => format!("SRV {service}"),
            Source::Mx => "MX, informational".to_owned(),
            Source::Guess => "guessed name".to_owned(),
        }
    }
}

/// One mail endpoint and its outcome.
#[derive(Debug)]
pub struct ServiceCheck {
    /// `imaps`, `submission`, `smtp` …
    pub service: &'static str,
    /// Where it came from.
    pub source: Source,
    /// The generated target.
    pub target: Arc<Target>,
    /// The probe result and its verdict.
    pub report: Report,
}

impl ServiceCheck {
    /// MX port 25 results never make the address unhealthy: many sites block
    /// outbound port 25, and clients do not use it.
    pub fn informational(&self) -> bool {
        self.source == Source::Mx
    }

    /// The endpoint probed.
    pub fn endpoint(&self) -> &Endpoint {
        self.target
            .spec
            .endpoint()
            .expect("mail targets have an endpoint")
    }
}

/// The Autodiscover check for the address, as Outlook would run it.
#[derive(Debug)]
pub struct AutodiscoverCheck {
    /// The generated exchange target (check `autodiscover`).
    pub target: Arc<Target>,
    /// The probe result and its verdict.
    pub report: Report,
    /// Whether the domain publishes `autodiscover.` or `_autodiscover._tcp`: only then
    /// is a failure a fault (many domains have no Exchange at all).
    pub published: bool,
}

/// Everything `diagnose` found.
#[derive(Debug)]
pub struct Diagnosis {
    /// The address asked about.
    pub address: Address,
    /// Every discovery question, in a fixed order.
    pub dns: Vec<DnsCheck>,
    /// Every mail endpoint probed.
    pub services: Vec<ServiceCheck>,
    /// Autodiscover for the address.
    pub autodiscover: AutodiscoverCheck,
    /// Whether the endpoints are guesses (no mail SRV record published).
    pub guessed: bool,
    /// The site context, measured once.
    pub site: Arc<SiteContext>,
    /// The site resolvers asked (labels).
    pub site_resolvers: Vec<String>,
    /// The reference resolvers asked (labels).
    pub reference_resolvers: Vec<String>,
}

impl Diagnosis {
    /// The failures that make the address unhealthy: DNS faults and failing
    /// non-informational services.
    pub fn faults(&self) -> Vec<(&Arc<Target>, &Report)> {
        let dns = self
            .dns
            .iter()
            .filter(|c| c.status == DnsStatus::Fault)
            .map(|c| (&c.target, &c.report));
        let services = self
            .services
            .iter()
            .filter(|c| !c.informational() && !c.report.result.is_success())
            .map(|c| (&c.target, &c.report));
        let autodiscover = Some(&self.autodiscover)
            .filter(|c| c.published && !c.report.result.is_success())
            .map(|c| (&c.target, &c.report));
        dns.chain(services).chain(autodiscover).collect()
    }

    /// Whether no mail client endpoint (IMAP, POP3, submission) was found at all.
    pub fn nothing_to_use(&self) -> bool {
        self.services.iter().all(ServiceCheck::informational)
    }

    /// Healthy: something to use, and no fault.
    pub fn is_healthy(&self) -> bool {
        !self.nothing_to_use() && self.faults().is_empty()
    }
}

/// Replaces `config`'s targets and runs the whole checklist for `address`.
///
/// # Errors
///
/// A message when the probe environment cannot be built (resolvers, CA roots).
pub async fn run(
    mut config: Config,
    address: Address,
    options: &Options,
) -> Result<Diagnosis, String> {
    let domain = address.domain.clone();
    let dns_targets = dns_targets(&domain, options.timeout);
    // The site monitor asks its resolvers the first DNS target's question: the MX.
    config.targets.clone_from(&dns_targets);
    let env = Arc::new(ProbeEnv::new(&config)?);
    let monitor = SiteMonitor::new(&config, Arc::clone(&env));
    let progress = Arc::new(Progress::new(options.progress, dns_targets.len()));

    let (dns_results, site) =
        tokio::join!(run_all(&dns_targets, &env, &progress), monitor.measure());
    let dns: Vec<DnsCheck> = dns_targets
        .into_iter()
        .zip(dns_results)
        .map(|(target, result)| dns_check(target, result, &site))
        .collect();

    let ehlo = crate::config::default_ehlo_name();
    let mut found: Vec<(&'static str, Source, Arc<Target>)> = Vec::new();
    let mut add = |service, source, protocol, host: &str, port, tls| {
        let target = mail_target(service, protocol, host, port, tls, &config, &ehlo, options);
        let duplicate = found.iter().any(|(_, _, t)| same_endpoint(t, &target));
        if !duplicate {
            found.push((service, source, target));
        }
    };
    let mut any_srv = false;
    for (service, protocol, tls) in MAIL_SRV {
        let Some(check) = dns
            .iter()
            .find(|c| c.query().domain == fqdn(service, &domain))
        else {
            continue;
        };
        for record in &check.records {
            any_srv = true;
            if let Some((port, host)) = parse_srv(record)
                && host != "."
            {
                let label = service.trim_start_matches('_').trim_end_matches("._tcp");
                let label = SERVICE_LABELS.iter().find(|l| **l == label).copied();
                add(
                    label.unwrap_or("smtp"),
                    Source::Srv(service),
                    protocol,
                    host,
                    port,
                    tls,
                );
            }
        }
    }
    let guessed = !any_srv;
    if guessed {
        for (service, name, protocol, port) in GUESSES {
            let host = format!("{name}.{domain}");
            if resolves(&env, &host, options.timeout).await {
                add(
                    service,
                    Source::Guess,
                    protocol,
                    &host,
                    port,
                    TlsMode::Implicit,
                );
            }
        }
    }
    if let Some(mx) = dns.iter().find(|c| c.query().record == RecordKind::Mx) {
        for record in &mx.records {
            if let Some(host) = record.split_whitespace().nth(1)
                && host != "."
            {
                let host = host.trim_end_matches('.');
                add(
                    "smtp",
                    Source::Mx,
                    Protocol::Smtp,
                    host,
                    25,
                    TlsMode::Starttls,
                );
            }
        }
    }

    progress.add(found.len() + 1);
    let autodiscover_target = autodiscover_target(&address, &config, options);
    let mut targets: Vec<Arc<Target>> = found.iter().map(|(_, _, t)| Arc::clone(t)).collect();
    targets.push(Arc::clone(&autodiscover_target));
    let mut results = run_all(&targets, &env, &progress).await;
    let autodiscover_result = results.pop().expect("the autodiscover target ran");
    let published = dns.iter().any(|c| {
        c.status == DnsStatus::Found
            && (c.query().domain == fqdn("_autodiscover._tcp", &domain)
                || c.query().domain == fqdn("autodiscover", &domain))
    });
    let autodiscover = AutodiscoverCheck {
        report: Report {
            fault: classify(&autodiscover_result, Some(&site)),
            result: autodiscover_result,
            site: Some(Arc::clone(&site)),
        },
        target: autodiscover_target,
        published,
    };
    let services = found
        .into_iter()
        .zip(results)
        .map(|((service, source, target), result)| {
            let fault = classify(&result, Some(&site));
            ServiceCheck {
                service,
                source,
                target,
                report: Report {
                    result,
                    fault,
                    site: Some(Arc::clone(&site)),
                },
            }
        })
        .collect();
    Ok(Diagnosis {
        address,
        dns,
        services,
        autodiscover,
        guessed,
        site,
        site_resolvers: env.site_dns.iter().map(|s| s.label.clone()).collect(),
        reference_resolvers: env.reference_dns.iter().map(|s| s.label.clone()).collect(),
    })
}

const SERVICE_LABELS: [&str; 6] = [
    "imaps",
    "imap",
    "pop3s",
    "pop3",
    "submissions",
    "submission",
];

/// The discovery questions, in report order.
pub fn dns_targets(domain: &str, timeout: Duration) -> Vec<Arc<Target>> {
    let mut questions = vec![(fqdn("", domain), RecordKind::Mx)];
    questions.extend(
        MAIL_SRV
            .iter()
            .map(|(s, _, _)| (fqdn(s, domain), RecordKind::Srv)),
    );
    questions.push((fqdn("_autodiscover._tcp", domain), RecordKind::Srv));
    questions.push((fqdn("autodiscover", domain), RecordKind::A));
    questions.push((fqdn("autoconfig", domain), RecordKind::A));
    questions
        .into_iter()
        .map(|(name, record)| {
            Arc::new(Target {
                name: format!("dns {} {}", record.as_str(), name.trim_end_matches('.')).into(),
                protocol: Protocol::Dns,
                interval: timeout,
                timeout,
                spec: TargetSpec::Dns(DnsQuery {
                    domain: name,
                    record,
                    expect: None,
                    require_consistent: true,
                }),
            })
        })
        .collect()
}

fn fqdn(prefix: &str, domain: &str) -> String {
    if prefix.is_empty() {
        format!("{domain}.")
    } else {
        format!("{prefix}.{domain}.")
    }
}

/// `priority weight port target.` → `(port, target without its dot)`, `.` kept as is.
fn parse_srv(record: &str) -> Option<(u16, &str)> {
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

fn dns_check(target: Arc<Target>, result: ProbeResult, site: &Arc<SiteContext>) -> DnsCheck {
    let answers = match &result.facts {
        ProtocolFacts::Dns(facts) => facts.answers.clone(),
        _ => Vec::new(),
    };
    let records_of = |role: ResolverRole| {
        let mut records: Vec<String> = answers
            .iter()
            .filter(|a| a.role == role)
            .filter_map(|a| a.outcome.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        records.sort();
        records.dedup();
        records
    };
    let site_records = records_of(ResolverRole::Site);
    let reference_records = records_of(ResolverRole::Reference);
    let fault = classify(&result, Some(site));
    let status = match result.failure() {
        None => DnsStatus::Found,
        Some(failure)
            if matches!(failure.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata)
                && reference_records.is_empty() =>
        {
            DnsStatus::Absent
        }
        Some(_) => DnsStatus::Fault,
    };
    let fault = if status == DnsStatus::Absent {
        Fault::None
    } else {
        fault
    };
    DnsCheck {
        target,
        records: if site_records.is_empty() {
            reference_records
        } else {
            site_records
        },
        status,
        report: Report {
            result,
            fault,
            site: Some(Arc::clone(site)),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn mail_target(
    service: &str,
    protocol: Protocol,
    host: &str,
    port: u16,
    tls: TlsMode,
    config: &Config,
    ehlo: &str,
    options: &Options,
) -> Arc<Target> {
    let name = format!("{service} {host}:{port}");
    let schedule = (options.timeout, options.timeout);
    endpoint_target(name, protocol, (host, port, tls), config, ehlo, schedule)
}

/// The autodiscover check for the address (for a bare domain, `postmaster@DOMAIN`:
/// RFC 5321 makes every mail domain have that mailbox).
fn autodiscover_target(address: &Address, config: &Config, options: &Options) -> Arc<Target> {
    let user = address.user.as_deref().unwrap_or("postmaster");
    let domain = &address.domain;
    Arc::new(Target {
        name: "autodiscover".into(),
        protocol: Protocol::Exchange,
        interval: options.timeout,
        timeout: options.timeout,
        spec: TargetSpec::Exchange(ExchangeTarget {
            check: ExchangeCheck::Autodiscover,
            endpoint: Endpoint {
                host: domain.clone(),
                port: 443,
                tls: TlsMode::Implicit,
                server_name: domain.clone(),
                extra_roots: Arc::clone(&config.tls_roots),
                auth: None,
            },
            email: Some(format!("{user}@{domain}")),
        }),
    })
}

/// A mail target for `host:port` (never logging in), named `name`, with
/// `(interval, timeout)`.
fn endpoint_target(
    name: String,
    protocol: Protocol,
    (host, port, tls): (&str, u16, TlsMode),
    config: &Config,
    ehlo: &str,
    (interval, timeout): (Duration, Duration),
) -> Arc<Target> {
    let endpoint = Endpoint {
        host: host.to_owned(),
        port,
        tls,
        server_name: host.to_owned(),
        extra_roots: Arc::clone(&config.tls_roots),
        auth: None,
    };
    let spec = match protocol {
        Protocol::Imap => TargetSpec::Imap(endpoint),
        Protocol::Pop3 => TargetSpec::Pop3(endpoint),
        _ => TargetSpec::Smtp(SmtpTarget {
            endpoint,
            ehlo_name: ehlo.to_owned(),
        }),
    };
    Arc::new(Target {
        name: name.into(),
        protocol,
        interval,
        timeout,
        spec,
    })
}

/// Expands a `targets: - domain: …` shorthand into the targets a mail client of that
/// domain depends on: a DNS target for its MX, and a mail target for every endpoint its
/// RFC 6186/8314 SRV records publish (or the conventional names when it publishes
/// none). MX hosts on port 25 are left out: mail clients do not use them and many
/// sites block outbound port 25. Discovery asks the site resolvers; when they do not
/// answer, only the MX target is returned, and it shows the DNS failure.
pub async fn expand(discovery: &Discovery, config: &Config, env: &ProbeEnv) -> Vec<Arc<Target>> {
    let schedule = (discovery.interval, discovery.timeout);
    let mut targets = vec![Arc::new(Target {
        name: format!("{}-mx", discovery.name).into(),
        protocol: Protocol::Dns,
        interval: discovery.interval,
        timeout: discovery.timeout,
        spec: TargetSpec::Dns(DnsQuery {
            domain: fqdn("", &discovery.domain),
            record: RecordKind::Mx,
            expect: None,
            require_consistent: true,
        }),
    })];
    let questions: Vec<Arc<Target>> = dns_targets(&discovery.domain, discovery.timeout)
        .into_iter()
        .filter(|t| matches!(&t.spec, TargetSpec::Dns(q) if MAIL_SRV.iter().any(|(s, _, _)| q.domain == fqdn(s, &discovery.domain))))
        .collect();
    let answers =
        futures_util::future::join_all(questions.iter().map(|q| crate::probe::run(q, env))).await;
    let ehlo = crate::config::default_ehlo_name();
    let mut published = false;
    for (question, result) in questions.iter().zip(&answers) {
        let TargetSpec::Dns(query) = &question.spec else {
            continue;
        };
        let Some((service, protocol, tls)) = MAIL_SRV
            .iter()
            .find(|(s, _, _)| query.domain == fqdn(s, &discovery.domain))
        else {
            continue;
        };
        let ProtocolFacts::Dns(facts) = &result.facts else {
            continue;
        };
        let mut records: Vec<&String> = facts
            .answers
            .iter()
            .filter(|a| a.role == ResolverRole::Site)
            .filter_map(|a| a.outcome.as_ref().ok())
            .flatten()
            .collect();
        records.sort();
        records.dedup();
        let label = service.trim_start_matches('_').trim_end_matches("._tcp");
        for record in records {
            published = true;
            let Some((port, host)) = parse_srv(record).filter(|(_, host)| *host != ".") else {
                continue;
            };
            let candidate = endpoint_target(
                String::new(),
                *protocol,
                (host, port, *tls),
                config,
                &ehlo,
                schedule,
            );
            if targets.iter().any(|t| same_endpoint(t, &candidate)) {
                continue;
            }
            let same_service = targets
                .iter()
                .filter(|t| t.name.starts_with(&format!("{}-{label}", discovery.name)))
                .count();
            let name = match same_service {
                0 => format!("{}-{label}", discovery.name),
                n => format!("{}-{label}-{}", discovery.name, n + 1),
            };
            targets.push(endpoint_target(
                name,
                *protocol,
                (host, port, *tls),
                config,
                &ehlo,
                schedule,
            ));
        }
    }
    if !published {
        for (service, prefix, protocol, port) in GUESSES {
            let host = format!("{prefix}.{}", discovery.domain);
            let name = format!("{}-{service}-{prefix}", discovery.name);
            if resolves(env, &host, discovery.timeout).await {
                targets.push(endpoint_target(
                    name,
                    protocol,
                    (&host, port, TlsMode::Implicit),
                    config,
                    &ehlo,
                    schedule,
                ));
            }
        }
    }
    targets
}

fn same_endpoint(a: &Target, b: &Target) -> bool {
    match (a.spec.endpoint(), b.spec.endpoint()) {
        (Some(x), Some(y)) => {
            a.protocol == b.protocol
                && x.host.eq_ignore_ascii_case(&y.host)
                && x.port == y.port
                && x.tls == y.tls
        }
        _ => false,
    }
}

async fn resolves(env: &ProbeEnv, host: &str, timeout: Duration) -> bool {
    let lookup = env.dial_resolver.lookup_ip(format!("{host}."));
    matches!(tokio::time::timeout(timeout, lookup).await, Ok(Ok(ips)) if ips.iter().next().is_some())
}

/// Progress lines on stderr, one per finished check.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Progress {
        Progress {
            enabled,
            done: AtomicUsize::new(0),
            total: AtomicUsize::new(total),
        }
    }

    fn add(&self, more: usize) {
        self.total.fetch_add(more, Ordering::SeqCst);
    }

    fn finished(&self, target: &Target, result: &ProbeResult) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.enabled {
            return;
        }
        let outcome = match result.failure() {
            None => "ok".to_owned(),
            Some(failure) => failure.kind.to_string(),
        };
        eprintln!(
            "checked {done}/{}: {} {outcome}",
            self.total.load(Ordering::SeqCst),
            target.name
        );
    }
}

/// Runs `targets`, at most [`MAX_CONCURRENT_CHECKS`] at once; results in input order.
async fn run_all(
    targets: &[Arc<Target>],
    env: &Arc<ProbeEnv>,
    progress: &Arc<Progress>,
) -> Vec<ProbeResult> {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let (target, env, permits, progress) = (
            Arc::clone(target),
            Arc::clone(env),
            Arc::clone(&permits),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let result = probe::run(&target, &env).await;
            progress.finished(&target, &result);
            (index, result)
        });
    }
    let mut results: Vec<Option<ProbeResult>> = vec![None; targets.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, result)) => results[index] = Some(result),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every task reports"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_domains_are_checked() {
        let a = parse_address("probe@Example.TEST.").unwrap();
        assert_eq!(a.user.as_deref(), Some("probe"));
        assert_eq!(a.domain, "example.test");
        assert_eq!(parse_address("example.com").unwrap().user, None);
        for bad in [
            "not an address",
            "",
            "@example.com",
            "user@",
            "localhost",
            "a..b",
            "-a.com",
            "user@exa_mple.com",
            "10.0.0.1",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

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
        let names: Vec<String> = dns_targets("example.test", Duration::from_secs(1))
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names[0], "dns MX example.test");
        assert!(names.contains(&"dns SRV _submissions._tcp.example.test".to_owned()));
        assert!(names.contains(&"dns SRV _autodiscover._tcp.example.test".to_owned()));
        assert!(names.contains(&"dns A autoconfig.example.test".to_owned()));
        assert_eq!(names.len(), 10);
    }
}
