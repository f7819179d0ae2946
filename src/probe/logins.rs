//! Logins that never lock an account. A probe whose login is rejected again and again
//! looks like password guessing: Dovecot delays every login from the site's address,
//! fail2ban bans the office's public address, Microsoft 365 smart lockout locks the
//! mailbox. So after `auth.max_failures` rejected logins in a row on a target, its
//! credential is held back: the probe still runs everything up to the login offer and
//! keeps failing with the last real answer (`auth_failed`), and the credential is sent
//! again after one round without it, then two, four … (a backoff from one interval,
//! doubling) but never less than once per [`MAX_BACKOFF`]. A reload, or a new
//! credential (a changed secret file reloads the configuration), tries again at once.
//!
//! The state is kept per target name (the checks of an exchange target share one
//! credential) and handed on at a reload with the token cache. A round trip has two
//! logins, and each leg ([`Leg::Send`], [`Leg::Receive`]) keeps its own state under the
//! target's name: the legs often log in to different servers with different
//! credentials, and even with one credential for both, each server counts (and
//! punishes) the rejections it sees itself. So a success on one leg never clears the
//! other's rejections, and a credential held back on one leg is not on the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{ErrorKind, Failure, LoginFacts, Phase, ProbeResult, ProtocolFacts, Recorder};
use crate::config::{Config, Credentials, Protocol, Target, TargetSpec};

/// The longest wait between two real attempts of a suspended login: an hour keeps a
/// wrong password from costing more than a couple of dozen rejections a day, and still
/// notices a fix within the hour (a reload notices it at once).
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Every target's login state.
#[derive(Debug, Default)]
pub struct Logins {
    entries: Mutex<HashMap<(Arc<str>, Leg), Entry>>,
}

/// Which of a target's logins a state is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The target's one login (every protocol but a round trip).
    Only,
    /// A round trip's SMTP submission.
    Send,
    /// A round trip's IMAP mailbox.
    Receive,
}

/// One login of one target: whose, which, and with what credential.
#[derive(Debug, Clone, Copy)]
pub struct Login<'a> {
    /// The target (its name keys the state, its interval paces the retries).
    pub target: &'a Target,
    /// Which of its logins.
    pub leg: Leg,
    /// The credential sent.
    pub credentials: &'a Credentials,
}

impl<'a> Login<'a> {
    /// Every login of `target`: none, its endpoint's, or a round trip's legs that log in.
    pub fn all(target: &'a Target) -> Vec<Login<'a>> {
        let login = |leg, endpoint: &'a crate::config::Endpoint| {
            endpoint.auth.as_ref().map(|credentials| Login {
                target,
                leg,
                credentials,
            })
        };
        match &target.spec {
            TargetSpec::Roundtrip(roundtrip) => [
                login(Leg::Send, &roundtrip.send.endpoint),
                login(Leg::Receive, &roundtrip.receive),
            ]
            .into_iter()
            .flatten()
            .collect(),
            spec => spec
                .endpoint()
                .and_then(|endpoint| login(Leg::Only, endpoint))
                .into_iter()
                .collect(),
        }
    }

    /// The protocol that carries this login: the target's, or its leg's.
    pub fn protocol(&self) -> Protocol {
        match self.leg {
            Leg::Only => self.target.protocol,
            Leg::Send => Protocol::Smtp,
            Leg::Receive => Protocol::Imap,
        }
    }

    fn key(&self) -> (Arc<str>, Leg) {
        (Arc::clone(&self.target.name), self.leg)
    }

    /// The provider's next step for a failed OAuth2 login, into `facts`.
    pub fn advise(&self, failure: Option<&Failure>, facts: Option<&mut LoginFacts>) {
        if let Some(oauth2) = &self.credentials.oauth2
            && let Some(failure) = failure
            && let Some(facts) = facts
        {
            facts.advice = super::oauth2::advice::for_failure(
                oauth2,
                self.protocol(),
                failure,
                &facts.token_roles,
            );
        }
    }
}

