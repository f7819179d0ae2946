//! `mailprobe diagnose ADDRESS`: the help-desk checklist for one mail address.
//!
//! From nothing but `user@domain` (or `domain`) it asks what mail clients would use —
//! MX, the RFC 6186/8314 SRV records, `_autodiscover._tcp`, the `autodiscover.` and
//! `autoconfig.` names — of every site resolver and every reference resolver
//! separately (DNS targets), turns the answers into IMAP/POP3/SMTP endpoints by
//! [`discover`]'s rules, probes them all (logging in only with `--oauth2 TARGET`,
//! with that target's OAuth2 client, naming the missing step when the login fails),
//! and judges every
//! check through the [`pipeline`](crate::pipeline) like the agent does, each on its own
//! site evidence. [`text`] and [`json`] render the result.

mod json;
mod login;
#[cfg(test)]
mod tests;
mod text;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{
    Config, Credentials, DnsQuery, Endpoint, ExchangeCheck, ExchangeTarget, Protocol, Target,
    TargetSpec, TlsMode,
};
use crate::discover::{self, Found, fqdn};
use crate::judge::{Fault, Judged};
use crate::pipeline::Pipeline;
use crate::probe::env::{EnvError, ResolverRole};
use crate::probe::{ErrorKind, ProbeEnv, ProtocolFacts};
use crate::site::{SiteContext, SiteMonitor};

pub use json::to_json;
use login::with_login;
pub use login::{LoginError, oauth2_login};
pub use text::{render, verdict};

/// Probes running at once: enough to finish a dozen checks in one timeout, few enough
/// not to look like a scan to the provider.
pub const MAX_CONCURRENT_CHECKS: usize = 8;

/// A checked `user@domain` or `domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part, when one was given.
    pub user: Option<String>,
    /// The domain, lower case, without a trailing dot.
    pub domain: String,
}

