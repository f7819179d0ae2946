//! The lockout protection's state machine, on tokio's paused clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::config::{Endpoint, Protocol, RoundtripTarget, Secret, SmtpTarget, TargetSpec, TlsMode};

const INTERVAL: Duration = Duration::from_secs(30);

fn credentials(password: &str) -> Credentials {
    Credentials {
        username: "probe@example.test".into(),
        password: Secret::new(password.into()),
        plaintext_allowed: false,
        oauth2: None,
        max_failures: 3,
    }
}

fn target(password: &str) -> Target {
    Target {
        name: Arc::from("imap"),
        protocol: Protocol::Imap,
        interval: INTERVAL,
        timeout: Duration::from_secs(10),
        phase_histogram: false,
        spec: TargetSpec::Imap(Endpoint {
            host: "192.0.2.1".into(),
            port: 993,
            tls: TlsMode::Implicit,
            server_name: "mail.example.test".into(),
            extra_roots: Arc::from(Vec::new()),
            auth: Some(credentials(password)),
        }),
    }
}

/// A result whose login was sent (`sent`) and failed in `failure`, or succeeded.
fn result(sent: bool, failure: Option<(Phase, ErrorKind)>) -> ProbeResult {
    ProbeResult {
        target: Arc::from("imap"),
        protocol: Protocol::Imap,
        check: None,
        started_at: SystemTime::now(),
        duration: Duration::from_millis(5),
        phases: Vec::new(),
        outcome: failure.map_or(Ok(()), |(phase, kind)| {
            Err(Failure {
                phase,
                kind,
                message: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
            })
        }),
        peer: None,
        tls: None,
        facts: ProtocolFacts::None,
        log: Default::default(),
        login: Some(Box::new(LoginFacts {
            sent,
            ..LoginFacts::default()
        })),
    }
}

/// One probe of `target`: admitted, then (when sent) answered with `failure`.
fn round(
    logins: &Logins,
    target: &Target,
    failure: Option<(Phase, ErrorKind)>,
) -> (Admission, ProbeResult) {
    let login = Login::all(target).remove(0);
    leg_round(logins, &login, failure)
}

/// One probe of one `login`: admitted, then (when sent) answered with `failure`.
fn leg_round(
    logins: &Logins,
    login: &Login<'_>,
    failure: Option<(Phase, ErrorKind)>,
) -> (Admission, ProbeResult) {
    let admission = logins.admit(login, Instant::now());
    let sent = admission == Admission::Send;
    let mut probed = result(sent, if sent { failure } else { None });
    logins.settle(login, &admission, &mut probed, Instant::now());
    (admission, probed)
}

const REJECTED: Option<(Phase, ErrorKind)> = Some((Phase::Auth, ErrorKind::AuthFailed));

