//! The web family: `protocol: https` (webmail) and `protocol: exchange` — the URL, the
//! expected status and body, the Exchange checks and the Autodiscover mailbox.

use std::net::IpAddr;

use serde_saphyr::Spanned;

use super::listener::{allow_rule, not_a_host_rule};
use super::target::Entry;
use super::{Validator, check_host, normalise_name};
use crate::config::error::ErrorSite;
use crate::config::{
    AllowRule, ConfigError, Credentials, Endpoint, ExchangeCheck, ExchangeTarget, HttpsTarget,
    TlsMode, url_host,
};

/// The largest compiled `expect_body` pattern: generous for any page marker, small
/// enough that a pathological pattern cannot eat the agent's memory.
const MAX_BODY_PATTERN_SIZE: usize = 1 << 20;

impl Validator<'_> {
    /// `allow_redirects`: host rules a redirect may lead to although it is a
    /// loopback, link-local or unspecified address, or plain HTTP after HTTPS.
    fn allow_redirects(&self, entry: &Entry<'_>) -> Result<Vec<AllowRule>, ConfigError> {
        let Some(listed) = &entry.raw.allow_redirects else {
            return Ok(Vec::new());
        };
        listed
            .value
            .iter()
            .enumerate()
            .map(|(index, text)| {
                allow_rule(text).ok_or_else(|| {
                    self.site.at(
                        listed.referenced,
                        format!("{}[{index}]", entry.key("allow_redirects")),
                        not_a_host_rule(text),
                    )
                })
            })
            .collect()
    }

    /// `protocol: https`: the URL, the expected status and body.
    pub(super) fn https(
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
        let allow_redirects = self.allow_redirects(entry)?;
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
            allow_redirects,
        })
    }

    /// `protocol: exchange`: one target per check, sharing the server and mailbox.
    pub(super) fn exchange(
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
        let allow_redirects = self.allow_redirects(entry)?;
        Ok(checks
            .into_iter()
            .map(|check| ExchangeTarget {
                allow_redirects: allow_redirects.clone(),
                check,
                endpoint: endpoint.clone(),
                email: email.clone(),
            })
            .collect())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
