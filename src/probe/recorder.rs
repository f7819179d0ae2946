//! Times phases and collects facts while a probe runs.

use std::fmt::{self, Write as _};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::redact::Redactor;
use super::result::Log;
use super::{
    ErrorKind, Failure, LoginFacts, Phase, PhaseTiming, ProbeError, ProbeResult, ProtocolFacts,
    TlsFacts,
};
use crate::config::Target;

/// A duration in milliseconds with one decimal (`12.3`), padded to the width asked
/// for. Written with integer arithmetic: every event of a probe's log is stamped, and
/// formatting a float to a precision cost more than the rest of the line.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = u64::try_from(self.0.as_micros().saturating_add(50) / 100).unwrap_or(u64::MAX);
        let (whole, tenth) = (tenths / 10, tenths % 10);
        let len = whole.checked_ilog10().unwrap_or(0) as usize + 3;
        for _ in len..f.width().unwrap_or(0) {
            f.write_char(' ')?;
        }
        write!(f, "{whole}.{tenth}")
    }
}

/// Marker returned when a phase has failed; the failure itself is held by the [`Recorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// Times phases and collects facts while a probe runs.
///
/// The probe's deadline is enforced outside the protocol code (see [`run`]): when it
/// expires, the future is dropped and the recorder still knows which phase was running,
/// so the timeout is reported against that phase.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    log: Log,
    phases: Vec<PhaseTiming>,
    current: Option<(Phase, Instant)>,
    failure: Option<Failure>,
    /// The address used for the connection, set by the dialler.
    pub peer: Option<SocketAddr>,
    /// TLS facts, set by the TLS step.
    pub tls: Option<TlsFacts>,
    /// Protocol facts, set by the protocol.
    pub facts: ProtocolFacts,
    /// The probe's secrets: removed from every line, message and fact it keeps.
    pub redactor: Redactor,
    /// What the probe knows about its login (targets with credentials only).
    pub login: Option<LoginFacts>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Recorder {
            origin: Instant::now(),
            log: Log::default(),
            phases: Vec::with_capacity(Phase::ALL.len()),
            current: None,
            failure: None,
            peer: None,
            tls: None,
            facts: ProtocolFacts::None,
            redactor: Redactor::default(),
            login: None,
        }
    }

    /// Runs `step` as `phase`: times it, and records the failure if it fails.
    ///
    /// # Errors
    ///
    /// Returns [`Failed`] when `step` fails; the recorder then holds the failure.
    pub async fn phase<T>(
        &mut self,
        phase: Phase,
        step: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, Failed> {
        let started = self.begin(phase);
        let outcome = step.await;
        self.end(phase, started, outcome)
    }

    /// Starts timing `phase` by hand (a side trip that needs its own recorder); end
    /// it with [`Recorder::end`]. Should the probe's deadline expire in between, the
    /// timeout is blamed on `phase`.
    pub(crate) fn begin(&mut self, phase: Phase) -> Instant {
        let started = Instant::now();
        self.current = Some((phase, started));
        started
    }

    /// Ends `phase` begun at `started` with `outcome`: times it, and records the
    /// failure if it failed.
    ///
    /// # Errors
    ///
    /// Returns [`Failed`] when `outcome` is an error; the recorder then holds it.
    pub(crate) fn end<T>(
        &mut self,
        phase: Phase,
        started: Instant,
        outcome: Result<T, ProbeError>,
    ) -> Result<T, Failed> {
        self.current = None;
        let duration = started.elapsed();
        self.phases.push(PhaseTiming { phase, duration });
        let ms = Millis(duration);
        match &outcome {
            Ok(_) => self.note(format!("{phase}: ok in {ms} ms")),
            Err(error) => self.note(format!(
                "{phase}: FAILED in {ms} ms: {}: {}",
                error.kind, error.message
            )),
        }
        outcome.map_err(|error| {
            self.failure = Some(Failure {
                phase,
                kind: error.kind,
                message: self.redactor.clean(&error.message).into_owned(),
            });
            Failed
        })
    }

    /// Adds a line to the probe's log, stamped with the time since the probe began.
    /// The log is bounded; callers never pass secrets (server text is sanitised).
    pub fn note(&mut self, text: impl Into<String>) {
        let ms = Millis(self.origin.elapsed());
        let text = text.into();
        let line = format!("{ms:>9} ms  {}", self.redactor.clean(&text));
        self.push_line(&line);
    }

    /// Appends a stamped line, within the bound.
    fn push_line(&mut self, line: &str) {
        match self.log.len() {
            n if n < MAX_LOG_LINES => self.log.push(line),
            n if n == MAX_LOG_LINES => self.log.push("… further events dropped"),
            _ => {}
        }
    }

    /// A recorder for a side trip of this probe (the token endpoint): the same clock
    /// and secrets, its own phases, facts and failure.
    pub(crate) fn child(&self) -> Recorder {
        Recorder {
            origin: self.origin,
            redactor: self.redactor.clone(),
            ..Recorder::new()
        }
    }

    /// Takes a side trip's log into this probe's, each line marked with `prefix`
    /// (after its time stamp), and its secrets into this probe's redactor. The trip's
    /// phases and facts stay out: its time is the phase it ran in.
    pub(crate) fn absorb(&mut self, child: Recorder, prefix: &str) {
        self.redactor.absorb(&child.redactor);
        for line in child.log.lines() {
            match line.split_once(" ms  ") {
                Some((stamp, text)) => self.push_line(&format!("{stamp} ms  {prefix}{text}")),
                None => self.push_line(line),
            }
        }
    }

    /// The failure recorded so far.
    pub(crate) fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// Whether a refused cached token may be replaced and tried once more: only while
    /// the login has no rejection behind it (a token revoked before it expired shows
    /// as a first rejection; after that, a second try is just one more rejection).
    pub(crate) fn may_retry_login(&self) -> bool {
        self.login
            .as_ref()
            .is_some_and(|login| login.consecutive_failures == 0)
    }

    /// Notes that the credential went on the wire (a login, an Authorization header):
    /// only such probes count for or against the login's lockout protection.
    pub(crate) fn credential_sent(&mut self) {
        if let Some(login) = &mut self.login {
            login.sent = true;
        }
    }

    /// Records a failure found after the phase's I/O finished (a wrong answer, say).
    pub fn fail(&mut self, phase: Phase, error: ProbeError) -> Failed {
        self.note(format!(
            "{phase}: FAILED: {}: {}",
            error.kind, error.message
        ));
        self.failure = Some(Failure {
            phase,
            kind: error.kind,
            message: self.redactor.clean(&error.message).into_owned(),
        });
        Failed
    }

    /// The reason of the recorded failure, if any.
    pub(crate) fn failure_kind(&self) -> Option<ErrorKind> {
        self.failure.as_ref().map(|failure| failure.kind)
    }

    /// Takes the recorded failure away: a step that may fail without failing the probe
    /// (one of several Autodiscover methods) keeps it aside.
    pub(crate) fn take_failure(&mut self) -> Option<Failure> {
        self.failure.take()
    }

    /// Puts back a failure taken with [`Recorder::take_failure`].
    pub(crate) fn restore_failure(&mut self, failure: Failure) {
        self.failure = Some(failure);
    }

    /// Records that the time allowed (the probe's, or a step's share of it) ran out,
    /// blaming the phase that was running.
    pub(crate) fn deadline_expired(&mut self, timeout: Duration) {
        let phase = match self.current.take() {
            Some((phase, started)) => {
                self.phases.push(PhaseTiming {
                    phase,
                    duration: started.elapsed(),
                });
                phase
            }
            // The deadline expired between phases: blame the last one that ran.
            None => self
                .phases
                .last()
                .map_or(Phase::Connect, |timing| timing.phase),
        };
        self.note(format!(
            "{phase}: the time allowed ({}) ran out",
            humantime::format_duration(rounded_to_ms(timeout))
        ));
        self.failure = Some(Failure {
            phase,
            kind: ErrorKind::timeout_in(phase),
            message: format!(
                "no answer within {}",
                humantime::format_duration(rounded_to_ms(timeout))
            ),
        });
    }

    pub(crate) fn finish(
        mut self,
        target: &Target,
        started_at: SystemTime,
        duration: Duration,
    ) -> ProbeResult {
        self.scrub_facts();
        ProbeResult {
            target: target.name.clone(),
            protocol: target.protocol,
            check: target.check(),
            started_at,
            duration,
            phases: self.phases,
            outcome: self.failure.map_or(Ok(()), Err),
            peer: self.peer,
            tls: self.tls.map(Box::new),
            facts: self.facts,
            log: self.log,
            login: self.login.map(Box::new),
        }
    }
}

