//! `protocol: exchange` — the services of an Exchange server (or Exchange Online) that
//! Outlook, phones and browsers use, one check per probe. Autodiscover has its own file
//! ([`autodiscover`](super::autodiscover)); the others are one request each, judged the
//! way a client would see them:
//!
//! | check | request | alive when |
//! |---|---|---|
//! | ews | `GET /EWS/Exchange.asmx` | 401 with a challenge, or 2xx |
//! | activesync | `OPTIONS /Microsoft-Server-ActiveSync` | 2xx with `MS-ASProtocolVersions`, or 401 with a challenge |
//! | mapi, ecp, oab, rpc | `GET /<vdir>/healthcheck.htm` | 200 |
//! | owa | `GET /owa/` | 2xx, 401 with a challenge, or a redirect to the logon page |
//!
//! A 401 without a challenge, a 5xx or any other status is the server's fault
//! (`http_status`). With `auth`, Basic credentials are sent and a 401 is `auth_failed`;
//! with `auth.oauth2`, EWS is sent `Authorization: Bearer` (after the `token` phase) and
//! ActiveSync nothing (Microsoft has no app-only ActiveSync).

use ::http::header::{HeaderName, HeaderValue};
use ::http::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::http::{self, Redirects, Request, Response, Server, challenge_list};
use super::oauth2;
use super::{ErrorKind, Failed, Phase, ProbeError, Recorder};
use crate::config::{ExchangeCheck, ExchangeTarget};
use crate::probe::env::ProbeEnv;

/// The header an ActiveSync server lists its protocol versions in.
const ACTIVESYNC_VERSIONS: &str = "ms-asprotocolversions";

/// Runs one check of an exchange target.
///
/// # Errors
///
/// [`Failed`] when a phase failed or the answer shows the service is not working.
pub async fn probe(
    target: &ExchangeTarget,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let service = match target.check {
        ExchangeCheck::Autodiscover => {
            return super::autodiscover::probe(target, deadline, env, recorder).await;
        }
        ExchangeCheck::Ews => Service {
            method: Method::GET,
            path: "/EWS/Exchange.asmx",
            credentials: true,
            read_body: false,
            stop_at: None,
        },
        ExchangeCheck::Activesync => Service {
            method: Method::OPTIONS,
            path: "/Microsoft-Server-ActiveSync",
            credentials: true,
            read_body: false,
            stop_at: None,
        },
        ExchangeCheck::Owa => Service {
            method: Method::GET,
            path: "/owa/",
            // OWA logs in with a form, not Basic.
            credentials: false,
            read_body: false,
            stop_at: Some(is_logon_page),
        },
        ExchangeCheck::Mapi | ExchangeCheck::Ecp | ExchangeCheck::Oab | ExchangeCheck::Rpc => {
            Service {
                method: Method::GET,
                path: healthcheck_path(target.check),
                credentials: false,
                read_body: true,
                stop_at: None,
            }
        }
    };
    let endpoint = &target.endpoint;
    let Some(url) = http::https_url(&endpoint.host, endpoint.port, service.path) else {
        return Err(recorder.fail(
            Phase::Request,
            ProbeError::new(
                ErrorKind::ProtocolError,
                format!("`{}` cannot form a URL", target.endpoint.host),
            ),
        ));
    };
    let oauth2 = endpoint.auth.as_ref().and_then(|c| c.oauth2.as_ref());
    // Microsoft accepts app-only tokens for EWS, not for ActiveSync: with `oauth2`
    // only EWS (and Autodiscover) are sent the token.
    let send_credentials = match oauth2 {
        Some(_) => service.credentials && target.check == ExchangeCheck::Ews,
        None => service.credentials,
    };
    let mut token = match oauth2 {
        Some(oauth2) if send_credentials => {
            Some(oauth2::obtain(oauth2, endpoint, env, deadline, recorder).await?)
        }
        _ => None,
    };
    let mut request = Request::new(service.method, url);
    if token.is_some()
        && let Some(anchor) = endpoint
            .auth
            .as_ref()
            .and_then(|c| HeaderValue::from_str(&c.username).ok())
    {
        // App-only EWS requests name the mailbox they are about.
        request
            .headers
            .push((HeaderName::from_static("x-anchormailbox"), anchor));
    }
    let redirects = Redirects::Follow {
        keep_post: false,
        stop_at: service.stop_at,
    };
    let sent_credentials = send_credentials && endpoint.auth.is_some();
    let mut replaced = false;
    let response = loop {
        let server = Server {
            endpoint: &target.endpoint,
            send_credentials,
            allow_redirects: &target.allow_redirects,
            bearer: token.as_ref().map(|t| &*t.token),
        };
        let response = http::fetch(
            request.clone(),
            server,
            redirects,
            service.read_body,
            env,
            deadline,
            recorder,
        )
        .await?;
        // A cached token the server refuses is replaced once: it may be revoked.
        match (&token, oauth2) {
            (Some(used), Some(oauth2))
                if response.status == StatusCode::UNAUTHORIZED
                    && !used.fresh
                    && !replaced
                    && recorder.may_retry_login() =>
            {
                recorder.note("the server refused the cached token: asking for a new one");
                env.tokens
                    .invalidate(oauth2.fingerprint(), &used.token)
                    .await;
                token = Some(oauth2::obtain(oauth2, endpoint, env, deadline, recorder).await?);
                replaced = true;
            }
            _ => break response,
        }
    };
    let verdict = judge(target.check, &response, sent_credentials);
    match verdict {
        Ok(note) => {
            recorder.note(note);
            Ok(())
        }
        Err((phase, error)) => Err(recorder.fail(phase, error)),
    }
}