#[tokio::test(start_paused = true)]
async fn three_rejections_hold_the_credential_back_with_a_doubling_wait() {
    let logins = Logins::new();
    let target = target("wrong");
    for _ in 0..3 {
        let (admission, _) = round(&logins, &target, REJECTED);
        assert_eq!(admission, Admission::Send);
    }
    // Held back: the probe stops at the login offer and reports the last answer.
    let (admission, held) = round(&logins, &target, REJECTED);
    assert!(matches!(admission, Admission::Withhold(_)));
    let failure = held.failure().unwrap();
    assert_eq!(
        (failure.phase, failure.kind),
        (Phase::Auth, ErrorKind::AuthFailed)
    );
    assert!(
        failure.message.starts_with("NO [AUTHENTICATIONFAILED]"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("login suspended"),
        "{}",
        failure.message
    );
    let facts = held.login.unwrap();
    assert!(facts.suspended && facts.consecutive_failures == 3);
    assert!(facts.next_attempt.is_some() && facts.last_attempt.is_some());

    // The first retry comes after one round without the credential, the next after
    // two, then four … up to an hour.
    let mut waits = Vec::new();
    for _ in 0..12 {
        let mut waited = Duration::ZERO;
        loop {
            tokio::time::advance(INTERVAL).await;
            waited += INTERVAL;
            if round(&logins, &target, REJECTED).0 == Admission::Send {
                break;
            }
        }
        waits.push(waited / INTERVAL.as_secs() as u32);
    }
    let rounds: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
    assert_eq!(rounds, [2, 3, 5, 9, 17, 33, 65, 120, 120, 120, 120, 120]);
}

#[tokio::test(start_paused = true)]
async fn a_success_or_a_new_credential_starts_afresh() {
    let logins = Logins::new();
    let target = target("wrong");
    for _ in 0..3 {
        round(&logins, &target, REJECTED);
    }
    assert!(matches!(
        round(&logins, &target, REJECTED).0,
        Admission::Withhold(_)
    ));
    // A changed password is a new login: sent at once.
    let fixed = self::target("right");
    let (admission, probed) = round(&logins, &fixed, None);
    assert_eq!(admission, Admission::Send);
    assert!(probed.is_success());
    assert_eq!(probed.login.unwrap().consecutive_failures, 0);
    // Two rejections and a success: the count starts again.
    round(&logins, &fixed, REJECTED);
    round(&logins, &fixed, REJECTED);
    round(&logins, &fixed, None);
    round(&logins, &fixed, REJECTED);
    assert_eq!(round(&logins, &fixed, REJECTED).0, Admission::Send);
}

#[tokio::test(start_paused = true)]
async fn failures_that_are_no_answer_do_not_count() {
    let logins = Logins::new();
    let target = target("wrong");
    for _ in 0..5 {
        round(&logins, &target, Some((Phase::Auth, ErrorKind::Timeout)));
        round(
            &logins,
            &target,
            Some((Phase::Connect, ErrorKind::ConnectRefused)),
        );
        round(
            &logins,
            &target,
            Some((Phase::Token, ErrorKind::TokenRejected)),
        );
    }
    assert_eq!(round(&logins, &target, REJECTED).0, Admission::Send);
}

#[tokio::test(start_paused = true)]
async fn a_held_back_probe_that_failed_earlier_keeps_its_own_failure() {
    let logins = Logins::new();
    let target = target("wrong");
    for _ in 0..3 {
        round(&logins, &target, REJECTED);
    }
    let login = Login::all(&target).remove(0);
    let admission = logins.admit(&login, Instant::now());
    let mut refused = result(false, Some((Phase::Connect, ErrorKind::ConnectRefused)));
    logins.settle(&login, &admission, &mut refused, Instant::now());
    assert_eq!(refused.failure().unwrap().kind, ErrorKind::ConnectRefused);
    assert!(refused.login.unwrap().suspended);
}

/// A round trip whose two legs log in with `send` and `receive` passwords.
fn roundtrip(send: &str, receive: &str) -> Target {
    let TargetSpec::Imap(endpoint) = target(receive).spec else {
        unreachable!("`target` builds an imap target")
    };
    let mut smtp = endpoint.clone();
    smtp.port = 587;
    smtp.tls = TlsMode::Starttls;
    smtp.auth = Some(credentials(send));
    Target {
        name: Arc::from("roundtrip"),
        protocol: Protocol::Roundtrip,
        interval: INTERVAL,
        timeout: Duration::from_secs(10),
        phase_histogram: false,
        spec: TargetSpec::Roundtrip(Box::new(RoundtripTarget {
            from: "probe@example.test".into(),
            to: "probe@example.test".into(),
            send: SmtpTarget {
                endpoint: smtp,
                ehlo_name: "probe.example.test".into(),
            },
            receive: endpoint,
            folders: vec!["INBOX".into()],
            junk: Vec::new(),
        })),
    }
}

/// Issue 12 meets issue 13: a round trip's legs keep their states apart, so a leg
/// whose login is rejected is held back alone, and the other leg's successes (with
/// the same or another credential) never clear its rejections.
#[tokio::test(start_paused = true)]
async fn a_round_trips_legs_are_held_back_each_on_its_own() {
    for (send_password, receive_password) in [("right", "wrong"), ("same", "same")] {
        let logins = Logins::new();
        let target = roundtrip(send_password, receive_password);
        let legs = Login::all(&target);
        assert_eq!(
            legs.iter()
                .map(|l| (l.leg, l.protocol()))
                .collect::<Vec<_>>(),
            [(Leg::Send, Protocol::Smtp), (Leg::Receive, Protocol::Imap)]
        );
        let (send, receive) = (&legs[0], &legs[1]);
        for _ in 0..3 {
            assert_eq!(leg_round(&logins, send, None).0, Admission::Send);
            assert_eq!(leg_round(&logins, receive, REJECTED).0, Admission::Send);
        }
        assert_eq!(logins.failures(send), 0);
        assert_eq!(logins.failures(receive), 3);
        let (held, probed) = leg_round(&logins, receive, REJECTED);
        assert!(matches!(held, Admission::Withhold(_)));
        assert!(probed.login.unwrap().suspended);
        let (sent, probed) = leg_round(&logins, send, None);
        assert_eq!(sent, Admission::Send);
        assert!(!probed.login.unwrap().suspended);
        assert_eq!(logins.failures(receive), 3);
        assert_eq!(logins.failures(send), 0);
    }
}
