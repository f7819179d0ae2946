//! The search itself: Outlook's methods in order, each with its share of the time,
//! `redirectAddr` / `redirectUrl` answers followed, and what every method found.

use ::http::header::{CONTENT_TYPE, HeaderValue};
use ::http::{Method as HttpMethod, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::answer::{JsonAnswer, PoxAnswer, PoxSettings, parse_json, parse_pox};
use super::request::{host_of, https_url, pox_request, same_host, share_of, srv_target};
use super::{Answer, JSON_PATH, MAX_AUTODISCOVER_REDIRECTS, Method, POX_PATH};
use crate::config::{Endpoint, ExchangeTarget};
use crate::probe::env::ProbeEnv;
use crate::probe::http::{self, Redirects, Request, Server, challenge_list};
use crate::probe::oauth2::AccessToken;
use crate::probe::{ErrorKind, Failed, Phase, ProbeError, Recorder};

mod attempts;
use attempts::Attempt;

/// One search for a mailbox's Autodiscover answer.
pub(super) struct Search<'a> {
    target: &'a ExchangeTarget,
    env: &'a ProbeEnv,
    deadline: Instant,
    /// The address asked about (changes with `redirectAddr`).
    email: String,
    /// `redirectAddr` / `redirectUrl` answers followed so far.
    redirects: u32,
    /// Methods that found no service, with what they found instead.
    attempts: Vec<Attempt>,
    /// The status the POX service answered with (200 settings, 401 challenge).
    pub(super) answered_status: u16,
    /// The OAuth2 token sent instead of Basic credentials (`auth.oauth2`).
    bearer: Option<std::sync::Arc<AccessToken>>,
}

/// What reaching a service gave.
enum Reached {
    /// POX settings.
    Settings(PoxSettings),
    /// A 401 with a challenge: the service is there and wants credentials.
    Challenged,
    /// Ask again for another address.
    RedirectAddr(String),
}

/// How the URL a POX request goes to was found, which decides whether it may have the
/// password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// From the domain's name or its SRV record: the address Outlook would trust.
    Dns,
    /// From a redirect that came over plain HTTP, which anyone on the path can forge
    /// (Outlook asks the user before following it): never sent the password.
    PlainHttpRedirect,
}

/// Why a method ended without reaching a service. The recorder holds the failure.
enum Stop {
    /// Nothing there: try the next method.
    NotHere,
    /// The service answered and the answer is final (an error, rejected credentials).
    Final,
}

