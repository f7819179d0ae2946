//! The SASL side of an OAuth2 login, shared by IMAP, POP3 and SMTP: which mechanism,
//! the initial response (Google's and Microsoft's `XOAUTH2`, RFC 7628's
//! `OAUTHBEARER`), and the error challenge a server sends before it says no — base64
//! JSON with `status`, `schemes` and `scope` — which the client must answer (an empty
//! response for XOAUTH2, `%x01` for OAUTHBEARER) before the final answer comes.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use super::AccessToken;
use crate::config::Mechanism;
use crate::probe::lines::sanitise;
use crate::probe::mail::{Capabilities, base64_encode};
use crate::probe::redact::Redactor;
use crate::probe::{ErrorKind, ProbeError};

/// The longest challenge decoded: real ones are under 200 bytes.
pub const MAX_CHALLENGE_LEN: usize = 4 * 1024;
/// The longest value of a challenge field quoted in a message.
const MAX_FIELD: usize = 120;
/// The longest server text quoted in a message.
const MAX_QUOTED: usize = 160;

/// A SASL mechanism that carries a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// `XOAUTH2`.
    Xoauth2,
    /// `OAUTHBEARER` (RFC 7628).
    Oauthbearer,
}

impl SaslMechanism {
    /// The mechanism's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    /// What the client answers to an error challenge, base64-encoded as the
    /// protocols carry it: nothing for XOAUTH2, `%x01` for OAUTHBEARER (RFC 7628 §3.2.3).
    pub fn challenge_answer(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "",
            SaslMechanism::Oauthbearer => "AQ==",
        }
    }
}

/// The mechanism to log in with: the configured one, or for `auto` OAUTHBEARER when
/// the server offers it, else XOAUTH2.
///
/// # Errors
///
/// `auth_failed` when the server offers no login here at all (submission servers
/// often offer AUTH only after STARTTLS), `protocol_error` when it offers neither
/// mechanism and `auto` was asked for.
pub fn choose(configured: Mechanism, offered: &Capabilities) -> Result<SaslMechanism, ProbeError> {
    match configured {
        // Asked for by name: sent even when not advertised (some servers accept
        // mechanisms they do not list).
        Mechanism::Xoauth2 => Ok(SaslMechanism::Xoauth2),
        Mechanism::Oauthbearer => Ok(SaslMechanism::Oauthbearer),
        Mechanism::Auto if offered.offers_auth("OAUTHBEARER") => Ok(SaslMechanism::Oauthbearer),
        Mechanism::Auto if offered.offers_auth("XOAUTH2") => Ok(SaslMechanism::Xoauth2),
        Mechanism::Auto if offered.auth_mechanisms.is_empty() => Err(ProbeError::new(
            ErrorKind::AuthFailed,
            "the server offers no login on this connection (submission servers often offer \
             AUTH only after STARTTLS)",
        )),
        Mechanism::Auto => Err(ProbeError::new(
            ErrorKind::ProtocolError,
            format!(
                "the server offers neither OAUTHBEARER nor XOAUTH2 (it offers {}): set \
                 `mechanism` if it accepts one without saying so",
                offered.mechanisms_text()
            ),
        )),
    }
}

/// One login's SASL exchange: the mechanism, the initial response (a secret) and the
/// answer to an error challenge. `Debug` hides the response.
pub struct SaslLogin {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    initial_response: String,
    /// The forms of the token, to take out of server text before it is shortened.
    secrets: Redactor,
}

impl SaslLogin {
    /// The exchange for `user` presenting `token` to `host:port`; every form of the
    /// response is added to `redactor` first.
    pub fn new(
        mechanism: SaslMechanism,
        user: &str,
        token: &AccessToken,
        host: &str,
        port: u16,
        redactor: &mut Redactor,
    ) -> SaslLogin {
        let raw = initial_response(mechanism, user, token.expose(), host, port);
        let mut secrets = Redactor::default();
        secrets.add_secret(token.expose());
        secrets.add_encoded(raw.as_bytes());
        redactor.absorb(&secrets);
        SaslLogin {
            mechanism,
            initial_response: base64_encode(raw.as_bytes()),
            secrets,
        }
    }

    /// The base64 initial response, for the wire only.
    pub fn initial_response(&self) -> &str {
        &self.initial_response
    }

    /// The refusal of this login: `auth_failed` with the server's `text` (its
    /// secrets taken out, then shortened) and the decoded `challenge`, if one came.
    pub fn refused(&self, text: &str, challenge: Option<&str>) -> ProbeError {
        let mut message = format!(
            "{} login rejected: {}",
            self.mechanism.name(),
            sanitise(&self.secrets.clean(text), MAX_QUOTED)
        );
        if let Some(challenge) = challenge {
            message.push_str(&format!(" ({})", describe_challenge(challenge)));
        }
        ProbeError::new(ErrorKind::AuthFailed, message)
    }

    /// Server `text` with the token's forms taken out, shortened for a message.
    pub fn quote(&self, text: &str) -> String {
        sanitise(&self.secrets.clean(text), MAX_QUOTED)
    }
}

