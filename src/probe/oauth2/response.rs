//! What a token endpoint answers (RFC 6749 §5): the access token and its lifetime, or
//! an error (`invalid_client`, `unauthorized_client`, …) that Microsoft Entra ID
//! details with an AADSTS code. Everything read here is bounded: a hostile endpoint
//! gets a short, printable message and nothing more.

use std::time::Duration;

use serde::Deserialize;

use crate::probe::lines::sanitise;

/// The longest access token accepted: Microsoft's JWTs run to about 3 KiB, Google's
/// opaque tokens to a few hundred bytes; more is a broken or hostile endpoint.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The longest token response parsed: a token and a few fields.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;
/// The lifetime assumed when the endpoint does not say (`expires_in` is only
/// RECOMMENDED): an hour, what Microsoft and Google issue.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// The longest lifetime believed: a day. A token claiming more is refreshed daily.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest error description kept in a message.
const MAX_DESCRIPTION: usize = 300;

/// An access token as issued.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    /// The token itself (a secret).
    pub access_token: String,
    /// How long it is valid from now.
    pub lifetime: Duration,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("access_token", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// Why the endpoint gave no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The identity provider refused the client (an OAuth2 error answer).
    Rejected {
        /// The OAuth2 error code (`invalid_client`).
        error: String,
        /// The provider's description, sanitised and shortened.
        description: String,
        /// The AADSTS code of a Microsoft answer (`AADSTS7000215`).
        aadsts: Option<String>,
    },
    /// An HTTP status that is no OAuth2 answer (a 5xx, a 404 without JSON).
    Status(u16),
    /// A 200 that holds no usable token.
    Malformed(String),
}

impl Refusal {
    /// The message for a probe's failure: the code, what it means, what was said.
    pub fn describe(&self) -> String {
        match self {
            Refusal::Rejected {
                error,
                description,
                aadsts,
            } => {
                let meaning = aadsts
                    .as_deref()
                    .and_then(aadsts_meaning)
                    .or_else(|| oauth2_meaning(error));
                let mut text = format!("the identity provider refused the client: {error}");
                if let Some(code) = aadsts {
                    text.push_str(&format!(" ({code}"));
                    if let Some(meaning) = meaning {
                        text.push_str(&format!(": {meaning}"));
                    }
                    text.push(')');
                } else if let Some(meaning) = meaning {
                    text.push_str(&format!(" ({meaning})"));
                }
                if !description.is_empty() {
                    text.push_str(&format!("; it says: {description}"));
                }
                text
            }
            Refusal::Status(status) => {
                format!("the token endpoint answered HTTP {status} without an OAuth2 answer")
            }
            Refusal::Malformed(why) => format!("the token endpoint's answer {why}"),
        }
    }
}

#[derive(Deserialize)]
struct Success {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Failure {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<serde_json::Value>,
}

/// Reads a token endpoint's answer: `status` and at most [`MAX_RESPONSE_LEN`] bytes of
/// `body`.
///
/// # Errors
///
/// [`Refusal`] for an error answer, another status, or a 200 without a bearer token.
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<Issued, Refusal> {
    let body = &body[..body.len().min(MAX_RESPONSE_LEN)];
    if status == 200 {
        let success: Success = serde_json::from_slice(body)
            .map_err(|_| Refusal::Malformed("is not a JSON object".to_owned()))?;
        let token = success
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Refusal::Malformed("holds no `access_token`".to_owned()))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refusal::Malformed(format!(
                "holds a token longer than {} KiB",
                MAX_TOKEN_LEN / 1024
            )));
        }
        // A token goes into a SASL string and an HTTP header: printable ASCII only.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Refusal::Malformed(
                "holds a token with characters a bearer token cannot have".to_owned(),
            ));
        }
        if let Some(kind) = &success.token_type
            && !kind.eq_ignore_ascii_case("bearer")
        {
            return Err(Refusal::Malformed(format!(
                "holds a `{}` token, not a bearer token",
                sanitise(kind, 40)
            )));
        }
        return Ok(Issued {
            access_token: token,
            lifetime: lifetime(success.expires_in.as_ref()),
        });
    }
    match serde_json::from_slice::<Failure>(body) {
        Ok(Failure {
            error: Some(error),
            error_description,
            error_codes,
        }) => {
            let description = error_description.unwrap_or_default();
            let aadsts = aadsts_code(&description).or_else(|| {
                error_codes
                    .first()
                    .and_then(serde_json::Value::as_u64)
                    .map(|code| format!("AADSTS{code}"))
            });
            Err(Refusal::Rejected {
                error: sanitise(&error, 60),
                description: sanitise(first_line(&description), MAX_DESCRIPTION),
                aadsts,
            })
        }
        _ => Err(Refusal::Status(status)),
    }
}

