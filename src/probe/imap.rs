//! `protocol: imap` (RFC 3501 / 9051): greeting, CAPABILITY, STARTTLS, LOGIN or
//! AUTHENTICATE PLAIN (honouring LOGINDISABLED) or XOAUTH2 / OAUTHBEARER (with
//! SASL-IR when offered), LOGOUT.

use super::lines::{MAX_REPLY_LINES, greeting_error, sanitise};
use super::mail::{Capabilities, Dialogue, Lines, plain_sasl, redact};
use super::oauth2::sasl::SaslLogin;
use super::{ErrorKind, ProbeError};
use crate::config::Credentials;

/// The longest server text quoted in a message.
const MAX_QUOTED: usize = 160;

/// What the first line from the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// `* OK …`: ready, not authenticated.
    Ok,
    /// `* PREAUTH …`: already authenticated (a login is not needed).
    Preauth,
    /// `* BYE …`: the server refuses service.
    Bye,
    /// Anything else.
    Invalid,
}

/// Classifies a greeting line.
pub fn parse_greeting(line: &str) -> Greeting {
    let mut words = line.splitn(3, ' ');
    if words.next() != Some("*") {
        return Greeting::Invalid;
    }
    match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("OK") => Greeting::Ok,
        Some("PREAUTH") => Greeting::Preauth,
        Some("BYE") => Greeting::Bye,
        _ => Greeting::Invalid,
    }
}

/// The status of a tagged response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// Operational failure (wrong password, …).
    No,
    /// Protocol failure (the server did not understand us).
    Bad,
}

/// One response line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// `* …` untagged data.
    Untagged(&'a str),
    /// `+ …` continuation request.
    Continuation(&'a str),
    /// `TAG OK|NO|BAD text`.
    Tagged {
        /// The tag.
        tag: &'a str,
        /// The status.
        status: Status,
        /// The rest of the line.
        text: &'a str,
    },
}

/// Parses one response line.
///
/// # Errors
///
/// A description of what is wrong with the line.
pub fn parse_response(line: &str) -> Result<Response<'_>, String> {
    if let Some(rest) = line.strip_prefix("* ") {
        return Ok(Response::Untagged(rest));
    }
    if line == "+" || line.starts_with("+ ") {
        return Ok(Response::Continuation(line.get(2..).unwrap_or_default()));
    }
    let mut words = line.splitn(3, ' ');
    let tag = words.next().filter(|t| !t.is_empty()).ok_or("empty line")?;
    let status = match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("OK") => Status::Ok,
        Some("NO") => Status::No,
        Some("BAD") => Status::Bad,
        _ => {
            return Err(format!(
                "not an IMAP response: `{}`",
                sanitise(line, MAX_QUOTED)
            ));
        }
    };
    Ok(Response::Tagged {
        tag,
        status,
        text: words.next().unwrap_or_default(),
    })
}

