//! The HTTP/1.1 client every web probe uses, written once.
//!
//! hyper's `client::conn::http1` runs over a connection the probe dialled itself with
//! [`dial::open`], so resolve, connect and TLS are the shared, typed phases; then
//! `request` is the time until the response headers arrive and `response` the time to
//! read the body. Redirects are followed up to [`MAX_REDIRECTS`], each hop on a new
//! connection and each noted in the probe's log. Bodies are read up to
//! [`MAX_BODY_BYTES`]; the rest is never read.

mod message;

use std::net::IpAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::Full;

use hyper_util::rt::TokioIo;
use message::{Authorization, build, describe_headers, http_error, read_bounded};
pub use message::{challenge_list, challenge_schemes};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use url::Url;

use super::dial;
use super::{ErrorKind, Failed, Phase, ProbeError, ProtocolFacts, Recorder};
use crate::config::{AllowRule, Credentials, Endpoint, TlsMode};
use crate::probe::env::ProbeEnv;
use crate::probe::oauth2::AccessToken;

/// Redirects followed before a probe gives up: more than any sane login flow needs
/// (browsers allow about 20), few enough to stop a loop quickly.
pub const MAX_REDIRECTS: u32 = 10;
/// The most body bytes read: a login page or an Autodiscover answer is a few KiB, and
/// a hostile or broken server must not make the agent buffer without bound.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Bound on the status line plus headers (hyper's buffer): real servers send under
/// 16 KiB of headers.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At most this many response headers.
const MAX_HEADERS: usize = 100;
/// How we introduce ourselves: operators grepping their access logs should find us.
pub(crate) const USER_AGENT: &str = concat!("mailprobe/", env!("CARGO_PKG_VERSION"));

/// What the probe learned over HTTP, for `/debug` and the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpFacts {
    /// The status of the last answer received.
    pub status: Option<u16>,
    /// Redirects followed.
    pub redirects: u32,
    /// Bytes of the final body read (at most [`MAX_BODY_BYTES`]).
    pub body_bytes: usize,
    /// Whether the body went on past [`MAX_BODY_BYTES`] (the rest was not read).
    pub body_truncated: bool,
    /// What Autodiscover answered, for the autodiscover check.
    pub autodiscover: Option<super::autodiscover::Answer>,
}

impl std::fmt::Display for HttpFacts {
    /// `status 200, 1 redirect(s), 1532 body bytes read`, and what Autodiscover answered.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "status {status}")?,
            None => f.write_str("no answer")?,
        }
        write!(
            f,
            ", {} redirect(s), {} body bytes read{}",
            self.redirects,
            self.body_bytes,
            if self.body_truncated {
                " (truncated)"
            } else {
                ""
            }
        )?;
        if let Some(answer) = &self.autodiscover {
            write!(f, "; Autodiscover {answer}")?;
        }
        Ok(())
    }
}

/// One request: method, URL, extra headers and a body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Where to send it (`http` or `https`).
    pub url: Url,
    /// Headers beyond Host, User-Agent, Accept, Connection and Authorization.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for GET and OPTIONS).
    pub body: Bytes,
}

impl Request {
    /// A request without a body.
    pub fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A GET.
    pub fn get(url: Url) -> Self {
        Request::new(Method::GET, url)
    }
}

/// How a fetch treats redirects.
#[derive(Debug, Clone, Copy)]
pub enum Redirects {
    /// Return the first answer, redirect or not.
    Stop,
    /// Follow up to [`MAX_REDIRECTS`]; with `stop_at`, return a redirect whose target
    /// it accepts instead of following it (a logon page, say).
    Follow {
        /// Whether a POST stays a POST after a 301/302 (Autodiscover clients re-POST;
        /// browsers switch to GET).
        keep_post: bool,
        /// A redirect target not to follow.
        stop_at: Option<fn(&Url) -> bool>,
    },
}

impl Redirects {
    /// Follow redirects the way a browser does.
    pub const BROWSER: Redirects = Redirects::Follow {
        keep_post: false,
        stop_at: None,
    };
}

