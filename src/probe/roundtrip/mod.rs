//! `protocol: roundtrip`: submit a message over SMTP, wait for it over IMAP, measure
//! the delivery, delete it, and say which leg broke.
//!
//! A round trip runs in two stages (see [`crate::pipeline`]): [`start`] submits (the
//! SMTP session and transaction — the only part that holds a concurrency slot, bounded
//! by [`submit_budget`]), and [`finish`] waits for the message, outside any slot, until
//! the target's timeout. Waiting minutes is the nature of the probe; holding a slot
//! for it would let a few round trips starve every other target.
//!
//! ```text
//! start:  resolve connect tls greeting [starttls] request auth  submit
//! finish: resolve connect tls greeting [starttls] request auth  request
//!         [cleanup: the sweep]  deliver  cleanup
//! ```
//!
//! Both legs reuse the mail session ([`crate::probe::mail::open`]) — greeting,
//! STARTTLS, capabilities and login — so every way a mail target logs in applies here.

mod cleanup;
mod facts;
mod find;
pub mod headers;
mod login;
mod mailbox;
pub mod message;
mod submit;
pub mod wire;

use std::collections::HashMap;
use std::mem;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use facts::{Delivery, RoundtripFacts, Submission, Sweep};
pub use message::{Token, route_of};

use self::find::Folder;
use self::login::LegLogin;
use self::mailbox::Mailbox;
use self::submit::Accepted;
use super::imap::Imap;
use super::logins;
use super::mail::{self, Session};
use super::smtp::Smtp;
use super::{
    ErrorKind, Failed, LoginFacts, Phase, ProbeEnv, ProbeError, ProbeResult, ProtocolFacts,
    Recorder, later,
};
use crate::config::{RoundtripTarget, Target, TargetSpec};

/// The submission never takes more than a minute: a server that needs longer to
/// accept a small message is failing, and the slot it holds is wanted elsewhere.
const MAX_SUBMIT_TIME: Duration = Duration::from_secs(60);
/// The end of `DATA` must be answered this long before the submission's time is up,
/// so that the `send_uncertain` verdict (not a bare timeout) reports it.
const UNCERTAIN_MARGIN: Duration = Duration::from_millis(200);
/// The share of the timeout kept after the wait for cleanup and goodbye (1/10),
/// within these bounds.
const CLEANUP_RESERVE_MIN: Duration = Duration::from_secs(2);
const CLEANUP_RESERVE_MAX: Duration = Duration::from_secs(15);
/// The receiving session's byte budget: a 30-minute wait polling three folders reads
/// a few hundred KiB; a sweep of 32 messages per folder another few. 4 MiB bounds a
/// hostile server and never a real one.
const RECEIVE_BYTE_BUDGET: usize = 4 * 1024 * 1024;
/// How often a route sweeps for older probe messages even when no round left one
/// behind: a crash of the agent leaves no record that it did.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The time the SMTP leg (connect, TLS, login, transaction) may take: half the
/// timeout, at most [`MAX_SUBMIT_TIME`].
pub fn submit_budget(timeout: Duration) -> Duration {
    (timeout / 2).min(MAX_SUBMIT_TIME)
}

/// The time kept at the end of the timeout for cleanup and goodbye.
pub fn cleanup_reserve(timeout: Duration) -> Duration {
    (timeout / 10)
        .clamp(CLEANUP_RESERVE_MIN, CLEANUP_RESERVE_MAX)
        .min(timeout / 2)
}

/// How long after its start a round stops waiting for its message: the timeout less
/// the cleanup reserve. A message that arrives later is late.
pub fn wait_window(timeout: Duration) -> Duration {
    timeout.saturating_sub(cleanup_reserve(timeout))
}

/// Per route: when it last swept, and whether a round may have left a message behind
/// since. Kept for the life of a configuration (in [`ProbeEnv`]), so an agent sweeps
/// at start, every [`SWEEP_EVERY`], and in the round after one that did not delete
/// its own message.
#[derive(Debug, Default)]
pub struct Sweeps(Mutex<HashMap<u64, SweepState>>);

#[derive(Debug, Default, Clone, Copy)]
struct SweepState {
    last: Option<Instant>,
    owed: bool,
}

