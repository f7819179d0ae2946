//! `protocol: smtp` (RFC 5321 / 3207 / 4954 / 6409 / 8314): 220 greeting, EHLO,
//! STARTTLS (then EHLO again), AUTH PLAIN, LOGIN, XOAUTH2 or OAUTHBEARER, QUIT. Never
//! MAIL or RCPT: the probe must not be able to send mail (only a round trip sends, in
//! `roundtrip/submit.rs`).

use super::lines::{LineError, MAX_REPLY_LINES, greeting_error, sanitise};
use super::mail::{Capabilities, Dialogue, Lines, base64_encode, plain_sasl};
use super::oauth2::sasl::SaslLogin;
use super::redact::Redactor;
use super::{ErrorKind, ProbeError};
use crate::config::Credentials;

/// The longest server text quoted in a message.
const MAX_QUOTED: usize = 160;

/// One reply line: `250-text` (more follow) or `250 text` (last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// The three-digit code.
    pub code: u16,
    /// Whether this line ends the reply.
    pub last: bool,
    /// What follows the separator.
    pub text: &'a str,
}

/// Parses one reply line.
///
/// # Errors
///
/// A description of what is wrong with the line.
pub fn parse_reply_line(line: &str) -> Result<ReplyLine<'_>, String> {
    let bytes = line.as_bytes();
    let digits = bytes.get(..3).filter(|d| d.iter().all(u8::is_ascii_digit));
    let Some(digits) = digits else {
        return Err(format!(
            "not an SMTP reply line: `{}`",
            sanitise(line, MAX_QUOTED)
        ));
    };
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(format!("reply code {code} is outside 2xx-5xx"));
    }
    let (last, text) = match bytes.get(3) {
        None => (true, ""),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => {
            return Err(format!(
                "bad separator after the code in `{}`",
                sanitise(line, MAX_QUOTED)
            ));
        }
    };
    Ok(ReplyLine { code, last, text })
}

/// A complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The code shared by every line.
    pub code: u16,
    /// The text of each line.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply as one line for messages: `554 no service here`.
    pub fn summary(&self) -> String {
        self.summary_without(&Redactor::default())
    }

    /// [`Reply::summary`] with `secrets` removed before it is shortened (so a cut can
    /// never leave half a secret).
    pub fn summary_without(&self, secrets: &Redactor) -> String {
        let text = format!("{} {}", self.code, self.lines.join(" / "));
        sanitise(&secrets.clean(&text), MAX_QUOTED)
    }
}

/// Reads one (possibly multi-line) reply, line by line.
async fn read_reply(lines: &mut Lines, what: &str) -> Result<Reply, ReplyError> {
    let mut reply = Reply {
        code: 0,
        lines: Vec::new(),
    };
    loop {
        let line = lines.read_line().await.map_err(ReplyError::Line)?;
        let parsed = parse_reply_line(&line).map_err(ReplyError::Malformed)?;
        if reply.lines.is_empty() {
            reply.code = parsed.code;
        } else if parsed.code != reply.code {
            return Err(ReplyError::Malformed(format!(
                "the lines of one reply carry different codes ({} then {})",
                reply.code, parsed.code
            )));
        }
        if reply.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::Malformed(format!(
                "more than {MAX_REPLY_LINES} lines in {what}"
            )));
        }
        reply.lines.push(parsed.text.to_owned());
        if parsed.last {
            return Ok(reply);
        }
    }
}

enum ReplyError {
    Line(LineError),
    Malformed(String),
}

impl ReplyError {
    fn into_probe_error(self, what: &str) -> ProbeError {
        match self {
            ReplyError::Line(error) => error.into_probe_error(what),
            ReplyError::Malformed(message) => {
                ProbeError::new(ErrorKind::ProtocolError, format!("{what}: {message}"))
            }
        }
    }
}

/// The extensions in an EHLO reply (every line after the first).
pub fn parse_ehlo(reply: &Reply) -> Capabilities {
    let mut capabilities = Capabilities::default();
    for line in reply.lines.iter().skip(1) {
        let mut words = line.split_ascii_whitespace();
        let Some(keyword) = words.next().map(str::to_ascii_uppercase) else {
            continue;
        };
        // `AUTH=PLAIN LOGIN` is the pre-RFC 4954 form some servers still send.
        if let Some(first) = keyword.strip_prefix("AUTH=") {
            // A bare `AUTH=` names no mechanism.
            capabilities.auth_mechanisms.extend(
                std::iter::once(first.to_owned())
                    .chain(words.map(str::to_ascii_uppercase))
                    .filter(|mechanism| !mechanism.is_empty()),
            );
        } else if keyword == "AUTH" {
            capabilities
                .auth_mechanisms
                .extend(words.map(str::to_ascii_uppercase));
        } else {
            capabilities.keywords.insert(keyword);
        }
    }
    capabilities
}

