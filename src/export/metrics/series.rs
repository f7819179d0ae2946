//! What one probe series (a target, or one check of an exchange target) exports, kept
//! as plain values behind its own lock: recording a result locks only its series, for
//! microseconds, and a render locks each series only while writing it.

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use super::histogram::{DELIVERY_BUCKETS, Histogram, PHASE_BUCKETS};
use super::text::label_pairs;
use crate::config::{ExchangeCheck, Protocol, RecordKind};
use crate::judge::{Fault, Judged};
use crate::probe::{ErrorKind, LoginFacts, Phase, ProbeResult, ProtocolFacts};

/// The capability flags exported as `mailprobe_capability_info`: a closed list, so a
/// server cannot create label values. SASL mechanisms appear as `AUTH=<MECHANISM>`
/// for every protocol; POP3's STLS is reported as STARTTLS.
pub const KNOWN_CAPABILITIES: [&str; 22] = [
    "STARTTLS",
    "LOGINDISABLED",
    "AUTH=PLAIN",
    "AUTH=LOGIN",
    "AUTH=CRAM-MD5",
    "AUTH=XOAUTH2",
    "AUTH=OAUTHBEARER",
    "AUTH=GSSAPI",
    "AUTH=NTLM",
    "SASL-IR",
    "IDLE",
    "IMAP4REV2",
    "ID",
    "SIZE",
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "ENHANCEDSTATUSCODES",
    "USER",
    "UIDL",
    "TOP",
];

/// The most characters of a server-supplied fact (TLS issuer) that become a label.
const MAX_FACT_LABEL_LEN: usize = 64;
/// The most characters of a URL from a server's answer (the Autodiscover EWS URL)
/// that become a label: on-premises EWS URLs run to about 60 characters.
const MAX_URL_LABEL_LEN: usize = 128;

/// Everything one series exports.
#[derive(Debug)]
pub struct SeriesState {
    /// `target="…",protocol="…"[,check="…"]`, escaped once.
    pub labels: Box<str>,
    /// Whether this series keeps its own phase histograms (`phase_histogram: true`).
    pub histograms: Option<Box<[Option<Histogram>; Phase::ALL.len()]>>,
    /// Whether it has been probed at all (gauges appear from the first probe).
    pub probed: bool,
    /// Whether the last probe succeeded.
    pub up: bool,
    /// The last probe's total time, seconds.
    pub duration: f64,
    /// The last probe's time per phase that ran (summed over repeats), seconds.
    pub phases: [Option<f64>; Phase::ALL.len()],
    /// Probes run: successes, failures.
    pub probes: [u64; 2],
    /// Failed probes by failing phase and reason.
    pub failures: Vec<(Phase, ErrorKind, u64)>,
    /// The last probe's fault domain.
    pub fault: Fault,
    /// The last failure while failing.
    pub last_failure: Option<(Phase, ErrorKind, Fault)>,
    /// When the series last succeeded (Unix seconds).
    pub last_success: Option<f64>,
    /// The leaf certificate's notAfter (Unix seconds), once seen.
    pub tls_not_after: Option<i64>,
    /// TLS version and issuer of the last completed handshake, escaped label pairs.
    pub tls_info: Option<Box<str>>,
    /// Capabilities advertised (indexes into [`KNOWN_CAPABILITIES`]), once asked.
    pub capabilities: BTreeSet<usize>,
    /// HTTP status of the last answer (0: none) and redirects followed.
    pub http: Option<(u16, u32)>,
    /// The Autodiscover answer, escaped label pairs, and how often it changed.
    pub autodiscover: Option<Box<str>>,
    /// Changes of the Autodiscover answer (present once the check answered).
    pub autodiscover_changes: Option<u64>,
    /// DNS targets: what each resolver said.
    pub dns: Option<DnsSeries>,
    /// Round trips: delivery times and late messages (present from the start).
    pub roundtrip: Option<RoundtripSeries>,
    /// Targets with `auth`: the login's state.
    pub login: Option<LoginSeries>,
}

/// A round trip's own series.
#[derive(Debug)]
pub struct RoundtripSeries {
    /// Every delivery time observed, seconds.
    pub delivery: Histogram,
    /// The last delivery time, once a message was found.
    pub last_delivery: Option<f64>,
    /// Messages a sweep found that arrived after their round gave up.
    pub late: u64,
}

/// A target's login: held back or not, and the dates an OAuth2 login depends on.
#[derive(Debug, Default)]
pub struct LoginSeries {
    /// Whether the credential is held back after repeated rejections.
    pub suspended: bool,
    /// When the credential was last really sent (Unix seconds).
    pub last_attempt: Option<f64>,
    /// When the access token last used expires (Unix seconds); kept while a probe
    /// learns none (a held-back login asks for no token).
    pub token_expiry: Option<f64>,
    /// The OAuth2 client certificate's notAfter (Unix seconds).
    pub certificate_not_after: Option<i64>,
}