impl Sweeps {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SweepState>> {
        // A map of plain values cannot be left inconsistent by a panic.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn due(&self, route: u64) -> bool {
        let state = self.lock().get(&route).copied().unwrap_or_default();
        state.owed || state.last.is_none_or(|last| last.elapsed() >= SWEEP_EVERY)
    }

    fn swept(&self, route: u64) {
        self.lock().insert(
            route,
            SweepState {
                last: Some(Instant::now()),
                owed: false,
            },
        );
    }

    fn owe(&self, route: u64) {
        self.lock().entry(route).or_default().owed = true;
    }
}

/// A round trip whose message was accepted: what [`finish`] needs.
#[derive(Debug)]
pub struct Waiting {
    recorder: Recorder,
    facts: RoundtripFacts,
    token: Token,
    accepted: Accepted,
    /// The SMTP leg's login facts, merged with the IMAP leg's at the end.
    send_login: Option<LoginFacts>,
    started_at: SystemTime,
    started: Instant,
}

/// The first stage: submit the message. `Err` holds the finished result when the
/// submission failed (nothing to wait for).
///
/// # Errors
///
/// The finished [`ProbeResult`] when the message was not accepted.
pub async fn start(
    target: &Target,
    roundtrip: &RoundtripTarget,
    env: &ProbeEnv,
) -> Result<Waiting, ProbeResult> {
    let started_at = SystemTime::now();
    let started = Instant::now();
    let mut recorder = Recorder::new();
    for endpoint in [&roundtrip.send.endpoint, &roundtrip.receive] {
        if let Some(credentials) = &endpoint.auth {
            recorder.redactor.add_credentials(credentials);
        }
    }
    let token = Token::new(route_of(&target.name, &roundtrip.to), started_at);
    let mut facts = RoundtripFacts {
        token: token.to_string(),
        ..RoundtripFacts::default()
    };
    let budget = submit_budget(target.timeout);
    let submit_by = later(started, budget);
    recorder.note(format!(
        "send: from {} to {} through {}:{}",
        roundtrip.from, roundtrip.to, roundtrip.send.endpoint.host, roundtrip.send.endpoint.port
    ));
    let mut steps = Vec::new();
    let mut login = LegLogin::admit(
        target,
        logins::Leg::Send,
        &roundtrip.send.endpoint,
        env,
        &mut recorder,
    );
    let sent = tokio::time::timeout_at(
        submit_by,
        send(
            roundtrip,
            &mut login,
            &token,
            &target.name,
            submit_by,
            env,
            &mut recorder,
            &mut steps,
        ),
    )
    .await;
    for step in steps {
        recorder.note(step);
    }
    if let ProtocolFacts::Mail(mail) = mem::take(&mut recorder.facts) {
        facts.send = Some(mail);
    }
    facts.send_tls = recorder.tls.take();
    let accepted = match sent {
        Ok(Ok(accepted)) => accepted,
        outcome => {
            if outcome.is_err() {
                recorder.deadline_expired(budget);
            }
            recorder.login = login.done(env, &mut recorder);
            if recorder
                .failure_kind()
                .is_some_and(|kind| kind == ErrorKind::SendUncertain)
            {
                // The message may arrive: the next round sweeps for it.
                env.roundtrips.owe(token.route);
            }
            recorder.facts = ProtocolFacts::Roundtrip(Box::new(facts));
            return Err(recorder.finish(target, started_at, started.elapsed()));
        }
    };
    let send_login = login.done(env, &mut recorder);
    facts.submitted = Some(Submission {
        reply: accepted.reply.clone(),
        enhanced: accepted.enhanced.clone(),
        at: SystemTime::now(),
    });
    Ok(Waiting {
        recorder,
        facts,
        token,
        accepted,
        send_login,
        started_at,
        started,
    })
}

