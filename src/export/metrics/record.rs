//! How a judged result (and a configuration load) updates the metric families.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{
    AutodiscoverLabels, CapabilityLabels, DnsRecordLabels, DnsResolverLabels, FactSeries,
    FailureLabels, FaultLabels, KNOWN_CAPABILITIES, LastFailureLabels, MAX_FACT_LABEL_LEN,
    MAX_URL_LABEL_LEN, Metrics, PhaseLabels, ResultLabels, Series, TlsInfoLabels,
};
use crate::config::{ExchangeCheck, Protocol, RecordKind};
use crate::judge::{Fault, Judged};
use crate::probe::{ErrorKind, Phase, ProbeResult, ProtocolFacts};

impl Metrics {
    /// Makes a target's counters exist from the start, so `increase()` sees its
    /// first failure.
    pub fn register_target(&self, target: &str, protocol: Protocol, check: Option<ExchangeCheck>) {
        let t = series(target, protocol, check);
        for result in ["success", "failure"] {
            let _ = self.probes.get_or_create(&ResultLabels {
                series: t.clone(),
                result,
            });
        }
        if protocol == Protocol::Roundtrip {
            self.roundtrip.register_target(&t);
        }
    }

    /// Removes every series of a target that left the configuration.
    pub fn forget_target(&self, target: &str, protocol: Protocol, check: Option<ExchangeCheck>) {
        let t = series(target, protocol, check);
        self.up.remove(&t);
        self.probe_duration.remove(&t);
        self.last_success.remove(&t);
        self.tls_not_after.remove(&t);
        self.dns_consistent.remove(&t);
        self.http_status_code.remove(&t);
        self.http_redirects.remove(&t);
        self.autodiscover_changes.remove(&t);
        self.roundtrip.forget(&t);
        for phase in Phase::ALL {
            let labels = phase_labels(&t, phase);
            self.phase_duration.remove(&labels);
            self.phase_seconds.remove(&labels);
            for kind in ErrorKind::ALL {
                self.failures.remove(&failure_labels(&t, phase, kind));
            }
        }
        for result in ["success", "failure"] {
            self.probes.remove(&ResultLabels {
                series: t.clone(),
                result,
            });
        }
        for domain in Fault::ALL {
            self.fault.remove(&fault_labels(&t, domain));
        }
        let facts = self.facts_lock().remove(&t).unwrap_or_default();
        if let Some(labels) = facts.autodiscover {
            self.autodiscover_info.remove(&labels);
        }
        if let Some(labels) = facts.last_failure {
            self.last_failure_info.remove(&labels);
        }
        if let Some(labels) = facts.tls_info {
            self.tls_info.remove(&labels);
        }
        for capability in &facts.capabilities {
            self.capability_info
                .remove(&capability_labels(&t, capability));
        }
        for resolver in &facts.dns_resolvers {
            let labels = dns_resolver_labels(&t, resolver);
            self.dns_expected_match.remove(&labels);
            self.dns_lookup_duration.remove(&labels);
            for record in &facts.dns_types {
                self.dns_records
                    .remove(&dns_record_labels(&t, resolver, record));
            }
        }
    }

    /// Updates every family from one judged result.
    pub fn record(&self, judged: &Judged) {
        let (result, fault) = (&judged.result, judged.fault);
        let t = series(&result.target, result.protocol, result.check);
        self.up
            .get_or_create(&t)
            .set(i64::from(result.is_success()));
        self.probe_duration
            .get_or_create(&t)
            .set(result.duration.as_secs_f64());
        for phase in Phase::ALL {
            let labels = phase_labels(&t, phase);
            // A phase may run more than once (each redirect hop resolves, connects and
            // handshakes again): its time is the sum.
            let mut ran = result.phases.iter().filter(|timing| timing.phase == phase);
            match ran.next() {
                Some(first) => {
                    let seconds = ran
                        .map(|timing| timing.duration)
                        .fold(first.duration, |sum, d| sum + d)
                        .as_secs_f64();
                    self.phase_duration.get_or_create(&labels).set(seconds);
                    self.phase_seconds.get_or_create(&labels).observe(seconds);
                }
                // A phase that did not run this time must not show an old value.
                None => {
                    self.phase_duration.remove(&labels);
                }
            }
        }
        self.probes
            .get_or_create(&ResultLabels {
                series: t.clone(),
                result: if result.is_success() {
                    "success"
                } else {
                    "failure"
                },
            })
            .inc();
        for domain in Fault::ALL {
            self.fault
                .get_or_create(&fault_labels(&t, domain))
                .set(i64::from(domain == fault));
        }

        let mut facts_by_target = self.facts_lock();
        let facts = facts_by_target.entry(t.clone()).or_default();
        if let Some(old) = facts.last_failure.take() {
            self.last_failure_info.remove(&old);
        }
        match result.failure() {
            Some(failure) => {
                self.failures
                    .get_or_create(&failure_labels(&t, failure.phase, failure.kind))
                    .inc();
                let labels = LastFailureLabels {
                    series: t.clone(),
                    phase: failure.phase.as_metrics_label(),
                    reason: failure.kind.as_metrics_label(),
                    domain: fault.as_metrics_label(),
                };
                self.last_failure_info.get_or_create(&labels).set(1);
                facts.last_failure = Some(labels);
            }
            None => {
                self.last_success.get_or_create(&t).set(unix_now());
            }
        }
        self.record_tls(&t, result, facts);
        match &result.facts {
            ProtocolFacts::Dns(dns) => self.record_dns(&t, dns, facts),
            ProtocolFacts::Mail(mail) => self.record_capabilities(&t, result, mail, facts),
            ProtocolFacts::Http(http) => self.record_http(&t, http, facts),
            ProtocolFacts::Roundtrip(roundtrip) => self.roundtrip.record(&t, roundtrip),
            ProtocolFacts::None => {}
        }
    }

