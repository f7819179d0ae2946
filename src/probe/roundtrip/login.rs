//! Each leg's login under the lockout protection ([`crate::probe::logins`]). A round
//! trip logs in twice, often to two servers with two credentials, so each leg keeps
//! its own state ([`Leg::Send`], [`Leg::Receive`] under the target's name): a leg
//! whose login was rejected too often in a row stops at the login offer without its
//! credential, while the other leg goes on logging in.
//!
//! The recorder holds one leg's login facts at a time: [`LegLogin::admit`] puts a fresh
//! set in before the leg's session, [`LegLogin::settle`] updates the state right after
//! its login (the session goes on with the transaction or the mailbox), and
//! [`LegLogin::done`] takes the facts out again. [`merged`] makes the round's facts of
//! the two legs' at the end.

use std::borrow::Cow;

use tokio::time::Instant;

use crate::config::{Endpoint, Target};
use crate::probe::logins::{Admission, Leg, Login};
use crate::probe::{Failed, LoginFacts, ProbeEnv, Recorder};

/// One leg's login: whether its credential may be sent, and whether the state has
/// been updated from this round yet.
#[derive(Debug)]
pub(super) struct LegLogin<'a> {
    login: Option<(Login<'a>, Admission)>,
    /// The endpoint the leg dials: the configured one, or a copy without its
    /// credential while the login is held back.
    endpoint: Cow<'a, Endpoint>,
    settled: bool,
}

impl<'a> LegLogin<'a> {
    /// Asks whether `leg` of `target` (dialling `endpoint`) may send its credential,
    /// and gives the recorder the leg's login facts.
    pub(super) fn admit(
        target: &'a Target,
        leg: Leg,
        endpoint: &'a Endpoint,
        env: &ProbeEnv,
        recorder: &mut Recorder,
    ) -> LegLogin<'a> {
        let Some(credentials) = &endpoint.auth else {
            recorder.login = None;
            return LegLogin {
                login: None,
                endpoint: Cow::Borrowed(endpoint),
                settled: true,
            };
        };
        let login = Login {
            target,
            leg,
            credentials,
        };
        recorder.login = Some(LoginFacts {
            consecutive_failures: env.logins.failures(&login),
            ..LoginFacts::default()
        });
        let admission = env.logins.admit(&login, Instant::now());
        let endpoint = match admission {
            Admission::Send => Cow::Borrowed(endpoint),
            Admission::Withhold(_) => {
                let side = if leg == Leg::Send { "send" } else { "receive" };
                recorder.note(format!(
                    "{side}: login suspended after repeated rejections: going up to the \
                     login offer without sending the credential"
                ));
                let mut bare = endpoint.clone();
                bare.auth = None;
                Cow::Owned(bare)
            }
        };
        LegLogin {
            login: Some((login, admission)),
            endpoint,
            settled: false,
        }
    }

    /// The endpoint the leg dials.
    pub(super) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Updates the leg's state after its login (or after the session failed before
    /// it, or the deadline cut it short; later calls do nothing). A held-back leg
    /// that reached the login offer now fails with the last real answer.
    ///
    /// # Errors
    ///
    /// [`Failed`] when the leg must stop: its credential was held back.
    pub(super) fn settle(&mut self, env: &ProbeEnv, recorder: &mut Recorder) -> Result<(), Failed> {
        if std::mem::replace(&mut self.settled, true) {
            return Ok(());
        }
        let Some((login, admission)) = &self.login else {
            return Ok(());
        };
        env.logins
            .settle_recorded(login, admission, recorder, Instant::now());
        let failure = recorder.failure().cloned();
        login.advise(failure.as_ref(), recorder.login.as_mut());
        match admission {
            Admission::Withhold(_) if failure.is_some() => Err(Failed),
            _ => Ok(()),
        }
    }

    /// Settles the leg if it has not been yet and takes its login facts out of the
    /// recorder.
    pub(super) fn done(mut self, env: &ProbeEnv, recorder: &mut Recorder) -> Option<LoginFacts> {
        let _ = self.settle(env, recorder);
        recorder.login.take()
    }
}

/// The round's login facts from its legs': those of the leg the round stopped in
/// (`last`: a held-back or rejected login always ends the round), with the later of
/// the two last attempts and the earlier of the two token and certificate expiries
/// (the one that matters first).
pub(super) fn merged(earlier: Option<LoginFacts>, last: Option<LoginFacts>) -> Option<LoginFacts> {
    let (earlier, mut facts) = match (earlier, last) {
        (Some(earlier), Some(last)) => (earlier, last),
        (earlier, last) => return last.or(earlier),
    };
    facts.sent |= earlier.sent;
    facts.last_attempt = facts.last_attempt.max(earlier.last_attempt);
    facts.token_expiry = earliest(facts.token_expiry, earlier.token_expiry);
    facts.client_certificate_not_after = earliest(
        facts.client_certificate_not_after,
        earlier.client_certificate_not_after,
    );
    Some(facts)
}

/// The earlier of two optional dates.
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn the_round_reports_the_leg_it_stopped_in_and_the_dates_that_matter_first() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let send = LoginFacts {
            sent: true,
            last_attempt: Some(now - hour),
            token_expiry: Some(now + hour),
            mechanism: Some("XOAUTH2"),
            ..LoginFacts::default()
        };
        let receive = LoginFacts {
            suspended: true,
            consecutive_failures: 3,
            last_attempt: Some(now - 2 * hour),
            token_expiry: Some(now + 2 * hour),
            ..LoginFacts::default()
        };
        let round = merged(Some(send.clone()), Some(receive.clone())).unwrap();
        assert!(round.sent && round.suspended);
        assert_eq!(round.consecutive_failures, 3);
        assert_eq!(round.last_attempt, send.last_attempt);
        assert_eq!(round.token_expiry, send.token_expiry);
        assert_eq!(round.mechanism, None);
        assert_eq!(merged(Some(send.clone()), None), Some(send.clone()));
        assert_eq!(merged(None, Some(receive.clone())), Some(receive));
        assert_eq!(merged(None, None), None);
    }
}
