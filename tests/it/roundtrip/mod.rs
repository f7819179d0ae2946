//! Issue 13: the mail round trip against a real Exim (submission on a STARTTLS port
//! with AUTH, delivering over LMTP) and a real Dovecot (IMAP, LMTP, Sieve) on
//! loopback. Every fault is injected for real — an Exim ACL that freezes, defers,
//! refuses or stalls; a Sieve rule that files into Junk; a Dovecot without IDLE and
//! UIDPLUS — and each test removes it and sees it clear. The mailbox is inspected on
//! disk (its Maildir), not through the IMAP code under test.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailprobe::judge::{Fault, Judged};
use mailprobe::probe::roundtrip::{RoundtripFacts, Sweep, Token, route_of};
use mailprobe::probe::{ErrorKind, Phase, ProtocolFacts};

use crate::support::agent::{Agent, Metrics, NO_RESOLVER, config_with, http, within};
use crate::support::cli::{config_file, mailprobe};
use crate::support::dovecot::DovecotBuilder;
use crate::support::fake::{FakeServer, Peer};
use crate::support::maildir::Maildir;
use crate::support::{Dovecot, Exim, MailFault, TestPki, Validity};

mod mailbox;

const TEST_LIMIT: Duration = Duration::from_secs(120);
const USER: &str = "probe@example.test";
/// Distinctive, so a search for it in any output cannot match by accident.
const PASSWORD: &str = "Rou7nd-Tr1p-c4e9a0";
const SERVER_NAME: &str = "mail.example.test";
/// A round every 8 s that waits at most 6 s: its wait ends after 4 s (6 s less the
/// 2 s kept for cleanup), ample for a delivery over loopback, short for the tests.
const INTERVAL: &str = "8s";
const TIMEOUT: &str = "6s";
/// Files each message that carries mailprobe's header into Junk.
const JUNK_RULE: &str = "require [\"fileinto\", \"mailbox\"];\nif exists \"X-Mailprobe-Token\" { fileinto :create \"Junk\"; }\n";

/// Exim delivering into Dovecot, with a test CA and the password in a file.
struct Bed {
    dir: tempfile::TempDir,
    pki: TestPki,
    password: PathBuf,
    dovecot: Dovecot,
    exim: Exim,
}

impl Bed {
    fn start() -> Bed {
        Bed::with(|dovecot| dovecot)
    }

    /// A bed whose Dovecot is also set up by `dovecot`.
    fn with(dovecot: impl FnOnce(DovecotBuilder) -> DovecotBuilder) -> Bed {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = pki.issue(SERVER_NAME, &[SERVER_NAME], Validity::Current);
        let password = dir.path().join("probe.pass");
        std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
        let dovecot = dovecot(
            Dovecot::builder()
                .user(USER, PASSWORD)
                .tls(&cert, &key)
                .delivery(),
        )
        .start()
        .expect("dovecot starts");
        let exim = Exim::builder()
            .tls(&cert, &key)
            .user(USER, PASSWORD)
            .auth_only_after_tls(true)
            .deliver_to(dovecot.lmtp.expect("dovecot serves LMTP"))
            .start()
            .expect("exim starts");
        Bed {
            dir,
            pki,
            password,
            dovecot,
            exim,
        }
    }

    fn maildir(&self) -> Maildir {
        Maildir(self.dovecot.home(USER).join("Maildir"))
    }

    /// A round-trip target `name` from Exim's submission port to Dovecot's IMAPS.
    fn target(&self, name: &str) -> String {
        self.target_to(name, self.dovecot.imaps.port(), "implicit")
    }

    /// A round-trip target `name` from Exim's submission port to the IMAP server on
    /// `port` of 127.0.0.1, with `tls`.
    fn target_to(&self, name: &str, port: u16, tls: &str) -> String {
        let endpoint = |port: u16, tls: &str| {
            let plain = if tls == "none" {
                ", allow_plaintext_auth: true"
            } else {
                ""
            };
            format!(
                "{{host: 127.0.0.1, port: {port}, tls: {tls}, server_name: {SERVER_NAME}, \
                 ca_file: \"{}\", auth: {{username: \"{USER}\", password_file: \"{}\"}}{plain}}}",
                self.pki.ca_pem.display(),
                self.password.display()
            )
        };
        format!(
            "  - name: {name}\n    protocol: roundtrip\n    interval: {INTERVAL}\n    \
             timeout: {TIMEOUT}\n    from: {USER}\n    to: {USER}\n    send: {}\n    \
             receive: {}\n",
            endpoint(self.exim.smtp.port(), "starttls"),
            endpoint(port, tls),
        )
    }

    /// The agent's configuration: one round trip `rt`.
    fn config(&self) -> String {
        config_with(NO_RESOLVER, "1h", "2s", &self.target("rt"))
    }

    /// What the servers logged, for assertion messages.
    fn logs(&self) -> String {
        format!(
            "exim:\n{}\ndovecot:\n{}",
            self.exim.log(),
            self.dovecot.log()
        )
    }
}