    fn record_http(
        &self,
        t: &Series,
        http: &crate::probe::http::HttpFacts,
        facts: &mut FactSeries,
    ) {
        match http.status {
            Some(status) => self
                .http_status_code
                .get_or_create(t)
                .set(i64::from(status)),
            None => self.http_status_code.get_or_create(t).set(0),
        };
        self.http_redirects
            .get_or_create(t)
            .set(i64::from(http.redirects));
        let Some(answer) = &http.autodiscover else {
            // A failed round keeps the last answer: the change count compares answers.
            return;
        };
        let labels = AutodiscoverLabels {
            series: t.clone(),
            method: answer.method.as_str(),
            ews_url: sanitise_label(&answer.ews_url, MAX_URL_LABEL_LEN),
            server: sanitise_label(&answer.server, MAX_URL_LABEL_LEN),
        };
        let changes = self.autodiscover_changes.get_or_create(t);
        match facts.autodiscover.take() {
            Some(old) if old == labels => {}
            Some(old) => {
                tracing::info!(
                    target = %t.target,
                    from_method = old.method,
                    from_ews_url = %old.ews_url,
                    from_server = %old.server,
                    method = labels.method,
                    ews_url = %labels.ews_url,
                    server = %labels.server,
                    "the Autodiscover answer changed"
                );
                changes.inc();
                self.autodiscover_info.remove(&old);
            }
            None => {}
        }
        drop(changes);
        self.autodiscover_info.get_or_create(&labels).set(1);
        facts.autodiscover = Some(labels);
    }

    fn record_capabilities(
        &self,
        t: &Series,
        result: &ProbeResult,
        mail: &crate::probe::mail::MailFacts,
        facts: &mut FactSeries,
    ) {
        // Only a session that got its capability answer knows them; a failure before
        // that leaves the last known list in place.
        let asked = result.phases.iter().any(|p| p.phase == Phase::Request);
        let answered = result.failure().is_none_or(|f| f.phase != Phase::Request);
        if !(asked && answered) {
            return;
        }
        let present: BTreeSet<&'static str> = KNOWN_CAPABILITIES
            .into_iter()
            .filter(|known| match known.strip_prefix("AUTH=") {
                Some(mechanism) => mail.capabilities.offers_auth(mechanism),
                None => mail.capabilities.has(known),
            })
            .collect();
        for gone in facts.capabilities.difference(&present) {
            self.capability_info.remove(&capability_labels(t, gone));
        }
        for capability in &present {
            self.capability_info
                .get_or_create(&capability_labels(t, capability))
                .set(1);
        }
        facts.capabilities = present;
    }

    fn record_tls(&self, t: &Series, result: &ProbeResult, facts: &mut FactSeries) {
        let Some(tls) = &result.tls else { return };
        if let Some(not_after) = tls.not_after {
            self.tls_not_after.get_or_create(t).set(not_after);
        }
        // Version and issuer are only known for sure after a completed handshake.
        let (Some(version), Some(issuer)) = (&tls.version, &tls.issuer) else {
            return;
        };
        let labels = TlsInfoLabels {
            series: t.clone(),
            version: sanitise_fact(version),
            issuer: sanitise_fact(issuer),
        };
        if facts.tls_info.as_ref() != Some(&labels) {
            if let Some(old) = facts.tls_info.take() {
                self.tls_info.remove(&old);
            }
            self.tls_info.get_or_create(&labels).set(1);
            facts.tls_info = Some(labels);
        }
    }