impl Recorder {
    /// Removes the probe's secrets from the facts a server supplied (lines and
    /// messages were cleaned as they were recorded).
    fn scrub_facts(&mut self) {
        if self.redactor.is_empty() {
            return;
        }
        let redactor = &self.redactor;
        if let Some(tls) = &mut self.tls {
            for text in tls
                .issuer
                .iter_mut()
                .chain(tls.subject.iter_mut())
                .chain(tls.sans.iter_mut())
            {
                redactor.clean_in_place(text);
            }
        }
        match &mut self.facts {
            ProtocolFacts::Mail(mail) => redactor.clean_in_place(&mut mail.banner),
            ProtocolFacts::Roundtrip(roundtrip) => {
                for mail in roundtrip
                    .send
                    .iter_mut()
                    .chain(roundtrip.receive.iter_mut())
                {
                    redactor.clean_in_place(&mut mail.banner);
                }
                for text in roundtrip
                    .submitted
                    .iter_mut()
                    .map(|s| &mut s.reply)
                    .chain(roundtrip.cleanup.iter_mut())
                {
                    redactor.clean_in_place(text);
                }
            }
            ProtocolFacts::Http(http) => {
                if let Some(answer) = &mut http.autodiscover {
                    redactor.clean_in_place(&mut answer.ews_url);
                    redactor.clean_in_place(&mut answer.server);
                }
            }
            ProtocolFacts::Dns(_) | ProtocolFacts::None => {}
        }
    }
}

