//! The exposition: every family, in a fixed order, written straight into the format
//! asked for. Each series is locked only while its own lines are written.

use std::sync::{Arc, Mutex, MutexGuard};

use super::histogram::Histogram;
use super::series::{KNOWN_CAPABILITIES, LoginSeries, SeriesState};
use super::text::{Kind, Value, Writer};
use crate::judge::Fault;
use crate::probe::Phase;

/// The series to write, in order (taken from the registry, then released).
pub type SeriesList = [Arc<Mutex<SeriesState>>];

/// Writes each per-series family over `series`.
pub fn per_series(writer: &mut Writer<'_>, series: &SeriesList) {
    let each = |writer: &mut Writer<'_>, write: &dyn Fn(&mut Writer<'_>, &SeriesState)| {
        for one in series {
            write(writer, &lock(one));
        }
    };
    writer.family(
        "mailprobe_up",
        Kind::Gauge,
        "1 if the last probe of the target succeeded",
    );
    each(writer, &|w, s| {
        if s.probed {
            w.sample("mailprobe_up", &s.labels, &[], Value::from(s.up));
        }
    });
    writer.family(
        "mailprobe_probe_duration_seconds",
        Kind::Gauge,
        "Total time of the last probe",
    );
    each(writer, &|w, s| {
        if s.probed {
            let v = Value::Float(s.duration);
            w.sample("mailprobe_probe_duration_seconds", &s.labels, &[], v);
        }
    });
    writer.family(
        "mailprobe_phase_duration_seconds",
        Kind::Gauge,
        "Time per phase in the last probe (phases that ran)",
    );
    each(writer, &|w, s| {
        for (phase, seconds) in Phase::ALL.iter().zip(s.phases) {
            if let Some(seconds) = seconds {
                let phase = ("phase", phase.as_metrics_label());
                let name = "mailprobe_phase_duration_seconds";
                w.sample(name, &s.labels, &[phase], Value::Float(seconds));
            }
        }
    });
    writer.family(
        "mailprobe_phase_seconds",
        Histogram::KIND,
        "Histogram of the target's phase times (targets with `phase_histogram: true`)",
    );
    each(writer, &|w, s| {
        let Some(histograms) = &s.histograms else {
            return;
        };
        for (phase, histogram) in Phase::ALL.iter().zip(histograms.iter()) {
            if let Some(histogram) = histogram {
                let phase = ("phase", phase.as_metrics_label());
                histogram.write(w, "mailprobe_phase_seconds", &s.labels, phase);
            }
        }
    });
    writer.family("mailprobe_probes", Kind::Counter, "Probes run, by result");
    each(writer, &|w, s| {
        for (result, count) in ["success", "failure"].into_iter().zip(s.probes) {
            let result = ("result", result);
            w.sample(
                "mailprobe_probes_total",
                &s.labels,
                &[result],
                Value::Count(count),
            );
        }
    });
    writer.family(
        "mailprobe_failures",
        Kind::Counter,
        "Failed probes, by failing phase and reason",
    );
    each(writer, &|w, s| {
        for (phase, kind, count) in &s.failures {
            let labels = [
                ("phase", phase.as_metrics_label()),
                ("reason", kind.as_metrics_label()),
            ];
            w.sample(
                "mailprobe_failures_total",
                &s.labels,
                &labels,
                Value::Count(*count),
            );
        }
    });
    writer.family(
        "mailprobe_fault",
        Kind::Gauge,
        "Fault domain of the last probe: one series, for the current domain, at 1",
    );
    each(writer, &|w, s| {
        if s.probed {
            let domain = ("domain", s.fault.as_metrics_label());
            w.sample("mailprobe_fault", &s.labels, &[domain], Value::Int(1));
        }
    });
    writer.family(
        "mailprobe_last_failure_info",
        Kind::Gauge,
        "The last failure while the target is failing",
    );
    each(writer, &|w, s| {
        if let Some((phase, kind, fault)) = s.last_failure {
            let labels = [
                ("phase", phase.as_metrics_label()),
                ("reason", kind.as_metrics_label()),
                ("domain", fault.as_metrics_label()),
            ];
            w.sample(
                "mailprobe_last_failure_info",
                &s.labels,
                &labels,
                Value::Int(1),
            );
        }
    });
    writer.family(
        "mailprobe_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the target last succeeded (Unix time)",
    );
    each(writer, &|w, s| {
        if let Some(at) = s.last_success {
            let name = "mailprobe_last_success_timestamp_seconds";
            w.sample(name, &s.labels, &[], Value::Float(at));
        }
    });
    tls_and_mail(writer, series);
    dns(writer, series);
    http(writer, series);
    roundtrip(writer, series);
    login(writer, series);
}