fn facts(judged: &Judged) -> &RoundtripFacts {
    match &judged.result.facts {
        ProtocolFacts::Roundtrip(facts) => facts,
        other => panic!("not a round trip's facts: {other:?}"),
    }
}

/// The failure's phase and reason, with the log when there is none.
fn failed(judged: &Judged) -> (Phase, ErrorKind) {
    let failure = judged.result.failure().unwrap_or_else(|| {
        panic!(
            "expected a failure, got success:\n{}",
            judged.result.log.lines().collect::<Vec<_>>().join("\n")
        )
    });
    (failure.phase, failure.kind)
}

fn assert_success(judged: &Judged, bed: &Bed) {
    assert!(
        judged.is_success(),
        "{:?}\n{}\n{}",
        judged.result.failure(),
        judged.result.log.lines().collect::<Vec<_>>().join("\n"),
        bed.logs()
    );
}

fn rt(metrics: &Metrics, name: &str) -> f64 {
    metrics.value(name, &[("target", "rt"), ("protocol", "roundtrip")])
}

/// Done when (1/3): against real Exim and Dovecot a round trip is up, has a delivery
/// sample, says where and when its message was found, and leaves the mailbox clean;
/// `/debug` and `mailprobe probe` show each step and never the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_delivered_message_is_timed_found_and_deleted() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        let yaml = bed.config();
        let (agent, results) = Agent::start_and_wait(&yaml, &["rt"]).await;
        let judged = &results[0];
        assert_success(judged, &bed);
        assert_eq!(judged.fault, Fault::None);
        let facts = facts(judged);
        let found = facts.found.as_ref().expect("found");
        assert_eq!((found.folder.as_str(), found.junk), ("INBOX", false));
        assert_eq!(facts.idle, Some(true), "Dovecot offers IDLE");
        let submitted = facts.submitted.as_ref().expect("submitted");
        assert!(submitted.reply.starts_with("250 "), "{submitted:?}");
        let transit = facts.transit.expect("transit");
        assert_eq!(
            (transit.hops, transit.dated),
            (2, 2),
            "Exim's and LMTP's Received:"
        );
        assert!(
            transit.seconds.is_some_and(|s| (0..=5).contains(&s)),
            "{transit:?}"
        );
        let cleanup = facts.cleanup.as_deref().unwrap_or_default();
        assert!(
            cleanup.starts_with("deleted UID") && cleanup.contains("UID EXPUNGE"),
            "{cleanup}"
        );
        let phases: Vec<Phase> = judged.result.phases.iter().map(|p| p.phase).collect();
        for phase in [Phase::Submit, Phase::Deliver, Phase::Cleanup] {
            assert!(phases.contains(&phase), "{phases:?}");
        }
        assert!(
            bed.maildir().probe_messages("INBOX").is_empty(),
            "the message is gone from the mailbox"
        );

        let metrics = agent.metrics().await;
        assert_eq!(rt(&metrics, "mailprobe_up"), 1.0);
        assert_eq!(
            rt(&metrics, "mailprobe_roundtrip_delivery_seconds_count"),
            1.0
        );
        let last = rt(&metrics, "mailprobe_roundtrip_last_delivery_seconds");
        assert!(last > 0.0 && last < 4.0, "{last}");
        assert_eq!(rt(&metrics, "mailprobe_roundtrip_late_total"), 0.0);
        for phase in ["submit", "deliver", "cleanup"] {
            assert!(
                metrics
                    .get(
                        "mailprobe_phase_duration_seconds",
                        &[("target", "rt"), ("phase", phase)]
                    )
                    .is_some(),
                "{phase}"
            );
        }

        let (status, debug) = http(agent.addr, "GET", "/debug?target=rt", &[]).await;
        assert_eq!(status, 200);
        for step in [
            "submitted at",
            "found in INBOX",
            "transit: ",
            "cleanup: deleted UID",
        ] {
            assert!(debug.contains(step), "{step} in:\n{debug}");
        }
        assert!(!debug.contains(PASSWORD) && !metrics.text.contains(PASSWORD));
        crate::support::prometheus::assert_promtool_accepts(metrics.text.clone()).await;
        agent.stop().await.expect("clean stop");

        // The one-shot command runs the same round trip and says the same.
        let file = config_file(bed.dir.path(), &yaml);
        let run =
            tokio::task::spawn_blocking(move || mailprobe(&["probe", "--config", &file, "rt"]))
                .await
                .unwrap();
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        assert!(run.stdout.contains("found in INBOX"), "{}", run.stdout);
        assert!(run.stdout.contains("fault domain: none"), "{}", run.stdout);
        assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
        assert!(bed.maildir().probe_messages("INBOX").is_empty());
    })
    .await;
}

