//! `protocol: pop3` (RFC 1939 / 2449 / 2595 / 5034): `+OK` greeting, CAPA, STLS,
//! USER/PASS, AUTH PLAIN or AUTH XOAUTH2 / OAUTHBEARER, QUIT.

use super::lines::{MAX_REPLY_LINES, greeting_error, sanitise};
use super::mail::{Capabilities, Dialogue, Lines, plain_sasl, redact};
use super::oauth2::sasl::SaslLogin;
use super::{ErrorKind, ProbeError};
use crate::config::Credentials;

/// The longest server text quoted in a message.
const MAX_QUOTED: usize = 160;

/// A single-line status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`.
    Ok,
    /// `-ERR`.
    Err,
}

/// Splits a status line into status and text; `None` when it is neither.
pub fn parse_status(line: &str) -> Option<(Status, &str)> {
    let (word, text) = line.split_once(' ').unwrap_or((line, ""));
    match word.to_ascii_uppercase().as_str() {
        "+OK" => Some((Status::Ok, text)),
        "-ERR" => Some((Status::Err, text)),
        _ => None,
    }
}

/// One line of a multi-line response: `None` for the terminating `.`, otherwise the
/// line with dot-stuffing removed (`..x` → `.x`).
pub fn unstuff(line: &str) -> Option<&str> {
    if line == "." {
        None
    } else {
        Some(line.strip_prefix('.').unwrap_or(line))
    }
}

/// The capabilities in the lines of a CAPA response (RFC 2449). `STLS` is recorded
/// as `STARTTLS` so that one flag means the same for every protocol.
pub fn parse_capa<'a>(lines: impl IntoIterator<Item = &'a str>) -> Capabilities {
    let mut capabilities = Capabilities::default();
    for line in lines {
        let mut words = line.split_ascii_whitespace();
        let Some(keyword) = words.next().map(str::to_ascii_uppercase) else {
            continue;
        };
        match keyword.as_str() {
            "SASL" => {
                capabilities
                    .auth_mechanisms
                    .extend(words.map(str::to_ascii_uppercase));
            }
            "STLS" => {
                capabilities.keywords.insert("STARTTLS".to_owned());
            }
            _ => {
                capabilities.keywords.insert(keyword);
            }
        }
    }
    capabilities
}

/// The POP3 side of a mail session.
#[derive(Debug, Default)]
pub struct Pop3;

impl Pop3 {
    /// Sends `command` and reads its status line.
    async fn command(
        lines: &mut Lines,
        command: &str,
        what: &str,
    ) -> Result<(Status, String), ProbeError> {
        lines.write_line(command).await?;
        Self::status(lines, what).await
    }

    async fn status(lines: &mut Lines, what: &str) -> Result<(Status, String), ProbeError> {
        let line = lines
            .read_line()
            .await
            .map_err(|e| e.into_probe_error(what))?;
        parse_status(&line)
            .map(|(status, text)| (status, text.to_owned()))
            .ok_or_else(|| {
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!(
                        "not a POP3 status line in {what}: {}",
                        sanitise(&line, MAX_QUOTED)
                    ),
                )
            })
    }

    /// Reads the body of a multi-line response up to the lone `.`.
    async fn multi_line(lines: &mut Lines, what: &str) -> Result<Vec<String>, ProbeError> {
        let mut body = Vec::new();
        loop {
            let line = lines
                .read_line()
                .await
                .map_err(|e| e.into_probe_error(what))?;
            match unstuff(&line) {
                None => return Ok(body),
                Some(_) if body.len() >= MAX_REPLY_LINES => {
                    return Err(ProbeError::new(
                        ErrorKind::ProtocolError,
                        format!("more than {MAX_REPLY_LINES} lines in {what}"),
                    ));
                }
                Some(content) => body.push(content.to_owned()),
            }
        }
    }
}

fn rejected(text: &str, credentials: &Credentials) -> ProbeError {
    ProbeError::new(
        ErrorKind::AuthFailed,
        format!(
            "login rejected: {}",
            sanitise(&redact(text, credentials), MAX_QUOTED)
        ),
    )
}