fn roundtrip(writer: &mut Writer<'_>, series: &SeriesList) {
    writer.family(
        "mailprobe_roundtrip_delivery_seconds",
        Histogram::KIND,
        "Round trips: time from the server accepting the message to it being visible in the mailbox",
    );
    for one in series {
        let s = lock(one);
        if let Some(roundtrip) = &s.roundtrip {
            let name = "mailprobe_roundtrip_delivery_seconds";
            roundtrip
                .delivery
                .write_labelled(writer, name, &s.labels, &[]);
        }
    }
    writer.family(
        "mailprobe_roundtrip_last_delivery_seconds",
        Kind::Gauge,
        "Round trips: delivery time of the last message found",
    );
    for one in series {
        let s = lock(one);
        if let Some(seconds) = s.roundtrip.as_ref().and_then(|r| r.last_delivery) {
            let name = "mailprobe_roundtrip_last_delivery_seconds";
            writer.sample(name, &s.labels, &[], Value::Float(seconds));
        }
    }
    writer.family(
        "mailprobe_roundtrip_late",
        Kind::Counter,
        "Round trips: messages a sweep found that arrived after their round had given up",
    );
    for one in series {
        let s = lock(one);
        if let Some(roundtrip) = &s.roundtrip {
            let value = Value::Count(roundtrip.late);
            writer.sample("mailprobe_roundtrip_late_total", &s.labels, &[], value);
        }
    }
}

/// The login families of the targets with `auth`.
fn login(writer: &mut Writer<'_>, series: &SeriesList) {
    let each = |writer: &mut Writer<'_>, write: &dyn Fn(&mut Writer<'_>, &str, &LoginSeries)| {
        for one in series {
            let s = lock(one);
            if let Some(login) = &s.login {
                write(writer, &s.labels, login);
            }
        }
    };
    writer.family(
        "mailprobe_auth_suspended",
        Kind::Gauge,
        "1 while the target's credential is held back after repeated rejected logins (so \
         the account is not locked out)",
    );
    each(writer, &|w, labels, login| {
        w.sample(
            "mailprobe_auth_suspended",
            labels,
            &[],
            Value::from(login.suspended),
        );
    });
    writer.family(
        "mailprobe_auth_last_attempt_timestamp_seconds",
        Kind::Gauge,
        "When the target's credential was last really sent (Unix time)",
    );
    each(writer, &|w, labels, login| {
        if let Some(at) = login.last_attempt {
            let name = "mailprobe_auth_last_attempt_timestamp_seconds";
            w.sample(name, labels, &[], Value::Float(at));
        }
    });
    writer.family(
        "mailprobe_oauth2_token_expiry_timestamp_seconds",
        Kind::Gauge,
        "When the OAuth2 access token the target last used expires (Unix time)",
    );
    each(writer, &|w, labels, login| {
        if let Some(at) = login.token_expiry {
            let name = "mailprobe_oauth2_token_expiry_timestamp_seconds";
            w.sample(name, labels, &[], Value::Float(at));
        }
    });
    writer.family(
        "mailprobe_oauth2_client_certificate_not_after_timestamp_seconds",
        Kind::Gauge,
        "notAfter of the certificate the target's OAuth2 client signs with (Unix time)",
    );
    each(writer, &|w, labels, login| {
        if let Some(not_after) = login.certificate_not_after {
            let name = "mailprobe_oauth2_client_certificate_not_after_timestamp_seconds";
            w.sample(name, labels, &[], Value::Int(not_after));
        }
    });
}

fn tls_and_mail(writer: &mut Writer<'_>, series: &SeriesList) {
    writer.family(
        "mailprobe_tls_cert_not_after_timestamp_seconds",
        Kind::Gauge,
        "notAfter of the leaf certificate the server presented (Unix time)",
    );
    for one in series {
        let s = lock(one);
        if let Some(not_after) = s.tls_not_after {
            let name = "mailprobe_tls_cert_not_after_timestamp_seconds";
            writer.sample(name, &s.labels, &[], Value::Int(not_after));
        }
    }
    writer.family(
        "mailprobe_tls_info",
        Kind::Gauge,
        "TLS version and certificate issuer of the last successful handshake",
    );
    for one in series {
        let s = lock(one);
        if let Some(info) = &s.tls_info {
            let labels = format!("{},{info}", s.labels);
            writer.sample("mailprobe_tls_info", &labels, &[], Value::Int(1));
        }
    }
    writer.family(
        "mailprobe_capability_info",
        Kind::Gauge,
        "Capabilities the mail server advertised (from a fixed list)",
    );
    for one in series {
        let s = lock(one);
        for index in &s.capabilities {
            let capability = ("capability", KNOWN_CAPABILITIES[*index]);
            writer.sample(
                "mailprobe_capability_info",
                &s.labels,
                &[capability],
                Value::Int(1),
            );
        }
    }
}

