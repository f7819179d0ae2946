//! A judged result as JSON: what `mailprobe probe --json` prints and the status API
//! serves. Field names are a documented contract (docs/endpoints.md).

use serde::Serialize;

use super::{Fault, Judged, site_fault, verdict};
use crate::probe::ProtocolFacts;
use crate::site::{GatewayState, SiteContext};

/// One judged result.
#[derive(Debug, Serialize)]
pub struct JudgedJson<'a> {
    /// The configured target name.
    pub target: &'a str,
    /// The Exchange check, for exchange targets.
    pub check: Option<&'static str>,
    /// The protocol.
    pub protocol: &'static str,
    /// What the target probes, in one line.
    pub describes: String,
    /// When the probe started (RFC 3339, UTC).
    pub started_at: String,
    /// Total time, in milliseconds.
    pub duration_ms: f64,
    /// The address connected to, when a connection was made.
    pub peer: Option<String>,
    /// Whether the probe succeeded.
    pub success: bool,
    /// Every phase that ran, in order.
    pub phases: Vec<PhaseJson>,
    /// The failure, if any.
    pub failure: Option<FailureJson<'a>>,
    /// The fault domain (`none` for a success).
    pub fault: &'static str,
    /// Whose side the fault domain is on, in words.
    pub side: &'static str,
    /// The help-desk sentence.
    pub verdict: String,
    /// The site snapshot the verdict rests on (`null`: none measured yet).
    pub site: Option<SiteJson>,
    /// TLS facts, when a handshake was attempted.
    pub tls: Option<TlsJson<'a>>,
    /// The protocol's own facts as one line (banner, HTTP status, DNS answers).
    pub facts: Option<String>,
    /// The login's state, for targets with credentials.
    pub login: Option<LoginJson<'a>>,
}

/// A target's login: held back or not, and the OAuth2 token's facts.
#[derive(Debug, Serialize)]
pub struct LoginJson<'a> {
    /// Whether the credential is held back after repeated rejections.
    pub suspended: bool,
    /// Rejected logins in a row.
    pub consecutive_failures: u32,
    /// When the credential was last sent (RFC 3339, UTC).
    pub last_attempt: Option<String>,
    /// While suspended: the earliest it is sent again (RFC 3339, UTC).
    pub next_attempt: Option<String>,
    /// OAuth2: the identity provider's host.
    pub identity_provider: Option<&'a str>,
    /// OAuth2: the SASL mechanism used.
    pub mechanism: Option<&'static str>,
    /// OAuth2: when the token used expires (RFC 3339, UTC).
    pub token_expiry: Option<String>,
    /// The step that is missing, when the provider's answer names one.
    pub missing_step: Option<&'a str>,
}

/// One phase.
#[derive(Debug, Serialize)]
pub struct PhaseJson {
    /// The phase label.
    pub phase: &'static str,
    /// Its duration, in milliseconds.
    pub duration_ms: f64,
}

/// The failure that ended a probe.
#[derive(Debug, Serialize)]
pub struct FailureJson<'a> {
    /// The failing phase.
    pub phase: &'static str,
    /// The reason label.
    pub reason: &'static str,
    /// What happened.
    pub message: &'a str,
}

/// TLS facts.
#[derive(Debug, Serialize)]
pub struct TlsJson<'a> {
    /// Negotiated version.
    pub version: Option<&'a str>,
    /// Issuer.
    pub issuer: Option<&'a str>,
    /// Subject.
    pub subject: Option<&'a str>,
    /// Leaf notAfter, Unix seconds.
    pub not_after: Option<i64>,
    /// Subject alternative names.
    pub sans: &'a [String],
}

/// A site snapshot.
#[derive(Debug, Serialize)]
pub struct SiteJson {
    /// When it was measured (RFC 3339, UTC).
    pub measured_at: String,
    /// The site's own fault domain (`mailprobe_site_fault`).
    pub fault: &'static str,
    /// The site's state in words.
    pub state: &'static str,
    /// The gateway: `not checked`, `no default route`, or its address and whether it
    /// answered.
    pub gateway: GatewayJson,
    /// Every resolver asked.
    pub resolvers: Vec<ResolverJson>,
    /// Every canary.
    pub canaries: Vec<CanaryJson>,
}

/// The gateway check.
#[derive(Debug, Serialize)]
pub struct GatewayJson {
    /// `not_checked`, `no_default_route` or `checked`.
    pub state: &'static str,
    /// Its address, when checked.
    pub address: Option<String>,
    /// Whether it answered, when checked.
    pub up: Option<bool>,
    /// `icmp` or `tcp`, when checked.
    pub method: Option<&'static str>,
}