impl Dialogue for Pop3 {
    async fn greeting(&mut self, lines: &mut Lines) -> Result<String, ProbeError> {
        let line = lines.read_line().await.map_err(greeting_error)?;
        match parse_status(&line) {
            Some((Status::Ok, _)) => Ok(line),
            Some((Status::Err, _)) => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "the server refused the session: {}",
                    sanitise(&line, MAX_QUOTED)
                ),
            )),
            None => Err(ProbeError::new(
                ErrorKind::BadGreeting,
                format!("not a POP3 greeting: {}", sanitise(&line, MAX_QUOTED)),
            )),
        }
    }

    async fn capabilities(&mut self, lines: &mut Lines) -> Result<Capabilities, ProbeError> {
        match Self::command(lines, "CAPA", "the CAPA answer").await? {
            (Status::Ok, _) => {
                let body = Self::multi_line(lines, "the CAPA list").await?;
                Ok(parse_capa(body.iter().map(String::as_str)))
            }
            // CAPA is an extension (RFC 2449): a server without it still serves mail.
            (Status::Err, _) => Ok(Capabilities::default()),
        }
    }

    fn offers_starttls(&self, capabilities: &Capabilities) -> bool {
        capabilities.has("STARTTLS")
    }

    async fn starttls(&mut self, lines: &mut Lines) -> Result<(), ProbeError> {
        match Self::command(lines, "STLS", "the STLS answer").await? {
            (Status::Ok, _) => Ok(()),
            (Status::Err, text) => Err(ProbeError::new(
                ErrorKind::StarttlsUnavailable,
                format!("the server refused STLS: {}", sanitise(&text, MAX_QUOTED)),
            )),
        }
    }

    async fn login(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        credentials: &Credentials,
    ) -> Result<(), ProbeError> {
        if capabilities.offers_auth("PLAIN") {
            let command = format!("AUTH PLAIN {}", plain_sasl(credentials));
            return match Self::command(lines, &command, "the login answer").await? {
                (Status::Ok, _) => Ok(()),
                (Status::Err, text) => Err(rejected(&text, credentials)),
            };
        }
        if let (Status::Err, text) = Self::command(
            lines,
            &format!("USER {}", credentials.username),
            "the USER answer",
        )
        .await?
        {
            return Err(rejected(&text, credentials));
        }
        let command = format!("PASS {}", credentials.password.expose());
        match Self::command(lines, &command, "the login answer").await? {
            (Status::Ok, _) => Ok(()),
            (Status::Err, text) => Err(rejected(&text, credentials)),
        }
    }

    async fn login_sasl(
        &mut self,
        lines: &mut Lines,
        _capabilities: &Capabilities,
        login: &SaslLogin,
    ) -> Result<(), ProbeError> {
        // Without an initial response (RFC 5034 allows one, but Microsoft documents
        // the two-step form): the command, the `+` prompt, the response.
        lines
            .write_line(&format!("AUTH {}", login.mechanism.name()))
            .await?;
        let mut challenge: Option<String> = None;
        let mut prompted = false;
        loop {
            let line = lines
                .read_line()
                .await
                .map_err(|e| e.into_probe_error("the login answer"))?;
            if let Some((status, text)) = parse_status(&line) {
                return match status {
                    Status::Ok => Ok(()),
                    Status::Err => Err(login.refused(text, challenge.as_deref())),
                };
            }
            let Some(text) = line.strip_prefix('+') else {
                return Err(ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!("not a POP3 answer to AUTH: {}", login.quote(&line)),
                ));
            };
            if !prompted {
                prompted = true;
                lines.write_line(login.initial_response()).await?;
            } else if challenge.is_none() {
                challenge = Some(text.trim().to_owned());
                lines.write_line(login.mechanism.challenge_answer()).await?;
            } else {
                return Err(ProbeError::new(
                    ErrorKind::ProtocolError,
                    "the server sent a third continuation in the login",
                ));
            }
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
    fn status_lines_are_parsed() {
        assert_eq!(
            parse_status("+OK Dovecot ready."),
            Some((Status::Ok, "Dovecot ready."))
        );
        assert_eq!(
            parse_status("-ERR [AUTH] Authentication failed."),
            Some((Status::Err, "[AUTH] Authentication failed."))
        );
        assert_eq!(parse_status("+OK"), Some((Status::Ok, "")));
        assert_eq!(parse_status("* OK imap"), None);
    }

    #[test]
    fn multi_line_bodies_end_at_a_lone_dot_and_are_unstuffed() {
        assert_eq!(unstuff("."), None);
        assert_eq!(unstuff("..hidden"), Some(".hidden"));
        assert_eq!(unstuff("USER"), Some("USER"));
    }

    #[test]
    fn capa_lines_become_capabilities() {
        let caps = parse_capa([
            "CAPA",
            "TOP",
            "UIDL",
            "STLS",
            "USER",
            "SASL PLAIN login",
            "PIPELINING",
        ]);
        assert!(caps.has("STARTTLS") && caps.has("USER") && caps.has("UIDL"));
        assert!(caps.offers_auth("PLAIN") && caps.offers_auth("LOGIN"));
        assert!(!caps.has("SASL"));
    }
}