/// How one check asks.
struct Service {
    method: Method,
    path: &'static str,
    /// Whether the target's Basic credentials are sent.
    credentials: bool,
    /// Whether the body matters (the health pages say who answered).
    read_body: bool,
    /// A redirect not to follow because it already proves the service is alive.
    stop_at: Option<fn(&Url) -> bool>,
}

/// `/mapi/healthcheck.htm` and the like: Exchange's own per-virtual-directory health
/// page (200 when the application pool is healthy).
fn healthcheck_path(check: ExchangeCheck) -> &'static str {
    match check {
        ExchangeCheck::Ecp => "/ecp/healthcheck.htm",
        ExchangeCheck::Oab => "/oab/healthcheck.htm",
        ExchangeCheck::Rpc => "/rpc/healthcheck.htm",
        _ => "/mapi/healthcheck.htm",
    }
}

/// The OWA logon page: `/owa/auth/logon.aspx` on premises, a `login.` host for
/// Exchange Online and federated sign-in.
fn is_logon_page(url: &Url) -> bool {
    let path = url.path().to_ascii_lowercase();
    path.contains("logon.aspx")
        || path.contains("/owa/auth")
        || url
            .host_str()
            .is_some_and(|host| host.starts_with("login."))
}

/// Whether the answer shows the service alive: `Ok` with a note for the log, or the
/// failing phase and reason.
pub fn judge(
    check: ExchangeCheck,
    response: &Response,
    sent_credentials: bool,
) -> Result<String, (Phase, ProbeError)> {
    let status = response.status;
    let challenges = response.challenges();
    let url = &response.url;
    let fail = |phase, kind, message: String| Err((phase, ProbeError::new(kind, message)));
    if status == StatusCode::UNAUTHORIZED {
        if sent_credentials {
            return fail(
                Phase::Auth,
                ErrorKind::AuthFailed,
                format!(
                    "{url} rejected the credentials (401; it asks for: {})",
                    challenge_list(&challenges)
                ),
            );
        }
        if challenges.is_empty() || check.is_health_page() {
            return fail(
                Phase::Request,
                ErrorKind::HttpStatus,
                format!("{url} answered 401 without asking for credentials (no WWW-Authenticate)"),
            );
        }
        return Ok(format!(
            "alive: {url} asks for credentials ({})",
            challenges.join(", ")
        ));
    }
    match check {
        ExchangeCheck::Activesync if status.is_success() => {
            match response.headers.get(ACTIVESYNC_VERSIONS) {
                Some(versions) => Ok(format!(
                    "alive: ActiveSync protocol versions {}",
                    String::from_utf8_lossy(versions.as_bytes())
                )),
                None => fail(
                    Phase::Request,
                    ErrorKind::ProtocolError,
                    format!(
                        "{url} answered {} without MS-ASProtocolVersions: this is not an ActiveSync server",
                        response.status_text()
                    ),
                ),
            }
        }
        ExchangeCheck::Owa if status.is_redirection() => {
            let to = response
                .location()
                .map_or_else(String::new, |to| to.to_string());
            Ok(format!("alive: OWA sends browsers to its logon page {to}"))
        }
        _ if check.is_health_page() => {
            if status == StatusCode::OK {
                let first_line = String::from_utf8_lossy(&response.body)
                    .lines()
                    .next()
                    .map(|line| super::lines::sanitise(line, 120))
                    .unwrap_or_default();
                Ok(format!("healthy: {first_line}"))
            } else {
                fail(
                    Phase::Request,
                    ErrorKind::HttpStatus,
                    format!(
                        "{url} answered {}; a healthy virtual directory answers 200",
                        response.status_text()
                    ),
                )
            }
        }
        _ if status.is_success() => Ok(format!("alive: {url} answered {}", response.status_text())),
        _ => fail(
            Phase::Request,
            ErrorKind::HttpStatus,
            format!("{url} answered {}", response.status_text()),
        ),
    }
}

