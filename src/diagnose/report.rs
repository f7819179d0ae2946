//! The `diagnose` report: the help-desk checklist as text, or as one JSON object.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Diagnosis, DnsCheck, DnsStatus, ServiceCheck};
use crate::config::{Protocol, RecordKind, TlsMode};
use crate::fault::Fault;
use crate::oneshot;
use crate::probe::ProtocolFacts;
use crate::runtime::ResolverRole;
use crate::site::{GatewayState, SiteContext};

/// What the report says about webmail, whose URL `diagnose` cannot know.
pub const WEBMAIL_NOT_CHECKED: &str = "not checked: its URL cannot be discovered; add a \
     `protocol: https` target for it and run `mailprobe probe`";
/// What the report says about Thunderbird's autoconfig document.
pub const AUTOCONFIG_NOT_CHECKED: &str =
    "content not checked (Thunderbird autoconfig is not probed)";

/// The text report: four sections, then the verdict paragraph.
pub fn render(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let address = &diagnosis.address;
    let _ = writeln!(
        out,
        "mailprobe diagnose {}{} (site resolvers: {}; reference resolvers: {})\n",
        address
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default(),
        address.domain,
        list_or(&diagnosis.site_resolvers, "none"),
        list_or(&diagnosis.reference_resolvers, "none configured"),
    );

    let _ = writeln!(out, "DNS (inside vs outside the site)");
    for check in &diagnosis.dns {
        let query = check.query();
        let status = match check.status {
            DnsStatus::Found => "ok".to_owned(),
            DnsStatus::Absent => "not published".to_owned(),
            DnsStatus::Fault => format!("FAULT: {}", check.report.fault),
        };
        let _ = writeln!(
            out,
            "  {:<5} {:<40} {status}",
            query.record.as_str(),
            query.domain.trim_end_matches('.')
        );
        for answer in answers(check) {
            let _ = writeln!(
                out,
                "        {:<9} {:<22} {}",
                answer.role, answer.resolver, answer.answer
            );
        }
        if check.status == DnsStatus::Fault
            && let Some(failure) = check.report.result.failure()
        {
            let _ = writeln!(
                out,
                "        reason: {} ({})",
                failure.kind, failure.message
            );
        }
    }

    let _ = writeln!(out, "\nMail services");
    if diagnosis.guessed {
        let _ = writeln!(
            out,
            "  (no RFC 6186 SRV records: trying imap., smtp. and mail.{} where they resolve)",
            address.domain
        );
    }
    if diagnosis.services.is_empty() {
        let _ = writeln!(out, "  none discovered");
    }
    for check in &diagnosis.services {
        let endpoint = check.endpoint();
        let result = &check.report.result;
        let outcome = match result.failure() {
            None => format!("ok in {:.0} ms", result.duration.as_secs_f64() * 1000.0),
            Some(failure) => format!(
                "FAILED in {} ({}): {} [{}]",
                failure.phase, failure.kind, failure.message, check.report.fault
            ),
        };
        let _ = writeln!(
            out,
            "  {:<11} {:<34} {:<24} {outcome}",
            check.service,
            format!(
                "{}:{} tls={}",
                endpoint.host,
                endpoint.port,
                endpoint.tls.as_str()
            ),
            format!("({})", check.source.describe()),
        );
        if let Some(tls) = &result.tls
            && result.is_success()
        {
            let _ = writeln!(
                out,
                "              TLS {}, certificate for {}{}",
                tls.version.as_deref().unwrap_or("?"),
                list_or(&tls.sans, "no names"),
                tls.not_after
                    .map(|t| format!(", expires in {} days", days_from_now(t)))
                    .unwrap_or_default()
            );
        }
    }
    if diagnosis.services.iter().any(ServiceCheck::informational) {
        let _ = writeln!(
            out,
            "  (MX port 25 is informational: many networks block outbound port 25, and mail \
             clients do not use it)"
        );
    }

    let _ = writeln!(out, "\nWebmail/Autodiscover");
    for (name, record) in [
        ("_autodiscover._tcp", RecordKind::Srv),
        ("autodiscover", RecordKind::A),
        ("autoconfig", RecordKind::A),
    ] {
        let check = diagnosis.dns.iter().find(|c| {
            c.query().record == record && c.query().domain.starts_with(&format!("{name}."))
        });
        let dns = match check.map(|c| c.status) {
            Some(DnsStatus::Found) => "published",
            Some(DnsStatus::Absent) | None => "not published",
            Some(DnsStatus::Fault) => "DNS fault (see above)",
        };
        let _ = writeln!(
            out,
            "  {:<40} DNS: {dns}",
            format!("{name}.{}", address.domain)
        );
    }
    let _ = writeln!(
        out,
        "  Autodiscover: {}",
        autodiscover_summary(&diagnosis.autodiscover)
    );
    let _ = writeln!(out, "  autoconfig: {AUTOCONFIG_NOT_CHECKED}");
    let _ = writeln!(out, "  webmail: {WEBMAIL_NOT_CHECKED}");

    let _ = writeln!(out, "\nSite network");
    for line in site_lines(&diagnosis.site) {
        let _ = writeln!(out, "  {line}");
    }

    let _ = writeln!(out, "\nVerdict");
    let _ = writeln!(out, "{}", verdict(diagnosis));
    out
}