/// One resolver's health.
#[derive(Debug, Serialize)]
pub struct ResolverJson {
    /// The resolver's address.
    pub resolver: String,
    /// `site` or `reference`.
    pub role: &'static str,
    /// Whether it answered.
    pub up: bool,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Why it is down.
    pub reason: Option<&'static str>,
}

/// One canary.
#[derive(Debug, Serialize)]
pub struct CanaryJson {
    /// `host:port`.
    pub canary: String,
    /// Whether it was reachable.
    pub up: bool,
}

impl<'a> JudgedJson<'a> {
    /// The JSON view of `judged`.
    pub fn of(judged: &'a Judged) -> JudgedJson<'a> {
        let result = &judged.result;
        let failure = result.failure();
        JudgedJson {
            target: &result.target,
            check: result.check.map(|c| c.as_str()),
            protocol: result.protocol.as_str(),
            describes: judged.target.describe(),
            started_at: humantime::format_rfc3339_millis(result.started_at).to_string(),
            duration_ms: milliseconds(result.duration),
            peer: result.peer.map(|p| p.to_string()),
            success: failure.is_none(),
            phases: result
                .phases
                .iter()
                .map(|timing| PhaseJson {
                    phase: timing.phase.as_metrics_label(),
                    duration_ms: milliseconds(timing.duration),
                })
                .collect(),
            failure: failure.map(|f| FailureJson {
                phase: f.phase.as_metrics_label(),
                reason: f.kind.as_metrics_label(),
                message: &f.message,
            }),
            fault: judged.fault.as_metrics_label(),
            side: match judged.fault {
                Fault::None => "none",
                fault => verdict::side(fault),
            },
            verdict: verdict::sentence(judged),
            site: judged.site.as_deref().map(SiteJson::of),
            tls: result.tls.as_ref().map(|tls| TlsJson {
                version: tls.version.as_deref(),
                issuer: tls.issuer.as_deref(),
                subject: tls.subject.as_deref(),
                not_after: tls.not_after,
                sans: &tls.sans,
            }),
            facts: match &result.facts {
                ProtocolFacts::None => None,
                ProtocolFacts::Http(http) => Some(http.to_string()),
                ProtocolFacts::Roundtrip(roundtrip) => Some(roundtrip.lines().join("; ")),
                ProtocolFacts::Mail(mail) => Some(format!(
                    "banner: {}; capabilities: {}; login: {}",
                    mail.banner,
                    mail.capabilities.keywords_text(),
                    mail.capabilities.mechanisms_text()
                )),
                ProtocolFacts::Dns(dns) => Some(
                    dns.answers
                        .iter()
                        .map(|answer| {
                            let said = match &answer.outcome {
                                Ok(records) => records.join(", "),
                                Err(error) => error.kind.to_string(),
                            };
                            format!("{} {}: {said}", answer.role.as_str(), answer.resolver)
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
            },
            login: result.login.as_ref().map(|login| {
                let time =
                    |at: std::time::SystemTime| humantime::format_rfc3339_seconds(at).to_string();
                LoginJson {
                    suspended: login.suspended,
                    consecutive_failures: login.consecutive_failures,
                    last_attempt: login.last_attempt.map(time),
                    next_attempt: login.next_attempt.map(time),
                    identity_provider: login.identity_provider.as_deref(),
                    mechanism: login.mechanism,
                    token_expiry: login.token_expiry.map(time),
                    missing_step: login.advice.as_deref(),
                }
            }),
        }
    }
}

impl SiteJson {
    /// The JSON view of a site snapshot.
    pub fn of(site: &SiteContext) -> SiteJson {
        let fault = site_fault(site);
        SiteJson {
            measured_at: humantime::format_rfc3339_millis(site.measured_at).to_string(),
            fault: fault.as_metrics_label(),
            state: verdict::site_state(fault),
            gateway: match &site.gateway {
                GatewayState::NotChecked => GatewayJson {
                    state: "not_checked",
                    address: None,
                    up: None,
                    method: None,
                },
                GatewayState::NoDefaultRoute => GatewayJson {
                    state: "no_default_route",
                    address: None,
                    up: Some(false),
                    method: None,
                },
                GatewayState::Checked {
                    address,
                    up,
                    method,
                } => GatewayJson {
                    state: "checked",
                    address: Some(address.to_string()),
                    up: Some(*up),
                    method: Some(method.as_str()),
                },
            },
            resolvers: site
                .resolvers
                .iter()
                .map(|r| ResolverJson {
                    resolver: r.resolver.clone(),
                    role: r.role.as_str(),
                    up: r.up,
                    duration_ms: milliseconds(r.duration),
                    reason: r.error.map(|kind| kind.as_metrics_label()),
                })
                .collect(),
            canaries: site
                .canaries
                .iter()
                .map(|c| CanaryJson {
                    canary: c.canary.clone(),
                    up: c.up,
                })
                .collect(),
        }
    }
}

fn milliseconds(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}