/// Why an argument is not a mail address or domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a mail address or domain: {why}")]
pub struct BadAddress {
    /// What was given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// Checks `text` as `user@domain` or `domain`.
///
/// # Errors
///
/// [`BadAddress`], saying what is wrong with it.
pub fn parse_address(text: &str) -> Result<Address, BadAddress> {
    let bad = |why: &str| BadAddress {
        text: text.to_owned(),
        why: why.to_owned(),
    };
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
    /// Log in to the discovered IMAP, POP3 and submission endpoints (and
    /// Autodiscover) with these OAuth2 credentials (`--oauth2 TARGET`).
    pub login: Option<Credentials>,
}

impl Options {
    /// Progress lines exactly when stderr is a terminal; no login.
    pub fn new(timeout: Duration) -> Options {
        Options {
            timeout,
            progress: std::io::stderr().is_terminal(),
            login: None,
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
    /// The DNS target's judged result (`none` for a record nobody publishes).
    pub judged: Judged,
    /// How to read it.
    pub status: DnsStatus,
    /// The records the site's clients see (the reference's when the site has none).
    pub records: Vec<String>,
}

impl DnsCheck {
    /// The question asked.
    pub fn query(&self) -> &DnsQuery {
        match &self.judged.target.spec {
            TargetSpec::Dns(query) => query,
            _ => unreachable!("DnsCheck always holds a DNS target"),
        }
    }
}

/// One mail endpoint and its outcome.
#[derive(Debug)]
pub struct ServiceCheck {
    /// What discovery found.
    pub found: Found,
    /// The judged probe of it.
    pub judged: Judged,
}

impl ServiceCheck {
    /// MX port 25 results never make the address unhealthy: many sites block
    /// outbound port 25, and clients do not use it.
    pub fn informational(&self) -> bool {
        self.found.informational()
    }

    /// The endpoint probed.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        self.judged.target.spec.endpoint()
    }
}

/// The Autodiscover check for the address, as Outlook would run it.
#[derive(Debug)]
pub struct AutodiscoverCheck {
    /// The judged exchange target (check `autodiscover`).
    pub judged: Judged,
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
    /// The site as measured during the checks (the latest snapshot).
    pub site: Arc<SiteContext>,
    /// The site resolvers asked (labels).
    pub site_resolvers: Vec<String>,
    /// The reference resolvers asked (labels).
    pub reference_resolvers: Vec<String>,
    /// The configuration's round-trip targets that deliver to this domain: diagnose
    /// never sends mail, it names them for `mailprobe probe`.
    pub roundtrips: Vec<String>,
}

impl Diagnosis {
    /// The failures that make the address unhealthy: DNS faults, failing
    /// non-informational services, and a published Autodiscover that fails.
    pub fn faults(&self) -> Vec<&Judged> {
        let dns = self
            .dns
            .iter()
            .filter(|c| c.status == DnsStatus::Fault)
            .map(|c| &c.judged);
        let services = self
            .services
            .iter()
            .filter(|c| !c.informational() && !c.judged.is_success())
            .map(|c| &c.judged);
        let autodiscover = Some(&self.autodiscover)
            .filter(|c| c.published && !c.judged.is_success())
            .map(|c| &c.judged);
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

/// Runs the whole checklist for `address`, with `config`'s site (its targets are
/// ignored).
///
/// # Errors
///
/// [`EnvError`] when the probe environment cannot be built (resolvers, CA roots).
pub async fn run(
    mut config: Config,
    address: Address,
    options: &Options,
) -> Result<Diagnosis, EnvError> {
    let started = Instant::now();
    let domain = address.domain.clone();
    let roundtrips = roundtrips_to(&config, &domain);
    let dns_targets = dns_targets(&domain, options.timeout);
    // The site monitor asks its resolvers the first DNS target's question: the MX.
    config.targets.clone_from(&dns_targets);
    let env = Arc::new(ProbeEnv::new(&config)?);
    let site = Arc::new(SiteMonitor::new(&config, Arc::clone(&env)));
    let pipeline = Pipeline::new(Arc::clone(&env), Arc::clone(&site));
    let progress = Arc::new(Progress::new(options.progress, dns_targets.len()));

    let dns: Vec<DnsCheck> = run_all(&pipeline, &dns_targets, &progress)
        .await
        .into_iter()
        .map(dns_check)
        .collect();
    let records_of = |name: &str| {
        dns.iter()
            .find(|c| c.query().domain == name)
            .map(|c| c.records.clone())
            .unwrap_or_default()
    };
    let (endpoints, published) = discover::from_records(
        |service| records_of(&fqdn(service, &domain)),
        &records_of(&fqdn("", &domain)),
    );
    let guessed = !published;
    let endpoints = if guessed {
        let guesses = discover::guesses(&env.dial_resolver, &domain, options.timeout).await;
        discover::with_guesses(endpoints, guesses)
    } else {
        endpoints
    };

    let ehlo = crate::config::default_ehlo_name();
    let schedule = (options.timeout, options.timeout, false);
    let mut targets: Vec<Arc<Target>> = endpoints
        .iter()
        .map(|found| {
            let name = format!("{} {}:{}", found.service, found.host, found.port);
            let target = discover::endpoint_target(name, found, &config, &ehlo, schedule);
            match &options.login {
                // Port 25 takes no logins from clients.
                Some(login) if !found.informational() => with_login(target, login),
                _ => target,
            }
        })
        .collect();
    let autodiscover = autodiscover_target(&address, &config, options);
    targets.push(match &options.login {
        Some(login) => with_login(autodiscover, login),
        None => autodiscover,
    });
    progress.add(targets.len());
    let mut judged = run_all(&pipeline, &targets, &progress).await;
    let autodiscover = judged.pop().expect("the autodiscover target ran");
    let autodiscover_published = dns.iter().any(|c| {
        c.status == DnsStatus::Found
            && (c.query().domain == fqdn("_autodiscover._tcp", &domain)
                || c.query().domain == fqdn("autodiscover", &domain))
    });
    let services = endpoints
        .into_iter()
        .zip(judged)
        .map(|(found, judged)| ServiceCheck { found, judged })
        .collect();
    // The site section: a snapshot measured during the checks (one a failure already
    // waited for, or a new one).
    let site = site.fresh_since(started).await;
    Ok(Diagnosis {
        address,
        dns,
        services,
        autodiscover: AutodiscoverCheck {
            judged: autodiscover,
            published: autodiscover_published,
        },
        guessed,
        site,
        site_resolvers: env.site_dns.iter().map(|s| s.label.clone()).collect(),
        reference_resolvers: env.reference_dns.iter().map(|s| s.label.clone()).collect(),
        roundtrips,
    })
}

/// The names of `config`'s round-trip targets whose recipient is in `domain`.
fn roundtrips_to(config: &Config, domain: &str) -> Vec<String> {
    config
        .targets
        .iter()
        .filter(|target| match &target.spec {
            TargetSpec::Roundtrip(roundtrip) => roundtrip
                .to
                .rsplit_once('@')
                .is_some_and(|(_, to)| to.eq_ignore_ascii_case(domain)),
            _ => false,
        })
        .map(|target| target.name.to_string())
        .collect()
}

/// The discovery questions as DNS targets, in report order.
pub fn dns_targets(domain: &str, timeout: Duration) -> Vec<Arc<Target>> {
    discover::questions(domain)
        .into_iter()
        .map(|(name, record)| {
            Arc::new(Target {
                name: format!("dns {} {}", record.as_str(), name.trim_end_matches('.')).into(),
                protocol: Protocol::Dns,
                interval: timeout,
                timeout,
                phase_histogram: false,
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

fn dns_check(mut judged: Judged) -> DnsCheck {
    let records_of = |role: ResolverRole| {
        let ProtocolFacts::Dns(facts) = &judged.result.facts else {
            return Vec::new();
        };
        let mut records: Vec<String> = facts
            .answers
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
    let status = match judged.failure() {
        None => DnsStatus::Found,
        Some(failure)
            if matches!(failure.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata)
                && reference_records.is_empty() =>
        {
            DnsStatus::Absent
        }
        Some(_) => DnsStatus::Fault,
    };
    if status == DnsStatus::Absent {
        // A record nobody publishes is a fact about the domain, nobody's fault.
        judged.fault = Fault::None;
    }
    DnsCheck {
        judged,
        records: if site_records.is_empty() {
            reference_records
        } else {
            site_records
        },
        status,
    }
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
        phase_histogram: false,
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
            allow_redirects: Vec::new(),
        }),
    })
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

    fn finished(&self, judged: &Judged) {
        let done = self.done.fetch_add(1, Ordering::SeqCst) + 1;
        if !self.enabled {
            return;
        }
        let outcome = match judged.failure() {
            None => "ok".to_owned(),
            Some(failure) => format!("{} ({})", failure.kind, judged.fault),
        };
        eprintln!(
            "checked {done}/{}: {} {outcome}",
            self.total.load(Ordering::SeqCst),
            judged.target.name
        );
    }
}

/// Runs and judges `targets` through the pipeline, at most [`MAX_CONCURRENT_CHECKS`]
/// probing at once (a failure waiting for site evidence holds no place); results in
/// input order.
async fn run_all(
    pipeline: &Pipeline,
    targets: &[Arc<Target>],
    progress: &Arc<Progress>,
) -> Vec<Judged> {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_CHECKS));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, target) in targets.iter().enumerate() {
        let (target, pipeline, permits, progress) = (
            Arc::clone(target),
            pipeline.clone(),
            Arc::clone(&permits),
            Arc::clone(progress),
        );
        tasks.spawn(async move {
            // The semaphore is never closed, so acquiring cannot fail.
            let permit = permits.acquire_owned().await.expect("never closed");
            let probed = pipeline.probe(&target).await;
            drop(permit);
            let judged = probed.judge(&pipeline).await;
            progress.finished(&judged);
            (index, judged)
        });
    }
    let mut results: Vec<Option<Judged>> = std::iter::repeat_with(|| None)
        .take(targets.len())
        .collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, judged)) => results[index] = Some(judged),
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    results
        .into_iter()
        .map(|r| r.expect("every task reports"))
        .collect()
}

#[cfg(test)]
mod address_tests {
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
}
