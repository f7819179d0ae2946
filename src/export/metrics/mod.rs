//! The Prometheus metric families and how a probe result updates them.
//!
//! One [`Metrics`] per agent, with its own registry (no global state). Label values
//! come only from the configuration (target names, resolver addresses) or from closed
//! enums (phase, reason, domain); the only server-supplied values are the short TLS
//! facts in `mailprobe_tls_info`.

mod exposition;
mod record;
mod roundtrip;
mod site;

pub use exposition::openmetrics_to_prometheus_text;
use roundtrip::RoundtripFamilies;
use site::{CanaryLabels, DomainLabels, GatewayLabels, NoLabels, SiteResolverLabels};

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Phase histogram buckets, in seconds: from a LAN round trip (1 ms) to a probe that
/// used most of a long timeout (30 s).
const PHASE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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

type FloatGauge = Gauge<f64, AtomicU64>;

/// The source revision `mailprobe_build_info` reports: set once by the binary (from
/// the `MAILPROBE_REVISION` its release build was given), `unknown` otherwise.
static BUILD_REVISION: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the revision `mailprobe_build_info{revision}` reports; the first call wins.
pub fn set_build_revision(revision: &'static str) {
    let _ = BUILD_REVISION.set(revision);
}

fn build_revision() -> &'static str {
    BUILD_REVISION.get().copied().unwrap_or("unknown")
}

/// The labels of one probe series: `target`, `protocol` and, for the checks of an
/// exchange target, `check`. Every per-target family starts with these.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Series {
    target: String,
    protocol: &'static str,
    check: Option<&'static str>,
}