fn dns(writer: &mut Writer<'_>, series: &SeriesList) {
    writer.family(
        "mailprobe_dns_records",
        Kind::Gauge,
        "Records of the asked type in each resolver's answer",
    );
    for one in series {
        let s = lock(one);
        let Some(dns) = &s.dns else { continue };
        for resolver in &dns.resolvers {
            if let Some(records) = resolver.records {
                let labels = [
                    ("resolver", resolver.resolver.as_str()),
                    ("type", dns.record),
                ];
                writer.sample(
                    "mailprobe_dns_records",
                    &s.labels,
                    &labels,
                    Value::Count(records),
                );
            }
        }
    }
    writer.family(
        "mailprobe_dns_expected_match",
        Kind::Gauge,
        "1 if the resolver's answer equals `expect`",
    );
    for one in series {
        let s = lock(one);
        let Some(dns) = &s.dns else { continue };
        for resolver in &dns.resolvers {
            if let Some(matched) = resolver.expected_match {
                let labels = [("resolver", resolver.resolver.as_str())];
                let name = "mailprobe_dns_expected_match";
                writer.sample(name, &s.labels, &labels, Value::from(matched));
            }
        }
    }
    writer.family(
        "mailprobe_dns_consistent",
        Kind::Gauge,
        "1 if the site resolvers' answer equals a reference resolver's",
    );
    for one in series {
        let s = lock(one);
        if let Some(consistent) = s.dns.as_ref().and_then(|dns| dns.consistent) {
            writer.sample(
                "mailprobe_dns_consistent",
                &s.labels,
                &[],
                Value::from(consistent),
            );
        }
    }
    writer.family(
        "mailprobe_dns_lookup_duration_seconds",
        Kind::Gauge,
        "Time each resolver took to answer in the last probe",
    );
    for one in series {
        let s = lock(one);
        let Some(dns) = &s.dns else { continue };
        for resolver in &dns.resolvers {
            let labels = [("resolver", resolver.resolver.as_str())];
            let name = "mailprobe_dns_lookup_duration_seconds";
            writer.sample(name, &s.labels, &labels, Value::Float(resolver.duration));
        }
    }
}

fn http(writer: &mut Writer<'_>, series: &SeriesList) {
    writer.family(
        "mailprobe_http_status_code",
        Kind::Gauge,
        "HTTP status of the last answer (after redirects) in the last probe",
    );
    for one in series {
        let s = lock(one);
        if let Some((status, _)) = s.http {
            let value = Value::Int(i64::from(status));
            writer.sample("mailprobe_http_status_code", &s.labels, &[], value);
        }
    }
    writer.family(
        "mailprobe_http_redirects",
        Kind::Gauge,
        "Redirects followed in the last probe",
    );
    for one in series {
        let s = lock(one);
        if let Some((_, redirects)) = s.http {
            let value = Value::Int(i64::from(redirects));
            writer.sample("mailprobe_http_redirects", &s.labels, &[], value);
        }
    }
    writer.family(
        "mailprobe_autodiscover_info",
        Kind::Gauge,
        "What Autodiscover answered: the method that found it, the EWS URL and the server",
    );
    for one in series {
        let s = lock(one);
        if let Some(answer) = &s.autodiscover {
            let labels = format!("{},{answer}", s.labels);
            writer.sample("mailprobe_autodiscover_info", &labels, &[], Value::Int(1));
        }
    }
    writer.family(
        "mailprobe_autodiscover_changes",
        Kind::Counter,
        "Times the Autodiscover answer differed from the previous round's (a mailbox moved or upgraded)",
    );
    for one in series {
        let s = lock(one);
        if let Some(changes) = s.autodiscover_changes {
            let name = "mailprobe_autodiscover_changes_total";
            writer.sample(name, &s.labels, &[], Value::Count(changes));
        }
    }
}

/// The per-protocol phase histograms: every probe of every target of a protocol.
pub fn per_protocol(
    writer: &mut Writer<'_>,
    histograms: &[(&'static str, &'static str, Histogram)],
) {
    writer.family(
        "mailprobe_protocol_phase_seconds",
        Histogram::KIND,
        "Histogram of phase times over every target of a protocol",
    );
    for (protocol, phase, histogram) in histograms {
        let labels = super::text::label_pairs(&[("protocol", protocol)]);
        histogram.write(
            writer,
            "mailprobe_protocol_phase_seconds",
            &labels,
            ("phase", phase),
        );
    }
}

/// `mailprobe_site_fault`, one-hot over the site's own domains (a handful of series
/// per agent, so every one is always present).
pub fn site_fault(writer: &mut Writer<'_>, fault: Fault) {
    writer.family(
        "mailprobe_site_fault",
        Kind::Gauge,
        "The site's own fault domain (one-hot)",
    );
    for domain in Fault::SITE {
        let labels = [("domain", domain.as_metrics_label())];
        writer.sample(
            "mailprobe_site_fault",
            "",
            &labels,
            Value::from(domain == fault),
        );
    }
}

fn lock(series: &Mutex<SeriesState>) -> MutexGuard<'_, SeriesState> {
    // Plain values: a panic elsewhere cannot leave them half-written in a way worse
    // than losing one update.
    series.lock().unwrap_or_else(|p| p.into_inner())
}
