//! One `targets:` entry → [`Target`]: required keys, keys that apply to the protocol,
//! TLS mode, endpoint, DNS question, credentials. The not-implemented check runs last, so
//! a target using a protocol this version cannot probe yet is otherwise fully checked.

use std::net::IpAddr;
use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::{
    Validator, check_host, check_interval_covers_timeout, check_port, load_roots, normalise_name,
    parse_host_port, setting,
};
use crate::config::error::ErrorSite;
use crate::config::raw::{RawAuth, RawTarget};
use crate::config::{
    ConfigError, Credentials, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Discovery, DnsQuery, Endpoint,
    MAX_TARGET_NAME_LEN, Protocol, RecordKind, Secret, SmtpTarget, Target, TargetSpec, TlsMode,
};

/// The only scheme an https target's `url` may have: the probe is about TLS webmail.
const HTTPS_SCHEME: &str = "https://";

/// One `targets:` entry under validation: what every message about it needs.
struct Entry<'r> {
    raw: &'r RawTarget,
    /// Where the entry starts: a missing key is reported here.
    at: Location,
    name: &'r str,
    protocol: Protocol,
    /// `targets[N]`.
    field: &'r str,
}

impl Entry<'_> {
    /// The path of one of this entry's keys, e.g. `targets[2].port`.
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// An error at the entry saying that `key`, described by `what`, is missing.
    fn missing(&self, errors: &ErrorSite<'_>, key: &str, what: &str) -> ConfigError {
        errors.at(
            self.at,
            self.key(key),
            format!(
                "target `{}` (protocol `{}`) needs `{key}`: {what}",
                self.name, self.protocol
            ),
        )
    }

    /// `value`, or [`Entry::missing`].
    fn required<'v, T>(
        &self,
        errors: &ErrorSite<'_>,
        value: Option<&'v Spanned<T>>,
        key: &str,
        what: &str,
    ) -> Result<&'v Spanned<T>, ConfigError> {
        value.ok_or_else(|| self.missing(errors, key, what))
    }
}

/// The entry's `name`, present and fit to be a label value.
pub(super) fn target_name<'r>(
    errors: &ErrorSite<'_>,
    entry: &'r Spanned<RawTarget>,
    field: &str,
) -> Result<&'r Spanned<String>, ConfigError> {
    let Some(name) = &entry.value.name else {
        return Err(errors.at(
            entry.referenced,
            format!("{field}.name"),
            "this target has no `name`: give it a unique name (it becomes the `target` label)",
        ));
    };
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
    Ok(name)
}

fn protocol_names() -> String {
    let known: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
    known.join(", ")
}

