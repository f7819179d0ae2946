//! `diagnose --oauth2 TARGET`: log in to the discovered endpoints with the OAuth2
//! client of a configured target.

use std::sync::Arc;

use crate::config::{Config, Credentials, Target, TargetSpec};

/// Why `--oauth2 TARGET` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// No target of that name in the configuration.
    #[error("the configuration has no target `{0}` (--oauth2 names a configured target)")]
    UnknownTarget(String),
    /// The target logs in without OAuth2.
    #[error("target `{0}` has no `auth.oauth2` settings to log in with")]
    NoOAuth2(String),
}

/// The OAuth2 credentials of the configured target `name`, for `--oauth2`.
///
/// # Errors
///
/// [`LoginError`] when there is no such target or it has no `auth.oauth2`.
pub fn oauth2_login(config: &Config, name: &str) -> Result<Credentials, LoginError> {
    let target = config
        .targets
        .iter()
        .find(|t| &*t.name == name)
        .ok_or_else(|| LoginError::UnknownTarget(name.to_owned()))?;
    // A round trip has two logins: the first of its legs with an OAuth2 client.
    target
        .spec
        .endpoints()
        .into_iter()
        .filter_map(|e| e.auth.clone())
        .find(|credentials| credentials.oauth2.is_some())
        .ok_or_else(|| LoginError::NoOAuth2(name.to_owned()))
}

/// `target` logging in with `login` (an endpoint a mail client logs in to).
pub(super) fn with_login(target: Arc<Target>, login: &Credentials) -> Arc<Target> {
    let mut spec = target.spec.clone();
    match &mut spec {
        TargetSpec::Imap(endpoint) | TargetSpec::Pop3(endpoint) => {
            endpoint.auth = Some(login.clone());
        }
        TargetSpec::Smtp(smtp) => smtp.endpoint.auth = Some(login.clone()),
        TargetSpec::Exchange(exchange) => exchange.endpoint.auth = Some(login.clone()),
        _ => return target,
    }
    Arc::new(Target {
        name: Arc::clone(&target.name),
        protocol: target.protocol,
        interval: target.interval,
        timeout: target.timeout,
        phase_histogram: target.phase_histogram,
        spec,
    })
}