/// The SMTP leg: session, login, transaction, goodbye.
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
async fn send(
    roundtrip: &RoundtripTarget,
    login: &mut LegLogin<'_>,
    token: &Token,
    name: &str,
    submit_by: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
    steps: &mut Vec<String>,
) -> Result<Accepted, Failed> {
    let dialogue = Smtp::new(roundtrip.send.ehlo_name.clone());
    let opened = mail::open(dialogue, login.endpoint(), submit_by, env, recorder).await;
    let admitted = login.settle(env, recorder);
    let mut session = opened?;
    if let Err(held_back) = admitted {
        session.goodbye(submit_by).await;
        return Err(held_back);
    }
    let message = message::compose(
        token,
        &roundtrip.from,
        &roundtrip.to,
        name,
        SystemTime::now(),
    );
    let uncertain_after = submit_by.checked_sub(UNCERTAIN_MARGIN).unwrap_or(submit_by);
    let outcome = recorder
        .phase(
            Phase::Submit,
            submit::submit(
                &mut session.lines,
                &roundtrip.from,
                &roundtrip.to,
                &message,
                uncertain_after,
                steps,
            ),
        )
        .await;
    session.goodbye(submit_by).await;
    outcome
}

/// The second stage: wait for the message, clean up, and finish the result.
pub async fn finish(waiting: Waiting, target: &Target, env: &ProbeEnv) -> ProbeResult {
    let Waiting {
        mut recorder,
        mut facts,
        token,
        accepted,
        send_login,
        started_at,
        started,
    } = waiting;
    let deadline = later(started, target.timeout);
    let mut removed = false;
    let mut receive_login = None;
    if let TargetSpec::Roundtrip(roundtrip) = &target.spec {
        let leg = Leg {
            roundtrip,
            token: &token,
            accepted: &accepted,
            wait_until: later(started, wait_window(target.timeout)),
            deadline,
            timeout: target.timeout,
        };
        let mut login = LegLogin::admit(
            target,
            logins::Leg::Receive,
            &roundtrip.receive,
            env,
            &mut recorder,
        );
        let within = tokio::time::timeout_at(
            deadline,
            leg.receive(&mut login, env, &mut recorder, &mut facts, &mut removed),
        )
        .await;
        if within.is_err() {
            recorder.deadline_expired(target.timeout);
        }
        receive_login = login.done(env, &mut recorder);
    } else {
        recorder.fail(
            Phase::Deliver,
            ProbeError::new(
                ErrorKind::ProtocolError,
                "internal error: a round trip finished for a target that is not one",
            ),
        );
    }
    if let ProtocolFacts::Mail(mail) = mem::take(&mut recorder.facts) {
        facts.receive = Some(mail);
    }
    facts.receive_tls = recorder.tls.take();
    if !removed {
        env.roundtrips.owe(token.route);
    }
    recorder.facts = ProtocolFacts::Roundtrip(Box::new(facts));
    recorder.login = login::merged(send_login, receive_login);
    recorder.finish(target, started_at, started.elapsed())
}

/// The receiving leg of one round.
struct Leg<'a> {
    roundtrip: &'a RoundtripTarget,
    token: &'a Token,
    accepted: &'a Accepted,
    /// When the wait for the message ends.
    wait_until: Instant,
    /// When the round ends.
    deadline: Instant,
    timeout: Duration,
}

