//! The listener's settings (`web:`) and what ad-hoc `/probe` requests may reach
//! (`probe_endpoint:`, the ad-hoc modules).

use std::net::IpAddr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_saphyr::Spanned;

use std::time::Duration;

use super::{duration, normalise_name, parse_host_port, read_file};
use crate::config::error::ErrorSite;
use crate::config::files::MAX_SECRET_BYTES;
use crate::config::raw::{DurationText, RawProbeEndpoint, RawWeb};
use crate::config::{
    AllowRule, Config, ConfigError, Endpoint, ProbeEndpoint, Protocol, SmtpTarget, Target,
    TargetSpec, TlsMode, WebConfig,
};

pub(super) fn validate_web(
    errors: &ErrorSite<'_>,
    raw: Option<&RawWeb>,
) -> Result<WebConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(WebConfig::default());
    };
    let tls = match &raw.tls_server_config {
        None => None,
        Some(tls) => {
            let cert_field = "web.tls_server_config.cert_file";
            let key_field = "web.tls_server_config.key_file";
            let cert_pem = read_file(errors, &tls.value.cert_file, cert_field, MAX_SECRET_BYTES)?;
            let key_pem = read_file(errors, &tls.value.key_file, key_field, MAX_SECRET_BYTES)?;
            let chain = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .ok()
                .filter(|chain| !chain.is_empty())
                .ok_or_else(|| {
                    errors.at(
                        tls.value.cert_file.referenced,
                        cert_field,
                        "holds no PEM certificate",
                    )
                })?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                errors.at(
                    tls.value.key_file.referenced,
                    key_field,
                    "holds no PEM private key",
                )
            })?;
            let config = rustls::ServerConfig::builder_with_provider(crate::probe::tls::provider())
                .with_safe_default_protocol_versions()
                .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, key))
                .map_err(|error| {
                    errors.at(
                        tls.referenced,
                        "web.tls_server_config",
                        format!("the certificate and key cannot be used: {error}"),
                    )
                })?;
            Some(Arc::new(config))
        }
    };
    let users = match &raw.basic_auth_users {
        None => Default::default(),
        Some(users) => {
            for (user, hash) in &users.value {
                let field = format!("web.basic_auth_users.{user}");
                // bcrypt hashes are `$2a$`, `$2b$` or `$2y$`, cost, salt and hash: 60 characters.
                let Some(cost) = bcrypt_cost(hash) else {
                    return Err(errors.at(
                        users.referenced,
                        field,
                        "is not a bcrypt hash (write the hash, never the password; e.g. `htpasswd -nBC 10 \"\" | tr -d ':'`)",
                    ));
                };
                if cost > MAX_BCRYPT_COST {
                    return Err(errors.at(
                        users.referenced,
                        field,
                        format!(
                            "has bcrypt cost {cost}: at most {MAX_BCRYPT_COST} (each check of a \
                             cost-{cost} hash takes seconds of CPU, which anyone can make the \
                             agent spend); `htpasswd -nBC 10` makes a cost-10 hash"
                        ),
                    ));
                }
            }
            users.value.clone()
        }
    };
    let defaults = WebConfig::default();
    let header_timeout = match &raw.header_timeout {
        Some(text) => positive(errors, text, "web.header_timeout")?,
        None => defaults.header_timeout,
    };
    let idle_timeout = match &raw.idle_timeout {
        Some(text) => positive(errors, text, "web.idle_timeout")?,
        None => defaults.idle_timeout,
    };
    let max_connections = match &raw.max_connections {
        None => defaults.max_connections,
        Some(max) => usize::try_from(max.value)
            .ok()
            .filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n))
            .ok_or_else(|| {
                errors.at(
                    max.referenced,
                    "web.max_connections",
                    format!(
                        "{} is out of range: it must be between 1 and {MAX_CONNECTIONS_LIMIT}",
                        max.value
                    ),
                )
            })?,
    };
    Ok(WebConfig {
        tls,
        basic_auth_users: Arc::new(users),
        header_timeout,
        idle_timeout,
        max_connections,
    })
}

/// The highest bcrypt cost accepted: a cost-14 check takes about a second of CPU; the
/// listener bounds how many run at once, but each one a stranger can trigger must stay
/// affordable.
pub(crate) const MAX_BCRYPT_COST: u32 = 14;
/// More client connections than this is a typo (each holds a file descriptor the
/// probes need).
const MAX_CONNECTIONS_LIMIT: usize = 4096;

/// The cost of a bcrypt hash (`$2b$10$…` → 10), when `hash` is one.
pub fn bcrypt_cost(hash: &str) -> Option<u32> {
    let mut parts = hash.split('$');
    let (empty, version, cost) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = empty.is_empty()
        && matches!(version, "2a" | "2b" | "2x" | "2y")
        && hash.len() == 60
        && cost.len() == 2;
    well_formed.then(|| cost.parse().ok()).flatten()
}

