//! The HTTP messages on the wire: the request we build (Host, our User-Agent, Basic
//! credentials marked sensitive), the bounded body read, hyper's errors typed, and what
//! of a response's headers is worth a line in `/debug`.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::{BodyExt, Full};

use super::{MAX_BODY_BYTES, Request, USER_AGENT};
use crate::config::Credentials;
use crate::probe::lines::sanitise;
use crate::probe::oauth2::AccessToken;
use crate::probe::redact::Redactor;
use crate::probe::{ErrorKind, ProbeError};

/// The auth schemes named in one `WWW-Authenticate` value. A value may hold several
/// challenges (`Negotiate, NTLM`) and a challenge may carry parameters
/// (`Basic realm="x", charset="UTF-8"`): a scheme is a token not followed by `=`.
pub fn challenge_schemes(value: &str) -> Vec<String> {
    let mut schemes = Vec::new();
    for part in value.split(',') {
        let first = part.split_whitespace().next().unwrap_or_default();
        if !first.is_empty()
            && !first.contains('=')
            && first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.!#$%&'*+^`|~".contains(c))
        {
            schemes.push(first.to_owned());
        }
    }
    schemes
}

/// `Negotiate, NTLM`, or `nothing` when the server sent no challenge.
pub fn challenge_list(challenges: &[String]) -> String {
    if challenges.is_empty() {
        "nothing".to_owned()
    } else {
        challenges.join(", ")
    }
}

/// What a request proves who it is with.
#[derive(Debug, Clone, Copy)]
pub(super) enum Authorization<'a> {
    /// HTTP Basic with a user name and password.
    Basic(&'a Credentials),
    /// An OAuth2 access token.
    Bearer(&'a AccessToken),
}

/// The hyper request for `request`: origin-form target, Host, our User-Agent, and
/// `Connection: close` (one request per connection).
pub(super) fn build(
    request: &Request,
    authorization: Option<Authorization<'_>>,
) -> http::Request<Full<Bytes>> {
    let mut target = request.url.path().to_owned();
    if let Some(query) = request.url.query() {
        target.push('?');
        target.push_str(query);
    }
    let host = match (request.url.host_str(), request.url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => String::new(),
    };
    let mut builder = http::Request::builder()
        .method(request.method.clone())
        .uri(target)
        .header(header::HOST, host)
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        .header(header::CONNECTION, "close");
    match authorization {
        Some(Authorization::Basic(credentials)) => {
            builder = builder.header(header::AUTHORIZATION, basic_authorization(credentials));
        }
        Some(Authorization::Bearer(token)) => {
            builder = builder.header(header::AUTHORIZATION, bearer_authorization(token));
        }
        None => {}
    }
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    // Every part was validated (a parsed URL, fixed header names), so building cannot
    // fail; should it ever, an empty GET to `/` is the harmless fallback.
    builder
        .body(Full::new(request.body.clone()))
        .unwrap_or_else(|_| http::Request::new(Full::new(Bytes::new())))
}

/// `Basic base64(user:password)`, marked sensitive so hyper never logs it.
pub(super) fn basic_authorization(credentials: &Credentials) -> HeaderValue {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        credentials.username,
        credentials.password.expose()
    ));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

/// `Bearer <token>`, marked sensitive so hyper never logs it.
pub(super) fn bearer_authorization(token: &AccessToken) -> HeaderValue {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    value.set_sensitive(true);
    value
}

/// Reads at most [`MAX_BODY_BYTES`]; returns the bytes and whether there was more.
pub(super) async fn read_bounded(
    mut body: hyper::body::Incoming,
) -> Result<(Bytes, bool), ProbeError> {
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| http_error(&error, "while reading the body"))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let room = MAX_BODY_BYTES - collected.len();
        if data.len() > room {
            collected.extend_from_slice(&data[..room]);
            return Ok((collected.freeze(), true));
        }
        collected.extend_from_slice(&data);
    }
    Ok((collected.freeze(), false))
}

/// Types a hyper error: a reset, the server hanging up early, or broken HTTP.
pub(super) fn http_error(error: &hyper::Error, when: &str) -> ProbeError {
    let io =
        std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
    if let Some(io) = io
        && matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        )
    {
        return ProbeError::new(
            ErrorKind::ConnectionReset,
            format!("the server reset the connection {when}: {io}"),
        );
    }
    let what = if error.is_incomplete_message() {
        "the server closed the connection"
    } else if error.is_parse_too_large() {
        "the response headers are too large"
    } else if error.is_parse() || error.is_parse_status() {
        "the server's answer is not valid HTTP/1.1"
    } else {
        "the HTTP exchange failed"
    };
    ProbeError::new(ErrorKind::ProtocolError, format!("{what} {when}: {error}"))
}

/// The headers worth a line in `/debug`: where a redirect goes, what a 401 asks
/// for, what the server is. Sanitised and short; never a cookie.
pub(super) fn describe_headers(headers: &HeaderMap, secrets: &Redactor) -> String {
    let mut text = String::new();
    for name in [
        header::LOCATION,
        header::WWW_AUTHENTICATE,
        header::SERVER,
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
    ] {
        for value in headers.get_all(&name) {
            // Secrets out before the value is cut: a server may echo our Authorization.
            let raw = String::from_utf8_lossy(value.as_bytes());
            let value = sanitise(&secrets.clean(&raw), 120);
            let _ = write!(text, "; {name}: {value}");
        }
    }
    text
}