/// The capabilities in `* CAPABILITY …` data or a `[CAPABILITY …]` response code.
pub fn parse_capabilities(data: &str) -> Option<Capabilities> {
    let list = if let Some(rest) = strip_prefix_ignore_case(data, "CAPABILITY ") {
        rest
    } else {
        let start = data.find("[CAPABILITY ")? + "[CAPABILITY ".len();
        let end = data[start..].find(']')? + start;
        &data[start..end]
    };
    let mut capabilities = Capabilities::default();
    for token in list.split_ascii_whitespace() {
        let token = token.to_ascii_uppercase();
        match token.strip_prefix("AUTH=") {
            Some("") => {}
            Some(mechanism) => {
                capabilities.auth_mechanisms.insert(mechanism.to_owned());
            }
            None => {
                capabilities.keywords.insert(token);
            }
        }
    }
    Some(capabilities)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// `"text"` with `\` and `"` escaped, or `None` when the text cannot be a quoted string
/// (CR, LF, NUL or non-ASCII need a literal, which LOGIN over a probe does not use).
pub fn quoted(text: &str) -> Option<String> {
    if text
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || !b.is_ascii())
    {
        return None;
    }
    Some(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The IMAP side of a mail session.
#[derive(Debug, Default)]
pub struct Imap {
    next_tag: u32,
    preauthenticated: bool,
}

/// The outcome of one tagged command.
struct Completion {
    untagged: Vec<String>,
    status: Status,
    text: String,
}

impl Imap {
    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("a{:03}", self.next_tag)
    }

    /// Sends `command` and reads responses up to its tagged completion.
    async fn command(
        &mut self,
        lines: &mut Lines,
        command: &str,
        what: &str,
    ) -> Result<Completion, ProbeError> {
        let tag = self.tag();
        lines.write_line(&format!("{tag} {command}")).await?;
        self.complete(lines, &tag, what).await
    }

    async fn complete(
        &mut self,
        lines: &mut Lines,
        tag: &str,
        what: &str,
    ) -> Result<Completion, ProbeError> {
        let mut untagged = Vec::new();
        loop {
            let line = lines
                .read_line()
                .await
                .map_err(|e| e.into_probe_error(what))?;
            match parse_response(&line).map_err(|e| ProbeError::new(ErrorKind::ProtocolError, e))? {
                Response::Tagged {
                    tag: got,
                    status,
                    text,
                } if got == tag => {
                    return Ok(Completion {
                        untagged,
                        status,
                        text: text.to_owned(),
                    });
                }
                // `get`, not slicing: byte 3 may fall inside a multi-byte character
                // (a panic found by fuzzing).
                Response::Untagged(data)
                    if data
                        .get(..3)
                        .is_some_and(|word| word.eq_ignore_ascii_case("BYE")) =>
                {
                    return Err(ProbeError::new(
                        ErrorKind::ServiceUnavailable,
                        format!(
                            "the server closed the session: {}",
                            sanitise(&line, MAX_QUOTED)
                        ),
                    ));
                }
                Response::Untagged(data) => {
                    if untagged.len() >= MAX_REPLY_LINES {
                        return Err(ProbeError::new(
                            ErrorKind::ProtocolError,
                            format!("more than {MAX_REPLY_LINES} lines in {what}"),
                        ));
                    }
                    untagged.push(data.to_owned());
                }
                Response::Tagged { .. } | Response::Continuation(_) => {
                    return Err(ProbeError::new(
                        ErrorKind::ProtocolError,
                        format!("unexpected line in {what}: {}", sanitise(&line, MAX_QUOTED)),
                    ));
                }
            }
        }
    }

    async fn authenticate_plain(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        credentials: &Credentials,
    ) -> Result<Completion, ProbeError> {
        let response = plain_sasl(credentials);
        if capabilities.has("SASL-IR") {
            return self
                .command(
                    lines,
                    &format!("AUTHENTICATE PLAIN {response}"),
                    "the login answer",
                )
                .await;
        }
        let tag = self.tag();
        match self.prompt(lines, &tag, "PLAIN").await? {
            Some(completion) => Ok(completion),
            None => {
                lines.write_line(&response).await?;
                self.complete(lines, &tag, "the login answer").await
            }
        }
    }

    /// `TAG AUTHENTICATE MECHANISM` without an initial response, and the answer:
    /// `None` for the `+` prompt (the caller sends the response), or the tagged
    /// completion of a server that refused at once.
    async fn prompt(
        &mut self,
        lines: &mut Lines,
        tag: &str,
        mechanism: &str,
    ) -> Result<Option<Completion>, ProbeError> {
        lines
            .write_line(&format!("{tag} AUTHENTICATE {mechanism}"))
            .await?;
        let line = lines
            .read_line()
            .await
            .map_err(|e| e.into_probe_error("the login prompt"))?;
        match parse_response(&line) {
            Ok(Response::Continuation(_)) => Ok(None),
            Ok(Response::Tagged {
                tag: got,
                status,
                text,
            }) if got == tag => Ok(Some(Completion {
                untagged: Vec::new(),
                status,
                text: text.to_owned(),
            })),
            // Nothing secret was sent yet: the line is quoted as it is.
            _ => Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!(
                    "unexpected answer to AUTHENTICATE: {}",
                    sanitise(&line, MAX_QUOTED)
                ),
            )),
        }
    }
}

