//! The probe contract: what every protocol probe produces, and how its phases are timed.
//!
//! A probe runs a sequence of [`Phase`]s. Each phase is timed by a [`Recorder`]; the first
//! phase that fails ends the probe with a typed [`ErrorKind`] and a human message. The
//! result is a [`ProbeResult`], which the metrics, the history and (later) the fault
//! classifier read. Protocol files (`tcp.rs`, `dns.rs`, …) only talk their protocol; the
//! shared dialling lives in [`dial`], certificate handling in [`tls`].

pub mod autodiscover;
pub mod dial;
pub mod dns;
pub mod env;
pub mod error;
pub mod exchange;
pub mod http;
pub mod imap;
pub mod lines;
pub mod logins;
pub mod mail;
pub mod oauth2;
pub mod pop3;
pub mod recorder;
pub mod redact;
pub mod result;
pub mod roundtrip;
pub mod smtp;
pub mod tcp;
pub mod tls;
pub mod webmail;

use std::time::SystemTime;

use tokio::time::Instant;

pub use env::ProbeEnv;
pub use error::{ErrorKind, ProbeError};
pub use recorder::{Failed, MAX_LOG_LINES, Recorder};
pub use result::{
    Failure, Log, LoginFacts, Phase, PhaseTiming, ProbeResult, ProtocolFacts, TlsFacts,
};

use crate::config::{Target, TargetSpec};
use logins::{Admission, Leg, Login};

/// `instant + duration`, or (should that ever overflow) a year later, or `instant`:
/// never a panic. Validation bounds every duration to a week, so the fallbacks are
/// for what validation never lets through.
pub fn later(instant: Instant, duration: std::time::Duration) -> Instant {
    const YEAR: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
    instant
        .checked_add(duration)
        .or_else(|| instant.checked_add(YEAR))
        .unwrap_or(instant)
}

/// A probe that has done the part that needs a concurrency slot.
#[derive(Debug)]
pub enum Started {
    /// Finished: every probe but a round trip, and a round trip whose message was not
    /// accepted.
    Done(Box<ProbeResult>),
    /// A round trip whose message was accepted: the wait for it is still to come.
    Waiting(Box<roundtrip::Waiting>),
}

impl Started {
    /// The rest of the probe (a round trip's wait for its message), outside the slot.
    pub async fn finish(self, target: &Target, env: &ProbeEnv) -> ProbeResult {
        match self {
            Started::Done(result) => *result,
            Started::Waiting(waiting) => roundtrip::finish(*waiting, target, env).await,
        }
    }
}

/// Runs one probe of `target`, bounded by the target's timeout.
///
/// A target whose login was rejected too often in a row runs without its credential
/// (see [`logins`]). Never fails: every problem is a [`Failure`] inside the result.
pub async fn run(target: &Target, env: &ProbeEnv) -> ProbeResult {
    start(target, env).await.finish(target, env).await
}

/// Runs the part of a probe that holds a concurrency slot: all of it, except a round
/// trip's wait for delivery (see [`Started::finish`]).
pub async fn start(target: &Target, env: &ProbeEnv) -> Started {
    if let TargetSpec::Roundtrip(roundtrip) = &target.spec {
        return match roundtrip::start(target, roundtrip, env).await {
            Ok(waiting) => Started::Waiting(Box::new(waiting)),
            Err(result) => Started::Done(Box::new(result)),
        };
    }
    Started::Done(Box::new(run_whole(target, env).await))
}

/// One probe of a target other than a round trip.
async fn run_whole(target: &Target, env: &ProbeEnv) -> ProbeResult {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let deadline = later(started, target.timeout);
    let mut recorder = Recorder::new();
    let login = target
        .spec
        .endpoint()
        .and_then(|endpoint| endpoint.auth.as_ref())
        .map(|credentials| Login {
            target,
            leg: Leg::Only,
            credentials,
        });
    let admission = login.as_ref().map(|login| {
        recorder.redactor.add_credentials(login.credentials);
        recorder.login = Some(LoginFacts {
            consecutive_failures: env.logins.failures(login),
            ..LoginFacts::default()
        });
        env.logins.admit(login, started)
    });
    let held_back;
    let spec = match &admission {
        Some(Admission::Withhold(_)) => {
            recorder.note(
                "login suspended after repeated rejections: probing up to the login offer \
                 without sending the credential",
            );
            held_back = target.spec.without_credentials();
            &held_back
        }
        _ => &target.spec,
    };
    let within_deadline = tokio::time::timeout_at(deadline, async {
        // The protocol code records its own failure; `Failed` carries nothing more.
        let _ = match spec {
            TargetSpec::Tcp(endpoint) => tcp::probe(endpoint, deadline, env, &mut recorder).await,
            TargetSpec::Dns(query) => dns::probe(query, deadline, env, &mut recorder).await,
            TargetSpec::Imap(endpoint) => {
                mail::session(
                    imap::Imap::default(),
                    endpoint,
                    deadline,
                    env,
                    &mut recorder,
                )
                .await
            }
            TargetSpec::Pop3(endpoint) => {
                mail::session(pop3::Pop3, endpoint, deadline, env, &mut recorder).await
            }
            TargetSpec::Smtp(smtp) => {
                let dialogue = smtp::Smtp::new(smtp.ehlo_name.clone());
                mail::session(dialogue, &smtp.endpoint, deadline, env, &mut recorder).await
            }
            TargetSpec::Https(https) => webmail::probe(https, deadline, env, &mut recorder).await,
            TargetSpec::Exchange(exchange) => {
                exchange::probe(exchange, deadline, env, &mut recorder).await
            }
            // `start` runs round trips in two stages; they never come here.
            TargetSpec::Roundtrip(_) => Ok(()),
        };
    })
    .await;
    if within_deadline.is_err() {
        recorder.deadline_expired(target.timeout);
    }
    let mut result = recorder.finish(target, started_at, started.elapsed());
    if let (Some(login), Some(admission)) = (&login, &admission) {
        env.logins
            .settle(login, admission, &mut result, Instant::now());
        login.advise(result.outcome.as_ref().err(), result.login.as_deref_mut());
    }
    result
}
