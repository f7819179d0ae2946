//! The autodiscover check: find the mailbox's server the way Outlook does.
//!
//! For the mailbox's domain D, in Outlook's order, the first method that reaches an
//! Autodiscover service wins:
//!
//! 1. `pox_domain`: POST the POX request to `https://D/autodiscover/autodiscover.xml`;
//! 2. `pox_autodiscover_host`: POST to `https://autodiscover.D/autodiscover/autodiscover.xml`;
//! 3. `pox_http_redirect`: GET `http://autodiscover.D/autodiscover/autodiscover.xml`
//!    (no credentials), which must redirect to an HTTPS URL, then POST there;
//! 4. `pox_srv`: look up SRV `_autodiscover._tcp.D` and POST to its host and port.
//!
//! A service is reached when it answers with POX settings, or with a 401 and a
//! challenge (it is there, but wants credentials). Without settings, the v2 JSON
//! endpoint (`/autodiscover/autodiscover.json?Email=…&Protocol=EWS`, unauthenticated
//! on Exchange 2016+ and Exchange Online) gives the EWS URL, and the method is `json`.
//! The answer (method, EWS URL, server) is exported as `mailprobe_autodiscover_info`,
//! and a change between rounds is counted.
//!
//! Each method gets an equal share of the time left, so a blackholed first guess
//! cannot starve the others. When nothing answers, the probe reports the failure of
//! `pox_autodiscover_host` (the canonical name) and lists what every method found.

mod answer;
mod request;
mod search;

use tokio::time::Instant;

pub use answer::{JsonAnswer, PoxAnswer, PoxSettings, parse_json, parse_pox};
use search::Search;

use super::http;
use super::{ErrorKind, Failed, Phase, ProbeError, Recorder};
use crate::config::ExchangeTarget;
use crate::probe::env::ProbeEnv;

/// `redirectAddr` and `redirectUrl` answers followed before giving up (Outlook's
/// limit is 10 as well).
pub const MAX_AUTODISCOVER_REDIRECTS: u32 = 10;
/// The path every POX method asks.
const POX_PATH: &str = "/autodiscover/autodiscover.xml";
/// The v2 JSON endpoint's path.
const JSON_PATH: &str = "/autodiscover/autodiscover.json";
/// The response schema Outlook asks for.
const RESPONSE_SCHEMA: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// How an answer was found: the `method` label of `mailprobe_autodiscover_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// POST to `https://D/autodiscover/autodiscover.xml`.
    PoxDomain,
    /// POST to `https://autodiscover.D/autodiscover/autodiscover.xml`.
    PoxAutodiscoverHost,
    /// The redirect from `http://autodiscover.D/…`, then POST.
    PoxHttpRedirect,
    /// SRV `_autodiscover._tcp.D`, then POST.
    PoxSrv,
    /// The v2 JSON endpoint.
    Json,
}

impl Method {
    /// The POX methods, in the order Outlook tries them.
    pub const POX: [Method; 4] = [
        Method::PoxDomain,
        Method::PoxAutodiscoverHost,
        Method::PoxHttpRedirect,
        Method::PoxSrv,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::PoxDomain => "pox_domain",
            Method::PoxAutodiscoverHost => "pox_autodiscover_host",
            Method::PoxHttpRedirect => "pox_http_redirect",
            Method::PoxSrv => "pox_srv",
            Method::Json => "json",
        }
    }
}

/// What Autodiscover answered: the facts a mailbox move or upgrade changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where the URLs came from.
    pub method: Method,
    /// The EWS URL (empty when the service only asked for credentials).
    pub ews_url: String,
    /// The mailbox server (`<Server>`, else the EWS URL's host; empty when unknown).
    pub server: String,
}

impl std::fmt::Display for Answer {
    /// `answered by pox_srv: EWS https://…/EWS/Exchange.asmx, server ex01.example.com`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_not_given = |text: &str| {
            if text.is_empty() {
                "not given".to_owned()
            } else {
                text.to_owned()
            }
        };
        write!(
            f,
            "answered by {}: EWS {}, server {}",
            self.method.as_str(),
            or_not_given(&self.ews_url),
            or_not_given(&self.server)
        )
    }
}

/// Runs the autodiscover check.
///
/// # Errors
///
/// [`Failed`] when no method reaches an Autodiscover service, or one answers with an
/// error or rejects the credentials.
pub async fn probe(
    target: &ExchangeTarget,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let Some(email) = target.email.clone() else {
        return Err(recorder.fail(
            Phase::Request,
            ProbeError::new(
                ErrorKind::ProtocolError,
                "autodiscover needs `email` (the configuration check should have said so)",
            ),
        ));
    };
    let bearer = match target
        .endpoint
        .auth
        .as_ref()
        .and_then(|c| c.oauth2.as_ref())
    {
        Some(oauth2) => Some(
            super::oauth2::obtain(oauth2, &target.endpoint, env, deadline, recorder)
                .await?
                .token,
        ),
        None => None,
    };
    let mut search = Search::new(target, env, deadline, email, bearer);
    let answer = search.run(recorder).await?;
    // The status that counts is the answering service's, not that of a later
    // optional question (the JSON endpoint on an older server says 404).
    http::http_facts(recorder).status = Some(match answer.method {
        Method::Json => 200,
        _ => search.answered_status,
    });
    recorder.note(format!("Autodiscover {answer}"));
    http::http_facts(recorder).autodiscover = Some(answer);
    Ok(())
}
