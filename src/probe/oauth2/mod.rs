//! OAuth2 logins (`auth.oauth2`): the `token` phase that gets an access token from
//! the identity provider, the cache that keeps it, and the SASL mechanisms that show
//! it to a mail server.
//!
//! ```text
//! token   the cached token, or one request to the token endpoint (its resolve,
//!         connect, TLS and request timed inside this phase, each step in the log)
//! auth    XOAUTH2 / OAUTHBEARER (IMAP, POP3, SMTP) or `Authorization: Bearer` (EWS,
//!         Autodiscover); a cached token the server refuses is replaced once
//! ```
//!
//! The grant is written here on the project's HTTP client rather than taken from a
//! crate: the crates that do grants bring their own HTTP stack (reqwest), which would
//! hide the hop's phases and bring a second TLS stack; a JWT assertion is signed with
//! `ring`, already the TLS provider.

pub mod advice;
pub mod cache;
pub mod grant;
pub mod response;
pub mod sasl;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use cache::{TokenCache, TokenKey};
pub use response::parse_token_response;
pub use sasl::parse_challenge;

use super::{ErrorKind, Failed, Phase, ProbeError, Recorder};
use crate::config::{ClientCredential, Endpoint, OAuth2};
use crate::probe::env::ProbeEnv;

/// A token is no longer handed out this long before it expires (or a quarter of its
/// lifetime, when that is shorter): a probe started with it must finish before the
/// server could find it expired.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The token trip must end this long before the probe's deadline, so that a timeout
/// is blamed on the hop's own step (resolve, connect, …) rather than on the probe.
const SIDE_TRIP_MARGIN: Duration = Duration::from_millis(100);
/// What marks the token endpoint's lines in the probe's log.
const LOG_PREFIX: &str = "token endpoint: ";

/// An access token. `Debug` hides it; only [`AccessToken::expose`] gives it.
pub struct AccessToken {
    value: String,
    /// When it expires (wall clock, for the metric).
    pub expires_at: SystemTime,
    /// Until when it is handed out (monotonic clock, the margin taken off).
    fresh_until: Instant,
    /// The app roles it carries (Microsoft), to explain a refused login.
    pub roles: Vec<String>,
}

impl AccessToken {
    /// A token asked for at `asked` (monotonic) / `issued` (wall clock), valid for
    /// `lifetime`.
    pub fn new(
        value: String,
        asked: Instant,
        issued: SystemTime,
        lifetime: Duration,
        roles: Vec<String>,
    ) -> AccessToken {
        let margin = EXPIRY_MARGIN.min(lifetime / 4);
        AccessToken {
            value,
            expires_at: issued + lifetime,
            fresh_until: asked + lifetime.saturating_sub(margin),
            roles,
        }
    }

    /// The token itself: only for writing it onto the wire.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Whether it may still be handed to a probe at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A token for one login, and whether this probe asked for it.
#[derive(Debug, Clone)]
pub struct Obtained {
    /// The token.
    pub token: Arc<AccessToken>,
    /// True when this probe got it from the token endpoint, false when cached: a
    /// cached token the server refuses is worth replacing once.
    pub fresh: bool,
}

/// The `token` phase: `login`'s cached token, or one from its token endpoint (trusting
/// `trust`'s roots). The login's facts (identity provider, expiry, roles, certificate)
/// are noted in the recorder.
///
/// # Errors
///
/// [`Failed`] when no token could be had; the recorder holds the reason (the hop's
/// own, `token_rejected`, or a timeout).
pub async fn obtain(
    login: &OAuth2,
    trust: &Endpoint,
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<Obtained, Failed> {
    if let Some(facts) = &mut recorder.login {
        facts.identity_provider = Some(login.identity_provider());
        if let ClientCredential::Certificate(certificate) = &login.credential {
            facts.client_certificate_not_after = Some(certificate.not_after);
        }
    }
    let mut trip = recorder.child();
    let started = recorder.begin(Phase::Token);
    let by = deadline.checked_sub(SIDE_TRIP_MARGIN).unwrap_or(deadline);
    let outcome = token(login, trust, env, by, &mut trip).await;
    recorder.absorb(trip, LOG_PREFIX);
    let obtained = recorder.end(Phase::Token, started, outcome)?;
    recorder.redactor.add_secret(obtained.token.expose());
    if let Some(facts) = &mut recorder.login {
        facts.token_expiry = Some(obtained.token.expires_at);
        facts.token_roles.clone_from(&obtained.token.roles);
    }
    Ok(obtained)
}

/// The cached token, the outcome of the request another probe made meanwhile, or a
/// request of this probe's own — by `by`.
async fn token(
    login: &OAuth2,
    trust: &Endpoint,
    env: &ProbeEnv,
    by: Instant,
    trip: &mut Recorder,
) -> Result<Obtained, ProbeError> {
    let slot = env.tokens.slot(login.fingerprint());
    let asked = Instant::now();
    let mut state = tokio::time::timeout_at(by, slot.lock())
        .await
        .map_err(|_| {
            ProbeError::new(
                ErrorKind::Timeout,
                "another probe's request to the token endpoint did not finish in time",
            )
        })?;
    if let Some(token) = state.valid(asked) {
        trip.note(format!(
            "the cached token is good until {}",
            humantime::format_rfc3339_seconds(token.expires_at)
        ));
        return Ok(Obtained {
            token,
            fresh: false,
        });
    }
    if let Some(error) = state.failed_since(asked) {
        return Err(ProbeError::new(
            error.kind,
            format!(
                "{} (the request of another probe with this client, which this one waited for)",
                error.message
            ),
        ));
    }
    let outcome = match tokio::time::timeout_at(by, grant::fetch(login, trust, env, by, trip)).await
    {
        Ok(outcome) => outcome.map(Arc::new),
        Err(_) => {
            trip.deadline_expired(by.saturating_duration_since(asked));
            Err(grant::hop_failure(login, trip))
        }
    };
    state.store(&outcome);
    outcome.map(|token| Obtained { token, fresh: true })
}
