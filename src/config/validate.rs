//! Raw configuration → [`Config`]: every check, each with its own message and position.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_saphyr::{Location, Spanned};

use super::error::{ErrorSite, Position};
use super::raw::{DurationText, RawAuth, RawConfig, RawSite, RawTarget, ResolverList};
use super::{
    Config, ConfigError, Credentials, DEFAULT_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_MAX_CONCURRENT_PROBES, DEFAULT_TIMEOUT, DnsQuery, Endpoint, Gateway, HostPort,
    MAX_TARGET_NAME_LEN, Protocol, RecordKind, Secret, Site, SiteResolvers, Target, TargetSpec,
    TlsMode,
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
                    "`{}` is not an address:port such as 0.0.0.0:9925",
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
    let global_roots = match raw.tls.as_ref().and_then(|tls| tls.ca_file.as_ref()) {
        Some(ca_file) => load_roots(&errors, ca_file, "tls.ca_file")?,
        None => Vec::new(),
    };
    let site = validate_site(&errors, &raw.site.unwrap_or_default())?;
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
    for (index, target) in targets.value.iter().enumerate() {
        let field = format!("targets[{index}]");
        let name = &target.value.name;
        if let Some(first) = seen.get(name.value.as_str()) {
            return Err(errors.at(
                name.referenced,
                format!("{field}.name"),
                format!(
                    "duplicate target name `{}` (first used at line {}): names must be unique",
                    name.value,
                    first.line()
                ),
            ));
        }
        seen.insert(&name.value, name.referenced);
        validated.push(Arc::new(validator.target(&target.value, &field)?));
    }
    Ok(Config {
        source: file.to_path_buf(),
        listen,
        max_concurrent_probes,
        site,
        targets: validated,
    })
}

impl Validator<'_> {
    fn target(&self, raw: &RawTarget, field: &str) -> Result<Target, ConfigError> {
        let errors = &self.site;
        let name = &raw.name;
        if name.value.is_empty()
            || name.value.len() > MAX_TARGET_NAME_LEN
            || name.value.chars().any(char::is_control)
        {
            return Err(errors.at(
                name.referenced,
                format!("{field}.name"),
                format!("a target name must be 1 to {MAX_TARGET_NAME_LEN} printable characters"),
            ));
        }
        let protocol = Protocol::parse(&raw.protocol.value).ok_or_else(|| {
            let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
            errors.at(
                raw.protocol.referenced,
                format!("{field}.protocol"),
                format!(
                    "unknown protocol `{}`; expected one of {}",
                    raw.protocol.value,
                    known.join(", ")
                ),
            )
        })?;
        let interval = match &raw.interval {
            Some(text) => setting(
                errors,
                Some(text),
                &format!("{field}.interval"),
                DEFAULT_INTERVAL,
            )?,
            None => self.interval.clone(),
        };
        let timeout = match &raw.timeout {
            Some(text) => setting(
                errors,
                Some(text),
                &format!("{field}.timeout"),
                DEFAULT_TIMEOUT,
            )?,
            None => self.timeout.clone(),
        };
        check_interval_covers_timeout(errors, &interval, &timeout, field)?;
        let tls = self.tls_mode(raw, protocol, field)?;
        let auth = raw
            .auth
            .as_ref()
            .map(|auth| credentials(errors, auth, &format!("{field}.auth")))
            .transpose()?;
        check_keys_apply(errors, raw, protocol, field)?;
        let spec = match protocol {
            Protocol::Dns => TargetSpec::Dns(dns_query(errors, raw, field)?),
            _ => TargetSpec::Tcp(self.endpoint(raw, protocol, tls, auth, field)?),
        };
        if !protocol.is_implemented() {
            return Err(errors.at(
                raw.protocol.referenced,
                format!("{field}.protocol"),
                format!(
                    "protocol `{protocol}` is not implemented in this version of mailprobe yet; \
                     available now: dns, tcp (use `protocol: tcp` with `tls: implicit` to check \
                     that the port answers with a valid certificate)"
                ),
            ));
        }
        Ok(Target {
            name: Arc::from(name.value.as_str()),
            protocol,
            interval: interval.value,
            timeout: timeout.value,
            spec,
        })
    }

    fn tls_mode(
        &self,
        raw: &RawTarget,
        protocol: Protocol,
        field: &str,
    ) -> Result<TlsMode, ConfigError> {
        let Some(tls) = &raw.tls else {
            return Ok(match protocol {
                Protocol::Tcp | Protocol::Dns => TlsMode::None,
                _ => TlsMode::Implicit,
            });
        };
        let mode = match tls.value.as_str() {
            "implicit" => TlsMode::Implicit,
            "starttls" => TlsMode::Starttls,
            "none" => TlsMode::None,
            other => {
                return Err(self.site.at(
                    tls.referenced,
                    format!("{field}.tls"),
                    format!("unknown TLS mode `{other}`; expected one of implicit, starttls, none"),
                ));
            }
        };
        if mode == TlsMode::Starttls && !protocol.has_starttls() {
            return Err(self.site.at(
                tls.referenced,
                format!("{field}.tls"),
                format!(
                    "protocol `{protocol}` has no STARTTLS; use `implicit` or `none` \
                     (STARTTLS exists for imap, pop3 and smtp)"
                ),
            ));
        }
        Ok(mode)
    }

    fn endpoint(
        &self,
        raw: &RawTarget,
        protocol: Protocol,
        tls: TlsMode,
        auth: Option<Credentials>,
        field: &str,
    ) -> Result<Endpoint, ConfigError> {
        let errors = &self.site;
        let host = required(errors, raw.host.as_ref(), raw, "host", protocol, field)?;
        check_host(errors, host, &format!("{field}.host"))?;
        let port = match &raw.port {
            Some(port) => check_port(errors, port, &format!("{field}.port"))?,
            None => default_port(protocol, tls).ok_or_else(|| {
                errors.at(
                    raw.name.referenced,
                    format!("{field}.port"),
                    format!("protocol `{protocol}` has no default port: set `port`"),
                )
            })?,
        };
        let server_name = match &raw.server_name {
            Some(name) => {
                check_host(errors, name, &format!("{field}.server_name"))?;
                name.value.clone()
            }
            None => host.value.clone(),
        };
        let mut roots = self.global_roots.clone();
        if let Some(ca_file) = &raw.ca_file {
            roots.extend(load_roots(errors, ca_file, &format!("{field}.ca_file"))?);
        }
        Ok(Endpoint {
            host: host
                .value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            tls,
            server_name,
            extra_roots: roots.into(),
            auth,
        })
    }
}