    fn record_dns(&self, t: &Series, dns: &crate::probe::dns::DnsFacts, facts: &mut FactSeries) {
        let record = dns.record.map_or("", RecordKind::as_str);
        facts.dns_types.insert(record);
        for answer in &dns.answers {
            facts.dns_resolvers.insert(answer.resolver.clone());
            let labels = dns_resolver_labels(t, &answer.resolver);
            self.dns_lookup_duration
                .get_or_create(&labels)
                .set(answer.duration.as_secs_f64());
            let records = dns_record_labels(t, &answer.resolver, record);
            match &answer.outcome {
                Ok(found) => {
                    self.dns_records
                        .get_or_create(&records)
                        .set(i64::try_from(found.len()).unwrap_or(i64::MAX));
                }
                // A negative answer is an answer: zero records.
                Err(e) if matches!(e.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata) => {
                    self.dns_records.get_or_create(&records).set(0);
                }
                // No answer at all: the count is unknown, so no series.
                Err(_) => {
                    self.dns_records.remove(&records);
                }
            }
            match answer.expected_match {
                Some(matched) => {
                    self.dns_expected_match
                        .get_or_create(&labels)
                        .set(i64::from(matched));
                }
                None => {
                    self.dns_expected_match.remove(&labels);
                }
            }
        }
        match dns.consistent {
            Some(consistent) => {
                self.dns_consistent
                    .get_or_create(t)
                    .set(i64::from(consistent));
            }
            None => {
                self.dns_consistent.remove(t);
            }
        }
    }

    /// Records the outcome of a configuration (re)load.
    pub fn record_reload(&self, successful: bool, targets: usize) {
        self.reload_successful.set(i64::from(successful));
        if successful {
            self.reload_success_timestamp.set(unix_now());
            self.targets.set(i64::try_from(targets).unwrap_or(i64::MAX));
        }
    }

    /// Counts `skipped` scheduled probes that could not start on time.
    pub fn record_overruns(&self, skipped: u64) {
        self.overruns.inc_by(skipped);
    }

    /// Sets `mailprobe_targets` (discovery changed the set between loads).
    pub fn set_targets(&self, targets: usize) {
        self.targets.set(i64::try_from(targets).unwrap_or(i64::MAX));
    }
}

fn series(target: &str, protocol: Protocol, check: Option<ExchangeCheck>) -> Series {
    Series {
        target: target.to_owned(),
        protocol: protocol.as_str(),
        check: check.map(ExchangeCheck::as_str),
    }
}

fn phase_labels(t: &Series, phase: Phase) -> PhaseLabels {
    PhaseLabels {
        series: t.clone(),
        phase: phase.as_metrics_label(),
    }
}

fn failure_labels(t: &Series, phase: Phase, kind: ErrorKind) -> FailureLabels {
    FailureLabels {
        series: t.clone(),
        phase: phase.as_metrics_label(),
        reason: kind.as_metrics_label(),
    }
}

fn fault_labels(t: &Series, domain: Fault) -> FaultLabels {
    FaultLabels {
        series: t.clone(),
        domain: domain.as_metrics_label(),
    }
}

fn capability_labels(t: &Series, capability: &'static str) -> CapabilityLabels {
    CapabilityLabels {
        series: t.clone(),
        capability,
    }
}

fn dns_resolver_labels(t: &Series, resolver: &str) -> DnsResolverLabels {
    DnsResolverLabels {
        series: t.clone(),
        resolver: resolver.to_owned(),
    }
}

fn dns_record_labels(t: &Series, resolver: &str, record: &'static str) -> DnsRecordLabels {
    DnsRecordLabels {
        series: t.clone(),
        resolver: resolver.to_owned(),
        r#type: record,
    }
}

/// A server-supplied fact fit for a label: printable ASCII only, bounded length.
fn sanitise_fact(fact: &str) -> String {
    sanitise_label(fact, MAX_FACT_LABEL_LEN)
}

/// `text` as a label value: printable ASCII only, at most `max` characters.
fn sanitise_label(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_facts_are_bounded_printable_labels() {
        let long = "A\u{7}".repeat(100);
        let clean = sanitise_fact(&long);
        assert_eq!(clean.len(), MAX_FACT_LABEL_LEN);
        assert!(clean.chars().all(|c| c == 'A' || c == '?'));
    }
}