impl fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("initial_response", &"<redacted>")
            .finish()
    }
}

/// The initial response before base64: XOAUTH2's
/// `user=U^Aauth=Bearer T^A^A`, or OAUTHBEARER's `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`
/// with `,` and `=` in the user escaped (RFC 5801 saslname).
pub fn initial_response(
    mechanism: SaslMechanism,
    user: &str,
    token: &str,
    host: &str,
    port: u16,
) -> String {
    match mechanism {
        SaslMechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {token}\x01\x01"),
        SaslMechanism::Oauthbearer => {
            let name = user.replace('=', "=3D").replace(',', "=2C");
            format!("n,a={name},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
        }
    }
}

/// An error challenge, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `status`: an HTTP-like code (`401`) or an OAuth2 error (`invalid_token`).
    pub status: Option<String>,
    /// `schemes`: the schemes the server accepts (`bearer`).
    pub schemes: Option<String>,
    /// `scope`: the scope the server wants.
    pub scope: Option<String>,
}

impl fmt::Display for Challenge {
    /// `status 401, schemes bearer, scope https://mail.google.com/`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("status", &self.status),
            ("schemes", &self.schemes),
            ("scope", &self.scope),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name} {v}")))
        .collect();
        if parts.is_empty() {
            f.write_str("no details")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Decodes a server's error challenge: base64 of a JSON object with optional
/// `status`, `schemes` and `scope` strings (RFC 7628 §3.2.2).
///
/// # Errors
///
/// What is wrong with it: too long, not base64, not a JSON object.
pub fn parse_challenge(text: &str) -> Result<Challenge, String> {
    #[derive(Deserialize)]
    struct Raw {
        status: Option<serde_json::Value>,
        schemes: Option<serde_json::Value>,
        scope: Option<serde_json::Value>,
    }
    let text = text.trim();
    if text.len() > MAX_CHALLENGE_LEN {
        return Err(format!(
            "the challenge is longer than {} KiB",
            MAX_CHALLENGE_LEN / 1024
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| "the challenge is not base64".to_owned())?;
    let raw: Raw = serde_json::from_slice(&bytes)
        .map_err(|_| "the challenge is not a JSON object".to_owned())?;
    let field = |value: Option<serde_json::Value>| {
        value.map(|value| match value {
            serde_json::Value::String(text) => sanitise(&text, MAX_FIELD),
            other => sanitise(&other.to_string(), MAX_FIELD),
        })
    };
    Ok(Challenge {
        status: field(raw.status),
        schemes: field(raw.schemes),
        scope: field(raw.scope),
    })
}

/// A challenge as a message fragment: decoded, or what was wrong with it.
pub fn describe_challenge(text: &str) -> String {
    match parse_challenge(text) {
        Ok(challenge) => format!("the server says: {challenge}"),
        Err(why) => why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_responses_follow_the_mechanisms() {
        assert_eq!(
            initial_response(SaslMechanism::Xoauth2, "probe@example.com", "tok", "h", 993),
            "user=probe@example.com\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            initial_response(SaslMechanism::Oauthbearer, "a,b=c@x", "tok", "imap.x", 993),
            "n,a=a=2Cb=3Dc@x,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn auto_prefers_oauthbearer() {
        let offering = |mechanisms: &[&str]| Capabilities {
            auth_mechanisms: mechanisms.iter().map(|m| (*m).to_owned()).collect(),
            ..Capabilities::default()
        };
        let chosen = |configured, offered: &[&str]| {
            choose(configured, &offering(offered)).map_err(|e| e.kind)
        };
        assert_eq!(
            chosen(Mechanism::Auto, &["PLAIN", "XOAUTH2", "OAUTHBEARER"]),
            Ok(SaslMechanism::Oauthbearer)
        );
        assert_eq!(
            chosen(Mechanism::Auto, &["XOAUTH2"]),
            Ok(SaslMechanism::Xoauth2)
        );
        assert_eq!(
            chosen(Mechanism::Auto, &["PLAIN"]),
            Err(ErrorKind::ProtocolError)
        );
        assert_eq!(chosen(Mechanism::Auto, &[]), Err(ErrorKind::AuthFailed));
        assert_eq!(
            chosen(Mechanism::Xoauth2, &["OAUTHBEARER"]),
            Ok(SaslMechanism::Xoauth2)
        );
    }

    #[test]
    fn challenges_are_decoded_and_bounded() {
        let google = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";
        assert_eq!(
            parse_challenge(google).unwrap().to_string(),
            "status 400, schemes Bearer, scope https://mail.google.com/"
        );
        let numeric = base64_encode(br#"{"status":401}"#);
        assert_eq!(
            parse_challenge(&numeric).unwrap().status.as_deref(),
            Some("401")
        );
        assert!(parse_challenge("not base64!").is_err());
        assert!(parse_challenge(&base64_encode(b"[1,2]")).is_err());
        assert!(parse_challenge(&"A".repeat(MAX_CHALLENGE_LEN + 4)).is_err());
        assert_eq!(
            parse_challenge(&base64_encode(b"{}")).unwrap().to_string(),
            "no details"
        );
    }
}