impl Validator<'_> {
    /// A `domain:` shorthand entry (no `protocol`): only `name`, `interval` and
    /// `timeout` may accompany it.
    pub(super) fn discovery(
        &self,
        entry: &Spanned<RawTarget>,
        field: &str,
    ) -> Result<Discovery, ConfigError> {
        let errors = &self.site;
        let raw = &entry.value;
        for (key, at) in raw.protocol_keys() {
            if key != "domain" {
                return Err(errors.at(
                    at,
                    format!("{field}.{key}"),
                    format!(
                        "a `domain:` entry without `protocol` discovers its targets; it takes only \
                         `name`, `interval` and `timeout` (for `{key}`, write the target out with a `protocol`)"
                    ),
                ));
            }
        }
        let domain = raw
            .domain
            .as_ref()
            .expect("the caller checked `domain` is set");
        let normalised = normalise_name(&domain.value).ok_or_else(|| {
            errors.at(
                domain.referenced,
                format!("{field}.domain"),
                format!("`{}` is not a valid DNS name", domain.value),
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
        let domain = normalised.trim_end_matches('.').to_owned();
        let name = match &raw.name {
            Some(_) => target_name(errors, entry, field)?.value.clone(),
            None => domain.clone(),
        };
        Ok(Discovery {
            name,
            domain,
            interval: interval.value,
            timeout: timeout.value,
        })
    }

    /// Every check on one target. The not-implemented check comes last, so that a file
    /// using a protocol this version cannot probe yet is otherwise fully checked.
    pub(super) fn target(
        &self,
        entry: &Spanned<RawTarget>,
        name: &str,
        field: &str,
    ) -> Result<Target, ConfigError> {
        let errors = &self.site;
        let raw = &entry.value;
        let Some(protocol_text) = &raw.protocol else {
            return Err(errors.at(
                entry.referenced,
                format!("{field}.protocol"),
                format!(
                    "target `{name}` has no `protocol`: set one of {}",
                    protocol_names()
                ),
            ));
        };
        let protocol = Protocol::parse(&protocol_text.value).ok_or_else(|| {
            // `imaps`, `pop3s`, `smtps` are port names; say how to write them.
            let hint = protocol_text
                .value
                .strip_suffix('s')
                .and_then(Protocol::parse)
                .map(|base| {
                    format!(" (for {base} over TLS write `protocol: {base}` and `tls: implicit`)")
                })
                .unwrap_or_default();
            errors.at(
                protocol_text.referenced,
                format!("{field}.protocol"),
                format!(
                    "unknown protocol `{}`; expected one of {}{hint}",
                    protocol_text.value,
                    protocol_names()
                ),
            )
        })?;
        let entry = Entry {
            raw,
            at: entry.referenced,
            name,
            protocol,
            field,
        };
        // First, so that a key the protocol ignores is reported as such rather than
        // checked (a password file read for a tcp target, say).
        check_keys_apply(errors, &entry)?;
        let interval = match &raw.interval {
            Some(text) => setting(errors, Some(text), &entry.key("interval"), DEFAULT_INTERVAL)?,
            None => self.interval.clone(),
        };
        let timeout = match &raw.timeout {
            Some(text) => setting(errors, Some(text), &entry.key("timeout"), DEFAULT_TIMEOUT)?,
            None => self.timeout.clone(),
        };
        check_interval_covers_timeout(errors, &interval, &timeout, field)?;
        let tls = self.tls_mode(&entry)?;
        let auth = raw
            .auth
            .as_ref()
            .map(|auth| credentials(errors, auth, &entry.key("auth")))
            .transpose()?;
        let spec = match protocol {
            Protocol::Dns => TargetSpec::Dns(dns_query(errors, &entry)?),
            Protocol::Tcp => TargetSpec::Tcp(self.endpoint(&entry, tls, auth)?),
            Protocol::Imap => TargetSpec::Imap(self.endpoint(&entry, tls, auth)?),
            Protocol::Pop3 => TargetSpec::Pop3(self.endpoint(&entry, tls, auth)?),
            Protocol::Smtp => TargetSpec::Smtp(SmtpTarget {
                endpoint: self.endpoint(&entry, tls, auth)?,
                ehlo_name: ehlo_name(errors, &entry)?,
            }),
            // Checked now, so that the file needs no edit when these protocols land.
            Protocol::Https => {
                check_url(errors, &entry)?;
                return Err(not_implemented(errors, protocol_text, &entry));
            }
            Protocol::Exchange => {
                self.endpoint(&entry, tls, auth)?;
                return Err(not_implemented(errors, protocol_text, &entry));
            }
        };
        debug_assert!(protocol.is_implemented());
        Ok(Target {
            name: Arc::from(name),
            protocol,
            interval: interval.value,
            timeout: timeout.value,
            spec,
        })
    }

    fn tls_mode(&self, entry: &Entry<'_>) -> Result<TlsMode, ConfigError> {
        let protocol = entry.protocol;
        let Some(tls) = &entry.raw.tls else {
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
                    entry.key("tls"),
                    format!(
                        "unknown TLS mode `{other}`; expected one of implicit (TLS from the \
                         first byte, as on ports 993, 995, 465, 443), starttls, none"
                    ),
                ));
            }
        };
        if mode == TlsMode::Starttls && !protocol.has_starttls() {
            return Err(self.site.at(
                tls.referenced,
                entry.key("tls"),
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
        entry: &Entry<'_>,
        tls: TlsMode,
        auth: Option<Credentials>,
    ) -> Result<Endpoint, ConfigError> {
        let errors = &self.site;
        let raw = entry.raw;
        let protocol = entry.protocol;
        let host = entry.required(
            errors,
            raw.host.as_ref(),
            "host",
            "the server's name or IP address",
        )?;
        check_host(errors, host, &entry.key("host"))?;
        let port = match &raw.port {
            Some(port) => check_port(errors, port, &entry.key("port"))?,
            None => default_port(protocol, tls).ok_or_else(|| {
                entry.missing(
                    errors,
                    "port",
                    &format!("the port to connect to (`{protocol}` has no default port)"),
                )
            })?,
        };
        let server_name = match &raw.server_name {
            Some(name) => {
                check_host(errors, name, &entry.key("server_name"))?;
                name.value.clone()
            }
            None => host.value.clone(),
        };
        let mut roots = self.global_roots.clone();
        if let Some(ca_file) = &raw.ca_file {
            roots.extend(load_roots(errors, ca_file, &entry.key("ca_file"))?);
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

/// `ehlo_name`, or this host's name: servers log it, and some check that it looks
/// like a host name.
fn ehlo_name(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<String, ConfigError> {
    match &entry.raw.ehlo_name {
        Some(name) => {
            check_host(errors, name, &entry.key("ehlo_name"))?;
            Ok(name.value.clone())
        }
        None => Ok(local_host_name()),
    }
}

/// The kernel's host name, or `localhost` when it cannot be read.
pub(crate) fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| normalise_name(name).is_some())
        .unwrap_or_else(|| "localhost".to_owned())
}

fn not_implemented(
    errors: &ErrorSite<'_>,
    protocol_text: &Spanned<String>,
    entry: &Entry<'_>,
) -> ConfigError {
    errors.at(
        protocol_text.referenced,
        entry.key("protocol"),
        format!(
            "protocol `{}` is not implemented in this version of mailprobe yet; \
             available now: dns, tcp, imap, pop3, smtp (use `protocol: tcp` with `tls: implicit` to check \
             that the port answers with a valid certificate)",
            entry.protocol
        ),
    )
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
        Protocol::Imap | Protocol::Pop3 => {
            &["host", "port", "tls", "server_name", "ca_file", "auth"]
        }
        Protocol::Smtp => &[
            "host",
            "port",
            "tls",
            "server_name",
            "ca_file",
            "auth",
            "ehlo_name",
        ],
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

fn check_keys_apply(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<(), ConfigError> {
    let protocol = entry.protocol;
    let allowed = keys_for(protocol);
    for (key, at) in entry.raw.protocol_keys() {
        if !allowed.contains(&key) {
            return Err(errors.at(
                at,
                entry.key(key),
                format!(
                    "`{key}` does not apply to protocol `{protocol}`: remove it or change \
                     `protocol` ({protocol} takes: {})",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `url` of an https target: present, `https://`, with a plausible host and port.
fn check_url(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<(), ConfigError> {
    let url = entry.required(
        errors,
        entry.raw.url.as_ref(),
        "url",
        "the page to fetch, e.g. `https://webmail.example.com/`",
    )?;
    if https_url_has_host(&url.value) {
        Ok(())
    } else {
        Err(errors.at(
            url.referenced,
            entry.key("url"),
            format!(
                "`{}` is not an https:// URL with a host name, such as \
                 `https://webmail.example.com/`",
                url.value
            ),
        ))
    }
}

/// `https://host[:port][/...]` with a host name or IP address and, if given, a valid
/// port.
fn https_url_has_host(url: &str) -> bool {
    let url = url.trim();
    let Some(rest) = url
        .get(..HTTPS_SCHEME.len())
        .filter(|scheme| scheme.eq_ignore_ascii_case(HTTPS_SCHEME))
        .map(|_| &url[HTTPS_SCHEME.len()..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match parse_host_port(authority) {
        Some(with_port) => with_port.host,
        None => authority
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    };
    host.parse::<IpAddr>().is_ok() || normalise_name(&host).is_some()
}

fn dns_query(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<DnsQuery, ConfigError> {
    let raw = entry.raw;
    let domain = entry.required(
        errors,
        raw.domain.as_ref(),
        "domain",
        "the name to look up, e.g. `example.com`",
    )?;
    let fqdn = normalise_name(&domain.value).ok_or_else(|| {
        errors.at(
            domain.referenced,
            entry.key("domain"),
            format!("`{}` is not a valid DNS name", domain.value),
        )
    })?;
    let known: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
    let record = entry.required(
        errors,
        raw.record.as_ref(),
        "record",
        &format!("the record type, one of {}", known.join(", ")),
    )?;
    let kind = RecordKind::parse(&record.value).ok_or_else(|| {
        errors.at(
            record.referenced,
            entry.key("record"),
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
                entry.key("expect"),
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
                        entry.key("expect"),
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
    let Some(username) = &raw.username else {
        return Err(errors.at(
            auth.referenced,
            format!("{field}.username"),
            "`auth` needs `username`: the login name",
        ));
    };
    if username.value.is_empty() {
        return Err(errors.at(
            username.referenced,
            format!("{field}.username"),
            "the login name is empty",
        ));
    }
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
                "`auth` needs `password_file` (a file holding the password) or `password_env` \
                 (an environment variable holding it); a password is never written in the \
                 configuration itself",
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
    Ok(Credentials {
        username: username.value.clone(),
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_https_url_needs_the_scheme_and_a_valid_host() {
        assert!(https_url_has_host("https://webmail.example.com/"));
        assert!(https_url_has_host("HTTPS://webmail.example.com"));
        assert!(https_url_has_host(
            "https://webmail.example.com:8443/owa?x=1"
        ));
        assert!(https_url_has_host("https://[2001:db8::1]:8443/"));
        assert!(https_url_has_host("https://192.0.2.10"));
        assert!(!https_url_has_host("http://webmail.example.com/"));
        assert!(!https_url_has_host("webmail.example.com"));
        assert!(!https_url_has_host("https:///path"));
        assert!(!https_url_has_host("https://webmail.example.com:99999/"));
        assert!(!https_url_has_host("https://user:pw@webmail.example.com/"));
    }
}
