//! The round-trip family: `protocol: roundtrip` — `from`, `to`, the `send` (SMTP) and
//! `receive` (IMAP) endpoints, checked like the mail targets' own, the folders, and a
//! schedule long enough for mail to be delivered.

use serde_saphyr::Spanned;

use super::target::{Entry, ehlo_name};
use super::{Setting, Validator, normalise_name};
use crate::config::error::ErrorSite;
use crate::config::raw::{RawRoundtripEndpoint, RawTarget};
use crate::config::{
    ConfigError, DEFAULT_ROUNDTRIP_INTERVAL, DEFAULT_ROUNDTRIP_TIMEOUT, Endpoint, Protocol,
    RoundtripTarget, SmtpTarget,
};

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address at most 254.
const MAX_ADDRESS_LEN: usize = 254;
/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
const MAX_LOCAL_PART_LEN: usize = 64;
/// Longer folder names than this are a mistake in a configuration file (servers allow
/// about as much, and the name travels in every SEARCH round).
const MAX_FOLDER_LEN: usize = 255;
/// The most folders one round trip searches: each is a SELECT and a SEARCH per poll.
const MAX_FOLDERS: usize = 16;
/// Below this interval, a round trip sends enough mail (1440 a day at one a minute)
/// that a provider may take the probe mailbox for a bulk sender: worth a warning.
const FREQUENT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// The two legs of a round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// `send`: SMTP.
    Send,
    /// `receive`: IMAP.
    Receive,
}

impl Leg {
    fn key(self) -> &'static str {
        match self {
            Leg::Send => "send",
            Leg::Receive => "receive",
        }
    }

    /// What the leg is, for the message when it is missing.
    fn what(self) -> &'static str {
        match self {
            Leg::Send => {
                "the SMTP endpoint the message is submitted to, e.g. `{host: smtp.example.com, \
                 port: 587, tls: starttls, auth: {username: …, password_file: …}}`"
            }
            Leg::Receive => {
                "the IMAP endpoint where the message must appear, e.g. `{host: \
                 imap.example.com, port: 993, tls: implicit, auth: {username: …, \
                 password_file: …}}`"
            }
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Leg::Send => Protocol::Smtp,
            Leg::Receive => Protocol::Imap,
        }
    }
}

/// The interval and timeout a round trip uses when the target does not set them: its
/// own (minutes), not `defaults:`, which are made for endpoint checks every few seconds.
pub(super) fn default_schedule() -> (Setting, Setting) {
    let unwritten = |value| Setting {
        value,
        origin: None,
    };
    (
        unwritten(DEFAULT_ROUNDTRIP_INTERVAL),
        unwritten(DEFAULT_ROUNDTRIP_TIMEOUT),
    )
}

impl Validator<'_> {
    /// `protocol: roundtrip`: the addresses, both endpoints, the folders; and a
    /// timeout strictly shorter than the interval (a round trip's next message must
    /// not be sent while the last one is still awaited).
    pub(super) fn roundtrip(
        &self,
        entry: &Entry<'_>,
        interval: &Setting,
        timeout: &Setting,
    ) -> Result<RoundtripTarget, ConfigError> {
        let errors = &self.site;
        let raw = entry.raw;
        if timeout.value >= interval.value {
            let (at, field) = timeout
                .origin
                .clone()
                .or_else(|| interval.origin.clone())
                .unwrap_or((entry.at, entry.key("timeout")));
            return Err(errors.at(
                at,
                field,
                format!(
                    "a round trip's timeout ({}) must be shorter than its interval ({}): the \
                     next message must not be sent while the last one is still awaited",
                    humantime::format_duration(timeout.value),
                    humantime::format_duration(interval.value)
                ),
            ));
        }
        if interval.value < FREQUENT_INTERVAL
            && let Some((at, field)) = interval.origin.clone()
        {
            let per_day = 86_400 / interval.value.as_secs().max(1);
            self.warn(
                at,
                field,
                format!(
                    "round trip `{}` sends a message every {} ({per_day} a day): providers may \
                     throttle or flag a mailbox that receives this much",
                    entry.name,
                    humantime::format_duration(interval.value)
                ),
            );
        }
        let from = mail_address(errors, entry, raw.from.as_ref(), "from")?;
        let to = mail_address(errors, entry, raw.to.as_ref(), "to")?;
        let send = entry.required(errors, raw.send.as_ref(), "send", Leg::Send.what())?;
        let receive =
            entry.required(errors, raw.receive.as_ref(), "receive", Leg::Receive.what())?;
        let (send_endpoint, ehlo) = self.leg(entry, send, Leg::Send)?;
        let (receive_endpoint, _) = self.leg(entry, receive, Leg::Receive)?;
        let receive_field = entry.key("receive");
        let folders = match &receive.value.folders {
            Some(listed) => folder_list(errors, listed, &format!("{receive_field}.folders"))?,
            None => vec!["INBOX".to_owned()],
        };
        if folders.is_empty() {
            return Err(errors.at(
                receive.referenced,
                format!("{receive_field}.folders"),
                "`folders` is empty: list where a delivered message lands (e.g. [INBOX]), or \
                 remove it for INBOX",
            ));
        }
        let junk = match &receive.value.junk {
            Some(listed) => folder_list(errors, listed, &format!("{receive_field}.junk"))?,
            None => Vec::new(),
        };
        Ok(RoundtripTarget {
            from,
            to,
            send: SmtpTarget {
                endpoint: send_endpoint,
                ehlo_name: ehlo,
            },
            receive: receive_endpoint,
            folders,
            junk,
        })
    }

    /// One leg's endpoint, validated as a mail target's (`host`, `port`, `tls`,
    /// `server_name`, `ca_file`, `auth`, `allow_plaintext_auth`), and the EHLO name.
    fn leg(
        &self,
        entry: &Entry<'_>,
        raw: &Spanned<RawRoundtripEndpoint>,
        leg: Leg,
    ) -> Result<(Endpoint, String), ConfigError> {
        let errors = &self.site;
        let field = entry.key(leg.key());
        let value = &raw.value;
        let misplaced = match leg {
            Leg::Send => vec![
                ("folders", value.folders.as_ref().map(|v| v.referenced)),
                ("junk", value.junk.as_ref().map(|v| v.referenced)),
            ],
            Leg::Receive => vec![("ehlo_name", value.ehlo_name.as_ref().map(|v| v.referenced))],
        };
        if let Some((key, Some(at))) = misplaced.into_iter().find(|(_, at)| at.is_some()) {
            return Err(errors.at(
                at,
                format!("{field}.{key}"),
                format!(
                    "`{key}` belongs to the other leg of a round trip (`send` takes ehlo_name, \
                     `receive` takes folders and junk)"
                ),
            ));
        }
        // The leg is checked as the mail target it is, through the same code.
        let as_target = RawTarget {
            host: value.host.clone(),
            port: value.port.clone(),
            tls: value.tls.clone(),
            server_name: value.server_name.clone(),
            ca_file: value.ca_file.clone(),
            ehlo_name: value.ehlo_name.clone(),
            ..RawTarget::default()
        };
        let name = format!("{}` `{}", entry.name, leg.key());
        let sub = Entry {
            raw: &as_target,
            at: raw.referenced,
            name: &name,
            protocol: leg.protocol(),
            field: &field,
        };
        let tls = self.tls_mode(&sub)?;
        let auth = self.auth(
            &sub,
            value.auth.as_ref(),
            value.allow_plaintext_auth.as_ref(),
            tls,
        )?;
        if leg == Leg::Receive && auth.is_none() {
            return Err(sub.missing(
                errors,
                "auth",
                "the round trip logs in to the mailbox to find its message",
            ));
        }
        let endpoint = self.endpoint(&sub, tls, auth)?;
        let ehlo = match leg {
            Leg::Send => ehlo_name(errors, &sub)?,
            Leg::Receive => String::new(),
        };
        Ok((endpoint, ehlo))
    }
}

