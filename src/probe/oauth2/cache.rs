//! The token cache: one token per login (token endpoint, client, credential, scope,
//! subject — [`crate::config::OAuth2::fingerprint`]), reused until it is about to
//! expire, with at most one request to the identity provider in flight per login:
//! probes that need the same token meanwhile wait for that request and share its
//! outcome. It lives in the probe environment and is handed on at a reload, so a
//! reload does not cost every login a new token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, MutexGuard};
use tokio::time::Instant;

use super::AccessToken;
use crate::probe::ProbeError;

/// A login's key in the cache.
pub type TokenKey = [u8; 32];

/// Tokens by login.
#[derive(Debug, Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Arc<Slot>>>,
}

/// One login's token and the request for it.
#[derive(Debug, Default)]
pub struct Slot {
    state: AsyncMutex<SlotState>,
}

/// What a slot knows.
#[derive(Debug, Default)]
pub struct SlotState {
    token: Option<Arc<AccessToken>>,
    /// The last request's failure and when it ended: shared with the probes that
    /// waited for it, never reused by a probe that asked later.
    failure: Option<(Instant, ProbeError)>,
    /// Requests made to the token endpoint for this login.
    fetches: u64,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The slot of `key`, created on first use.
    pub fn slot(&self, key: TokenKey) -> Arc<Slot> {
        Arc::clone(self.lock().entry(key).or_default())
    }

    /// Forgets `token` for `key` if it is still the cached one (the mail server
    /// refused it, so the next login asks for a new one).
    pub async fn invalidate(&self, key: TokenKey, token: &Arc<AccessToken>) {
        let slot = self.lock().get(&key).cloned();
        if let Some(slot) = slot {
            let mut state = slot.lock().await;
            if state.token.as_ref().is_some_and(|t| Arc::ptr_eq(t, token)) {
                state.token = None;
            }
        }
    }

    /// Keeps only the logins in `keys` (those of a new configuration).
    pub fn retain(&self, keys: &HashSet<TokenKey>) {
        self.lock().retain(|key, _| keys.contains(key));
    }

    /// How many logins have a slot.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no login has a slot.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Arc<Slot>>> {
        // A map of shared slots cannot be left inconsistent by a panic.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Slot {
    /// Waits for the request in flight, if any, and holds the slot: whoever holds it
    /// is the only one asking the token endpoint.
    pub async fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().await
    }
}

impl SlotState {
    /// The cached token if it is still good at `now`.
    pub fn valid(&self, now: Instant) -> Option<Arc<AccessToken>> {
        self.token.as_ref().filter(|t| t.is_fresh(now)).cloned()
    }

    /// The failure of a request that ended after `asked` (one this probe waited for).
    pub fn failed_since(&self, asked: Instant) -> Option<ProbeError> {
        self.failure
            .as_ref()
            .filter(|(at, _)| *at >= asked)
            .map(|(_, error)| error.clone())
    }

    /// Records the outcome of a request.
    pub fn store(&mut self, outcome: &Result<Arc<AccessToken>, ProbeError>) {
        self.fetches += 1;
        match outcome {
            Ok(token) => {
                self.token = Some(Arc::clone(token));
                self.failure = None;
            }
            Err(error) => {
                self.token = None;
                self.failure = Some((Instant::now(), error.clone()));
            }
        }
    }

    /// Requests made to the token endpoint for this login so far.
    pub fn fetches(&self) -> u64 {
        self.fetches
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::probe::ErrorKind;

    fn token(valid_for: Duration) -> Arc<AccessToken> {
        Arc::new(AccessToken::new(
            "t".into(),
            Instant::now(),
            SystemTime::now(),
            valid_for,
            Vec::new(),
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_reused_until_shortly_before_it_expires() {
        let cache = TokenCache::new();
        let slot = cache.slot([1; 32]);
        let mut state = slot.lock().await;
        state.store(&Ok(token(Duration::from_secs(3600))));
        assert!(state.valid(Instant::now()).is_some());
        // The margin: a token with minutes left is not handed to a probe.
        tokio::time::advance(Duration::from_secs(3600 - 60)).await;
        assert!(state.valid(Instant::now()).is_none());
        assert_eq!(state.fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_shared_only_with_those_who_waited_for_it() {
        let cache = TokenCache::new();
        let slot = cache.slot([2; 32]);
        let asked = Instant::now();
        let mut state = slot.lock().await;
        state.store(&Err(ProbeError::new(ErrorKind::TokenRejected, "no")));
        assert!(state.failed_since(asked).is_some());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(state.failed_since(Instant::now()).is_none());
    }

    /// Whether `cache` hands out a token for `key` now.
    async fn holds(cache: &TokenCache, key: TokenKey) -> bool {
        cache.slot(key).lock().await.valid(Instant::now()).is_some()
    }

    #[tokio::test]
    async fn an_invalidated_token_is_forgotten_and_unknown_logins_pruned() {
        let cache = TokenCache::new();
        let first = token(Duration::from_secs(3600));
        cache
            .slot([3; 32])
            .lock()
            .await
            .store(&Ok(Arc::clone(&first)));
        // Another token (one a probe replaced meanwhile) leaves the cached one be.
        cache
            .invalidate([3; 32], &token(Duration::from_secs(1)))
            .await;
        assert!(holds(&cache, [3; 32]).await);
        cache.invalidate([3; 32], &first).await;
        assert!(!holds(&cache, [3; 32]).await);
        cache.slot([4; 32]);
        cache.retain(&HashSet::from([[4; 32]]));
        assert_eq!(cache.len(), 1);
    }
}