/// The SMTP side of a mail session.
#[derive(Debug)]
pub struct Smtp {
    ehlo_name: String,
}

impl Smtp {
    /// A dialogue that introduces itself as `ehlo_name`.
    pub fn new(ehlo_name: String) -> Self {
        Smtp { ehlo_name }
    }

    /// Sends `command` and reads the whole reply (`what` names it in errors).
    pub(crate) async fn command(
        lines: &mut Lines,
        command: &str,
        what: &str,
    ) -> Result<Reply, ProbeError> {
        lines.write_line(command).await?;
        read_reply(lines, what)
            .await
            .map_err(|e| e.into_probe_error(what))
    }

    async fn auth_login(lines: &mut Lines, credentials: &Credentials) -> Result<Reply, ProbeError> {
        let mut reply = Self::command(lines, "AUTH LOGIN", "the AUTH LOGIN answer").await?;
        for secret in [credentials.username.as_str(), credentials.password.expose()] {
            if reply.code != 334 {
                return Ok(reply);
            }
            reply =
                Self::command(lines, &base64_encode(secret.as_bytes()), "the login answer").await?;
        }
        Ok(reply)
    }
}

fn service_unavailable(code: u16) -> bool {
    // 421: closing the channel; 554: no SMTP service here (RFC 5321 §3.1).
    matches!(code, 421 | 554)
}