/// A DNS target's per-resolver series.
#[derive(Debug, Default)]
pub struct DnsSeries {
    /// The record type asked (`type` label).
    pub record: &'static str,
    /// Per resolver (escaped `resolver` value): records, expected match, duration.
    pub resolvers: Vec<ResolverSeries>,
    /// Whether the site answer equals a reference answer.
    pub consistent: Option<bool>,
}

/// One resolver's answer in a DNS target's last probe.
#[derive(Debug)]
pub struct ResolverSeries {
    /// The resolver label value.
    pub resolver: String,
    /// Records in its answer (0 for NXDOMAIN/NODATA; `None`: no answer).
    pub records: Option<u64>,
    /// Whether its answer equals `expect`.
    pub expected_match: Option<bool>,
    /// How long it took, seconds.
    pub duration: f64,
}

impl SeriesState {
    /// A series that has not been probed yet.
    pub fn new(
        target: &str,
        protocol: Protocol,
        check: Option<ExchangeCheck>,
        histograms: bool,
    ) -> Self {
        let mut pairs = vec![("target", target), ("protocol", protocol.as_str())];
        if let Some(check) = check {
            pairs.push(("check", check.as_str()));
        }
        SeriesState {
            labels: label_pairs(&pairs).into_boxed_str(),
            histograms: histograms.then(|| Box::new(std::array::from_fn(|_| None))),
            probed: false,
            up: false,
            duration: 0.0,
            phases: [None; Phase::ALL.len()],
            probes: [0; 2],
            failures: Vec::new(),
            fault: Fault::Unknown,
            last_failure: None,
            last_success: None,
            tls_not_after: None,
            tls_info: None,
            capabilities: BTreeSet::new(),
            http: None,
            autodiscover: None,
            autodiscover_changes: None,
            dns: None,
            roundtrip: (protocol == Protocol::Roundtrip).then(|| RoundtripSeries {
                delivery: Histogram::new(&DELIVERY_BUCKETS),
                last_delivery: None,
                late: 0,
            }),
            login: None,
        }
    }

    /// Updates every value from one judged result; returns the phase times observed
    /// (for the per-protocol histograms).
    pub fn record(&mut self, judged: &Judged, now: f64) -> [Option<f64>; Phase::ALL.len()] {
        let result = &judged.result;
        self.probed = true;
        self.up = result.is_success();
        self.duration = result.duration.as_secs_f64();
        self.phases = phase_times(result);
        if let Some(histograms) = &mut self.histograms {
            for (slot, seconds) in histograms.iter_mut().zip(self.phases) {
                if let Some(seconds) = seconds {
                    slot.get_or_insert_with(|| Histogram::new(&PHASE_BUCKETS))
                        .observe(seconds);
                }
            }
        }
        self.probes[usize::from(!result.is_success())] += 1;
        self.fault = judged.fault;
        match result.failure() {
            Some(failure) => {
                match self
                    .failures
                    .iter_mut()
                    .find(|(phase, kind, _)| (*phase, *kind) == (failure.phase, failure.kind))
                {
                    Some((_, _, count)) => *count += 1,
                    None => self.failures.push((failure.phase, failure.kind, 1)),
                }
                self.last_failure = Some((failure.phase, failure.kind, judged.fault));
            }
            None => {
                self.last_failure = None;
                self.last_success = Some(now);
            }
        }
        self.record_tls(result);
        if let Some(login) = &result.login {
            self.record_login(login);
        }
        match &result.facts {
            ProtocolFacts::Dns(dns) => self.record_dns(dns),
            ProtocolFacts::Mail(mail) => self.record_capabilities(result, mail),
            ProtocolFacts::Http(http) => self.record_http(&judged.result.target, http),
            ProtocolFacts::Roundtrip(roundtrip) => self.record_roundtrip(roundtrip),
            ProtocolFacts::None => {}
        }
        self.phases
    }

    fn record_roundtrip(&mut self, facts: &crate::probe::roundtrip::RoundtripFacts) {
        let series = self.roundtrip.get_or_insert_with(|| RoundtripSeries {
            delivery: Histogram::new(&DELIVERY_BUCKETS),
            last_delivery: None,
            late: 0,
        });
        if let Some(delivery) = facts.delivery() {
            let seconds = delivery.as_secs_f64();
            series.delivery.observe(seconds);
            series.last_delivery = Some(seconds);
        }
        series.late += facts.late();
    }