impl Leg<'_> {
    /// The IMAP session: login, then the mailbox work, then goodbye.
    async fn receive(
        &self,
        login: &mut LegLogin<'_>,
        env: &ProbeEnv,
        recorder: &mut Recorder,
        facts: &mut RoundtripFacts,
        removed: &mut bool,
    ) -> Result<(), Failed> {
        let receive = &self.roundtrip.receive;
        recorder.note(format!(
            "receive: looking for the message at {}:{}",
            receive.host, receive.port
        ));
        let opened = mail::open(
            Imap::default(),
            login.endpoint(),
            self.deadline,
            env,
            recorder,
        )
        .await;
        let admitted = login.settle(env, recorder);
        let mut session = opened?;
        if let Err(held_back) = admitted {
            session.goodbye(self.deadline).await;
            return Err(held_back);
        }
        if let ProtocolFacts::Mail(mail) = mem::take(&mut recorder.facts) {
            facts.receive = Some(mail);
        }
        session.lines.set_byte_budget(RECEIVE_BYTE_BUDGET);
        let outcome = self
            .in_mailbox(&mut session, env, recorder, facts, removed)
            .await;
        session.goodbye(self.deadline).await;
        outcome
    }

    async fn in_mailbox(
        &self,
        session: &mut Session<Imap>,
        env: &ProbeEnv,
        recorder: &mut Recorder,
        facts: &mut RoundtripFacts,
        removed: &mut bool,
    ) -> Result<(), Failed> {
        let mut mailbox = Mailbox::new(&mut session.lines, session.capabilities.clone());
        let folders = recorder
            .phase(Phase::Request, async {
                mailbox.refresh_capabilities().await?;
                let special = mailbox.junk_folders().await?;
                Ok(find::folders(self.roundtrip, &special))
            })
            .await?;
        let names: Vec<String> = folders
            .iter()
            .map(|f| format!("{}{}", f.name, if f.junk { " (junk)" } else { "" }))
            .collect();
        recorder.note(format!("folders searched: {}", names.join(", ")));
        if env.roundtrips.due(self.token.route) {
            self.sweep(&mut mailbox, &folders, env, recorder, facts)
                .await?;
        }
        let mut notes = Vec::new();
        let seen = recorder
            .phase(Phase::Deliver, async {
                let token = self.token.to_string();
                match find::wait(&mut mailbox, &folders, &token, self.wait_until, &mut notes)
                    .await?
                {
                    Some(seen) => Ok(seen),
                    None => Err(ProbeError::new(
                        ErrorKind::NotDelivered,
                        format!(
                            "the message was accepted ({}) but did not appear in {} within {}",
                            self.accepted.reply,
                            names.join(", "),
                            humantime::format_duration(Duration::from_secs(
                                self.wait_until
                                    .saturating_duration_since(self.accepted.at)
                                    .as_secs()
                            ))
                        ),
                    )),
                }
            })
            .await;
        for note in notes {
            recorder.note(note);
        }
        facts.idle = Some(mailbox.offers("IDLE"));
        let seen = seen?;
        let folder: &Folder = &folders[seen.folder];
        let after = seen.at.saturating_duration_since(self.accepted.at);
        facts.found = Some(Delivery {
            folder: folder.name.clone(),
            junk: folder.junk,
            uid: seen.uid,
            at: SystemTime::now(),
            after,
        });
        let junk = folder.junk.then(|| {
            recorder.fail(
                Phase::Deliver,
                ProbeError::new(
                    ErrorKind::DeliveredToJunk,
                    format!(
                        "the message was delivered to the junk folder `{}` after {:.1} s",
                        folder.name,
                        after.as_secs_f64()
                    ),
                ),
            );
            recorder.take_failure()
        });
        let cleaned = recorder
            .phase(
                Phase::Cleanup,
                cleanup::delete_own(&mut mailbox, folder, seen.uid, self.token),
            )
            .await;
        if let Ok((done, transit)) = &cleaned {
            *removed = done.starts_with("deleted");
            facts.cleanup = Some(done.clone());
            facts.transit = *transit;
            recorder.note(format!("cleanup: {done}"));
        }
        // A junk delivery stays the verdict whatever the cleanup did.
        if let Some(Some(junk)) = junk {
            recorder.restore_failure(junk);
            return Err(Failed);
        }
        cleaned.map(drop)
    }

    /// The sweep of older probe messages, bounded by the end of the wait: it must not
    /// eat the time the message has to arrive. A sweep that fails ends the round (in
    /// `cleanup`): the server misbehaved, and the session cannot be trusted after it.
    async fn sweep(
        &self,
        mailbox: &mut Mailbox<'_>,
        folders: &[Folder],
        env: &ProbeEnv,
        recorder: &mut Recorder,
        facts: &mut RoundtripFacts,
    ) -> Result<(), Failed> {
        let mut notes = Vec::new();
        let window = wait_window(self.timeout);
        let swept = recorder
            .phase(Phase::Cleanup, async {
                let sweep = cleanup::sweep(
                    mailbox,
                    folders,
                    self.token,
                    self.timeout,
                    window,
                    &mut notes,
                );
                match tokio::time::timeout_at(self.wait_until, sweep).await {
                    Ok(Ok(report)) => Ok(report),
                    // The connection's state is unknown after a failed command: the
                    // round stops here rather than read one answer as another's.
                    Ok(Err(error)) => Err(ProbeError::new(
                        error.kind,
                        format!("sweeping older probe messages: {}", error.message),
                    )),
                    Err(_) => Err(ProbeError::new(
                        ErrorKind::Timeout,
                        "the sweep of older probe messages took the whole wait",
                    )),
                }
            })
            .await;
        for note in notes {
            recorder.note(note);
        }
        facts.sweep = Some(swept?);
        env.roundtrips.swept(self.token.route);
        Ok(())
    }
}