/// One target's login state.
#[derive(Debug, Clone)]
struct Entry {
    /// The credential these counts are about ([`Credentials::fingerprint`]).
    fingerprint: [u8; 32],
    /// Rejected logins in a row.
    failures: u32,
    /// When the credential was last sent.
    last_attempt: Option<SystemTime>,
    /// The last rejection's message: what a suspended probe reports.
    last_answer: String,
    suspension: Option<Suspension>,
}

/// A held-back credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspension {
    /// The earliest the credential is sent again (monotonic clock).
    until: Instant,
    /// The same, on the wall clock, for people.
    until_wall: SystemTime,
    /// The wait before this attempt; the next one waits twice as long.
    backoff: Duration,
}

/// Whether a probe may send its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Send,
    /// Hold it back: stop at the login offer.
    Withhold(Suspension),
}

impl Logins {
    /// No login known yet.
    pub fn new() -> Logins {
        Logins::default()
    }

    /// Whether `login` may send its credential at `now`. A round that starts within
    /// half an interval of the retry time is the retry: the schedule is not exact.
    pub fn admit(&self, login: &Login<'_>, now: Instant) -> Admission {
        let mut entries = self.lock();
        let key = login.key();
        let Some(entry) = entries.get(&key) else {
            return Admission::Send;
        };
        if entry.fingerprint != login.credentials.fingerprint() {
            // A new credential: its predecessor's rejections are no evidence against it.
            entries.remove(&key);
            return Admission::Send;
        }
        match &entry.suspension {
            Some(suspension) if now + login.target.interval / 2 < suspension.until => {
                Admission::Withhold(suspension.clone())
            }
            _ => Admission::Send,
        }
    }

    /// `login`'s rejected logins in a row so far.
    pub fn failures(&self, login: &Login<'_>) -> u32 {
        self.lock()
            .get(&login.key())
            .map_or(0, |entry| entry.failures)
    }

    /// Updates `login`'s state from `result` (a probe admitted as `admission`) and
    /// fills in the result's login facts; a held-back probe that reached the login
    /// offer fails with the last real answer.
    pub fn settle(
        &self,
        login: &Login<'_>,
        admission: &Admission,
        result: &mut ProbeResult,
        now: Instant,
    ) {
        let reached = reached_login_offer(result);
        let mut failure = std::mem::replace(&mut result.outcome, Ok(())).err();
        let mut facts = result.login.take().map(|facts| *facts);
        self.update(login, admission, reached, &mut failure, &mut facts, now);
        result.login = facts.map(Box::new);
        result.outcome = failure.map_or(Ok(()), Err);
    }

    /// [`Logins::settle`] for a login whose session goes on (a round trip's leg, just
    /// after its login, or after the deadline cut it short): reads and amends the
    /// recorder's failure and login facts.
    pub fn settle_recorded(
        &self,
        login: &Login<'_>,
        admission: &Admission,
        recorder: &mut Recorder,
        now: Instant,
    ) {
        let mut failure = recorder.take_failure();
        let reached = failure.is_none();
        self.update(
            login,
            admission,
            reached,
            &mut failure,
            &mut recorder.login,
            now,
        );
        if let Some(failure) = failure {
            recorder.restore_failure(failure);
        }
    }