impl Dialogue for Imap {
    async fn greeting(&mut self, lines: &mut Lines) -> Result<String, ProbeError> {
        let line = lines.read_line().await.map_err(greeting_error)?;
        match parse_greeting(&line) {
            Greeting::Ok => Ok(line),
            Greeting::Preauth => {
                self.preauthenticated = true;
                Ok(line)
            }
            Greeting::Bye => Err(ProbeError::new(
                ErrorKind::ServiceUnavailable,
                format!(
                    "the server refused the session: {}",
                    sanitise(&line, MAX_QUOTED)
                ),
            )),
            Greeting::Invalid => Err(ProbeError::new(
                ErrorKind::BadGreeting,
                format!("not an IMAP greeting: {}", sanitise(&line, MAX_QUOTED)),
            )),
        }
    }

    async fn capabilities(&mut self, lines: &mut Lines) -> Result<Capabilities, ProbeError> {
        let completion = self
            .command(lines, "CAPABILITY", "the CAPABILITY answer")
            .await?;
        if completion.status != Status::Ok {
            return Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!(
                    "CAPABILITY failed: {}",
                    sanitise(&completion.text, MAX_QUOTED)
                ),
            ));
        }
        completion
            .untagged
            .iter()
            .find_map(|data| parse_capabilities(data))
            .or_else(|| parse_capabilities(&completion.text))
            .ok_or_else(|| {
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    "the server sent no CAPABILITY list",
                )
            })
    }

    fn offers_starttls(&self, capabilities: &Capabilities) -> bool {
        capabilities.has("STARTTLS")
    }

    async fn starttls(&mut self, lines: &mut Lines) -> Result<(), ProbeError> {
        let completion = self
            .command(lines, "STARTTLS", "the STARTTLS answer")
            .await?;
        match completion.status {
            Status::Ok => Ok(()),
            _ => Err(ProbeError::new(
                ErrorKind::StarttlsUnavailable,
                format!(
                    "the server refused STARTTLS: {}",
                    sanitise(&completion.text, MAX_QUOTED)
                ),
            )),
        }
    }

    async fn login(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        credentials: &Credentials,
    ) -> Result<(), ProbeError> {
        if self.preauthenticated {
            return Ok(());
        }
        let completion = if capabilities.offers_auth("PLAIN") {
            self.authenticate_plain(lines, capabilities, credentials)
                .await?
        } else if capabilities.has("LOGINDISABLED") {
            return Err(ProbeError::new(
                ErrorKind::ProtocolError,
                "the server disables LOGIN here (LOGINDISABLED) and offers no AUTH=PLAIN: \
                 use `tls: starttls` or `tls: implicit`",
            ));
        } else {
            let (Some(user), Some(password)) = (
                quoted(&credentials.username),
                quoted(credentials.password.expose()),
            ) else {
                return Err(ProbeError::new(
                    ErrorKind::ProtocolError,
                    "the user name or password has characters LOGIN cannot carry, and the \
                     server offers no AUTH=PLAIN",
                ));
            };
            self.command(
                lines,
                &format!("LOGIN {user} {password}"),
                "the login answer",
            )
            .await?
        };
        let text = sanitise(&redact(&completion.text, credentials), MAX_QUOTED);
        match completion.status {
            Status::Ok => Ok(()),
            Status::No => Err(ProbeError::new(
                ErrorKind::AuthFailed,
                format!("login rejected: {text}"),
            )),
            Status::Bad => Err(ProbeError::new(
                ErrorKind::ProtocolError,
                format!("login not understood: {text}"),
            )),
        }
    }

    async fn login_sasl(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        login: &SaslLogin,
    ) -> Result<(), ProbeError> {
        if self.preauthenticated {
            return Ok(());
        }
        let name = login.mechanism.name();
        let tag = self.tag();
        if capabilities.has("SASL-IR") {
            lines
                .write_line(&format!(
                    "{tag} AUTHENTICATE {name} {}",
                    login.initial_response()
                ))
                .await?;
        } else if let Some(refused) = self.prompt(lines, &tag, name).await? {
            return sasl_outcome(refused.status, &refused.text, None, login);
        } else {
            lines.write_line(login.initial_response()).await?;
        }
        let mut challenge: Option<String> = None;
        for _ in 0..MAX_REPLY_LINES {
            let line = lines
                .read_line()
                .await
                .map_err(|e| e.into_probe_error("the login answer"))?;
            match parse_response(&line) {
                // The error challenge: answered as the mechanism requires, then NO.
                Ok(Response::Continuation(text)) if challenge.is_none() => {
                    challenge = Some(text.to_owned());
                    lines.write_line(login.mechanism.challenge_answer()).await?;
                }
                Ok(Response::Tagged {
                    tag: got,
                    status,
                    text,
                }) if got == tag => {
                    return sasl_outcome(status, text, challenge.as_deref(), login);
                }
                Ok(Response::Untagged(_)) => {}
                _ => {
                    return Err(ProbeError::new(
                        ErrorKind::ProtocolError,
                        format!(
                            "unexpected line in the login answer: {}",
                            login.quote(&line)
                        ),
                    ));
                }
            }
        }
        Err(ProbeError::new(
            ErrorKind::ProtocolError,
            format!("more than {MAX_REPLY_LINES} lines in the login answer"),
        ))
    }

    async fn goodbye(&mut self, lines: &mut Lines) {
        // BYE before the tagged OK is normal here; whatever comes back is fine.
        let tag = self.tag();
        if lines.write_line(&format!("{tag} LOGOUT")).await.is_ok() {
            for _ in 0..MAX_REPLY_LINES {
                match lines.read_line().await {
                    Ok(line) if line.starts_with(&tag) => break,
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
    }
}

/// The tagged answer to an OAuth2 AUTHENTICATE.
fn sasl_outcome(
    status: Status,
    text: &str,
    challenge: Option<&str>,
    login: &SaslLogin,
) -> Result<(), ProbeError> {
    match status {
        Status::Ok => Ok(()),
        Status::No => Err(login.refused(text, challenge)),
        Status::Bad => Err(ProbeError::new(
            ErrorKind::ProtocolError,
            format!("login not understood: {}", login.quote(text)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_are_classified() {
        assert_eq!(
            parse_greeting("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready."),
            Greeting::Ok
        );
        assert_eq!(
            parse_greeting("* PREAUTH IMAP4rev1 server logged in as Smith"),
            Greeting::Preauth
        );
        assert_eq!(
            parse_greeting("* BYE Autologout; idle for too long"),
            Greeting::Bye
        );
        assert_eq!(
            parse_greeting("220 mail.example.com ESMTP"),
            Greeting::Invalid
        );
        assert_eq!(parse_greeting(""), Greeting::Invalid);
    }

    #[test]
    fn capabilities_come_from_data_or_a_response_code() {
        let caps = parse_capabilities(
            "CAPABILITY IMAP4rev1 SASL-IR STARTTLS AUTH=PLAIN auth=login LOGINDISABLED",
        )
        .unwrap();
        assert!(caps.has("STARTTLS") && caps.has("LOGINDISABLED") && caps.has("SASL-IR"));
        assert_eq!(
            caps.auth_mechanisms.iter().collect::<Vec<_>>(),
            ["LOGIN", "PLAIN"]
        );
        let caps = parse_capabilities("OK [CAPABILITY IMAP4rev1 IDLE] Logged in").unwrap();
        assert!(caps.has("IDLE"));
        assert_eq!(parse_capabilities("OK done"), None);
    }

    #[test]
    fn responses_are_parsed() {
        assert_eq!(
            parse_response("* CAPABILITY IMAP4rev1"),
            Ok(Response::Untagged("CAPABILITY IMAP4rev1"))
        );
        assert_eq!(parse_response("+ "), Ok(Response::Continuation("")));
        assert_eq!(
            parse_response("a001 NO [AUTHENTICATIONFAILED] Authentication failed."),
            Ok(Response::Tagged {
                tag: "a001",
                status: Status::No,
                text: "[AUTHENTICATIONFAILED] Authentication failed."
            })
        );
        assert!(parse_response("a001 MAYBE").is_err());
    }

    #[test]
    fn quoting_escapes_or_refuses() {
        assert_eq!(
            quoted(r#"pa"ss\word"#).as_deref(),
            Some(r#""pa\"ss\\word""#)
        );
        assert_eq!(quoted("line\nbreak"), None);
        assert_eq!(quoted("pässword"), None);
    }
}
