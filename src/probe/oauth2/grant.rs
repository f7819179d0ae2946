//! Asking the token endpoint: the request body of each grant, the signed assertion
//! (RFC 7523) a certificate or a service-account key makes, and the answer read
//! through the project's own HTTP client, so the identity provider's resolve, connect,
//! TLS and request are timed and typed like any other hop.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::http::Method;
use ::http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use base64::Engine as _;
use bytes::Bytes;
use tokio::time::Instant;

use super::AccessToken;
use super::response::{MAX_RESPONSE_LEN, Refusal, parse_token_response};
use crate::config::{ClientCredential, Endpoint, OAuth2, SigningKey};
use crate::probe::env::ProbeEnv;
use crate::probe::http::{self, Redirects, Request, Server};
use crate::probe::{ErrorKind, ProbeError, Recorder};

/// How long a signed assertion is valid: long enough for a slow round trip and some
/// clock skew, short enough that a copy is useless soon after.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(300);
/// How far back the assertion says it was issued, so a provider whose clock runs a
/// little behind ours does not see it as issued in the future.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// The most roles read from a token's claims, and the longest role name: enough for
/// the few Exchange roles a probe application has.
const MAX_ROLES: usize = 32;
const MAX_ROLE_LEN: usize = 100;

/// Asks `login`'s token endpoint for a token, trusting `trust`'s roots, recording the
/// hop in `recorder` (a side trip's own recorder).
///
/// # Errors
///
/// The hop's own reason (DNS, connect, TLS, a reset) when the endpoint was not
/// reached; `token_rejected` when the provider refused the client; `http_status` or
/// `protocol_error` for answers that are no OAuth2 answer.
pub async fn fetch(
    login: &OAuth2,
    trust: &Endpoint,
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<AccessToken, ProbeError> {
    let form = request_body(login, recorder)?;
    let endpoint = http::url_endpoint(&login.token_url, trust, None);
    let mut request = Request::new(Method::POST, login.token_url.clone());
    request.headers.push((
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    ));
    request
        .headers
        .push((ACCEPT, HeaderValue::from_static("application/json")));
    request.body = Bytes::from(form);
    recorder.note(format!(
        "asking {} for a token ({} grant, client {}, scope {})",
        login.token_url,
        grant_name(login),
        login.client_id,
        login.scope
    ));
    let server = Server {
        endpoint: &endpoint,
        send_credentials: false,
        allow_redirects: &[],
        bearer: None,
    };
    let sent_at = Instant::now();
    let response = http::fetch(
        request,
        server,
        Redirects::Stop,
        true,
        env,
        deadline,
        recorder,
    )
    .await
    .map_err(|_| hop_failure(login, recorder))?;
    let status = response.status.as_u16();
    let body = &response.body[..response.body.len().min(MAX_RESPONSE_LEN)];
    match parse_token_response(status, body) {
        Ok(issued) => {
            // The lifetime counts from when the request left: never longer than true.
            let valid_for = issued.lifetime;
            recorder.redactor.add_secret(&issued.access_token);
            let roles = roles(&issued.access_token);
            recorder.note(format!(
                "token issued, valid for {}{}",
                humantime::format_duration(valid_for),
                if roles.is_empty() {
                    String::new()
                } else {
                    format!(", roles {}", roles.join(" "))
                }
            ));
            Ok(AccessToken::new(
                issued.access_token,
                sent_at,
                SystemTime::now(),
                valid_for,
                roles,
            ))
        }
        Err(refusal) => {
            let kind = match &refusal {
                Refusal::Rejected { .. } => ErrorKind::TokenRejected,
                Refusal::Status(_) => ErrorKind::HttpStatus,
                Refusal::Malformed(_) => ErrorKind::ProtocolError,
            };
            Err(ProbeError::new(
                kind,
                format!(
                    "{}: {}",
                    login.identity_provider(),
                    recorder.redactor.clean(&refusal.describe())
                ),
            ))
        }
    }
}

/// The failure of the hop itself, as the side trip's recorder has it.
pub(super) fn hop_failure(login: &OAuth2, recorder: &Recorder) -> ProbeError {
    match recorder.failure() {
        Some(failure) => ProbeError::new(
            failure.kind,
            format!(
                "token endpoint {} ({}): {}",
                login.identity_provider(),
                failure.phase,
                failure.message
            ),
        ),
        None => ProbeError::new(
            ErrorKind::ProtocolError,
            format!(
                "token endpoint {}: the request failed",
                login.identity_provider()
            ),
        ),
    }
}

fn grant_name(login: &OAuth2) -> &'static str {
    match &login.credential {
        ClientCredential::Secret(_) => "client_credentials with a client secret",
        ClientCredential::Certificate(_) => "client_credentials with a certificate",
        ClientCredential::ServiceAccount(_) => "jwt-bearer",
    }
}

