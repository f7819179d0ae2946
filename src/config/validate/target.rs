//! One `targets:` entry → [`Target`]s: required keys, keys that apply to the protocol,
//! TLS mode, endpoint, DNS question, URL, Exchange checks, credentials. An exchange
//! entry becomes one target per check.

use std::net::IpAddr;
use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::{
    Validator, check_host, check_interval_covers_timeout, check_port, load_roots, normalise_name,
    setting,
};
use crate::config::error::ErrorSite;
use crate::config::raw::{RawAuth, RawTarget};
use crate::config::{
    ConfigError, Credentials, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, Discovery, DnsQuery, Endpoint,
    ExchangeCheck, ExchangeTarget, HttpsTarget, MAX_TARGET_NAME_LEN, Protocol, RecordKind, Secret,
    SmtpTarget, Target, TargetSpec, TlsMode, url_host,
};

/// The largest compiled `expect_body` pattern: generous for any page marker, small
/// enough that a pathological pattern cannot eat the agent's memory.
const MAX_BODY_PATTERN_SIZE: usize = 1 << 20;

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

    /// Every check on one target entry: one [`Target`], or one per check for an
    /// exchange entry.
    pub(super) fn target(
        &self,
        entry: &Spanned<RawTarget>,
        name: &str,
        field: &str,
    ) -> Result<Vec<Target>, ConfigError> {
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
        let specs = match protocol {
            Protocol::Dns => vec![TargetSpec::Dns(dns_query(errors, &entry)?)],
            Protocol::Tcp => vec![TargetSpec::Tcp(self.endpoint(&entry, tls, auth)?)],
            Protocol::Imap => vec![TargetSpec::Imap(self.endpoint(&entry, tls, auth)?)],
            Protocol::Pop3 => vec![TargetSpec::Pop3(self.endpoint(&entry, tls, auth)?)],
            Protocol::Smtp => vec![TargetSpec::Smtp(SmtpTarget {
                endpoint: self.endpoint(&entry, tls, auth)?,
                ehlo_name: ehlo_name(errors, &entry)?,
            })],
            Protocol::Https => vec![TargetSpec::Https(self.https(&entry, auth)?)],
            Protocol::Exchange => self
                .exchange(&entry, auth)?
                .into_iter()
                .map(TargetSpec::Exchange)
                .collect(),
        };
        let name: Arc<str> = Arc::from(name);
        Ok(specs
            .into_iter()
            .map(|spec| Target {
                name: Arc::clone(&name),
                protocol,
                interval: interval.value,
                timeout: timeout.value,
                spec,
            })
            .collect())
    }

    /// `protocol: https`: the URL, the expected status and body.
    fn https(
        &self,
        entry: &Entry<'_>,
        auth: Option<Credentials>,
    ) -> Result<HttpsTarget, ConfigError> {
        let errors = &self.site;
        let raw = entry.raw;
        let url = https_url(errors, entry)?;
        let host = url_host(&url);
        let server_name = match &raw.server_name {
            Some(name) => {
                check_host(errors, name, &entry.key("server_name"))?;
                name.value.clone()
            }
            None => host.clone(),
        };
        let expect_status = match &raw.expect_status {
            None => None,
            Some(codes) if codes.value.is_empty() => {
                return Err(errors.at(
                    codes.referenced,
                    entry.key("expect_status"),
                    "`expect_status` is empty: list the acceptable codes (e.g. [200]), or \
                     remove it to accept any 2xx",
                ));
            }
            Some(codes) => {
                if let Some(bad) = codes.value.iter().find(|c| !(100..=599).contains(*c)) {
                    return Err(errors.at(
                        codes.referenced,
                        entry.key("expect_status"),
                        format!("{bad} is not an HTTP status code (100-599)"),
                    ));
                }
                Some(codes.value.clone())
            }
        };
        let expect_body = raw
            .expect_body
            .as_ref()
            .map(|pattern| {
                regex::bytes::RegexBuilder::new(&pattern.value)
                    .size_limit(MAX_BODY_PATTERN_SIZE)
                    .build()
                    .map_err(|error| {
                        // The library's message draws a caret under the pattern over
                        // several lines; its last line says what is wrong.
                        let text = error.to_string();
                        let reason = text
                            .lines()
                            .rev()
                            .find_map(|line| line.trim().strip_prefix("error: "))
                            .unwrap_or(text.as_str())
                            .to_owned();
                        errors.at(
                            pattern.referenced,
                            entry.key("expect_body"),
                            format!("not a valid regular expression: {reason}"),
                        )
                    })
            })
            .transpose()?;
        Ok(HttpsTarget {
            endpoint: Endpoint {
                port: url.port_or_known_default().unwrap_or(443),
                host,
                tls: TlsMode::Implicit,
                server_name,
                extra_roots: self.roots(entry)?.into(),
                auth,
            },
            url,
            expect_status,
            expect_body,
        })
    }

    /// `protocol: exchange`: one target per check, sharing the server and mailbox.
    fn exchange(
        &self,
        entry: &Entry<'_>,
        auth: Option<Credentials>,
    ) -> Result<Vec<ExchangeTarget>, ConfigError> {
        let errors = &self.site;
        let raw = entry.raw;
        let checks = exchange_checks(errors, entry)?;
        let email = match &raw.email {
            Some(email) => Some(mailbox(errors, email, &entry.key("email"))?),
            None if checks.contains(&ExchangeCheck::Autodiscover) => {
                return Err(entry.missing(
                    errors,
                    "email",
                    "a mailbox for Autodiscover to look up, e.g. `probe@example.com` \
                     (or leave `autodiscover` out of `checks`)",
                ));
            }
            None => None,
        };
        let needs_host = checks.iter().any(|c| *c != ExchangeCheck::Autodiscover);
        let endpoint = match (&raw.host, &email) {
            (Some(_), _) | (None, None) => self.endpoint(entry, TlsMode::Implicit, auth)?,
            (None, Some(_)) if needs_host => self.endpoint(entry, TlsMode::Implicit, auth)?,
            // Autodiscover alone: the hosts come from the mailbox's domain.
            (None, Some(email)) => {
                let domain = email.rsplit('@').next().unwrap_or_default().to_owned();
                Endpoint {
                    server_name: domain.clone(),
                    host: domain,
                    port: 443,
                    tls: TlsMode::Implicit,
                    extra_roots: self.roots(entry)?.into(),
                    auth,
                }
            }
        };
        Ok(checks
            .into_iter()
            .map(|check| ExchangeTarget {
                check,
                endpoint: endpoint.clone(),
                email: email.clone(),
            })
            .collect())
    }

    /// `tls.ca_file` plus the target's own `ca_file`.
    fn roots(
        &self,
        entry: &Entry<'_>,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConfigError> {
        let mut roots = self.global_roots.clone();
        if let Some(ca_file) = &entry.raw.ca_file {
            roots.extend(load_roots(&self.site, ca_file, &entry.key("ca_file"))?);
        }
        Ok(roots)
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
        let roots = self.roots(entry)?;
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
        Protocol::Exchange => &[
            "host",
            "port",
            "email",
            "checks",
            "server_name",
            "ca_file",
            "auth",
        ],
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

/// `url` of an https target: present, `https://`, with a host, without credentials.
fn https_url(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<url::Url, ConfigError> {
    let url = entry.required(
        errors,
        entry.raw.url.as_ref(),
        "url",
        "the page to fetch, e.g. `https://webmail.example.com/`",
    )?;
    parse_https_url(&url.value).map_err(|problem| {
        errors.at(
            url.referenced,
            entry.key("url"),
            // The URL itself is not repeated: it may carry a password.
            format!("the URL {problem}"),
        )
    })
}

/// An `https://` URL with a host name or address and no user name or password.
fn parse_https_url(text: &str) -> Result<url::Url, String> {
    const EXAMPLE: &str = "such as `https://webmail.example.com/`";
    let url = url::Url::parse(text.trim()).map_err(|error| {
        format!("is not a valid URL ({error}); write an https:// URL {EXAMPLE}")
    })?;
    if url.scheme() != "https" {
        return Err(format!(
            "is not an https:// URL; webmail is probed over TLS, {EXAMPLE}"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "carries credentials; put them under `auth` (with `password_file`) \
             so they never appear in metrics or logs"
                .to_owned(),
        );
    }
    let host = url_host(&url);
    // `https:///path` would be read as host `path`, as browsers do; say it instead.
    let written_host = text.trim().get("https://".len()..).unwrap_or_default();
    if host.is_empty()
        || written_host.starts_with('/')
        || (host.parse::<IpAddr>().is_err() && normalise_name(&host).is_none())
    {
        return Err(format!("has no valid host name; write a URL {EXAMPLE}"));
    }
    Ok(url)
}

/// `checks` of an exchange target: known names, no repeats; the default set when absent.
fn exchange_checks(
    errors: &ErrorSite<'_>,
    entry: &Entry<'_>,
) -> Result<Vec<ExchangeCheck>, ConfigError> {
    let Some(listed) = &entry.raw.checks else {
        return Ok(ExchangeCheck::DEFAULT.to_vec());
    };
    let known = || {
        ExchangeCheck::ALL
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if listed.value.is_empty() {
        return Err(errors.at(
            listed.referenced,
            entry.key("checks"),
            format!(
                "`checks` is empty: list what to check ({}), or remove it for the default",
                known()
            ),
        ));
    }
    let mut checks = Vec::with_capacity(listed.value.len());
    for name in &listed.value {
        let check = ExchangeCheck::parse(name).ok_or_else(|| {
            let names: Vec<&str> = ExchangeCheck::ALL.iter().map(|c| c.as_str()).collect();
            let hint = crate::config::error::closest(name, &names)
                .map(|near| format!(" (did you mean `{near}`?)"))
                .unwrap_or_default();
            errors.at(
                listed.referenced,
                entry.key("checks"),
                format!("unknown check `{name}`{hint}; expected some of {}", known()),
            )
        })?;
        if checks.contains(&check) {
            return Err(errors.at(
                listed.referenced,
                entry.key("checks"),
                format!("`{check}` is listed twice"),
            ));
        }
        checks.push(check);
    }
    Ok(checks)
}

/// `email`: `local@domain`, with a valid domain; returned with the domain lower-cased.
fn mailbox(
    errors: &ErrorSite<'_>,
    email: &Spanned<String>,
    field: &str,
) -> Result<String, ConfigError> {
    let invalid = || {
        errors.at(
            email.referenced,
            field,
            format!(
                "`{}` is not an e-mail address such as `probe@example.com`",
                email.value
            ),
        )
    };
    let (local, domain) = email.value.trim().rsplit_once('@').ok_or_else(invalid)?;
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let domain = normalise_name(domain).ok_or_else(invalid)?;
    Ok(format!("{local}@{}", domain.trim_end_matches('.')))
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
        let ok = |text| parse_https_url(text).is_ok();
        assert!(ok("https://webmail.example.com/"));
        assert!(ok("HTTPS://webmail.example.com"));
        assert!(ok("https://webmail.example.com:8443/owa?x=1"));
        assert!(ok("https://[2001:db8::1]:8443/"));
        assert!(ok("https://192.0.2.10"));
        assert!(!ok("http://webmail.example.com/"));
        assert!(!ok("webmail.example.com"));
        assert!(!ok("https:///path"));
        assert!(!ok("https://webmail.example.com:99999/"));
        assert!(!ok("https://user:pw@webmail.example.com/"));
        assert!(!ok("https://bad_host!.example.com/"));
    }
}