impl<'a> Search<'a> {
    /// A search for `email`'s answer, to finish by `deadline`.
    pub(super) fn new(
        target: &'a ExchangeTarget,
        env: &'a ProbeEnv,
        deadline: Instant,
        email: String,
        bearer: Option<std::sync::Arc<AccessToken>>,
    ) -> Search<'a> {
        Search {
            target,
            env,
            deadline,
            email,
            redirects: 0,
            attempts: Vec::new(),
            answered_status: 0,
            bearer,
        }
    }

    /// The challenge scheme the search answers with credentials: `Bearer` with an
    /// OAuth2 token, else `Basic`.
    fn scheme(&self) -> &'static str {
        if self.bearer.is_some() {
            "bearer"
        } else {
            "basic"
        }
    }

    pub(super) async fn run(&mut self, recorder: &mut Recorder) -> Result<Answer, Failed> {
        'address: loop {
            let domain = self
                .email
                .rsplit_once('@')
                .map(|(_, domain)| domain.to_ascii_lowercase())
                .unwrap_or_default();
            recorder.note(format!("Autodiscover for {} (domain {domain})", self.email));
            for (index, method) in Method::POX.into_iter().enumerate() {
                // Every method still to try, and the JSON endpoint, get an equal share.
                let until = share_of(self.deadline, Method::POX.len() - index + 1);
                let started = Instant::now();
                let outcome = tokio::time::timeout_at(
                    until,
                    self.pox_method(method, &domain, until, recorder),
                )
                .await
                .unwrap_or_else(|_| {
                    recorder.deadline_expired(until.saturating_duration_since(started));
                    Err(Stop::NotHere)
                });
                match outcome {
                    Ok((_, Reached::RedirectAddr(address))) => {
                        self.count_redirect(recorder)?;
                        recorder.note(format!("redirected to the address {address}"));
                        self.email = address;
                        self.attempts.clear();
                        continue 'address;
                    }
                    Ok((url, Reached::Settings(settings))) => {
                        self.answered_status = 200;
                        return self.settings_answer(method, &url, settings, recorder).await;
                    }
                    Ok((url, Reached::Challenged)) => {
                        self.answered_status = 401;
                        return self.challenged_answer(method, &url, recorder).await;
                    }
                    Err(Stop::Final) => return Err(Failed),
                    Err(Stop::NotHere) => self.remember(method, recorder),
                }
            }
            // No POX service: the JSON endpoint at the canonical name is the last hope.
            let canonical = https_url(&format!("autodiscover.{domain}"), 443, JSON_PATH);
            if let Some(answer) = self.json(canonical, recorder).await? {
                return Ok(answer);
            }
            self.remember(Method::Json, recorder);
            return Err(self.nothing_answered(&domain, recorder));
        }
    }

    /// Settings from POX; the JSON endpoint is asked only when they lack an EWS URL.
    async fn settings_answer(
        &mut self,
        method: Method,
        url: &Url,
        settings: PoxSettings,
        recorder: &mut Recorder,
    ) -> Result<Answer, Failed> {
        if let Some(ews_url) = settings.ews_url {
            let server = settings
                .server
                .unwrap_or_else(|| host_of(&ews_url).unwrap_or_default());
            return Ok(Answer {
                method,
                ews_url,
                server,
            });
        }
        let from_json = self.json(same_host(url, JSON_PATH), recorder).await?;
        let _ = recorder.take_failure();
        Ok(match from_json {
            // The URL from JSON; the mailbox server is still the one POX named.
            Some(answer) => Answer {
                server: settings.server.unwrap_or(answer.server),
                ..answer
            },
            None => Answer {
                method,
                ews_url: String::new(),
                server: settings.server.unwrap_or_default(),
            },
        })
    }

    /// A service that wants credentials: the JSON endpoint on the same host may still
    /// say where EWS is; either way the service is alive.
    async fn challenged_answer(
        &mut self,
        method: Method,
        url: &Url,
        recorder: &mut Recorder,
    ) -> Result<Answer, Failed> {
        let from_json = self.json(same_host(url, JSON_PATH), recorder).await?;
        if from_json.is_none() {
            // The JSON endpoint is newer than many servers: its absence is no fault.
            let _ = recorder.take_failure();
        }
        Ok(from_json.unwrap_or(Answer {
            method,
            ews_url: String::new(),
            server: String::new(),
        }))
    }

    /// One POX method, up to the answer of the service it reaches.
    async fn pox_method(
        &self,
        method: Method,
        domain: &str,
        until: Instant,
        recorder: &mut Recorder,
    ) -> Result<(Url, Reached), Stop> {
        match method {
            Method::PoxDomain => {
                self.pox(
                    https_url(domain, 443, POX_PATH),
                    Trust::Dns,
                    until,
                    recorder,
                )
                .await
            }
            Method::PoxAutodiscoverHost => {
                let host = format!("autodiscover.{domain}");
                self.pox(https_url(&host, 443, POX_PATH), Trust::Dns, until, recorder)
                    .await
            }
            Method::PoxHttpRedirect => {
                let url = Url::parse(&format!("http://autodiscover.{domain}{POX_PATH}"))
                    .map_err(|_| Stop::NotHere)?;
                let endpoint = self.endpoint_for(&url);
                let server = Server {
                    endpoint: &endpoint,
                    send_credentials: false,
                    allow_redirects: &self.target.allow_redirects,
                    bearer: None,
                };
                let response = http::fetch(
                    Request::get(url.clone()),
                    server,
                    Redirects::Stop,
                    false,
                    self.env,
                    until,
                    recorder,
                )
                .await
                .map_err(|_| Stop::NotHere)?;
                match response.location() {
                    Some(to) if response.status.is_redirection() && to.scheme() == "https" => {
                        recorder.note(format!("{url} redirects to {to}"));
                        self.pox(to, Trust::PlainHttpRedirect, until, recorder)
                            .await
                    }
                    _ => Err(not_here(
                        recorder,
                        Phase::Request,
                        ErrorKind::HttpStatus,
                        format!(
                            "{url} answered {} rather than a redirect to HTTPS",
                            response.status_text()
                        ),
                    )),
                }
            }
            Method::PoxSrv => {
                let name = format!("_autodiscover._tcp.{domain}.");
                let (host, port) = recorder
                    .phase(Phase::Resolve, srv_target(&self.env.dial_resolver, &name))
                    .await
                    .map_err(|_| Stop::NotHere)?;
                recorder.note(format!("{name} SRV points to {host}:{port}"));
                self.pox(
                    https_url(&host, port, POX_PATH),
                    Trust::Dns,
                    until,
                    recorder,
                )
                .await
            }
            Method::Json => Err(Stop::NotHere),
        }
    }

    /// POSTs the POX request to `url` (following `redirectUrl` answers).
    async fn pox(
        &self,
        mut url: Url,
        trust: Trust,
        until: Instant,
        recorder: &mut Recorder,
    ) -> Result<(Url, Reached), Stop> {
        let mut redirects = 0;
        loop {
            // Credentials only go where a service asked for them with a Basic
            // challenge: Outlook's habit of sending them to whatever answers at the
            // domain (often a web host that is not Exchange) is not copied.
            let mut response = self.post(&url, false, until, recorder).await?;
            let mut sent_credentials = false;
            // Only to the host DNS named: not to where it redirected (another host).
            if response.status == StatusCode::UNAUTHORIZED
                && trust == Trust::Dns
                && self.target.endpoint.auth.is_some()
                && response.url.scheme() == "https"
                && response.url.origin() == url.origin()
                && response
                    .challenges()
                    .iter()
                    .any(|scheme| scheme.eq_ignore_ascii_case(self.scheme()))
            {
                let asking = response.url.clone();
                recorder.note(format!(
                    "{asking} asks for {} credentials: logging in",
                    self.scheme()
                ));
                response = self.post(&asking, true, until, recorder).await?;
                sent_credentials = response.url == asking;
            }
            let at = response.url.clone();
            match response.status {
                StatusCode::UNAUTHORIZED if sent_credentials => {
                    recorder.fail(
                        Phase::Auth,
                        ProbeError::new(
                            ErrorKind::AuthFailed,
                            format!(
                                "{at} rejected the credentials (401; it asks for: {})",
                                challenge_list(&response.challenges())
                            ),
                        ),
                    );
                    return Err(Stop::Final);
                }
                StatusCode::UNAUTHORIZED if !response.challenges().is_empty() => {
                    if self.target.endpoint.auth.is_some() && trust == Trust::PlainHttpRedirect {
                        recorder.note(format!(
                            "{at} was named by a plain-HTTP redirect: it is not sent the password"
                        ));
                    } else if self.target.endpoint.auth.is_some() {
                        recorder.note(format!(
                            "{at} does not offer {} ({}): no credentials sent",
                            self.scheme(),
                            response.challenges().join(", ")
                        ));
                    }
                    recorder.note(format!(
                        "{at} is an Autodiscover service asking for credentials ({})",
                        response.challenges().join(", ")
                    ));
                    return Ok((at, Reached::Challenged));
                }
                StatusCode::OK => {}
                _ => {
                    return Err(not_here(
                        recorder,
                        Phase::Request,
                        ErrorKind::HttpStatus,
                        format!("{at} answered {}", response.status_text()),
                    ));
                }
            }
            match parse_pox(&response.body) {
                Ok(PoxAnswer::Settings(settings)) => return Ok((at, Reached::Settings(settings))),
                Ok(PoxAnswer::RedirectAddr(address)) => {
                    return Ok((at, Reached::RedirectAddr(address)));
                }
                Ok(PoxAnswer::RedirectUrl(next)) => {
                    let next = Url::parse(&next).ok().filter(|u| u.scheme() == "https");
                    let Some(next) = next else {
                        recorder.fail(
                            Phase::Response,
                            ProbeError::new(
                                ErrorKind::ProtocolError,
                                format!("{at} redirects Autodiscover to a URL that is not HTTPS"),
                            ),
                        );
                        return Err(Stop::Final);
                    };
                    redirects += 1;
                    if redirects > MAX_AUTODISCOVER_REDIRECTS {
                        recorder.fail(
                            Phase::Response,
                            ProbeError::new(
                                ErrorKind::ProtocolError,
                                format!(
                                    "more than {MAX_AUTODISCOVER_REDIRECTS} Autodiscover redirects"
                                ),
                            ),
                        );
                        return Err(Stop::Final);
                    }
                    recorder.note(format!("{at} redirects Autodiscover to {next}"));
                    url = next;
                }
                Ok(PoxAnswer::Error { code, message }) => {
                    recorder.fail(
                        Phase::Response,
                        ProbeError::new(
                            ErrorKind::ProtocolError,
                            format!(
                                "{at} answered with Autodiscover error {code}: {}",
                                crate::probe::lines::sanitise(&message, 200)
                            ),
                        ),
                    );
                    return Err(Stop::Final);
                }
                Err(why) => {
                    return Err(not_here(
                        recorder,
                        Phase::Response,
                        ErrorKind::ProtocolError,
                        format!("{at} answered 200, but {why}"),
                    ));
                }
            }
        }
    }

    /// POSTs the POX request to `url` (re-POSTing where a redirect points, as
    /// Autodiscover clients do), with credentials when `with_credentials`.
    async fn post(
        &self,
        url: &Url,
        with_credentials: bool,
        until: Instant,
        recorder: &mut Recorder,
    ) -> Result<http::Response, Stop> {
        let endpoint = self.endpoint_for(url);
        let server = Server {
            endpoint: &endpoint,
            send_credentials: with_credentials,
            allow_redirects: &self.target.allow_redirects,
            bearer: self.bearer.as_deref(),
        };
        let mut request = Request::new(HttpMethod::POST, url.clone());
        request.headers.push((
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        ));
        request.body = pox_request(&self.email);
        let redirects = Redirects::Follow {
            keep_post: true,
            stop_at: None,
        };
        http::fetch(request, server, redirects, true, self.env, until, recorder)
            .await
            .map_err(|_| Stop::NotHere)
    }

    /// Asks the v2 JSON endpoint at `base` for the EWS URL. `None` (with the failure
    /// in the recorder) when it gives none; [`Failed`] when it refused the OAuth2
    /// token, which is final.
    async fn json(&self, mut url: Url, recorder: &mut Recorder) -> Result<Option<Answer>, Failed> {
        url.query_pairs_mut()
            .append_pair("Email", &self.email)
            .append_pair("Protocol", "EWS");
        let endpoint = self.endpoint_for(&url);
        // The v2 endpoint needs no credentials; an OAuth2 token is shown it, so that
        // an authenticated answer proves the token works for Exchange.
        let server = Server {
            endpoint: &endpoint,
            send_credentials: self.bearer.is_some(),
            allow_redirects: &self.target.allow_redirects,
            bearer: self.bearer.as_deref(),
        };
        let response = http::fetch(
            Request::get(url),
            server,
            Redirects::BROWSER,
            true,
            self.env,
            self.deadline,
            recorder,
        )
        .await;
        let Ok(response) = response else {
            return Ok(None);
        };
        let at = &response.url;
        if self.bearer.is_some() && response.status == StatusCode::UNAUTHORIZED {
            return Err(recorder.fail(
                Phase::Auth,
                ProbeError::new(
                    ErrorKind::AuthFailed,
                    format!(
                        "{at} rejected the OAuth2 token (401; it asks for: {})",
                        challenge_list(&response.challenges())
                    ),
                ),
            ));
        }
        let problem = if response.status == StatusCode::OK {
            match parse_json(&response.body) {
                Ok(JsonAnswer::Url { url, .. }) => {
                    return Ok(Some(Answer {
                        method: Method::Json,
                        server: host_of(&url).unwrap_or_default(),
                        ews_url: url,
                    }));
                }
                Ok(JsonAnswer::Error { code, message }) => format!(
                    "{at} answered with error {code}: {}",
                    crate::probe::lines::sanitise(&message, 200)
                ),
                Err(why) => format!("{at} answered 200, but {why}"),
            }
        } else {
            format!("{at} answered {}", response.status_text())
        };
        let kind = if response.status == StatusCode::OK {
            ErrorKind::ProtocolError
        } else {
            ErrorKind::HttpStatus
        };
        recorder.fail(Phase::Request, ProbeError::new(kind, problem));
        Ok(None)
    }

    /// Where a request to `url` goes: its host and port, with the target's trust and
    /// credentials (sent to that origin only, and only over HTTPS).
    fn endpoint_for(&self, url: &Url) -> Endpoint {
        let configured = &self.target.endpoint;
        http::url_endpoint(url, configured, configured.auth.clone())
    }

    fn count_redirect(&mut self, recorder: &mut Recorder) -> Result<(), Failed> {
        self.redirects += 1;
        if self.redirects > MAX_AUTODISCOVER_REDIRECTS {
            return Err(recorder.fail(
                Phase::Response,
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!("more than {MAX_AUTODISCOVER_REDIRECTS} Autodiscover redirects"),
                ),
            ));
        }
        Ok(())
    }
}

/// Records a failure meaning "no service here".
fn not_here(recorder: &mut Recorder, phase: Phase, kind: ErrorKind, message: String) -> Stop {
    recorder.fail(phase, ProbeError::new(kind, message));
    Stop::NotHere
}