/// A duration longer than zero and at most [`MAX_DURATION`].
fn positive(
    errors: &ErrorSite<'_>,
    text: &Spanned<DurationText>,
    field: &str,
) -> Result<Duration, ConfigError> {
    let value = duration(errors, text, field)?;
    if value.is_zero() {
        return Err(errors.at(text.referenced, field, "must be longer than zero"));
    }
    Ok(value)
}

/// The ad-hoc `/probe` modules: a protocol and how it uses TLS. The port comes with
/// the target.
pub(crate) const MODULES: [(&str, Protocol, TlsMode); 9] = [
    ("tcp", Protocol::Tcp, TlsMode::None),
    ("tcp_tls", Protocol::Tcp, TlsMode::Implicit),
    ("imap", Protocol::Imap, TlsMode::Implicit),
    ("imap_starttls", Protocol::Imap, TlsMode::Starttls),
    ("pop3", Protocol::Pop3, TlsMode::Implicit),
    ("pop3_starttls", Protocol::Pop3, TlsMode::Starttls),
    ("smtp", Protocol::Smtp, TlsMode::Implicit),
    ("smtp_starttls", Protocol::Smtp, TlsMode::Starttls),
    ("smtp_plain", Protocol::Smtp, TlsMode::None),
];

/// A target for an ad-hoc probe of `host_port` with `module`, checked against
/// `probe_endpoint.allow`. It never logs in: ad-hoc probes have no credentials.
pub(crate) fn adhoc_target(
    config: &Config,
    module: &str,
    host_port: &str,
) -> Result<Target, AdhocError> {
    let (_, protocol, tls) = MODULES
        .iter()
        .find(|(name, _, _)| *name == module)
        .ok_or(AdhocError::UnknownModule)?;
    let target = parse_host_port(host_port).ok_or(AdhocError::BadTarget)?;
    if !config.probe_endpoint.permits(&target.host) {
        return Err(AdhocError::NotAllowed);
    }
    let endpoint = Endpoint {
        host: target.host.clone(),
        port: target.port,
        tls: *tls,
        server_name: target.host.clone(),
        extra_roots: Arc::clone(&config.tls_roots),
        auth: None,
    };
    let spec = match protocol {
        Protocol::Imap => TargetSpec::Imap(endpoint),
        Protocol::Pop3 => TargetSpec::Pop3(endpoint),
        Protocol::Smtp => TargetSpec::Smtp(SmtpTarget {
            endpoint,
            ehlo_name: default_ehlo_name(),
        }),
        _ => TargetSpec::Tcp(endpoint),
    };
    Ok(Target {
        name: Arc::from(target.to_string()),
        protocol: *protocol,
        interval: config.default_timeout,
        timeout: config.default_timeout,
        phase_histogram: false,
        spec,
    })
}

/// See [`super::default_ehlo_name`].
pub(crate) fn default_ehlo_name() -> String {
    super::target::local_host_name()
}

/// Why an ad-hoc probe was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdhocError {
    /// `module` is not one of the ad-hoc modules.
    UnknownModule,
    /// `target` is not `host:port`.
    BadTarget,
    /// The host is not in `probe_endpoint.allow`.
    NotAllowed,
}

pub(super) fn validate_probe_endpoint(
    errors: &ErrorSite<'_>,
    raw: &RawProbeEndpoint,
) -> Result<ProbeEndpoint, ConfigError> {
    let mut allow = Vec::with_capacity(raw.allow.len());
    for (index, entry) in raw.allow.iter().enumerate() {
        allow.push(allow_rule(&entry.value).ok_or_else(|| {
            errors.at(
                entry.referenced,
                format!("probe_endpoint.allow[{index}]"),
                not_a_host_rule(&entry.value),
            )
        })?);
    }
    Ok(ProbeEndpoint { allow })
}

/// One host rule: a name, `*.domain`, an address or a network such as `192.0.2.0/24`.
pub(super) fn allow_rule(text: &str) -> Option<AllowRule> {
    let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some((network, prefix)) = text.split_once('/') {
        let network: Option<IpAddr> = network.parse().ok();
        let prefix: Option<u8> = prefix.parse().ok();
        match (network, prefix) {
            (Some(network @ IpAddr::V4(_)), Some(prefix)) if prefix <= 32 => {
                Some(AllowRule::Network(network, prefix))
            }
            (Some(network @ IpAddr::V6(_)), Some(prefix)) if prefix <= 128 => {
                Some(AllowRule::Network(network, prefix))
            }
            _ => None,
        }
    } else if let Some(suffix) = text.strip_prefix("*.") {
        normalise_name(suffix).map(|_| AllowRule::Subdomains(format!(".{suffix}")))
    } else if text.parse::<IpAddr>().is_ok() || normalise_name(&text).is_some() {
        Some(AllowRule::Host(text))
    } else {
        None
    }
}

/// The message for a host rule that is none.
pub(super) fn not_a_host_rule(text: &str) -> String {
    format!("`{text}` is not a host name, `*.domain`, an address or a network such as 192.0.2.0/24")
}
