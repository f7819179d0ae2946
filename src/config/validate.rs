//! Raw configuration → [`Config`]: every check, each with its own message and position.
//! The document-wide settings are checked here, each target in [`target`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_saphyr::{Location, Spanned};

mod target;

use super::error::{ErrorSite, Position};
use super::raw::{DurationText, RawConfig, RawProbeEndpoint, RawSite, RawWeb, ResolverList};
use super::{
    AllowRule, Config, ConfigError, DEFAULT_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT_PROBES, DEFAULT_TIMEOUT, Endpoint, Gateway, HostPort, ProbeEndpoint,
    Protocol, Site, SiteResolvers, SmtpTarget, Target, TargetSpec, TlsMode, WebConfig,
};

/// The standard DNS port, used when a resolver is written without one.
const DNS_PORT: u16 = 53;
/// More parallel probes than this exhausts a default file-descriptor limit long before
/// it helps; a typo such as `1000000` should be caught.
const MAX_CONCURRENT_PROBES_LIMIT: i64 = 65_536;

/// A duration together with where it was written, if it was written at all.
#[derive(Clone)]
struct Setting {
    value: Duration,
    origin: Option<(Location, String)>,
}

struct Validator<'a> {
    site: ErrorSite<'a>,
    /// Trust anchors from `tls.ca_file`, shared by every target.
    global_roots: Vec<CertificateDer<'static>>,
    interval: Setting,
    timeout: Setting,
}

pub(super) fn validate(raw: RawConfig, file: &Path) -> Result<Config, ConfigError> {
    let errors = ErrorSite { file };
    let listen = match &raw.listen {
        Some(listen) => parse_socket_addr(&listen.value, None).ok_or_else(|| {
            errors.at(
                listen.referenced,
                "listen",
                format!(
                    "`{}` is not an IP address and port, such as `0.0.0.0:9925` or `[::]:9925`",
                    listen.value
                ),
            )
        })?,
        None => DEFAULT_LISTEN
            .parse()
            .expect("DEFAULT_LISTEN is a valid socket address literal"),
    };
    let max_concurrent_probes = match &raw.max_concurrent_probes {
        Some(max) if (1..=MAX_CONCURRENT_PROBES_LIMIT).contains(&max.value) => max.value as usize,
        Some(max) => {
            return Err(errors.at(
                max.referenced,
                "max_concurrent_probes",
                format!(
                    "{} is out of range: it must be between 1 and {MAX_CONCURRENT_PROBES_LIMIT}",
                    max.value
                ),
            ));
        }
        None => DEFAULT_MAX_CONCURRENT_PROBES,
    };
    let defaults = raw.defaults.unwrap_or_default();
    let interval = setting(
        &errors,
        defaults.interval.as_ref(),
        "defaults.interval",
        DEFAULT_INTERVAL,
    )?;
    let timeout = setting(
        &errors,
        defaults.timeout.as_ref(),
        "defaults.timeout",
        DEFAULT_TIMEOUT,
    )?;
    let start_jitter = match &defaults.start_jitter {
        // Zero is meaningful here (probe everything at once on start), so this is not
        // a `setting`, which rejects zero.
        Some(text) => Some(duration(&errors, text, "defaults.start_jitter")?),
        None => None,
    };
    let global_roots = match raw.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
        Some(ca_file) => load_roots(&errors, ca_file, "tls.ca_file")?,
        None => Vec::new(),
    };
    let site = validate_site(&errors, &raw.site.unwrap_or_default())?;
    let web = validate_web(&errors, raw.web.as_ref())?;
    let probe_endpoint = validate_probe_endpoint(&errors, &raw.probe_endpoint.unwrap_or_default())?;
    let tls_roots: Arc<[CertificateDer<'static>]> = global_roots.clone().into();
    let default_timeout = timeout.value;
    let validator = Validator {
        site: errors,
        global_roots,
        interval,
        timeout,
    };

    let Some(targets) = &raw.targets else {
        return Err(errors.at(
            Position::START,
            "targets",
            "no targets: add at least one entry under `targets:`",
        ));
    };
    if targets.value.is_empty() {
        return Err(errors.at(
            targets.referenced,
            "targets",
            "no targets: add at least one entry under `targets:`",
        ));
    }
    let mut seen: HashMap<&str, Location> = HashMap::new();
    let mut validated = Vec::with_capacity(targets.value.len());
    let mut discover = Vec::new();
    for (index, entry) in targets.value.iter().enumerate() {
        let field = format!("targets[{index}]");
        if entry.value.protocol.is_none() && entry.value.domain.is_some() {
            discover.push(validator.discovery(entry, &field)?);
            continue;
        }
        let name = target::target_name(&errors, entry, &field)?;
        if let Some(first) = seen.get(name.value.as_str()) {
            return Err(errors.at(
                name.referenced,
                format!("{field}.name"),
                format!(
                    "duplicate target name `{}` (first used at line {}): give each target a \
                     unique name",
                    name.value,
                    first.line()
                ),
            ));
        }
        seen.insert(&name.value, name.referenced);
        validated.extend(
            validator
                .target(entry, &name.value, &field)?
                .into_iter()
                .map(Arc::new),
        );
    }
    Ok(Config {
        source: file.to_path_buf(),
        listen,
        max_concurrent_probes,
        start_jitter,
        site,
        probe_endpoint,
        web,
        tls_roots,
        default_timeout,
        targets: validated,
        discover,
    })
}