/// The server the target names and how to talk to it: its trust anchors and SNI name
/// apply to every hop, its credentials only to hops to that same origin.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    /// The configured endpoint (host, port, server name, roots, credentials).
    pub endpoint: &'a Endpoint,
    /// Send the endpoint's credentials (HTTP Basic) to its origin.
    pub send_credentials: bool,
    /// Hosts a redirect may lead to although they are loopback, link-local or
    /// unspecified addresses, or plain HTTP after HTTPS (`allow_redirects`).
    pub allow_redirects: &'a [AllowRule],
    /// The OAuth2 access token sent (`Authorization: Bearer`) where the credentials
    /// go, for an endpoint whose credentials are `oauth2`. Without one, such an
    /// endpoint's requests carry no credentials at all.
    pub bearer: Option<&'a AccessToken>,
}

/// An answer, with at most [`MAX_BODY_BYTES`] of its body.
#[derive(Debug)]
pub struct Response {
    /// The URL that gave this answer (after redirects).
    pub url: Url,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body read (empty when the caller did not ask for it).
    pub body: Bytes,
}

impl Response {
    /// The schemes of the `WWW-Authenticate` challenges (`Negotiate`, `NTLM`, `Basic`).
    pub fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(challenge_schemes)
            .collect()
    }

    /// `Location`, resolved against the request URL.
    pub fn location(&self) -> Option<Url> {
        let location = self.headers.get(header::LOCATION)?.to_str().ok()?;
        self.url.join(location).ok()
    }

    /// `403 Forbidden`, for messages.
    pub fn status_text(&self) -> String {
        status_text(self.status)
    }
}

/// `403 Forbidden`.
pub fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Fetches `request`, following redirects as `redirects` says; reads the final body
/// when `read_body` is set.
///
/// # Errors
///
/// [`Failed`] when a dial phase failed, the server broke HTTP, or redirects went past
/// [`MAX_REDIRECTS`]; the recorder holds the phase and reason. An HTTP status is never
/// an error here: the caller judges it.
pub async fn fetch(
    mut request: Request,
    server: Server<'_>,
    redirects: Redirects,
    read_body: bool,
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<Response, Failed> {
    // Present from the start, so that a probe failing before any answer reports no
    // status rather than leaving the previous round's in place.
    http_facts(recorder);
    let mut followed = 0;
    // The first hop's address: a redirect back into its own kind of address (a
    // stand-in on loopback redirecting to itself) is no escalation.
    let mut origin: Option<IpAddr> = None;
    loop {
        let hop = if followed == 0 {
            Hop::First
        } else {
            Hop::Redirected { origin }
        };
        let answer = exchange(&request, server, hop, env, deadline, recorder).await?;
        if followed == 0 {
            origin = recorder.peer.map(|peer| peer.ip());
        }
        let Redirects::Follow { keep_post, stop_at } = redirects else {
            return answer.finish(read_body, recorder).await;
        };
        let response = &answer.response;
        let target = match (response.status.is_redirection(), response.location()) {
            (true, Some(target)) => target,
            (true, None) if response.status != StatusCode::NOT_MODIFIED => {
                return Err(recorder.fail(
                    Phase::Request,
                    ProbeError::new(
                        ErrorKind::ProtocolError,
                        format!(
                            "{} {} answered {} without a usable Location",
                            request.method,
                            request.url,
                            response.status_text()
                        ),
                    ),
                ));
            }
            _ => return answer.finish(read_body, recorder).await,
        };
        if stop_at.is_some_and(|accept| accept(&target)) {
            recorder.note(format!(
                "{} redirects to {target}: not followed",
                response.status_text()
            ));
            return answer.finish(false, recorder).await;
        }
        if !matches!(target.scheme(), "http" | "https") {
            return Err(recorder.fail(
                Phase::Request,
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!("redirected to `{}`, which is not HTTP", target.scheme()),
                ),
            ));
        }
        if followed == MAX_REDIRECTS {
            return Err(recorder.fail(
                Phase::Request,
                ProbeError::new(
                    ErrorKind::HttpStatus,
                    format!(
                        "more than {MAX_REDIRECTS} redirects; the last was {} from {} to {target}",
                        response.status_text(),
                        request.url
                    ),
                ),
            ));
        }
        followed += 1;
        http_facts(recorder).redirects = followed;
        recorder.note(format!(
            "redirect {followed}: {} → {target}",
            response.status_text()
        ));
        if target.scheme() == "http"
            && request.url.scheme() == "https"
            && !AllowRule::any_permits(server.allow_redirects, &crate::config::url_host(&target))
        {
            return Err(recorder.fail(
                Phase::Request,
                ProbeError::new(
                    ErrorKind::RedirectRefused,
                    format!(
                        "{} redirects from HTTPS down to plain HTTP ({target}): not followed \
                         (list the host under `allow_redirects` to allow it)",
                        request.url
                    ),
                ),
            ));
        }
        let becomes_get = match response.status {
            StatusCode::SEE_OTHER => request.method != Method::HEAD,
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => {
                request.method == Method::POST && !keep_post
            }
            _ => false,
        };
        if becomes_get {
            request.method = Method::GET;
            request.body = Bytes::new();
            request
                .headers
                .retain(|(name, _)| name != header::CONTENT_TYPE);
        }
        request.url = target;
    }
}