    /// The state machine: `failure` is the probe's (replaced by the last real answer
    /// when a held-back probe `reached` the login offer), `facts` its login facts.
    fn update(
        &self,
        login: &Login<'_>,
        admission: &Admission,
        reached: bool,
        failure: &mut Option<Failure>,
        facts: &mut Option<LoginFacts>,
        now: Instant,
    ) {
        let (target, credentials) = (login.target, login.credentials);
        let mut entries = self.lock();
        let entry = entries.entry(login.key()).or_insert_with(|| Entry {
            fingerprint: credentials.fingerprint(),
            failures: 0,
            last_attempt: None,
            last_answer: String::new(),
            suspension: None,
        });
        let sent = facts.as_ref().is_some_and(|l| l.sent);
        if let Admission::Withhold(suspension) = admission {
            if reached {
                *failure = Some(Failure {
                    phase: Phase::Auth,
                    kind: ErrorKind::AuthFailed,
                    message: format!(
                        "{} (login suspended: after {} rejected logins in a row the credential \
                         is held back until {}, so that the account is not locked out)",
                        entry.last_answer,
                        entry.failures,
                        humantime::format_rfc3339_seconds(suspension.until_wall)
                    ),
                });
            }
        } else if sent {
            entry.last_attempt = Some(SystemTime::now());
            match failure.as_ref() {
                None => {
                    entry.failures = 0;
                    entry.suspension = None;
                }
                Some(failure) if is_rejection(failure) => {
                    entry.failures += 1;
                    entry.last_answer.clone_from(&failure.message);
                    if entry.failures >= credentials.max_failures {
                        let backoff = match &entry.suspension {
                            Some(previous) => (previous.backoff * 2).min(MAX_BACKOFF),
                            None => target.interval.min(MAX_BACKOFF),
                        };
                        // The usual interval plus the backoff: at least one round
                        // goes without the credential, then two, four …
                        let wait = (target.interval + backoff).min(MAX_BACKOFF);
                        entry.suspension = Some(Suspension {
                            until: now + wait,
                            until_wall: SystemTime::now() + wait,
                            backoff,
                        });
                    }
                }
                // A retry that met no answer (a timeout): wait as long again.
                Some(_) => {
                    if let Some(suspension) = &mut entry.suspension {
                        let wait = (target.interval + suspension.backoff).min(MAX_BACKOFF);
                        suspension.until = now + wait;
                        suspension.until_wall = SystemTime::now() + wait;
                    }
                }
            }
        }
        let facts = facts.get_or_insert_with(LoginFacts::default);
        facts.suspended = matches!(admission, Admission::Withhold(_));
        facts.consecutive_failures = entry.failures;
        facts.last_attempt = entry.last_attempt;
        facts.next_attempt = entry.suspension.as_ref().map(|s| s.until_wall);
    }

    /// Takes the state over into a new configuration: logins of targets that are gone
    /// or whose credential changed are forgotten; a suspended login tries again at
    /// the next probe (a reload is how an administrator says "try now").
    pub fn carry_over(&self, config: &Config) {
        let credentials: HashMap<(&str, Leg), [u8; 32]> = config
            .targets
            .iter()
            .flat_map(|target| Login::all(target))
            .map(|login| {
                let key = (&*login.target.name, login.leg);
                (key, login.credentials.fingerprint())
            })
            .collect();
        let now = Instant::now();
        let wall = SystemTime::now();
        self.lock().retain(|(name, leg), entry| {
            if credentials.get(&(&**name, *leg)) != Some(&entry.fingerprint) {
                return false;
            }
            if let Some(suspension) = &mut entry.suspension {
                suspension.until = now;
                suspension.until_wall = wall;
            }
            true
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Arc<str>, Leg), Entry>> {
        // A map of plain values cannot be left inconsistent by a panic.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A rejected login: the server's answer to the credential.
fn is_rejection(failure: &Failure) -> bool {
    failure.phase == Phase::Auth && failure.kind == ErrorKind::AuthFailed
}

/// Whether a probe without its credential got as far as the login offer: everything
/// before it worked, or a web server asked for the credential (401).
fn reached_login_offer(result: &ProbeResult) -> bool {
    match result.failure() {
        None => true,
        Some(failure) => {
            failure.kind == ErrorKind::HttpStatus
                && matches!(&result.facts, ProtocolFacts::Http(http) if http.status == Some(401))
        }
    }
}

#[cfg(test)]
mod tests;