fn default_port(protocol: Protocol, tls: TlsMode) -> Option<u16> {
    Some(match (protocol, tls) {
        (Protocol::Imap, TlsMode::Implicit) => 993,
        (Protocol::Imap, _) => 143,
        (Protocol::Pop3, TlsMode::Implicit) => 995,
        (Protocol::Pop3, _) => 110,
        (Protocol::Smtp, TlsMode::Implicit) => 465,
        (Protocol::Smtp, TlsMode::Starttls) => 587,
        (Protocol::Smtp, TlsMode::None) => 25,
        (Protocol::Https | Protocol::Exchange, _) => 443,
        (Protocol::Tcp | Protocol::Dns, _) => return None,
    })
}

/// The keys each protocol understands; anything else set on the target is a mistake
/// worth reporting rather than silently ignoring.
fn keys_for(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Tcp => &["host", "port", "tls", "server_name", "ca_file"],
        Protocol::Imap | Protocol::Pop3 | Protocol::Smtp => {
            &["host", "port", "tls", "server_name", "ca_file", "auth"]
        }
        Protocol::Https => &[
            "url",
            "expect_status",
            "expect_body",
            "server_name",
            "ca_file",
            "auth",
        ],
        Protocol::Exchange => &["host", "email", "checks", "server_name", "ca_file", "auth"],
        Protocol::Dns => &["domain", "record", "expect", "require_consistent"],
    }
}