impl Dialogue for Smtp {
    async fn greeting(&mut self, lines: &mut Lines) -> Result<String, ProbeError> {
        let reply = read_reply(lines, "the greeting")
            .await
            .map_err(|e| match e {
                ReplyError::Line(line) => greeting_error(line),
                ReplyError::Malformed(message) => ProbeError::new(
                    ErrorKind::BadGreeting,
                    format!("not an SMTP greeting: {message}"),
                ),
            })?;
        match reply.code {
            220 => Ok(reply.lines.join(" / ")),
            code if service_unavailable(code) => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!("the server refused the session: {}", reply.summary()),
            )),
            _ => Err(ProbeError::new(
                ErrorKind::BadGreeting,
                format!("expected 220, got {}", reply.summary()),
            )),
        }
    }

    async fn capabilities(&mut self, lines: &mut Lines) -> Result<Capabilities, ProbeError> {
        let ehlo = Self::command(
            lines,
            &format!("EHLO {}", self.ehlo_name),
            "the EHLO answer",
        )
        .await?;
        match ehlo.code {
            250 => Ok(parse_ehlo(&ehlo)),
            // A server without ESMTP: HELO works, and it has no extensions.
            500 | 502 => {
                let helo = Self::command(
                    lines,
                    &format!("HELO {}", self.ehlo_name),
                    "the HELO answer",
                )
                .await?;
                if helo.code == 250 {
                    Ok(Capabilities::default())
                } else {
                    Err(ProbeError::new(
                        ErrorKind::ProtocolError,
                        format!("HELO refused: {}", helo.summary()),
                    ))
                }
            }
            code if service_unavailable(code) => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!("the server refused EHLO: {}", ehlo.summary()),
            )),
            _ => Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!("EHLO refused: {}", ehlo.summary()),
            )),
        }
    }

    fn offers_starttls(&self, capabilities: &Capabilities) -> bool {
        capabilities.has("STARTTLS")
    }

    async fn starttls(&mut self, lines: &mut Lines) -> Result<(), ProbeError> {
        let reply = Self::command(lines, "STARTTLS", "the STARTTLS answer").await?;
        match reply.code {
            220 => Ok(()),
            // 454: TLS not available due to a temporary reason.
            _ => Err(ProbeError::new(
                ErrorKind::StarttlsUnavailable,
                format!("the server refused STARTTLS: {}", reply.summary()),
            )),
        }
    }

    async fn login(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        credentials: &Credentials,
    ) -> Result<(), ProbeError> {
        let reply = if capabilities.offers_auth("PLAIN") {
            let command = format!("AUTH PLAIN {}", plain_sasl(credentials));
            Self::command(lines, &command, "the login answer").await?
        } else if capabilities.offers_auth("LOGIN") {
            Self::auth_login(lines, credentials).await?
        } else if capabilities.auth_mechanisms.is_empty() {
            return Err(ProbeError::new(
                ErrorKind::AuthFailed,
                "the server offers no AUTH on this connection (submission servers often \
                 offer it only after STARTTLS)",
            ));
        } else {
            let offered: Vec<&str> = capabilities
                .auth_mechanisms
                .iter()
                .map(String::as_str)
                .collect();
            return Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!(
                    "no AUTH mechanism mailprobe speaks (PLAIN, LOGIN) is offered: {}",
                    offered.join(" ")
                ),
            ));
        };
        let text = reply.summary_without(&Redactor::for_credentials(credentials));
        match reply.code {
            235 => Ok(()),
            // 535 bad credentials, 534 mechanism too weak, 538 encryption required.
            500..=599 => Err(ProbeError::new(
                ErrorKind::AuthFailed,
                format!("login rejected: {text}"),
            )),
            // 421 closing, 454 temporary authentication failure: the server's trouble,
            // not the credentials'.
            400..=499 => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!("login refused: {text}"),
            )),
            _ => Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!("unexpected login answer: {text}"),
            )),
        }
    }

    async fn login_sasl(
        &mut self,
        lines: &mut Lines,
        _capabilities: &Capabilities,
        login: &SaslLogin,
    ) -> Result<(), ProbeError> {
        // The two-step form Microsoft documents: `AUTH XOAUTH2`, `334`, the response.
        let mut reply = Self::command(
            lines,
            &format!("AUTH {}", login.mechanism.name()),
            "the AUTH answer",
        )
        .await?;
        let mut challenge: Option<String> = None;
        if reply.code == 334 {
            reply = Self::command(lines, login.initial_response(), "the login answer").await?;
        }
        if reply.code == 334 {
            // The error challenge: answered as the mechanism requires, then 535.
            challenge = reply.lines.first().cloned();
            reply = Self::command(
                lines,
                login.mechanism.challenge_answer(),
                "the login answer",
            )
            .await?;
        }
        let text = login.quote(&format!("{} {}", reply.code, reply.lines.join(" / ")));
        match reply.code {
            235 => Ok(()),
            500..=599 => Err(login.refused(&text, challenge.as_deref())),
            400..=499 => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!("login refused: {text}"),
            )),
            _ => Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!("unexpected login answer: {text}"),
            )),
        }
    }

    async fn goodbye(&mut self, lines: &mut Lines) {
        let _ = Self::command(lines, "QUIT", "the QUIT answer").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_are_parsed_by_separator() {
        assert_eq!(
            parse_reply_line("250-STARTTLS"),
            Ok(ReplyLine {
                code: 250,
                last: false,
                text: "STARTTLS"
            })
        );
        assert_eq!(
            parse_reply_line("250 STARTTLS"),
            Ok(ReplyLine {
                code: 250,
                last: true,
                text: "STARTTLS"
            })
        );
        assert_eq!(
            parse_reply_line("220"),
            Ok(ReplyLine {
                code: 220,
                last: true,
                text: ""
            })
        );
        assert!(parse_reply_line("25").is_err());
        assert!(parse_reply_line("250+x").is_err());
        assert!(parse_reply_line("999 nope").is_err());
        assert!(parse_reply_line("* OK imap").is_err());
    }

    #[test]
    fn ehlo_extensions_include_a_final_starttls_and_both_auth_forms() {
        let reply = Reply {
            code: 250,
            lines: [
                "mail.example.test Hello",
                "SIZE 52428800",
                "AUTH PLAIN LOGIN",
                "AUTH=XOAUTH2",
                "STARTTLS",
            ]
            .map(String::from)
            .to_vec(),
        };
        let caps = parse_ehlo(&reply);
        assert!(caps.has("STARTTLS") && caps.has("SIZE"));
        assert_eq!(
            caps.auth_mechanisms.iter().collect::<Vec<_>>(),
            ["LOGIN", "PLAIN", "XOAUTH2"]
        );
        assert!(!caps.has("MAIL.EXAMPLE.TEST"));
    }
}