impl EncodeLabelSet for Series {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("target", self.target.as_str()).encode(encoder.encode_label())?;
        ("protocol", self.protocol).encode(encoder.encode_label())?;
        // Absent rather than empty for the protocols without checks.
        if let Some(check) = self.check {
            ("check", check).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    #[prometheus(flatten)]
    series: Series,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    #[prometheus(flatten)]
    series: Series,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    #[prometheus(flatten)]
    series: Series,
    phase: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    #[prometheus(flatten)]
    series: Series,
    domain: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LastFailureLabels {
    #[prometheus(flatten)]
    series: Series,
    phase: &'static str,
    reason: &'static str,
    domain: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsInfoLabels {
    #[prometheus(flatten)]
    series: Series,
    version: String,
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsResolverLabels {
    #[prometheus(flatten)]
    series: Series,
    resolver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsRecordLabels {
    #[prometheus(flatten)]
    series: Series,
    resolver: String,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CapabilityLabels {
    #[prometheus(flatten)]
    series: Series,
    capability: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AutodiscoverLabels {
    #[prometheus(flatten)]
    series: Series,
    method: &'static str,
    ews_url: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// Label sets a target created from facts (not closed enums), remembered so they can
/// be replaced when the fact changes and removed when the target goes away.
#[derive(Debug, Default)]
struct FactSeries {
    last_failure: Option<LastFailureLabels>,
    tls_info: Option<TlsInfoLabels>,
    dns_resolvers: BTreeSet<String>,
    dns_types: BTreeSet<&'static str>,
    capabilities: BTreeSet<&'static str>,
    autodiscover: Option<AutodiscoverLabels>,
}

/// Every metric family the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    up: Family<Series, Gauge>,
    probe_duration: Family<Series, FloatGauge>,
    phase_duration: Family<PhaseLabels, FloatGauge>,
    phase_seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    probes: Family<ResultLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    fault: Family<FaultLabels, Gauge>,
    last_failure_info: Family<LastFailureLabels, Gauge>,
    last_success: Family<Series, FloatGauge>,
    tls_not_after: Family<Series, Gauge>,
    tls_info: Family<TlsInfoLabels, Gauge>,
    dns_records: Family<DnsRecordLabels, Gauge>,
    dns_expected_match: Family<DnsResolverLabels, Gauge>,
    dns_consistent: Family<Series, Gauge>,
    dns_lookup_duration: Family<DnsResolverLabels, FloatGauge>,
    capability_info: Family<CapabilityLabels, Gauge>,
    http_status_code: Family<Series, Gauge>,
    http_redirects: Family<Series, Gauge>,
    autodiscover_info: Family<AutodiscoverLabels, Gauge>,
    autodiscover_changes: Family<Series, Counter>,
    roundtrip: RoundtripFamilies,
    site_gateway_up: Family<NoLabels, Gauge>,
    site_gateway_info: Family<GatewayLabels, Gauge>,
    site_resolver_up: Family<SiteResolverLabels, Gauge>,
    site_resolver_duration: Family<SiteResolverLabels, FloatGauge>,
    site_canary_up: Family<CanaryLabels, Gauge>,
    site_fault: Family<DomainLabels, Gauge>,
    reload_successful: Gauge,
    reload_success_timestamp: FloatGauge,
    targets: Gauge,
    overruns: Counter,
    facts: Mutex<HashMap<Series, FactSeries>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn phase_histogram() -> Histogram {
    Histogram::new(PHASE_BUCKETS)
}

impl Metrics {
    /// Registers every family in a fresh registry.
    pub fn new() -> Self {
        Self::build(true)
    }

    /// Only the per-target families: the answer to one `/probe` request.
    pub fn probe_only() -> Self {
        Self::build(false)
    }

    fn build(agent_wide: bool) -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            up: Family::default(),
            probe_duration: Family::default(),
            phase_duration: Family::default(),
            phase_seconds: Family::new_with_constructor(phase_histogram),
            probes: Family::default(),
            failures: Family::default(),
            fault: Family::default(),
            last_failure_info: Family::default(),
            last_success: Family::default(),
            tls_not_after: Family::default(),
            tls_info: Family::default(),
            dns_records: Family::default(),
            dns_expected_match: Family::default(),
            dns_consistent: Family::default(),
            dns_lookup_duration: Family::default(),
            capability_info: Family::default(),
            http_status_code: Family::default(),
            http_redirects: Family::default(),
            autodiscover_info: Family::default(),
            autodiscover_changes: Family::default(),
            roundtrip: RoundtripFamilies::new(),
            site_gateway_up: Family::default(),
            site_gateway_info: Family::default(),
            site_resolver_up: Family::default(),
            site_resolver_duration: Family::default(),
            site_canary_up: Family::default(),
            site_fault: Family::default(),
            reload_successful: Gauge::default(),
            reload_success_timestamp: FloatGauge::default(),
            targets: Gauge::default(),
            overruns: Counter::default(),
            facts: Mutex::new(HashMap::new()),
        };
        let r = &mut registry;
        r.register(
            "mailprobe_up",
            "1 if the last probe of the target succeeded",
            m.up.clone(),
        );
        r.register(
            "mailprobe_probe_duration_seconds",
            "Total time of the last probe",
            m.probe_duration.clone(),
        );
        r.register(
            "mailprobe_phase_duration_seconds",
            "Time per phase in the last probe (phases that ran)",
            m.phase_duration.clone(),
        );
        r.register(
            "mailprobe_phase_seconds",
            "Histogram of phase times",
            m.phase_seconds.clone(),
        );
        r.register(
            "mailprobe_probes",
            "Probes run, by result",
            m.probes.clone(),
        );
        r.register(
            "mailprobe_failures",
            "Failed probes, by failing phase and reason",
            m.failures.clone(),
        );
        r.register(
            "mailprobe_fault",
            "Fault domain of the last probe (one-hot over every domain)",
            m.fault.clone(),
        );
        r.register(
            "mailprobe_last_failure_info",
            "The last failure while the target is failing",
            m.last_failure_info.clone(),
        );
        r.register(
            "mailprobe_last_success_timestamp_seconds",
            "When the target last succeeded (Unix time)",
            m.last_success.clone(),
        );
        r.register(
            "mailprobe_tls_cert_not_after_timestamp_seconds",
            "notAfter of the leaf certificate the server presented (Unix time)",
            m.tls_not_after.clone(),
        );
        r.register(
            "mailprobe_tls_info",
            "TLS version and certificate issuer of the last successful handshake",
            m.tls_info.clone(),
        );
        r.register(
            "mailprobe_dns_records",
            "Records of the asked type in each resolver's answer",
            m.dns_records.clone(),
        );
        r.register(
            "mailprobe_dns_expected_match",
            "1 if the resolver's answer equals `expect`",
            m.dns_expected_match.clone(),
        );
        r.register(
            "mailprobe_dns_consistent",
            "1 if the site resolvers' answer equals a reference resolver's",
            m.dns_consistent.clone(),
        );
        r.register(
            "mailprobe_dns_lookup_duration_seconds",
            "Time each resolver took to answer in the last probe",
            m.dns_lookup_duration.clone(),
        );
        r.register(
            "mailprobe_capability_info",
            "Capabilities the mail server advertised (from a fixed list)",
            m.capability_info.clone(),
        );
        r.register(
            "mailprobe_http_status_code",
            "HTTP status of the last answer (after redirects) in the last probe",
            m.http_status_code.clone(),
        );
        r.register(
            "mailprobe_http_redirects",
            "Redirects followed in the last probe",
            m.http_redirects.clone(),
        );
        r.register(
            "mailprobe_autodiscover_info",
            "What Autodiscover answered: the method that found it, the EWS URL and the server",
            m.autodiscover_info.clone(),
        );
        r.register(
            "mailprobe_autodiscover_changes",
            "Times the Autodiscover answer differed from the previous round's (a mailbox moved or upgraded)",
            m.autodiscover_changes.clone(),
        );
        m.roundtrip.register(r);
        // Agent-wide families: not in a `/probe` answer, which describes one probe.
        if agent_wide {
            r.register(
                "mailprobe_config_last_reload_successful",
                "1 if the last configuration (re)load succeeded",
                m.reload_successful.clone(),
            );
            r.register(
                "mailprobe_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully (Unix time)",
                m.reload_success_timestamp.clone(),
            );
            r.register(
                "mailprobe_site_gateway_up",
                "1 if the default gateway answered (ICMP echo, or TCP where ICMP is not permitted)",
                m.site_gateway_up.clone(),
            );
            r.register(
                "mailprobe_site_gateway_info",
                "The gateway checked and how",
                m.site_gateway_info.clone(),
            );
            r.register(
                "mailprobe_site_resolver_up",
                "1 if the resolver answered the site check (NOERROR, NXDOMAIN or NODATA)",
                m.site_resolver_up.clone(),
            );
            r.register(
                "mailprobe_site_resolver_duration_seconds",
                "Time the resolver took to answer the site check",
                m.site_resolver_duration.clone(),
            );
            r.register(
                "mailprobe_site_canary_up",
                "1 if the canary was reachable over TCP",
                m.site_canary_up.clone(),
            );
            r.register(
                "mailprobe_site_fault",
                "The site's own fault domain (one-hot)",
                m.site_fault.clone(),
            );
            r.register(
                "mailprobe_targets",
                "Targets in the running configuration",
                m.targets.clone(),
            );
            r.register(
                "mailprobe_probe_overruns",
                "Scheduled probes skipped because the previous one had not finished",
                m.overruns.clone(),
            );
            let build_info = Family::<BuildLabels, Gauge>::default();
            build_info
                .get_or_create(&BuildLabels {
                    version: env!("CARGO_PKG_VERSION"),
                    revision: build_revision(),
                })
                .set(1);
            r.register(
                "mailprobe_build_info",
                "Version and source revision of this build",
                build_info,
            );
            r.register_collector(Box::new(crate::export::process::ProcessCollector));
        }
        Metrics { registry, ..m }
    }

    /// Renders the registry as OpenMetrics text.
    ///
    /// # Errors
    ///
    /// Only when formatting into a `String` fails, which it does not in practice.
    pub fn render_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn facts_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Series, FactSeries>> {
        // The map only holds label sets; a panic elsewhere cannot leave it inconsistent
        // in a way that matters more than losing the metrics, so recover the guard.
        self.facts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