/// Done when (2/3): Exim accepts the message and never delivers it (frozen):
/// `not_delivered`, the provider's fault. Unfrozen after the round gave up, the
/// message arrives late: the next round's sweep counts and deletes it, and the fault
/// has cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_accepted_but_never_delivered_then_late() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        bed.exim.fault(MailFault::Freeze, true);
        let mut agent = Agent::start(&bed.config()).await;
        let first = agent.next_result("rt").await;
        assert_eq!(failed(&first), (Phase::Deliver, ErrorKind::NotDelivered));
        assert_eq!(first.fault, Fault::ServerService);
        assert!(facts(&first).found.is_none());

        bed.exim.fault(MailFault::Freeze, false);
        bed.exim.deliver_frozen();
        assert_eq!(
            bed.maildir().probe_messages("INBOX").len(),
            1,
            "the late message arrived\n{}",
            bed.logs()
        );
        let second = agent.next_result("rt").await;
        assert_success(&second, &bed);
        let sweep = facts(&second).sweep.expect("the round after a loss sweeps");
        assert_eq!((sweep.late, sweep.left_behind), (1, 0), "{sweep:?}");
        assert!(bed.maildir().probe_messages("INBOX").is_empty());

        let metrics = agent.metrics().await;
        assert_eq!(rt(&metrics, "mailprobe_roundtrip_late_total"), 1.0);
        assert_eq!(rt(&metrics, "mailprobe_up"), 1.0);
        assert_eq!(
            metrics.value(
                "mailprobe_failures_total",
                &[
                    ("target", "rt"),
                    ("phase", "deliver"),
                    ("reason", "not_delivered")
                ]
            ),
            1.0
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// Done when (3/3): a Sieve rule files the message into Junk: `delivered_to_junk`,
/// and the message is deleted from Junk all the same. Without the rule, delivery is
/// healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_message_filed_as_junk_is_reported_and_deleted() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        bed.dovecot.sieve(USER, Some(JUNK_RULE));
        let mut agent = Agent::start(&bed.config()).await;
        let first = agent.next_result("rt").await;
        assert_eq!(failed(&first), (Phase::Deliver, ErrorKind::DeliveredToJunk));
        assert_eq!(first.fault, Fault::ServerService);
        let found = facts(&first).found.clone().expect("found");
        assert_eq!((found.folder.as_str(), found.junk), ("Junk", true));
        assert!(
            bed.maildir().probe_messages("Junk").is_empty(),
            "deleted from Junk"
        );

        bed.dovecot.sieve(USER, None);
        let second = agent.next_result("rt").await;
        assert_success(&second, &bed);
        assert_eq!(
            facts(&second).found.as_ref().map(|f| f.folder.as_str()),
            Some("INBOX")
        );
        let metrics = agent.metrics().await;
        assert_eq!(
            rt(&metrics, "mailprobe_roundtrip_delivery_seconds_count"),
            2.0
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// The submission refused (5xx at RCPT), deferred (4xx at RCPT, as greylisting does)
/// and unanswered after DATA: `send_rejected`, `send_deferred`, `send_uncertain`,
/// each in `submit` with the server's reply kept; then the route is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_submission_refusals_are_told_apart_and_clear() {
    within(TEST_LIMIT, async {
        let bed = Bed::start();
        bed.exim.fault(MailFault::Reject, true);
        let mut agent = Agent::start(&bed.config()).await;

        let rejected = agent.next_result("rt").await;
        assert_eq!(failed(&rejected), (Phase::Submit, ErrorKind::SendRejected));
        assert_eq!(rejected.fault, Fault::ServerService);
        let message = &rejected.result.failure().unwrap().message;
        assert!(
            message.contains("550 5.7.1 Rejected by test policy"),
            "{message}"
        );

        bed.exim.fault(MailFault::Reject, false);
        bed.exim.fault(MailFault::Greylist, true);
        let deferred = agent.next_result("rt").await;
        assert_eq!(failed(&deferred), (Phase::Submit, ErrorKind::SendDeferred));
        let message = &deferred.result.failure().unwrap().message;
        assert!(message.contains("451 4.7.1 Greylisted"), "{message}");

        bed.exim.fault(MailFault::Greylist, false);
        bed.exim.fault(MailFault::SlowData, true);
        let uncertain = agent.next_result("rt").await;
        assert_eq!(
            failed(&uncertain),
            (Phase::Submit, ErrorKind::SendUncertain)
        );
        // The server stalled with the uplink healthy (no canary fails): its service.
        assert_eq!(uncertain.fault, Fault::ServerService);

        bed.exim.fault(MailFault::SlowData, false);
        let healthy = agent.next_result("rt").await;
        assert_success(&healthy, &bed);
        let metrics = agent.metrics().await;
        for reason in ["send_rejected", "send_deferred", "send_uncertain"] {
            assert_eq!(
                metrics.value(
                    "mailprobe_failures_total",
                    &[("target", "rt"), ("phase", "submit"), ("reason", reason)]
                ),
                1.0,
                "{reason}"
            );
        }
        assert_eq!(rt(&metrics, "mailprobe_up"), 1.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}