/// An answer whose body has not been read yet, with the task driving its connection.
struct Answer {
    response: Response,
    body: hyper::body::Incoming,
    /// The connection task; dropping it aborts the connection.
    _connection: AbortOnDropHandle<()>,
}

impl Answer {
    /// The response, with its body read (bounded) when `read_body` is set.
    async fn finish(self, read_body: bool, recorder: &mut Recorder) -> Result<Response, Failed> {
        let mut response = self.response;
        if read_body {
            response.body = recorder
                .phase(Phase::Response, read_bounded(self.body))
                .await
                .map(|(body, truncated)| {
                    let facts = http_facts(recorder);
                    facts.body_bytes = body.len();
                    facts.body_truncated = truncated;
                    if truncated {
                        recorder.note(format!(
                            "the body is longer than {} KiB; only that much was read",
                            MAX_BODY_BYTES / 1024
                        ));
                    }
                    body
                })?;
        }
        Ok(response)
    }
}

/// Which hop of a fetch a request is.
#[derive(Debug, Clone, Copy)]
enum Hop {
    /// The configured URL (or the one the caller chose).
    First,
    /// A redirect target; `origin` is the first hop's address.
    Redirected { origin: Option<IpAddr> },
}

/// One request on a new connection, up to the response headers.
async fn exchange(
    request: &Request,
    server: Server<'_>,
    hop: Hop,
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<Answer, Failed> {
    let endpoint = hop_endpoint(&request.url, server.endpoint);
    let addresses = dial::addresses(&endpoint, env, recorder).await?;
    if let Hop::Redirected { origin } = hop
        && !AllowRule::any_permits(server.allow_redirects, &endpoint.host)
        && let Some((address, kind)) = addresses
            .iter()
            .find_map(|ip| forbidden_kind(*ip, origin).map(|kind| (ip, kind)))
    {
        return Err(recorder.fail(
            Phase::Request,
            ProbeError::new(
                ErrorKind::RedirectRefused,
                format!(
                    "redirected to {} ({address}, {kind}): not followed (list the host \
                     under `allow_redirects` to allow it)",
                    request.url
                ),
            ),
        ));
    }
    let connection = dial::open_to(&endpoint, &addresses, env, deadline, recorder).await?;
    let (mut sender, driver) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .handshake::<_, Full<Bytes>>(TokioIo::new(connection))
        .await
        .map_err(|error| {
            recorder.fail(
                Phase::Request,
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!("HTTP setup failed: {error}"),
                ),
            )
        })?;
    let connection = AbortOnDropHandle::new(tokio::spawn(async move {
        let _ = driver.await;
    }));
    let authorization = server
        .send_credentials
        .then_some(server.endpoint.auth.as_ref())
        .flatten()
        .filter(|_| same_origin(&request.url, server.endpoint))
        .and_then(|credentials| match (&credentials.oauth2, server.bearer) {
            (None, _) => Some(Authorization::Basic(credentials)),
            (Some(_), Some(token)) => Some(Authorization::Bearer(token)),
            // OAuth2 credentials without a token: nothing to send, never an empty
            // password.
            (Some(_), None) => None,
        });
    if authorization.is_some() {
        recorder.credential_sent();
    }
    let http_request = build(request, authorization);
    recorder.note(format!(
        "{} {}{}",
        request.method,
        request.url,
        match authorization {
            Some(Authorization::Basic(_)) => " (with Basic credentials)",
            Some(Authorization::Bearer(_)) => " (with a bearer token)",
            None => "",
        }
    ));
    let answer = recorder
        .phase(Phase::Request, async {
            sender
                .send_request(http_request)
                .await
                .map_err(|error| http_error(&error, "before the response headers arrived"))
        })
        .await?;
    let (parts, body) = answer.into_parts();
    http_facts(recorder).status = Some(parts.status.as_u16());
    recorder.note(format!(
        "{}{}",
        status_text(parts.status),
        describe_headers(&parts.headers, &recorder.redactor)
    ));
    Ok(Answer {
        response: Response {
            url: request.url.clone(),
            status: parts.status,
            headers: parts.headers,
            body: Bytes::new(),
        },
        body,
        _connection: connection,
    })
}

