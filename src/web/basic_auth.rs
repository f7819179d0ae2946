//! HTTP Basic authentication against bcrypt hashes (`web.basic_auth_users`), the way
//! the Prometheus exporters do it, without letting it be used against the agent:
//!
//! - a verified `user:password` is remembered for [`CACHE_TTL`] under a keyed hash
//!   (never the password), so a scraper costs one bcrypt check a minute, not one per
//!   scrape;
//! - at most [`CONCURRENT_CHECKS`] bcrypt checks run at once and at most
//!   [`WAITING_CHECKS`] wait; beyond that a request is refused at once (503), so wrong
//!   passwords from many clients cannot starve the runtime or a legitimate scrape;
//! - an unknown user name is checked against a dummy hash of the highest cost the
//!   configuration uses, so the answer takes as long as for a real user (no user-name
//!   guessing by timing).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ring::hmac;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;

use crate::config::bcrypt_cost;

/// How long a verified `user:password` is remembered: a scraper every 15 s pays for one
/// bcrypt check a minute instead of four.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Verified credentials remembered at most: a few scrapers and administrators.
const CACHE_ENTRIES: usize = 64;
/// bcrypt checks running at once: one per core of a small site machine.
pub const CONCURRENT_CHECKS: usize = 2;
/// bcrypt checks allowed to wait for a turn; more are refused at once.
pub const WAITING_CHECKS: usize = 16;

/// HMAC-SHA256 of `user:password` under the process's random key.
type Fingerprint = [u8; 32];

/// The listener's users and what keeps checking them affordable.
pub struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    /// Keys the cache's hashes: random per process, so a cache entry says nothing.
    key: hmac::Key,
    cache: Mutex<HashMap<Fingerprint, Instant>>,
    checks: Semaphore,
    waiting: AtomicUsize,
    /// A hash of a random string at the highest configured cost, made on first use.
    dummy: OnceCell<String>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a request may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are right.
    Allowed,
    /// Missing or wrong credentials.
    Denied,
    /// Too many checks waiting: try again.
    Busy,
}

impl BasicAuth {
    /// Checks against `users` (user name → bcrypt hash).
    pub fn new(users: Arc<BTreeMap<String, String>>) -> BasicAuth {
        let mut seed = [0u8; 32];
        for byte in &mut seed {
            *byte = fastrand::u8(..);
        }
        BasicAuth {
            users,
            key: hmac::Key::new(hmac::HMAC_SHA256, &seed),
            cache: Mutex::new(HashMap::new()),
            checks: Semaphore::new(CONCURRENT_CHECKS),
            waiting: AtomicUsize::new(0),
            dummy: OnceCell::new(),
        }
    }

    /// Checks the `Authorization` header value `offered`.
    pub async fn check(&self, offered: Option<&str>) -> Verdict {
        let Some((user, password)) = offered.and_then(decode) else {
            return Verdict::Denied;
        };
        let tag = self.fingerprint(&user, &password);
        if self.remembered(&tag) {
            return Verdict::Allowed;
        }
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= WAITING_CHECKS {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Verdict::Busy;
        }
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.checks.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(_permit) = permit else {
            return Verdict::Denied;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.clone(), true),
            None => (self.dummy().await.to_owned(), false),
        };
        // bcrypt is deliberately slow: keep it off the runtime threads.
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if known && matches {
            self.remember(tag);
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }

    async fn dummy(&self) -> &str {
        let cost = self
            .users
            .values()
            .filter_map(|hash| bcrypt_cost(hash))
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        self.dummy
            .get_or_init(|| async move {
                let secret: String = std::iter::repeat_with(fastrand::alphanumeric)
                    .take(32)
                    .collect();
                tokio::task::spawn_blocking(move || bcrypt::hash(secret, cost).ok())
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            })
            .await
    }

    /// The keyed hash a verified `user:password` is remembered under.
    fn fingerprint(&self, user: &str, password: &str) -> Fingerprint {
        let tag = hmac::sign(&self.key, format!("{user}:{password}").as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(&tag.as_ref()[..32]);
        fingerprint
    }

    fn remembered(&self, tag: &Fingerprint) -> bool {
        let cache = self.lock();
        cache
            .get(tag)
            .is_some_and(|verified| verified.elapsed() < CACHE_TTL)
    }

    fn remember(&self, tag: Fingerprint) {
        let mut cache = self.lock();
        cache.retain(|_, verified| verified.elapsed() < CACHE_TTL);
        if cache.len() >= CACHE_ENTRIES
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, verified)| **verified)
                .map(|(tag, _)| *tag)
        {
            cache.remove(&oldest);
        }
        cache.insert(tag, Instant::now());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Fingerprint, Instant>> {
        // A map of timestamps cannot be left inconsistent by a panic.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `Basic base64(user:password)` → `(user, password)`.
fn decode(value: &str) -> Option<(String, String)> {
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The middleware: every request needs the right credentials.
pub async fn basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match auth.check(offered).await {
        Verdict::Allowed => next.run(request).await,
        Verdict::Denied => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"mailprobe\"")],
            "authentication required\n",
        )
            .into_response(),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many logins being checked; try again\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(cost: u32) -> Arc<BTreeMap<String, String>> {
        let hash = bcrypt::hash("right", cost).unwrap();
        Arc::new(BTreeMap::from([("prometheus".to_owned(), hash)]))
    }

    fn header(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[tokio::test]
    async fn right_credentials_pass_and_are_then_remembered() {
        let auth = BasicAuth::new(users(4));
        let right = header("prometheus", "right");
        assert_eq!(auth.check(Some(&right)).await, Verdict::Allowed);
        assert_eq!(auth.lock().len(), 1, "remembered by a keyed hash");
        assert_eq!(auth.check(Some(&right)).await, Verdict::Allowed);
        assert_eq!(
            auth.check(Some(&header("prometheus", "wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.check(Some(&header("nobody", "right"))).await,
            Verdict::Denied
        );
        assert_eq!(auth.check(None).await, Verdict::Denied);
        assert_eq!(auth.check(Some("Bearer x")).await, Verdict::Denied);
    }

    /// Issue 16: an unknown user costs what a real one does.
    #[tokio::test]
    async fn issue_16_the_dummy_hash_has_the_configured_cost() {
        let auth = BasicAuth::new(users(5));
        let dummy = auth.dummy().await.to_owned();
        assert_eq!(bcrypt_cost(&dummy), Some(5));
    }

    /// Issue 16: more checks than may wait are refused at once, not queued.
    #[tokio::test]
    async fn issue_16_checks_beyond_the_waiting_room_are_refused_at_once() {
        let auth = BasicAuth::new(users(4));
        auth.waiting.store(WAITING_CHECKS, Ordering::SeqCst);
        assert_eq!(
            auth.check(Some(&header("prometheus", "x"))).await,
            Verdict::Busy
        );
    }
}