fn validate_web(errors: &ErrorSite<'_>, raw: Option<&RawWeb>) -> Result<WebConfig, ConfigError> {
    let Some(raw) = raw else {
        return Ok(WebConfig::default());
    };
    let tls = match &raw.tls_server_config {
        None => None,
        Some(tls) => {
            let read = |path: &Spanned<std::path::PathBuf>, field: &str| {
                std::fs::read(&path.value).map_err(|error| {
                    errors.at(
                        path.referenced,
                        field,
                        format!("cannot read `{}`: {error}", path.value.display()),
                    )
                })
            };
            let cert_field = "web.tls_server_config.cert_file";
            let key_field = "web.tls_server_config.key_file";
            let cert_pem = read(&tls.value.cert_file, cert_field)?;
            let key_pem = read(&tls.value.key_file, key_field)?;
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
                // bcrypt hashes are `$2a$`, `$2b$` or `$2y$`, cost, salt and hash: 60 characters.
                if !(hash.starts_with("$2") && hash.len() == 60) {
                    return Err(errors.at(
                        users.referenced,
                        format!("web.basic_auth_users.{user}"),
                        "is not a bcrypt hash (write the hash, never the password; e.g. `htpasswd -nBC 10 \"\" | tr -d ':'`)",
                    ));
                }
            }
            users.value.clone()
        }
    };
    Ok(WebConfig {
        tls,
        basic_auth_users: Arc::new(users),
    })
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
        spec,
    })
}

/// See [`super::default_ehlo_name`].
pub(crate) fn default_ehlo_name() -> String {
    target::local_host_name()
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

fn validate_probe_endpoint(
    errors: &ErrorSite<'_>,
    raw: &RawProbeEndpoint,
) -> Result<ProbeEndpoint, ConfigError> {
    let mut allow = Vec::with_capacity(raw.allow.len());
    for (index, entry) in raw.allow.iter().enumerate() {
        let text = entry
            .value
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let rule = if let Some((network, prefix)) = text.split_once('/') {
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
        };
        allow.push(rule.ok_or_else(|| {
            errors.at(
                entry.referenced,
                format!("probe_endpoint.allow[{index}]"),
                format!(
                    "`{}` is not a host name, `*.domain`, an address or a network such as 192.0.2.0/24",
                    entry.value
                ),
            )
        })?);
    }
    Ok(ProbeEndpoint { allow })
}

/// Lower case with a trailing dot; `None` when it is not a plausible DNS name.
pub(crate) fn normalise_name(name: &str) -> Option<String> {
    let trimmed = name.trim().trim_end_matches('.');
    let valid = !trimmed.is_empty()
        && trimmed.len() <= 253
        && trimmed.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    valid.then(|| format!("{}.", trimmed.to_ascii_lowercase()))
}

fn validate_site(errors: &ErrorSite<'_>, raw: &RawSite) -> Result<Site, ConfigError> {
    let gateway = match &raw.gateway {
        None => Gateway::Auto,
        Some(g) if g.value == "auto" => Gateway::Auto,
        Some(g) if g.value == "none" => Gateway::None,
        Some(g) => Gateway::Address(g.value.parse().map_err(|_| {
            errors.at(
                g.referenced,
                "site.gateway",
                format!("`{}` is not `auto`, `none` or an IP address", g.value),
            )
        })?),
    };
    let resolvers = match &raw.resolvers {
        None => SiteResolvers::System,
        Some(list) => match &list.value {
            ResolverList::System => SiteResolvers::System,
            ResolverList::Addresses(addresses) if addresses.is_empty() => {
                return Err(errors.at(
                    list.referenced,
                    "site.resolvers",
                    "the list is empty: write `system` or at least one address",
                ));
            }
            ResolverList::Addresses(addresses) => {
                let mut parsed = Vec::with_capacity(addresses.len());
                for (index, address) in addresses.iter().enumerate() {
                    parsed.push(parse_socket_addr(address, Some(DNS_PORT)).ok_or_else(|| {
                        errors.at(
                            list.referenced,
                            format!("site.resolvers[{index}]"),
                            format!("`{address}` is not an IP address or address:port"),
                        )
                    })?);
                }
                SiteResolvers::List(parsed)
            }
        },
    };
    let mut reference_resolvers = Vec::new();
    for (index, address) in raw.reference_resolvers.iter().flatten().enumerate() {
        reference_resolvers.push(
            parse_socket_addr(&address.value, Some(DNS_PORT)).ok_or_else(|| {
                errors.at(
                    address.referenced,
                    format!("site.reference_resolvers[{index}]"),
                    format!("`{}` is not an IP address or address:port", address.value),
                )
            })?,
        );
    }
    let mut canaries = Vec::new();
    for (index, canary) in raw.canaries.iter().flatten().enumerate() {
        canaries.push(parse_host_port(&canary.value).ok_or_else(|| {
            errors.at(
                canary.referenced,
                format!("site.canaries[{index}]"),
                format!("`{}` is not host:port", canary.value),
            )
        })?);
    }
    Ok(Site {
        gateway,
        resolvers,
        reference_resolvers,
        canaries,
    })
}

fn setting(
    errors: &ErrorSite<'_>,
    text: Option<&Spanned<DurationText>>,
    field: &str,
    default: Duration,
) -> Result<Setting, ConfigError> {
    let Some(text) = text else {
        return Ok(Setting {
            value: default,
            origin: None,
        });
    };
    let value = duration(errors, text, field)?;
    if value.is_zero() {
        return Err(errors.at(text.referenced, field, "must be longer than zero"));
    }
    Ok(Setting {
        value,
        origin: Some((text.referenced, field.to_owned())),
    })
}

/// A duration as written (`30s`, `2m`, `1m30s`). humantime's own errors (`expected
/// number at 0`) describe its parser, not the fix, so the message is ours.
fn duration(
    errors: &ErrorSite<'_>,
    text: &Spanned<DurationText>,
    field: &str,
) -> Result<Duration, ConfigError> {
    let written = text.value.0.trim();
    humantime::parse_duration(written).map_err(|_| {
        let message = if written.parse::<u64>().is_ok() {
            format!("`{written}` has no unit: write e.g. `{written}s` for seconds")
        } else {
            format!(
                "`{written}` is not a duration: write a whole number with a unit, such as \
                 `30s`, `2m` or `1m30s`"
            )
        };
        errors.at(text.referenced, field, message)
    })
}

fn check_interval_covers_timeout(
    errors: &ErrorSite<'_>,
    interval: &Setting,
    timeout: &Setting,
    target_field: &str,
) -> Result<(), ConfigError> {
    if timeout.value <= interval.value {
        return Ok(());
    }
    let message = format!(
        "interval {} is shorter than timeout {}: a probe must be able to finish before \
         the next one is due",
        humantime::format_duration(interval.value),
        humantime::format_duration(timeout.value)
    );
    // Point at whichever of the two the user wrote closest to this target.
    let (at, field) = interval
        .origin
        .clone()
        .filter(|(_, f)| f.starts_with(target_field))
        .or_else(|| timeout.origin.clone())
        .or_else(|| interval.origin.clone())
        .map(|(at, field)| (Position::from(at), field))
        .unwrap_or((Position::START, format!("{target_field}.interval")));
    Err(errors.at(at, field, message))
}

fn check_port(
    errors: &ErrorSite<'_>,
    port: &Spanned<i64>,
    field: &str,
) -> Result<u16, ConfigError> {
    u16::try_from(port.value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            errors.at(
                port.referenced,
                field,
                format!("port {} is out of range (1-65535)", port.value),
            )
        })
}