/// `1.234s` rather than `1s 234ms 567us 890ns`.
pub(crate) fn rounded_to_ms(duration: Duration) -> Duration {
    Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Lines kept in one probe's log: a mail session with STARTTLS and login logs about
/// twenty, a web page at the end of ten redirects about a hundred (nine per hop); the
/// bound only matters for a misbehaving dialogue.
pub const MAX_LOG_LINES: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_are_written_like_a_float_to_one_decimal() {
        for (micros, expected) in [
            (0, "0.0"),
            (49, "0.0"),
            (50, "0.1"),
            (1_234, "1.2"),
            (99_960, "100.0"),
            (123_456_789, "123456.8"),
        ] {
            assert_eq!(Millis(Duration::from_micros(micros)).to_string(), expected);
        }
        assert_eq!(
            format!("{:>9}|", Millis(Duration::from_micros(1_234))),
            "      1.2|"
        );
        assert_eq!(
            format!("{:>3}|", Millis(Duration::from_micros(12_345))),
            "12.3|"
        );
        assert!(
            Millis(Duration::MAX).to_string().ends_with(".5"),
            "no overflow"
        );
    }

    #[tokio::test]
    async fn a_failing_phase_is_recorded_with_its_reason() {
        let mut recorder = Recorder::new();
        let ok: Result<u8, Failed> = recorder.phase(Phase::Resolve, async { Ok(1) }).await;
        assert_eq!(ok, Ok(1));
        let failed: Result<(), Failed> = recorder
            .phase(Phase::Connect, async {
                Err(ProbeError::new(ErrorKind::ConnectRefused, "refused"))
            })
            .await;
        assert_eq!(failed, Err(Failed));
        let phases: Vec<_> = recorder.phases.iter().map(|p| p.phase).collect();
        assert_eq!(phases, [Phase::Resolve, Phase::Connect]);
        let failure = recorder.failure.expect("failure recorded");
        assert_eq!(
            (failure.phase, failure.kind),
            (Phase::Connect, ErrorKind::ConnectRefused)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_deadline_blames_the_running_phase() {
        let mut recorder = Recorder::new();
        let never = std::future::pending::<Result<(), ProbeError>>();
        let timed = tokio::time::timeout(
            Duration::from_secs(1),
            recorder.phase(Phase::Greeting, never),
        )
        .await;
        assert!(timed.is_err());
        recorder.deadline_expired(Duration::from_secs(1));
        let failure = recorder.failure.expect("failure recorded");
        assert_eq!(
            (failure.phase, failure.kind),
            (Phase::Greeting, ErrorKind::GreetingTimeout)
        );
        assert_eq!(recorder.phases.len(), 1);
    }
}