/// The form the grant POSTs; every secret form in it is added to the redactor.
fn request_body(login: &OAuth2, recorder: &mut Recorder) -> Result<String, ProbeError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    match &login.credential {
        ClientCredential::Secret(secret) => {
            recorder.redactor.add_secret(secret.expose());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &login.client_id)
                .append_pair("client_secret", secret.expose())
                .append_pair("scope", &login.scope);
        }
        ClientCredential::Certificate(certificate) => {
            let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            let header = serde_json::json!({
                "alg": certificate.key.algorithm(),
                "typ": "JWT",
                "x5t": b64(&certificate.sha1_thumbprint),
                "x5t#S256": b64(&certificate.sha256_thumbprint),
            });
            let (issued, expires) = assertion_window();
            let claims = serde_json::json!({
                "aud": login.token_url.as_str(),
                "iss": login.client_id,
                "sub": login.client_id,
                "jti": unique_id()?,
                "nbf": issued,
                "iat": issued,
                "exp": expires,
            });
            let assertion = signed_jwt(&header, &claims, &certificate.key)?;
            recorder.redactor.add_secret(&assertion);
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &login.client_id)
                .append_pair("scope", &login.scope)
                .append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion);
        }
        ClientCredential::ServiceAccount(account) => {
            let mut header = serde_json::json!({
                "alg": account.key.algorithm(),
                "typ": "JWT",
            });
            if let Some(id) = &account.key_id {
                header["kid"] = serde_json::Value::String(id.clone());
            }
            let (issued, expires) = assertion_window();
            let claims = serde_json::json!({
                "iss": login.client_id,
                "sub": login.subject,
                "scope": login.scope,
                "aud": login.token_url.as_str(),
                "iat": issued,
                "exp": expires,
            });
            let assertion = signed_jwt(&header, &claims, &account.key)?;
            recorder.redactor.add_secret(&assertion);
            form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                .append_pair("assertion", &assertion);
        }
    }
    Ok(form.finish())
}

/// `iat` and `exp` of an assertion made now, Unix seconds.
fn assertion_window() -> (u64, u64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (
        now.saturating_sub(CLOCK_SKEW.as_secs()),
        now + ASSERTION_LIFETIME.as_secs(),
    )
}

/// A random `jti`: providers refuse an assertion id they have seen.
fn unique_id() -> Result<String, ProbeError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| {
            ProbeError::new(
                ErrorKind::LocalResources,
                "no random bytes for the assertion id",
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `base64url(header).base64url(claims).base64url(signature)` (RFC 7515 compact form).
pub fn signed_jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    key: &SigningKey,
) -> Result<String, ProbeError> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = key
        .sign(input.as_bytes())
        .map_err(|error| ProbeError::new(ErrorKind::ProtocolError, error.to_string()))?;
    Ok(format!("{input}.{}", b64(&signature)))
}

/// The `roles` claim of a JWT access token (Microsoft's app roles, such as
/// `IMAP.AccessAsApp`), read without verifying anything: only to explain a refused
/// login. Empty for an opaque token.
pub fn roles(token: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Claims {
        #[serde(default)]
        roles: Vec<serde_json::Value>,
    }
    let Some(payload) = token.split('.').nth(1) else {
        return Vec::new();
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    let Ok(claims) = serde_json::from_slice::<Claims>(&bytes) else {
        return Vec::new();
    };
    claims
        .roles
        .into_iter()
        .filter_map(|role| match role {
            serde_json::Value::String(role)
                if role.len() <= MAX_ROLE_LEN && role.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Some(role)
            }
            _ => None,
        })
        .take(MAX_ROLES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_claims_of_a_jwt_only() {
        let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let token = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"RS256"}"#),
            b64(r#"{"roles":["IMAP.AccessAsApp","POP.AccessAsApp",7,"bad role"]}"#)
        );
        assert_eq!(roles(&token), ["IMAP.AccessAsApp", "POP.AccessAsApp"]);
        assert!(roles("ya29.opaque-google-token").is_empty());
        assert!(roles("a.!!!.c").is_empty());
    }
}