/// One line on Autodiscover: where it answered and what, or why it did not.
fn autodiscover_summary(check: &super::AutodiscoverCheck) -> String {
    let result = &check.report.result;
    let answer = match &result.facts {
        ProtocolFacts::Http(http) => http.autodiscover.as_ref(),
        _ => None,
    };
    match (result.failure(), answer) {
        (None, Some(answer)) => answer.to_string(),
        (None, None) => "answered".to_owned(),
        (Some(failure), _) if check.published => format!(
            "FAILED ({}, {}): {}",
            failure.kind, check.report.fault, failure.message
        ),
        (Some(_), _) => "none found (no Exchange or Microsoft 365 for this domain)".to_owned(),
    }
}

struct Answer {
    role: &'static str,
    resolver: String,
    answer: String,
}

fn answers(check: &DnsCheck) -> Vec<Answer> {
    let ProtocolFacts::Dns(facts) = &check.report.result.facts else {
        return Vec::new();
    };
    facts
        .answers
        .iter()
        .map(|a| Answer {
            role: match a.role {
                ResolverRole::Site => "site",
                ResolverRole::Reference => "reference",
            },
            resolver: a.resolver.clone(),
            answer: match &a.outcome {
                Ok(records) => records.join(", "),
                Err(error) => error.kind.to_string(),
            },
        })
        .collect()
}

fn site_lines(site: &SiteContext) -> Vec<String> {
    let mut lines = vec![match &site.gateway {
        GatewayState::NotChecked => "gateway: not checked".to_owned(),
        GatewayState::NoDefaultRoute => "gateway: NO DEFAULT ROUTE".to_owned(),
        GatewayState::Checked {
            address,
            up,
            method,
        } => format!(
            "gateway {address}: {} ({})",
            if *up { "answers" } else { "DOES NOT answer" },
            method.as_str()
        ),
    }];
    for r in &site.resolvers {
        lines.push(match r.error {
            None => format!("{} resolver {}: up", r.role.as_str(), r.resolver),
            Some(kind) => format!("{} resolver {}: DOWN ({kind})", r.role.as_str(), r.resolver),
        });
    }
    if site.canaries.is_empty() {
        lines.push("canaries: none configured".to_owned());
    }
    for canary in &site.canaries {
        lines.push(format!(
            "canary {}: {}",
            canary.canary,
            if canary.up {
                "reachable"
            } else {
                "NOT reachable"
            }
        ));
    }
    lines
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => "IMAP",
        Protocol::Pop3 => "POP3",
        Protocol::Smtp => "SMTP",
        Protocol::Dns => "DNS",
        other => other.as_str(),
    }
}

fn side(fault: Fault) -> &'static str {
    match fault {
        Fault::LocalNetwork => "the local network (this site)",
        Fault::LocalDns => "the local DNS (this site's resolver)",
        Fault::Upstream => "the uplink (the site's ISP)",
        Fault::RemoteDns
        | Fault::ServerNetwork
        | Fault::ServerService
        | Fault::ServerTls
        | Fault::ServerAuth => "the provider",
        Fault::None | Fault::Unknown => "unknown (not enough evidence)",
    }
}

