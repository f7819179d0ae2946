//! `protocol: https` — webmail: fetch the page like a browser (following redirects),
//! then judge the status and, with `expect_body`, the page itself.

use ::http::StatusCode;
use tokio::time::Instant;

use super::http::{self, Redirects, Request, Server, challenge_list};
use super::{ErrorKind, Failed, Phase, ProbeError, Recorder};
use crate::config::HttpsTarget;
use crate::probe::env::ProbeEnv;

/// Fetches the page and checks status and body.
///
/// # Errors
///
/// [`Failed`] when a phase failed, the status is not expected (`http_status`; a 401
/// to our credentials is `auth_failed`) or the body does not match (`body_mismatch`).
pub async fn probe(
    target: &HttpsTarget,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let server = Server {
        endpoint: &target.endpoint,
        send_credentials: true,
        allow_redirects: &target.allow_redirects,
        bearer: None,
    };
    let response = http::fetch(
        Request::get(target.url.clone()),
        server,
        Redirects::BROWSER,
        true,
        env,
        deadline,
        recorder,
    )
    .await?;
    let status = response.status;
    if let Some(credentials) = &target.endpoint.auth
        && status == StatusCode::UNAUTHORIZED
    {
        return Err(recorder.fail(
            Phase::Auth,
            ProbeError::new(
                ErrorKind::AuthFailed,
                format!(
                    "{} rejected the credentials of `{}` ({}; it asks for: {})",
                    response.url,
                    credentials.username,
                    response.status_text(),
                    challenge_list(&response.challenges())
                ),
            ),
        ));
    }
    let expected = match &target.expect_status {
        Some(codes) => codes.contains(&status.as_u16()),
        None => status.is_success(),
    };
    if !expected {
        let wanted = target.expect_status.as_ref().map_or_else(
            || "any 2xx".to_owned(),
            |codes| {
                codes
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        );
        return Err(recorder.fail(
            Phase::Request,
            ProbeError::new(
                ErrorKind::HttpStatus,
                format!(
                    "{} answered {}; expected {wanted}",
                    response.url,
                    response.status_text()
                ),
            ),
        ));
    }
    if let Some(pattern) = &target.expect_body {
        if !pattern.is_match(&response.body) {
            let truncated = http::http_facts(recorder).body_truncated;
            let scope = if truncated {
                format!(
                    "in the first {} KiB of the page (the rest was not read)",
                    http::MAX_BODY_BYTES / 1024
                )
            } else {
                format!("in the page ({} bytes)", response.body.len())
            };
            return Err(recorder.fail(
                Phase::Response,
                ProbeError::new(
                    ErrorKind::BodyMismatch,
                    format!("`{}` was not found {scope}", pattern.as_str()),
                ),
            ));
        }
        recorder.note(format!("the page matches `{}`", pattern.as_str()));
    }
    Ok(())
}