/// `from` or `to`: a plain ASCII `local@domain` address (no display name, no comment).
fn mail_address(
    errors: &ErrorSite<'_>,
    entry: &Entry<'_>,
    value: Option<&Spanned<String>>,
    key: &str,
) -> Result<String, ConfigError> {
    let what = match key {
        "from" => "the sender address, e.g. `probe@example.com`",
        _ => "the recipient address (the mailbox `receive` reads), e.g. `probe@example.com`",
    };
    let written = entry.required(errors, value, key, what)?;
    let address = written.value.trim();
    let valid = address.len() <= MAX_ADDRESS_LEN
        && address.rsplit_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= MAX_LOCAL_PART_LEN
                && local.chars().all(|c| {
                    c.is_ascii_graphic()
                        && !matches!(
                            c,
                            '"' | '(' | ')' | ',' | ':' | ';' | '<' | '>' | '@' | '[' | '\\' | ']'
                        )
                })
                && !local.starts_with('.')
                && !local.ends_with('.')
                && !local.contains("..")
                && normalise_name(domain).is_some()
        });
    if !valid {
        return Err(errors.at(
            written.referenced,
            entry.key(key),
            format!(
                "`{}` is not a plain mail address: write `local@domain` in ASCII, without a \
                 display name or angle brackets",
                written.value
            ),
        ));
    }
    Ok(address.to_owned())
}

/// `folders` or `junk`: names as the server lists them, each printable and unique.
fn folder_list(
    errors: &ErrorSite<'_>,
    listed: &Spanned<Vec<String>>,
    field: &str,
) -> Result<Vec<String>, ConfigError> {
    if listed.value.len() > MAX_FOLDERS {
        return Err(errors.at(
            listed.referenced,
            field,
            format!(
                "{} folders: a round trip searches at most {MAX_FOLDERS}",
                listed.value.len()
            ),
        ));
    }
    let mut folders: Vec<String> = Vec::with_capacity(listed.value.len());
    for (index, name) in listed.value.iter().enumerate() {
        let bad = if name.trim().is_empty() {
            Some("is empty")
        } else if name.len() > MAX_FOLDER_LEN {
            Some("is too long")
        } else if name.chars().any(char::is_control) {
            Some("has control characters")
        } else if folders.iter().any(|f| {
            f == name || (f.eq_ignore_ascii_case("INBOX") && name.eq_ignore_ascii_case("INBOX"))
        }) {
            Some("is listed twice")
        } else {
            None
        };
        if let Some(bad) = bad {
            return Err(errors.at(
                listed.referenced,
                format!("{field}[{index}]"),
                format!("folder name `{name}` {bad}"),
            ));
        }
        folders.push(name.clone());
    }
    Ok(folders)
}