    fn record_login(&mut self, login: &LoginFacts) {
        let unix = |at: SystemTime| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        };
        let series = self.login.get_or_insert_with(LoginSeries::default);
        series.suspended = login.suspended;
        if let Some(at) = login.last_attempt {
            series.last_attempt = Some(unix(at));
        }
        if let Some(expiry) = login.token_expiry {
            series.token_expiry = Some(unix(expiry));
        }
        if let Some(not_after) = login.client_certificate_not_after {
            series.certificate_not_after = Some(not_after);
        }
    }

    fn record_tls(&mut self, result: &ProbeResult) {
        let Some(tls) = &result.tls else { return };
        if let Some(not_after) = tls.not_after {
            self.tls_not_after = Some(not_after);
        }
        // Version and issuer are only known for sure after a completed handshake.
        if let (Some(version), Some(issuer)) = (&tls.version, &tls.issuer) {
            let version = sanitise_label(version, MAX_FACT_LABEL_LEN);
            let issuer = sanitise_label(issuer, MAX_FACT_LABEL_LEN);
            self.tls_info =
                Some(label_pairs(&[("version", &version), ("issuer", &issuer)]).into_boxed_str());
        }
    }

    fn record_capabilities(&mut self, result: &ProbeResult, mail: &crate::probe::mail::MailFacts) {
        // Only a session that got its capability answer knows them; a failure before
        // that leaves the last known list in place.
        let asked = result.phases.iter().any(|p| p.phase == Phase::Request);
        let answered = result.failure().is_none_or(|f| f.phase != Phase::Request);
        if !(asked && answered) {
            return;
        }
        self.capabilities = KNOWN_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(_, known)| match known.strip_prefix("AUTH=") {
                Some(mechanism) => mail.capabilities.offers_auth(mechanism),
                None => mail.capabilities.has(known),
            })
            .map(|(index, _)| index)
            .collect();
    }

    fn record_http(&mut self, target: &str, http: &crate::probe::http::HttpFacts) {
        self.http = Some((http.status.unwrap_or(0), http.redirects));
        let Some(answer) = &http.autodiscover else {
            // A failed round keeps the last answer: the change count compares answers.
            return;
        };
        let ews_url = sanitise_label(&answer.ews_url, MAX_URL_LABEL_LEN);
        let server = sanitise_label(&answer.server, MAX_URL_LABEL_LEN);
        let labels = label_pairs(&[
            ("method", answer.method.as_str()),
            ("ews_url", &ews_url),
            ("server", &server),
        ])
        .into_boxed_str();
        let changes = self.autodiscover_changes.get_or_insert(0);
        if let Some(old) = &self.autodiscover
            && *old != labels
        {
            tracing::info!(
                target = %target,
                from = %old,
                to = %labels,
                "the Autodiscover answer changed"
            );
            *changes += 1;
        }
        self.autodiscover = Some(labels);
    }

    fn record_dns(&mut self, dns: &crate::probe::dns::DnsFacts) {
        let series = self.dns.get_or_insert_with(DnsSeries::default);
        series.record = dns.record.map_or("", RecordKind::as_str);
        for answer in &dns.answers {
            let records = match &answer.outcome {
                Ok(found) => Some(u64::try_from(found.len()).unwrap_or(u64::MAX)),
                // A negative answer is an answer: zero records.
                Err(e) if matches!(e.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata) => {
                    Some(0)
                }
                // No answer at all: the count is unknown, so no series.
                Err(_) => None,
            };
            let entry = match series
                .resolvers
                .iter_mut()
                .position(|r| r.resolver == answer.resolver)
            {
                Some(index) => &mut series.resolvers[index],
                None => {
                    series.resolvers.push(ResolverSeries {
                        resolver: answer.resolver.clone(),
                        records: None,
                        expected_match: None,
                        duration: 0.0,
                    });
                    series.resolvers.last_mut().expect("pushed just above")
                }
            };
            entry.records = records;
            entry.expected_match = answer.expected_match;
            entry.duration = answer.duration.as_secs_f64();
        }
        series.consistent = dns.consistent;
    }
}

/// Each phase's time in `result` (a phase that ran more than once — every redirect hop
/// resolves, connects and handshakes again — is the sum), `None` for phases that did
/// not run.
pub fn phase_times(result: &ProbeResult) -> [Option<f64>; Phase::ALL.len()] {
    let mut times = [None; Phase::ALL.len()];
    for timing in &result.phases {
        let index = phase_index(timing.phase);
        *times[index].get_or_insert(0.0) += timing.duration.as_secs_f64();
    }
    times
}

/// The position of `phase` in [`Phase::ALL`].
pub fn phase_index(phase: Phase) -> usize {
    Phase::ALL
        .iter()
        .position(|p| *p == phase)
        .expect("Phase::ALL lists every phase")
}

/// `text` as a label value: printable ASCII only, at most `max` characters.
pub fn sanitise_label(text: &str, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_facts_are_bounded_printable_labels() {
        let long = "A\u{7}".repeat(100);
        let clean = sanitise_label(&long, MAX_FACT_LABEL_LEN);
        assert_eq!(clean.len(), MAX_FACT_LABEL_LEN);
        assert!(clean.chars().all(|c| c == 'A' || c == '?'));
    }
}