/// `expires_in` as a number or a numeric string, bounded; the default when absent.
fn lifetime(value: Option<&serde_json::Value>) -> Duration {
    let seconds = match value {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    seconds.map_or(DEFAULT_LIFETIME, |s| {
        Duration::from_secs(s).min(MAX_LIFETIME)
    })
}

/// Microsoft's descriptions go on with a trace id and a timestamp on further lines.
fn first_line(text: &str) -> &str {
    text.split(['\r', '\n']).next().unwrap_or_default()
}

/// `AADSTS7000215` from `AADSTS7000215: Invalid client secret provided. …`.
fn aadsts_code(description: &str) -> Option<String> {
    let start = description.find("AADSTS")?;
    let digits: String = description[start + "AADSTS".len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .take(10)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

/// What the AADSTS codes a probe meets mean, in the words of the fix.
pub fn aadsts_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "AADSTS7000215" => "invalid client secret: the secret is wrong (use its value, not its id)",
        "AADSTS7000222" => "the client secret has expired: create a new one for the application",
        "AADSTS700016" => {
            "the application was not found in the tenant: check `client_id` and the tenant in \
             `token_url`, or it was never consented to in this tenant"
        }
        "AADSTS90002" => "the tenant in `token_url` does not exist",
        "AADSTS65001" => "the application has no admin consent for the permissions it asks for",
        "AADSTS650057" => "the permission asked for is not configured on the application",
        "AADSTS70011" => {
            "the scope is not valid: app-only Exchange access asks for \
             `https://outlook.office365.com/.default`"
        }
        "AADSTS700027" => {
            "the client assertion's signature does not verify: the certificate is not uploaded \
             to the application, or the key does not match"
        }
        "AADSTS700024" => {
            "the client assertion is not within its valid time: check this host's clock"
        }
        "AADSTS7000112" => "the application is disabled",
        "AADSTS500011" => "the resource (Exchange Online) is not found in the tenant",
        "AADSTS50034" => "the user account does not exist in the tenant",
        "AADSTS53003" => "a Conditional Access policy blocked the sign-in",
        _ => return None,
    })
}

/// What the RFC 6749 §5.2 error codes mean.
fn oauth2_meaning(error: &str) -> Option<&'static str> {
    Some(match error {
        "invalid_client" => "the client is unknown or its secret or certificate is wrong",
        "unauthorized_client" => "the client may not use this grant or scope",
        "invalid_grant" => "the assertion or the mailbox (`sub`) was refused",
        "invalid_scope" => "the scope is not valid for this client",
        "unsupported_grant_type" => "the endpoint does not support this grant",
        "invalid_request" => "the request is malformed (check `token_url`)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_and_its_lifetime_are_read() {
        let issued = parse_token_response(
            200,
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0.eyJ1.c2ln"}"#,
        )
        .unwrap();
        assert_eq!(issued.access_token, "eyJ0.eyJ1.c2ln");
        assert_eq!(issued.lifetime, Duration::from_secs(3599));
        let string_lifetime =
            parse_token_response(200, br#"{"access_token":"x","expires_in":"60"}"#).unwrap();
        assert_eq!(string_lifetime.lifetime, Duration::from_secs(60));
        let no_lifetime = parse_token_response(200, br#"{"access_token":"x"}"#).unwrap();
        assert_eq!(no_lifetime.lifetime, DEFAULT_LIFETIME);
        assert!(!format!("{issued:?}").contains("eyJ0"));
    }

    #[test]
    fn an_aadsts_error_keeps_its_code_and_meaning() {
        let refusal = parse_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 1\r\nCorrelation ID: 2","error_codes":[7000215]}"#,
        )
        .unwrap_err();
        let text = refusal.describe();
        assert!(
            text.contains("invalid_client (AADSTS7000215: invalid client secret"),
            "{text}"
        );
        assert!(!text.contains("Trace ID"), "{text}");
        let expired = parse_token_response(
            400,
            br#"{"error":"invalid_client","error_codes":[7000222]}"#,
        )
        .unwrap_err();
        assert!(
            expired
                .describe()
                .contains("AADSTS7000222: the client secret has expired")
        );
    }

    #[test]
    fn anything_else_is_a_status_or_malformed() {
        assert_eq!(
            parse_token_response(503, b"<html>busy</html>"),
            Err(Refusal::Status(503))
        );
        assert!(matches!(
            parse_token_response(200, b"not json"),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"access_token":"a b"}"#),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"access_token":"x","token_type":"mac"}"#),
            Err(Refusal::Malformed(_))
        ));
        let huge = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(MAX_TOKEN_LEN + 1));
        assert!(matches!(
            parse_token_response(200, huge.as_bytes()),
            Err(Refusal::Malformed(_))
        ));
    }
}