/// The verdict paragraph.
pub fn verdict(diagnosis: &Diagnosis) -> String {
    let domain = &diagnosis.address.domain;
    let mut sentences = Vec::new();
    let faults = diagnosis.faults();
    let no_such_domain = diagnosis.dns.iter().any(|c| {
        c.query().record == RecordKind::Mx
            && c.status == DnsStatus::Absent
            && c.report
                .result
                .failure()
                .is_some_and(|f| f.kind == crate::probe::ErrorKind::DnsNxdomain)
    });
    if no_such_domain {
        sentences.push(format!(
            "{domain} does not exist in DNS (NXDOMAIN): check the spelling of the address."
        ));
    }
    // Only when DNS answered that there is nothing: a lookup that failed (uplink or
    // resolver down) says nothing about what the domain publishes.
    let lookups_failed = diagnosis
        .dns
        .iter()
        .any(|check| check.status == DnsStatus::Fault);
    if diagnosis.nothing_to_use() && !lookups_failed {
        sentences.push(format!(
            "No IMAP, POP3 or submission server could be found for {domain}: it publishes no \
             RFC 6186 SRV record and none of imap.{domain}, smtp.{domain} or mail.{domain} \
             resolves. Ask the provider for the server names (or to publish SRV records)."
        ));
    }
    if faults.is_empty() && !diagnosis.nothing_to_use() {
        let protocols = joined(&distinct(
            diagnosis
                .services
                .iter()
                .filter(|c| !c.informational())
                .map(|c| protocol_name(c.target.protocol)),
        ));
        let dns = if diagnosis.reference_resolvers.is_empty() {
            "answers inside the site (no reference resolver configured to compare with)"
        } else {
            "answers alike inside and outside the site"
        };
        sentences.push(format!(
            "Healthy: DNS for {domain} {dns}, and every discovered mail service ({protocols}) \
             accepted a connection and TLS (no login was tried)."
        ));
    }
    // One sentence per fault domain, the site's own faults first.
    let mut domains: Vec<Fault> = faults.iter().map(|(_, r)| r.fault).collect();
    domains.sort();
    domains.dedup();
    let probed: Vec<&str> = distinct(
        diagnosis
            .services
            .iter()
            .filter(|c| !c.informational())
            .map(|c| protocol_name(c.target.protocol)),
    );
    for fault in domains {
        let of_domain: Vec<_> = faults.iter().filter(|(_, r)| r.fault == fault).collect();
        let failing = distinct(of_domain.iter().map(|(t, _)| protocol_name(t.protocol)));
        let scope = if failing.len() > 1 {
            format!("{} both fail", joined(&failing))
        } else if failing.first() == Some(&"DNS") {
            "DNS fails".to_owned()
        } else if probed.len() > 1 && failing.len() == 1 {
            let working: Vec<&str> = probed
                .iter()
                .copied()
                .filter(|p| !failing.contains(p))
                .collect();
            format!("Only {} fails ({} works)", failing[0], joined(&working))
        } else {
            format!("{} fails", joined(&failing))
        }
        .replace("both", if failing.len() > 2 { "all" } else { "both" });
        let (target, report) = of_domain[0];
        sentences.push(format!(
            "{scope} with {fault}, on the side of {}: {}",
            side(fault),
            oneshot::verdict(target, report)
        ));
    }
    let mx_failing = diagnosis
        .services
        .iter()
        .filter(|c| c.informational() && !c.report.result.is_success())
        .count();
    if mx_failing > 0 {
        sentences.push(format!(
            "({mx_failing} MX host(s) failed on port 25; that is informational, many networks \
             block outbound port 25.)"
        ));
    }
    sentences.join(" ")
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn joined(items: &[&str]) -> String {
    match items {
        [] => "none".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

fn days_from_now(unix: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    (unix - now) / 86_400
}

#[derive(Serialize)]
struct JsonReport<'a> {
    address: String,
    domain: &'a str,
    healthy: bool,
    site_resolvers: &'a [String],
    reference_resolvers: &'a [String],
    dns: Vec<JsonDns<'a>>,
    services: Vec<JsonService<'a>>,
    guessed_endpoints: bool,
    autodiscover: JsonAutodiscover,
    webmail: &'static str,
    site: Vec<String>,
    faults: Vec<&'static str>,
    verdict: String,
}

#[derive(Serialize)]
struct JsonAutodiscover {
    /// `answered`, `failed` (published but broken) or `absent`.
    status: &'static str,
    published: bool,
    method: Option<&'static str>,
    ews_url: Option<String>,
    server: Option<String>,
    fault: &'static str,
    reason: Option<String>,
    message: Option<String>,
}

impl JsonAutodiscover {
    fn of(check: &super::AutodiscoverCheck) -> Self {
        let result = &check.report.result;
        let answer = match &result.facts {
            ProtocolFacts::Http(http) => http.autodiscover.as_ref(),
            _ => None,
        };
        let failure = result.failure();
        JsonAutodiscover {
            status: match (failure, check.published) {
                (None, _) => "answered",
                (Some(_), true) => "failed",
                (Some(_), false) => "absent",
            },
            published: check.published,
            method: answer.map(|a| a.method.as_str()),
            ews_url: answer.map(|a| a.ews_url.clone()),
            server: answer.map(|a| a.server.clone()),
            fault: check.report.fault.as_metrics_label(),
            reason: failure.map(|f| f.kind.to_string()),
            message: failure.map(|f| f.message.clone()),
        }
    }
}

#[derive(Serialize)]
struct JsonDns<'a> {
    name: &'a str,
    record: &'static str,
    status: &'static str,
    fault: &'static str,
    records: &'a [String],
    answers: Vec<JsonAnswer>,
    reason: Option<String>,
}

#[derive(Serialize)]
struct JsonAnswer {
    role: &'static str,
    resolver: String,
    answer: String,
}

#[derive(Serialize)]
struct JsonService<'a> {
    service: &'static str,
    protocol: &'static str,
    host: &'a str,
    port: u16,
    tls: &'static str,
    source: String,
    informational: bool,
    status: &'static str,
    fault: &'static str,
    phase: Option<String>,
    reason: Option<String>,
    message: Option<&'a str>,
    duration_ms: f64,
    peer: Option<String>,
}

