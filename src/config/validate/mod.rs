//! Raw configuration → [`Config`]: every check, each with its own message and position.
//! The document-wide settings are checked here, each target in [`target`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_saphyr::{Location, Spanned};

mod auth;
mod dns;
mod listener;
mod oauth2;
mod roundtrip;
mod site;
mod target;
mod web;

pub use listener::{AdhocError, bcrypt_cost};
pub(crate) use listener::{MODULES, adhoc_target, default_ehlo_name};
use listener::{validate_probe_endpoint, validate_web};
use site::validate_site;

use super::error::{ErrorSite, Invalid, Position};
use super::files::{MAX_DOCUMENT_BYTES, read_bounded};
use super::raw::{DurationText, RawConfig};
use super::{
    Config, ConfigError, DEFAULT_INTERVAL, DEFAULT_LISTEN, DEFAULT_MAX_CONCURRENT_PROBES,
    DEFAULT_TIMEOUT, HostPort, Secrets,
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
    /// `defaults.phase_histogram`.
    phase_histogram: bool,
    /// Whether an unresolvable secret is an error or a warning.
    secrets: Secrets,
    /// Warnings so far.
    warnings: RefCell<Vec<Invalid>>,
    /// The secret files read so far.
    secret_files: RefCell<Vec<std::path::PathBuf>>,
}

impl Validator<'_> {
    /// Notes a warning at `at` about `field`.
    fn warn(&self, at: impl Into<Position>, field: impl Into<String>, message: impl Into<String>) {
        self.warnings
            .borrow_mut()
            .push(self.site.note(at, field, message));
    }
}

pub(super) fn validate(
    raw: RawConfig,
    file: &Path,
    secrets: Secrets,
) -> Result<Config, ConfigError> {
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
        Kind::Interval,
    )?;
    let timeout = setting(
        &errors,
        defaults.timeout.as_ref(),
        "defaults.timeout",
        Kind::Timeout,
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
        phase_histogram: defaults.phase_histogram.as_ref().is_some_and(|v| v.value),
        secrets,
        warnings: RefCell::new(Vec::new()),
        secret_files: RefCell::new(Vec::new()),
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
        warnings: validator.warnings.into_inner(),
        secret_files: validator.secret_files.into_inner(),
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

/// The longest interval or timeout: a week. Longer is surely a typo, and every instant
/// the scheduler computes from it stays far from overflowing.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest interval: a probe a second is as often as any endpoint deserves; less
/// only floods the log with overruns.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What a duration setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Time between probes: at least [`MIN_INTERVAL`].
    Interval,
    /// Upper bound on a probe: longer than zero.
    Timeout,
}

fn setting(
    errors: &ErrorSite<'_>,
    text: Option<&Spanned<DurationText>>,
    field: &str,
    kind: Kind,
) -> Result<Setting, ConfigError> {
    let Some(text) = text else {
        return Ok(Setting {
            value: match kind {
                Kind::Interval => DEFAULT_INTERVAL,
                Kind::Timeout => DEFAULT_TIMEOUT,
            },
            origin: None,
        });
    };
    let value = duration(errors, text, field)?;
    if value.is_zero() {
        return Err(errors.at(text.referenced, field, "must be longer than zero"));
    }
    if kind == Kind::Interval && value < MIN_INTERVAL {
        return Err(errors.at(
            text.referenced,
            field,
            format!(
                "{} is too short: probe at most once a second (`1s`)",
                humantime::format_duration(value)
            ),
        ));
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
    let value = humantime::parse_duration(written).map_err(|_| {
        let message = if written.parse::<u64>().is_ok() {
            format!("`{written}` has no unit: write e.g. `{written}s` for seconds")
        } else {
            format!(
                "`{written}` is not a duration: write a whole number with a unit, such as \
                 `30s`, `2m` or `1m30s`"
            )
        };
        errors.at(text.referenced, field, message)
    })?;
    if value > MAX_DURATION {
        return Err(errors.at(
            text.referenced,
            field,
            format!("`{written}` is too long: at most 7 days (`7d`)"),
        ));
    }
    Ok(value)
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
    let pem = read_file(errors, path, field, MAX_DOCUMENT_BYTES)?;
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
    // A PEM block whose content is not a certificate would only fail later, at every
    // handshake; say it now.
    for (index, cert) in certs.iter().enumerate() {
        if let Err(error) = x509_parser::parse_x509_certificate(cert) {
            return Err(at(format!(
                "certificate {} in `{}` is not a valid X.509 certificate: {error}",
                index + 1,
                path.value.display()
            )));
        }
    }
    Ok(certs)
}

/// The bytes of a file the configuration names, at most `limit`, as an error at its
/// key when it cannot be read.
fn read_file(
    errors: &ErrorSite<'_>,
    path: &Spanned<std::path::PathBuf>,
    field: &str,
    limit: u64,
) -> Result<Vec<u8>, ConfigError> {
    read_bounded(&path.value, limit).map_err(|error| {
        errors.at(
            path.referenced,
            field,
            format!("cannot read `{}`: {error}", path.value.display()),
        )
    })
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