fn check_keys_apply(
    errors: &ErrorSite<'_>,
    raw: &RawTarget,
    protocol: Protocol,
    field: &str,
) -> Result<(), ConfigError> {
    let allowed = keys_for(protocol);
    for (key, at) in raw.protocol_keys() {
        if !allowed.contains(&key) {
            return Err(errors.at(
                at,
                format!("{field}.{key}"),
                format!(
                    "`{key}` does not apply to protocol `{protocol}` (it takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn required<'r, T>(
    errors: &ErrorSite<'_>,
    value: Option<&'r Spanned<T>>,
    raw: &RawTarget,
    key: &str,
    protocol: Protocol,
    field: &str,
) -> Result<&'r Spanned<T>, ConfigError> {
    value.ok_or_else(|| {
        errors.at(
            raw.name.referenced,
            format!("{field}.{key}"),
            format!(
                "target `{}` (protocol `{protocol}`) needs `{key}`",
                raw.name.value
            ),
        )
    })
}

fn dns_query(
    errors: &ErrorSite<'_>,
    raw: &RawTarget,
    field: &str,
) -> Result<DnsQuery, ConfigError> {
    let domain = required(
        errors,
        raw.domain.as_ref(),
        raw,
        "domain",
        Protocol::Dns,
        field,
    )?;
    let fqdn = normalise_name(&domain.value).ok_or_else(|| {
        errors.at(
            domain.referenced,
            format!("{field}.domain"),
            format!("`{}` is not a valid DNS name", domain.value),
        )
    })?;
    let record = required(
        errors,
        raw.record.as_ref(),
        raw,
        "record",
        Protocol::Dns,
        field,
    )?;
    let kind = RecordKind::parse(&record.value).ok_or_else(|| {
        let known: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
        errors.at(
            record.referenced,
            format!("{field}.record"),
            format!(
                "unknown record type `{}`; expected one of {}",
                record.value,
                known.join(", ")
            ),
        )
    })?;
    let expect = match &raw.expect {
        Some(expect) if expect.value.is_empty() => {
            return Err(errors.at(
                expect.referenced,
                format!("{field}.expect"),
                "`expect` is empty: list the answers the site should see, or remove it",
            ));
        }
        Some(expect) => Some(
            expect
                .value
                .iter()
                .map(|item| normalise_expected(kind, item))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    errors.at(
                        expect.referenced,
                        format!("{field}.expect"),
                        format!("an entry is not a valid {} answer", kind.as_str()),
                    )
                })?,
        ),
        None => None,
    };
    Ok(DnsQuery {
        domain: fqdn,
        record: kind,
        expect,
        require_consistent: raw.require_consistent.as_ref().is_none_or(|v| v.value),
    })
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

/// One `expect` entry in the form the DNS probe renders answers in.
fn normalise_expected(kind: RecordKind, item: &str) -> Option<String> {
    match kind {
        RecordKind::A | RecordKind::Aaaa => {
            item.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
        }
        RecordKind::Txt => Some(item.to_owned()),
        RecordKind::Mx | RecordKind::Srv | RecordKind::Cname => {
            // Names may be given alone or with the numeric fields in front
            // (`10 mx1.example.net`); the last word is the name.
            let words: Vec<&str> = item.split_whitespace().collect();
            let (name, numbers) = words.split_last()?;
            if !numbers.iter().all(|n| n.parse::<u16>().is_ok()) {
                return None;
            }
            let mut normalised: Vec<String> = numbers.iter().map(|n| (*n).to_owned()).collect();
            normalised.push(normalise_name(name)?);
            Some(normalised.join(" "))
        }
    }
}

fn credentials(
    errors: &ErrorSite<'_>,
    auth: &Spanned<RawAuth>,
    field: &str,
) -> Result<Credentials, ConfigError> {
    let raw = &auth.value;
    let password = match (&raw.password_file, &raw.password_env) {
        (Some(_), Some(env)) => {
            return Err(errors.at(
                env.referenced,
                format!("{field}.password_env"),
                "set either `password_file` or `password_env`, not both",
            ));
        }
        (None, None) => {
            return Err(errors.at(
                auth.referenced,
                field,
                "needs `password_file` or `password_env` (passwords are never written inline)",
            ));
        }
        (Some(file), None) => {
            let contents = std::fs::read_to_string(&file.value).map_err(|error| {
                errors.at(
                    file.referenced,
                    format!("{field}.password_file"),
                    format!("cannot read `{}`: {error}", file.value.display()),
                )
            })?;
            // The password is the first line; a trailing newline is not part of it.
            let first_line = contents.lines().next().unwrap_or_default();
            if first_line.is_empty() {
                return Err(errors.at(
                    file.referenced,
                    format!("{field}.password_file"),
                    format!("`{}` is empty", file.value.display()),
                ));
            }
            Secret::new(first_line.to_owned())
        }
        (None, Some(env)) => {
            let value = std::env::var(&env.value).map_err(|_| {
                errors.at(
                    env.referenced,
                    format!("{field}.password_env"),
                    format!("environment variable `{}` is not set", env.value),
                )
            })?;
            Secret::new(value)
        }
    };
    if raw.username.value.is_empty() {
        return Err(errors.at(
            raw.username.referenced,
            format!("{field}.username"),
            "is empty",
        ));
    }
    Ok(Credentials {
        username: raw.username.value.clone(),
        password,
    })
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
    let value = humantime::parse_duration(text.value.0.trim()).map_err(|error| {
        errors.at(
            text.referenced,
            field,
            format!(
                "`{}` is not a duration ({error}); write e.g. `30s`, `2m`",
                text.value.0
            ),
        )
    })?;
    if value.is_zero() {
        return Err(errors.at(text.referenced, field, "must be longer than zero"));
    }
    Ok(Setting {
        value,
        origin: Some((text.referenced, field.to_owned())),
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

fn parse_host_port(text: &str) -> Option<HostPort> {
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
    fn expected_answers_are_normalised_like_rendered_answers() {
        assert_eq!(
            normalise_expected(RecordKind::Mx, "MX1.Example.NET"),
            Some("mx1.example.net.".into())
        );
        assert_eq!(
            normalise_expected(RecordKind::Mx, "10 mx1.example.net."),
            Some("10 mx1.example.net.".into())
        );
        assert_eq!(
            normalise_expected(RecordKind::A, "192.0.2.1"),
            Some("192.0.2.1".into())
        );
        assert_eq!(normalise_expected(RecordKind::A, "mx1"), None);
        assert_eq!(
            normalise_expected(RecordKind::Srv, "x 993 imap.example.net"),
            None
        );
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