fn check_host(
    errors: &ErrorSite<'_>,
    host: &Spanned<String>,
    field: &str,
) -> Result<(), ConfigError> {
    let bare = host.value.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() || normalise_name(bare).is_some() {
        Ok(())
    } else {
        Err(errors.at(
            host.referenced,
            field,
            format!("`{}` is not a host name or IP address", host.value),
        ))
    }
}

fn load_roots(
    errors: &ErrorSite<'_>,
    path: &Spanned<std::path::PathBuf>,
    field: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let at = |message: String| errors.at(path.referenced, field, message);
    let pem = std::fs::read(&path.value)
        .map_err(|error| at(format!("cannot read `{}`: {error}", path.value.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            at(format!(
                "`{}` is not valid PEM: {error}",
                path.value.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(at(format!(
            "`{}` holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.value.display()
        )));
    }
    Ok(certs)
}

/// `10.0.0.53`, `10.0.0.53:5353`, `::1`, `[::1]:5353`. With `default_port`, the port may
/// be left out.
fn parse_socket_addr(text: &str, default_port: Option<u16>) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let port = default_port?;
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port))
}

pub(crate) fn parse_host_port(text: &str) -> Option<HostPort> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let valid = host.parse::<IpAddr>().is_ok() || normalise_name(host).is_some();
    valid.then(|| HostPort {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses_take_an_optional_port() {
        assert_eq!(
            parse_socket_addr("10.0.0.53", Some(53)),
            Some("10.0.0.53:53".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("10.0.0.54:5353", Some(53)),
            Some("10.0.0.54:5353".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("::1", Some(53)),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(
            parse_socket_addr("[::1]:5353", Some(53)),
            Some("[::1]:5353".parse().unwrap())
        );
        assert_eq!(parse_socket_addr("resolver.local", Some(53)), None);
    }

    #[test]
    fn canaries_are_host_and_port() {
        assert_eq!(parse_host_port("1.1.1.1:443").map(|h| h.port), Some(443));
        assert_eq!(
            parse_host_port("[2001:db8::1]:443").map(|h| h.host),
            Some("2001:db8::1".into())
        );
        assert_eq!(parse_host_port("example.net"), None);
        assert_eq!(parse_host_port("example.net:0"), None);
    }
}