/// The report as one JSON object.
pub fn to_json(diagnosis: &Diagnosis) -> String {
    let address = &diagnosis.address;
    let report = JsonReport {
        address: match &address.user {
            Some(user) => format!("{user}@{}", address.domain),
            None => address.domain.clone(),
        },
        domain: &address.domain,
        healthy: diagnosis.is_healthy(),
        site_resolvers: &diagnosis.site_resolvers,
        reference_resolvers: &diagnosis.reference_resolvers,
        dns: diagnosis
            .dns
            .iter()
            .map(|check| JsonDns {
                name: check.query().domain.trim_end_matches('.'),
                record: check.query().record.as_str(),
                status: match check.status {
                    DnsStatus::Found => "found",
                    DnsStatus::Absent => "absent",
                    DnsStatus::Fault => "fault",
                },
                fault: check.report.fault.as_metrics_label(),
                records: &check.records,
                answers: answers(check)
                    .into_iter()
                    .map(|a| JsonAnswer {
                        role: a.role,
                        resolver: a.resolver,
                        answer: a.answer,
                    })
                    .collect(),
                reason: (check.status == DnsStatus::Fault)
                    .then(|| check.report.result.failure().map(|f| f.kind.to_string()))
                    .flatten(),
            })
            .collect(),
        services: diagnosis
            .services
            .iter()
            .map(|check| {
                let endpoint = check.endpoint();
                let result = &check.report.result;
                let failure = result.failure();
                JsonService {
                    service: check.service,
                    protocol: check.target.protocol.as_str(),
                    host: &endpoint.host,
                    port: endpoint.port,
                    tls: match endpoint.tls {
                        TlsMode::Implicit => "implicit",
                        TlsMode::Starttls => "starttls",
                        TlsMode::None => "none",
                    },
                    source: check.source.describe(),
                    informational: check.informational(),
                    status: if result.is_success() { "ok" } else { "failed" },
                    fault: check.report.fault.as_metrics_label(),
                    phase: failure.map(|f| f.phase.to_string()),
                    reason: failure.map(|f| f.kind.to_string()),
                    message: failure.map(|f| f.message.as_str()),
                    duration_ms: result.duration.as_secs_f64() * 1000.0,
                    peer: result.peer.map(|p| p.to_string()),
                }
            })
            .collect(),
        guessed_endpoints: diagnosis.guessed,
        autodiscover: JsonAutodiscover::of(&diagnosis.autodiscover),
        webmail: WEBMAIL_NOT_CHECKED,
        site: site_lines(&diagnosis.site),
        faults: {
            let mut faults: Vec<Fault> = diagnosis.faults().iter().map(|(_, r)| r.fault).collect();
            faults.sort();
            faults.dedup();
            faults.into_iter().map(Fault::as_metrics_label).collect()
        },
        verdict: verdict(diagnosis),
    };
    let mut text = serde_json::to_string_pretty(&report).expect("plain data serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::config::Config;
    use crate::diagnose::{Address, ServiceCheck, Source, mail_target};
    use crate::oneshot::Report;
    use crate::probe::{ErrorKind, Failure, Phase, ProbeResult};
    use crate::site::SiteContext;

    fn config() -> Config {
        crate::config::from_str(
            "site: {gateway: none, resolvers: [\"127.0.0.1:9\"]}\n\
             targets:\n  - {name: x, protocol: tcp, host: 127.0.0.1, port: 9}\n",
            std::path::Path::new("test.yaml"),
        )
        .unwrap()
    }

    fn service(
        protocol: Protocol,
        port: u16,
        failure: Option<ErrorKind>,
        site: &Arc<SiteContext>,
    ) -> ServiceCheck {
        let options = crate::diagnose::Options {
            timeout: Duration::from_secs(1),
            progress: false,
        };
        let target = mail_target(
            "svc",
            protocol,
            "mail.example.test",
            port,
            TlsMode::Implicit,
            &config(),
            "here",
            &options,
        );
        let result = ProbeResult {
            target: Arc::clone(&target.name),
            protocol,
            check: None,
            started_at: SystemTime::now(),
            duration: Duration::from_millis(5),
            phases: Vec::new(),
            outcome: match failure {
                None => Ok(()),
                Some(kind) => Err(Failure {
                    phase: Phase::Tls,
                    kind,
                    message: "test".to_owned(),
                }),
            },
            peer: None,
            tls: None,
            facts: ProtocolFacts::None,
            log: Vec::new(),
        };
        let fault = crate::classify::classify(&result, Some(site));
        ServiceCheck {
            service: "svc",
            source: Source::Srv("_test._tcp"),
            target,
            report: Report {
                result,
                fault,
                site: Some(Arc::clone(site)),
            },
        }
    }

    fn diagnosis(services: Vec<ServiceCheck>, site: Arc<SiteContext>) -> Diagnosis {
        let address = Address {
            user: None,
            domain: "example.test".to_owned(),
        };
        let autodiscover_target = super::super::autodiscover_target(
            &address,
            &config(),
            &crate::diagnose::Options {
                timeout: Duration::from_secs(1),
                progress: false,
            },
        );
        let autodiscover = super::super::AutodiscoverCheck {
            report: Report {
                result: ProbeResult {
                    target: Arc::clone(&autodiscover_target.name),
                    protocol: Protocol::Exchange,
                    check: autodiscover_target.check(),
                    started_at: SystemTime::now(),
                    duration: Duration::from_millis(5),
                    phases: Vec::new(),
                    outcome: Err(Failure {
                        phase: Phase::Connect,
                        kind: ErrorKind::ConnectRefused,
                        message: "test".to_owned(),
                    }),
                    peer: None,
                    tls: None,
                    facts: ProtocolFacts::None,
                    log: Vec::new(),
                },
                fault: Fault::ServerService,
                site: Some(Arc::clone(&site)),
            },
            target: autodiscover_target,
            published: false,
        };
        Diagnosis {
            address,
            dns: Vec::new(),
            autodiscover,
            services,
            guessed: false,
            site,
            site_resolvers: vec!["127.0.0.1:9".to_owned()],
            reference_resolvers: Vec::new(),
        }
    }

    fn site() -> Arc<SiteContext> {
        Arc::new(SiteContext {
            measured_at: SystemTime::now(),
            gateway: GatewayState::NotChecked,
            resolvers: Vec::new(),
            canaries: Vec::new(),
        })
    }

    #[test]
    fn both_protocols_failing_tls_blame_the_provider() {
        let site = site();
        let d = diagnosis(
            vec![
                service(Protocol::Imap, 993, Some(ErrorKind::CertExpired), &site),
                service(Protocol::Smtp, 465, Some(ErrorKind::CertExpired), &site),
            ],
            site,
        );
        assert!(!d.is_healthy());
        let verdict = verdict(&d);
        assert!(
            verdict.starts_with(
                "IMAP and SMTP both fail with server_tls, on the side of the provider: The \
                 certificate mail.example.test presents has expired"
            ),
            "{verdict}"
        );
    }

    #[test]
    fn one_failing_protocol_says_which_still_works() {
        let site = site();
        let d = diagnosis(
            vec![
                service(Protocol::Imap, 993, Some(ErrorKind::ConnectRefused), &site),
                service(Protocol::Smtp, 465, None, &site),
            ],
            site,
        );
        let verdict = verdict(&d);
        assert!(
            verdict.starts_with("Only IMAP fails (SMTP works) with server_service"),
            "{verdict}"
        );
    }

    #[test]
    fn healthy_services_give_a_healthy_verdict() {
        let site = site();
        let d = diagnosis(vec![service(Protocol::Imap, 993, None, &site)], site);
        assert!(d.is_healthy());
        assert!(verdict(&d).starts_with("Healthy: "), "{}", verdict(&d));
        let json: serde_json::Value = serde_json::from_str(&to_json(&d)).unwrap();
        assert_eq!(json["healthy"], true);
        assert_eq!(json["services"][0]["status"], "ok");
    }
}
