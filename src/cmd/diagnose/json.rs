//! The `diagnose` report as one JSON object (`--json`).

use serde::Serialize;

use super::text::{WEBMAIL_NOT_CHECKED, answers, roundtrip_line, verdict};
use super::{Diagnosis, DnsStatus};
use crate::judge::Fault;
use crate::judge::verdict::site_lines;
use crate::probe::ProtocolFacts;

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
    /// Mail delivery: not tested by diagnose; the configured round trips that would.
    roundtrip: String,
    roundtrips: &'a [String],
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
        let result = &check.judged.result;
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
            fault: check.judged.fault.as_metrics_label(),
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
    /// With `--oauth2`: the step the failed login is missing, when known.
    missing_step: Option<&'a str>,
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
                fault: check.judged.fault.as_metrics_label(),
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
                    .then(|| check.judged.result.failure().map(|f| f.kind.to_string()))
                    .flatten(),
            })
            .collect(),
        services: diagnosis
            .services
            .iter()
            .map(|check| {
                let found = &check.found;
                let result = &check.judged.result;
                let failure = result.failure();
                JsonService {
                    service: found.service,
                    protocol: found.protocol.as_str(),
                    host: &found.host,
                    port: found.port,
                    tls: found.tls.as_str(),
                    source: found.source.describe(),
                    informational: check.informational(),
                    status: if result.is_success() { "ok" } else { "failed" },
                    fault: check.judged.fault.as_metrics_label(),
                    phase: failure.map(|f| f.phase.to_string()),
                    reason: failure.map(|f| f.kind.to_string()),
                    message: failure.map(|f| f.message.as_str()),
                    duration_ms: result.duration.as_secs_f64() * 1000.0,
                    peer: result.peer.map(|p| p.to_string()),
                    missing_step: failure
                        .and(result.login.as_ref())
                        .and_then(|login| login.advice.as_deref()),
                }
            })
            .collect(),
        guessed_endpoints: diagnosis.guessed,
        autodiscover: JsonAutodiscover::of(&diagnosis.autodiscover),
        webmail: WEBMAIL_NOT_CHECKED,
        roundtrip: roundtrip_line(diagnosis),
        roundtrips: &diagnosis.roundtrips,
        site: site_lines(&diagnosis.site),
        faults: {
            let mut faults: Vec<Fault> = diagnosis.faults().iter().map(|j| j.fault).collect();
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