/// What a redirect may not lead to unless allowed: `Some(kind)` for a loopback,
/// link-local or unspecified address — where a probe would reach the agent's own host
/// or a cloud metadata service — unless the first hop was of that same kind.
fn forbidden_kind(ip: IpAddr, origin: Option<IpAddr>) -> Option<&'static str> {
    let kind = address_kind(ip)?;
    (origin.and_then(address_kind) != Some(kind)).then_some(kind)
}

/// `loopback`, `link-local` or `unspecified` (IPv4-mapped IPv6 addresses as IPv4).
fn address_kind(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    } {
        Some("a link-local address")
    } else {
        None
    }
}

/// The endpoint to dial for one hop: the URL's host and port, TLS by scheme; the
/// configured server name only when the hop goes to the configured host.
fn hop_endpoint(url: &Url, configured: &Endpoint) -> Endpoint {
    let mut endpoint = url_endpoint(url, configured, None);
    if endpoint.host.eq_ignore_ascii_case(&configured.host) {
        endpoint.server_name.clone_from(&configured.server_name);
    }
    endpoint
}

/// The endpoint a URL names: its host (also the name verified), its port, TLS by
/// scheme; with `trust`'s roots and the given credentials.
pub fn url_endpoint(url: &Url, trust: &Endpoint, auth: Option<Credentials>) -> Endpoint {
    let host = crate::config::url_host(url);
    Endpoint {
        server_name: host.clone(),
        host,
        port: url.port_or_known_default().unwrap_or(443),
        tls: if url.scheme() == "https" {
            TlsMode::Implicit
        } else {
            TlsMode::None
        },
        extra_roots: trust.extra_roots.clone(),
        auth,
    }
}

/// Whether `url` is the configured endpoint's origin (https, same host and port):
/// credentials go nowhere else, and never over plain HTTP.
fn same_origin(url: &Url, endpoint: &Endpoint) -> bool {
    url.scheme() == "https"
        && crate::config::url_host(url).eq_ignore_ascii_case(&endpoint.host)
        && url.port_or_known_default() == Some(endpoint.port)
}

/// The probe's HTTP facts, created on first use.
pub fn http_facts(recorder: &mut Recorder) -> &mut HttpFacts {
    if !matches!(recorder.facts, ProtocolFacts::Http(_)) {
        recorder.facts = ProtocolFacts::Http(HttpFacts::default());
    }
    match &mut recorder.facts {
        ProtocolFacts::Http(facts) => facts,
        _ => unreachable!("set just above"),
    }
}

/// `https://host:port/path`, the port left out when it is 443 and an IPv6 address
/// in brackets; `None` when `host` cannot be a URL's host.
pub fn https_url(host: &str, port: u16, path: &str) -> Option<Url> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    Url::parse(&format!("https://{authority}{path}")).ok()
}

#[cfg(test)]
mod tests;