impl ExchangeCheck {
    /// Whether the check reads the virtual directory's `healthcheck.htm`.
    fn is_health_page(self) -> bool {
        matches!(
            self,
            ExchangeCheck::Mapi | ExchangeCheck::Ecp | ExchangeCheck::Oab | ExchangeCheck::Rpc
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::header::{HeaderMap, HeaderValue};

    fn response(status: u16, headers: &[(&'static str, &'static str)]) -> Response {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_static(value));
        }
        Response {
            url: Url::parse("https://mail.example.com/EWS/Exchange.asmx").unwrap(),
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: bytes::Bytes::from_static(b"200 OK<br/>EX01.example.com"),
        }
    }

    fn reason(result: Result<String, (Phase, ProbeError)>) -> Option<(Phase, ErrorKind)> {
        result.err().map(|(phase, error)| (phase, error.kind))
    }

    #[test]
    fn ews_is_alive_when_it_asks_for_credentials() {
        let challenged = response(
            401,
            &[
                ("www-authenticate", "Negotiate"),
                ("www-authenticate", "NTLM"),
            ],
        );
        assert_eq!(reason(judge(ExchangeCheck::Ews, &challenged, false)), None);
        let bare = response(401, &[]);
        assert_eq!(
            reason(judge(ExchangeCheck::Ews, &bare, false)),
            Some((Phase::Request, ErrorKind::HttpStatus))
        );
        assert_eq!(
            reason(judge(ExchangeCheck::Ews, &response(503, &[]), false)),
            Some((Phase::Request, ErrorKind::HttpStatus))
        );
        assert_eq!(
            reason(judge(ExchangeCheck::Ews, &challenged, true)),
            Some((Phase::Auth, ErrorKind::AuthFailed))
        );
    }

    #[test]
    fn activesync_needs_its_version_header() {
        let ok = response(200, &[("ms-asprotocolversions", "14.1,16.0,16.1")]);
        assert_eq!(reason(judge(ExchangeCheck::Activesync, &ok, false)), None);
        assert_eq!(
            reason(judge(ExchangeCheck::Activesync, &response(200, &[]), false)),
            Some((Phase::Request, ErrorKind::ProtocolError))
        );
    }

    #[test]
    fn health_pages_must_answer_200() {
        assert_eq!(
            reason(judge(ExchangeCheck::Mapi, &response(200, &[]), false)),
            None
        );
        let challenged = response(401, &[("www-authenticate", "Negotiate")]);
        assert_eq!(
            reason(judge(ExchangeCheck::Mapi, &challenged, false)),
            Some((Phase::Request, ErrorKind::HttpStatus))
        );
        assert_eq!(
            reason(judge(ExchangeCheck::Oab, &response(404, &[]), false)),
            Some((Phase::Request, ErrorKind::HttpStatus))
        );
    }

    #[test]
    fn the_owa_logon_page_is_recognised() {
        let url = |text| Url::parse(text).unwrap();
        assert!(is_logon_page(&url(
            "https://mail.example.com/owa/auth/logon.aspx?url=x"
        )));
        assert!(is_logon_page(&url(
            "https://login.microsoftonline.com/common/oauth2/authorize"
        )));
        assert!(!is_logon_page(&url("https://mail.example.com/owa/")));
    }
}
