//! The `diagnose` report as text: the help-desk checklist, then the verdict paragraph.

use std::fmt::Write as _;

use super::{Diagnosis, DnsCheck, DnsStatus, ServiceCheck};
use crate::config::{Protocol, RecordKind};
use crate::judge::Fault;
use crate::judge::verdict::{side, site_lines};
use crate::probe::ProtocolFacts;
use crate::probe::env::ResolverRole;

/// What the report says about webmail, whose URL `diagnose` cannot know.
pub const WEBMAIL_NOT_CHECKED: &str = "not checked: its URL cannot be discovered; add a \
     `protocol: https` target for it and run `mailprobe probe`";
/// What the report says about mail delivery, which `diagnose` never tests.
pub const ROUNDTRIP_NOT_RUN: &str = "not tested: diagnose never logs in or sends mail; a \
     `protocol: roundtrip` target does, with `mailprobe probe --config FILE NAME`";
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
            DnsStatus::Fault => format!("FAULT: {}", check.judged.fault),
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
            && let Some(failure) = check.judged.result.failure()
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
        let found = &check.found;
        let result = &check.judged.result;
        let outcome = match result.failure() {
            None => format!("ok in {:.0} ms", result.duration.as_secs_f64() * 1000.0),
            Some(failure) => format!(
                "FAILED in {} ({}): {} [{}]",
                failure.phase, failure.kind, failure.message, check.judged.fault
            ),
        };
        let _ = writeln!(
            out,
            "  {:<11} {:<34} {:<24} {outcome}",
            found.service,
            format!("{}:{} tls={}", found.host, found.port, found.tls.as_str()),
            format!("({})", found.source.describe()),
        );
        if let Some(advice) = result
            .login
            .as_ref()
            .filter(|_| !result.is_success())
            .and_then(|login| login.advice.as_ref())
        {
            let _ = writeln!(out, "              missing step: {advice}");
        }
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
    let _ = writeln!(
        out,
        "  delivery (round trip): {}",
        roundtrip_line(diagnosis)
    );

    let _ = writeln!(out, "\nSite network");
    for line in site_lines(&diagnosis.site) {
        let _ = writeln!(out, "  {line}");
    }

    let _ = writeln!(out, "\nVerdict");
    let _ = writeln!(out, "{}", verdict(diagnosis));
    out
}

/// One line on mail delivery: not tested here, and which configured round trips
/// would test it.
pub(super) fn roundtrip_line(diagnosis: &Diagnosis) -> String {
    match diagnosis.roundtrips.first() {
        None => ROUNDTRIP_NOT_RUN.to_owned(),
        Some(first) => format!(
            "not tested here (diagnose never sends mail); the configuration's round trip{} to \
             this domain: {} (`mailprobe probe --config FILE {first}`)",
            if diagnosis.roundtrips.len() == 1 {
                ""
            } else {
                "s"
            },
            diagnosis.roundtrips.join(", ")
        ),
    }
}

/// One line on Autodiscover: where it answered and what, or why it did not.
pub(super) fn autodiscover_summary(check: &super::AutodiscoverCheck) -> String {
    let result = &check.judged.result;
    let answer = match &result.facts {
        ProtocolFacts::Http(http) => http.autodiscover.as_ref(),
        _ => None,
    };
    match (result.failure(), answer) {
        (None, Some(answer)) => answer.to_string(),
        (None, None) => "answered".to_owned(),
        (Some(failure), _) if check.published => format!(
            "FAILED ({}, {}): {}",
            failure.kind, check.judged.fault, failure.message
        ),
        (Some(_), _) => "none found (no Exchange or Microsoft 365 for this domain)".to_owned(),
    }
}

pub(super) struct Answer {
    pub(super) role: &'static str,
    pub(super) resolver: String,
    pub(super) answer: String,
}

pub(super) fn answers(check: &DnsCheck) -> Vec<Answer> {
    let ProtocolFacts::Dns(facts) = &check.judged.result.facts else {
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

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => "IMAP",
        Protocol::Pop3 => "POP3",
        Protocol::Smtp => "SMTP",
        Protocol::Dns => "DNS",
        other => other.as_str(),
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
            && c.judged
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
                .map(|c| protocol_name(c.judged.target.protocol)),
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
    let mut domains: Vec<Fault> = faults.iter().map(|judged| judged.fault).collect();
    domains.sort();
    domains.dedup();
    let probed: Vec<&str> = distinct(
        diagnosis
            .services
            .iter()
            .filter(|c| !c.informational())
            .map(|c| protocol_name(c.judged.target.protocol)),
    );
    for fault in domains {
        let of_domain: Vec<_> = faults.iter().filter(|j| j.fault == fault).collect();
        let failing = distinct(of_domain.iter().map(|j| protocol_name(j.target.protocol)));
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
        sentences.push(format!(
            "{scope} with {fault}, on the side of {}: {}",
            side(fault),
            of_domain[0].verdict()
        ));
    }
    let mx_failing = diagnosis
        .services
        .iter()
        .filter(|c| c.informational() && !c.judged.is_success())
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

pub(super) fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(", ")
    }
}

pub(super) fn days_from_now(unix: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    (unix - now) / 86_400
}
