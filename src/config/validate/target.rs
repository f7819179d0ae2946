//! One `targets:` entry → [`Target`]s: required keys, keys that apply to the protocol,
//! TLS mode, endpoint, DNS question, URL, Exchange checks, credentials. An exchange
//! entry becomes one target per check.

use std::sync::Arc;

use serde_saphyr::{Location, Spanned};

use super::dns::dns_query;
use super::roundtrip;
use super::{
    Kind, Validator, check_host, check_interval_covers_timeout, check_port, load_roots,
    normalise_name, setting,
};
use crate::config::error::ErrorSite;
use crate::config::raw::{RawAuth, RawTarget};
use crate::config::{
    ConfigError, Credentials, Discovery, Endpoint, MAX_TARGET_NAME_LEN, Protocol, SmtpTarget,
    Target, TargetSpec, TlsMode,
};

/// One `targets:` entry under validation: what every message about it needs.
pub(super) struct Entry<'r> {
    pub(super) raw: &'r RawTarget,
    /// Where the entry starts: a missing key is reported here.
    pub(super) at: Location,
    pub(super) name: &'r str,
    pub(super) protocol: Protocol,
    /// `targets[N]`.
    pub(super) field: &'r str,
}

impl Entry<'_> {
    /// The path of one of this entry's keys, e.g. `targets[2].port`.
    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// An error at the entry saying that `key`, described by `what`, is missing.
    pub(super) fn missing(&self, errors: &ErrorSite<'_>, key: &str, what: &str) -> ConfigError {
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
    pub(super) fn required<'v, T>(
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
        || name
            .value
            .chars()
            .any(|c| c.is_control() || is_bidi_control(c))
    {
        return Err(errors.at(
            name.referenced,
            format!("{field}.name"),
            format!(
                "a target name must be 1 to {MAX_TARGET_NAME_LEN} printable characters, \
                 without control or text-direction characters"
            ),
        ));
    }
    Ok(name)
}

/// The Unicode bidirectional controls (embeddings, overrides, isolates, marks): in a
/// name they make a label, a log line or the status page read other than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
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
                Kind::Interval,
            )?,
            None => self.interval.clone(),
        };
        let timeout = match &raw.timeout {
            Some(text) => setting(
                errors,
                Some(text),
                &format!("{field}.timeout"),
                Kind::Timeout,
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
            phase_histogram: self.phase_histogram(raw),
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
        let (default_interval, default_timeout) = match protocol {
            Protocol::Roundtrip => roundtrip::default_schedule(),
            _ => (self.interval.clone(), self.timeout.clone()),
        };
        let interval = match &raw.interval {
            Some(text) => setting(errors, Some(text), &entry.key("interval"), Kind::Interval)?,
            None => default_interval,
        };
        let timeout = match &raw.timeout {
            Some(text) => setting(errors, Some(text), &entry.key("timeout"), Kind::Timeout)?,
            None => default_timeout,
        };
        check_interval_covers_timeout(errors, &interval, &timeout, field)?;
        let tls = self.tls_mode(&entry)?;
        let auth = self.auth(
            &entry,
            raw.auth.as_ref(),
            raw.allow_plaintext_auth.as_ref(),
            tls,
        )?;
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
            Protocol::Roundtrip => vec![TargetSpec::Roundtrip(Box::new(
                self.roundtrip(&entry, &interval, &timeout)?,
            ))],
        };
        let name: Arc<str> = Arc::from(name);
        Ok(specs
            .into_iter()
            .map(|spec| Target {
                name: Arc::clone(&name),
                protocol,
                interval: interval.value,
                timeout: timeout.value,
                phase_histogram: self.phase_histogram(raw),
                spec,
            })
            .collect())
    }

    /// The credentials of `auth`, refused over `tls: none` unless `allow_plaintext`
    /// says the path is trusted.
    pub(super) fn auth(
        &self,
        entry: &Entry<'_>,
        auth: Option<&Spanned<RawAuth>>,
        allow_plaintext: Option<&Spanned<bool>>,
        tls: TlsMode,
    ) -> Result<Option<Credentials>, ConfigError> {
        let plaintext_allowed = allow_plaintext.is_some_and(|v| v.value);
        if let Some(auth) = auth
            && tls == TlsMode::None
            && !plaintext_allowed
        {
            return Err(self.site.at(
                auth.referenced,
                entry.key("auth"),
                format!(
                    "target `{}` would send its password in clear text (`tls: none`): use \
                     `tls: starttls` or `tls: implicit`, or set `allow_plaintext_auth: true` if \
                     the path to the server is trusted",
                    entry.name
                ),
            ));
        }
        if let Some(oauth2) = auth.and_then(|auth| auth.value.oauth2.as_ref())
            && entry.protocol == Protocol::Https
        {
            return Err(self.site.at(
                oauth2.referenced,
                format!("{}.oauth2", entry.key("auth")),
                "`oauth2` applies to imap, pop3, smtp, exchange (ews, autodiscover) and \
                 roundtrip targets; webmail logs in with a password",
            ));
        }
        auth.map(|auth| self.credentials(auth, &entry.key("auth"), plaintext_allowed))
            .transpose()
    }

    /// The entry's `phase_histogram`, else the default.
    fn phase_histogram(&self, raw: &RawTarget) -> bool {
        raw.phase_histogram
            .as_ref()
            .map_or(self.phase_histogram, |v| v.value)
    }

    /// `tls.ca_file` plus the target's own `ca_file`.
    pub(super) fn roots(
        &self,
        entry: &Entry<'_>,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConfigError> {
        let mut roots = self.global_roots.clone();
        if let Some(ca_file) = &entry.raw.ca_file {
            roots.extend(load_roots(&self.site, ca_file, &entry.key("ca_file"))?);
        }
        Ok(roots)
    }

    pub(super) fn tls_mode(&self, entry: &Entry<'_>) -> Result<TlsMode, ConfigError> {
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

    pub(super) fn endpoint(
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
pub(super) fn ehlo_name(errors: &ErrorSite<'_>, entry: &Entry<'_>) -> Result<String, ConfigError> {
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
        (Protocol::Tcp | Protocol::Dns | Protocol::Roundtrip, _) => return None,
    })
}

/// The keys each protocol understands; anything else set on the target is a mistake
/// worth reporting rather than silently ignoring.
fn keys_for(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Tcp => &["host", "port", "tls", "server_name", "ca_file"],
        Protocol::Imap | Protocol::Pop3 => &[
            "host",
            "port",
            "tls",
            "server_name",
            "ca_file",
            "auth",
            "allow_plaintext_auth",
        ],
        Protocol::Smtp => &[
            "host",
            "port",
            "tls",
            "server_name",
            "ca_file",
            "auth",
            "allow_plaintext_auth",
            "ehlo_name",
        ],
        Protocol::Https => &[
            "url",
            "expect_status",
            "expect_body",
            "server_name",
            "ca_file",
            "auth",
            "allow_redirects",
        ],
        Protocol::Exchange => &[
            "host",
            "port",
            "email",
            "checks",
            "server_name",
            "ca_file",
            "auth",
            "allow_redirects",
        ],
        Protocol::Dns => &["domain", "record", "expect", "require_consistent"],
        Protocol::Roundtrip => &["from", "to", "send", "receive"],
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
