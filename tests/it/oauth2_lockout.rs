//! Logins that never lock an account (issue 12), against a real Dovecot: after three
//! rejected logins in a row the credential is held back, the target keeps failing with
//! the last real answer, and the login is tried again after one interval, then two,
//! four …; a reload tries again at once, and a changed secret file (which reloads the
//! configuration) fixes it. Every real login attempt is counted where it arrives: the
//! identity provider stand-in sees one introspection per XOAUTH2 login Dovecot checks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailprobe::judge::{Fault, Judged};

use crate::support::agent::{Agent, http, within};
use crate::support::oauth2::{OAuthBed, PASSWORD, TEST_LIMIT, USER, secret_file};

/// Whether `judged` sent its credential.
fn sent(judged: &Judged) -> bool {
    judged.result.login.as_ref().is_some_and(|l| l.sent)
}

/// Whether `judged` held its credential back.
fn suspended(judged: &Judged) -> bool {
    judged.result.login.as_ref().is_some_and(|l| l.suspended)
}

/// Every result of `judged` failed in `auth` with `auth_failed`, domain `server_auth`.
fn assert_rejected(results: &[Arc<Judged>]) {
    for judged in results {
        let failure = judged.failure().expect("a failure");
        assert_eq!(
            (
                failure.phase.as_metrics_label(),
                failure.kind.as_metrics_label()
            ),
            ("auth", "auth_failed"),
            "{}",
            failure.message
        );
        assert_eq!(judged.fault, Fault::ServerAuth);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_rejections_hold_the_credential_back_and_back_off() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(Duration::from_secs(3600)).await;
        bed.idp.refuse_at_mailbox(true);
        let targets = bed.imaps("imap", &bed.good());
        let mut agent = Agent::start(&bed.config("1s", "1s", &targets)).await;
        const ROUNDS: usize = 12;
        let mut results = Vec::new();
        for _ in 0..ROUNDS {
            results.push(agent.next_result("imap").await);
        }
        let m = agent.metrics().await;
        let (_, debug) = http(agent.addr, "GET", "/debug?target=imap", &[]).await;
        agent.stop().await.expect("clean stop");

        assert_rejected(&results);
        // Three real attempts, then held back: the fourth round sends nothing.
        assert!(results[..3].iter().all(|r| sent(r) && !suspended(r)));
        assert!(suspended(&results[3]) && !sent(&results[3]));
        // Every credential sent reached Dovecot once, and only the first may have been
        // tried twice (a refused cached token is replaced once, while the login has no
        // rejection behind it); none that was held back did.
        let attempts = results.iter().filter(|r| sent(r)).count();
        let introspections = bed.idp.introspections();
        assert!(
            (attempts..=attempts + 1).contains(&introspections),
            "{introspections} logins at Dovecot for {attempts} sent"
        );
        // Backoff: three, then one round held back, then two, then four: the rounds
        // that send are 1, 2, 3, 5 and 8 of twelve.
        assert!(
            (4..=6).contains(&attempts),
            "{attempts} real attempts in {ROUNDS} rounds"
        );
        // A held-back round still probes everything up to the login offer, and fails
        // with the last real answer.
        let held = results
            .iter()
            .rfind(|r| suspended(r))
            .expect("a held-back round");
        let phases: Vec<&str> = held
            .result
            .phases
            .iter()
            .map(|p| p.phase.as_metrics_label())
            .collect();
        assert_eq!(phases, ["connect", "tls", "greeting", "request"]);
        let failure = held.failure().unwrap();
        assert!(
            failure.message.starts_with("XOAUTH2 login rejected")
                || failure.message.starts_with("OAUTHBEARER login rejected"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("login suspended"),
            "{}",
            failure.message
        );
        assert!(
            held.verdict().contains("holds the credential back"),
            "{}",
            held.verdict()
        );
        // The last round's state on /metrics and /debug.
        let last = results.last().unwrap();
        assert_eq!(
            m.value("mailprobe_auth_suspended", &[("target", "imap")]),
            f64::from(u8::from(suspended(last)))
        );
        assert!(
            m.get(
                "mailprobe_auth_last_attempt_timestamp_seconds",
                &[("target", "imap")]
            )
            .is_some()
        );
        assert!(debug.contains("login: SUSPENDED after"), "{debug}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_tries_again_at_once_and_a_changed_secret_file_fixes_the_login() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(Duration::from_secs(3600)).await;
        bed.idp.refuse_at_mailbox(true);
        let targets = bed.imaps("imap", &bed.good());
        let mut agent = Agent::start(&bed.config("2s", "2s", &targets)).await;
        let mut results = Vec::new();
        while !results.last().is_some_and(|r: &Arc<Judged>| suspended(r)) {
            results.push(agent.next_result("imap").await);
            assert!(results.len() <= 4, "held back after three rejections");
        }
        let before = bed.idp.introspections();
        // A reload: the next probe sends the credential again, at once.
        let reloaded = SystemTime::now();
        agent.control.reload().await.expect("the reload succeeds");
        let mut retry = agent.next_result("imap").await;
        while retry.result.started_at < reloaded {
            retry = agent.next_result("imap").await;
        }
        assert!(sent(&retry) && !suspended(&retry));
        assert_rejected(std::slice::from_ref(&retry));
        assert!(bed.idp.introspections() > before);
        // Still rejected: held back again at once, not three more attempts.
        let after_retry = agent.next_result("imap").await;
        assert!(suspended(&after_retry), "{:?}", after_retry.result.login);

        // The administrator fixes it: a new client secret that the provider and the
        // mailbox accept. The changed file reloads the configuration by itself.
        const NEW_SECRET: &str = "Zt5~New.Secret-77aa31c0";
        bed.idp.accept_secret(NEW_SECRET);
        bed.idp.refuse_at_mailbox(false);
        secret_file(bed.dir.path(), "client.secret", NEW_SECRET);
        let mut fixed = None;
        for _ in 0..15 {
            let judged = agent.next_result("imap").await;
            if judged.is_success() {
                fixed = Some(judged);
                break;
            }
        }
        agent.stop().await.expect("clean stop");
        let fixed = fixed.expect("the login works again after the secret file changed");
        let login = fixed.result.login.as_ref().unwrap();
        assert!(login.sent && !login.suspended && login.consecutive_failures == 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_held_back_too() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(Duration::from_secs(3600)).await;
        let wrong = secret_file(bed.dir.path(), "wrong.pass", "Wr0ng-Kettle-3c9d");
        let target = format!(
            "  - {{name: imap, protocol: imap, host: 127.0.0.1, port: {}, tls: implicit, \
             server_name: mail.example.test, ca_file: \"{}\", auth: {{username: \"{USER}\", \
             password_file: \"{}\", max_failures: 2}}}}\n",
            bed.dovecot.imaps.port(),
            bed.pki.ca_pem.display(),
            wrong.display()
        );
        assert_ne!(PASSWORD, "Wr0ng-Kettle-3c9d");
        let mut agent = Agent::start(&bed.config("1s", "1s", &target)).await;
        let mut results = Vec::new();
        for _ in 0..4 {
            results.push(agent.next_result("imap").await);
        }
        let m = agent.metrics().await;
        agent.stop().await.expect("clean stop");
        assert_rejected(&results);
        // `max_failures: 2`: two real attempts, then held back.
        assert!(results[..2].iter().all(|r| sent(r)));
        assert!(suspended(&results[2]) && !sent(&results[2]));
        assert!(
            results[2]
                .failure()
                .unwrap()
                .message
                .contains("AUTHENTICATIONFAILED")
        );
        assert_eq!(
            m.value(
                "mailprobe_failures_total",
                &[
                    ("target", "imap"),
                    ("phase", "auth"),
                    ("reason", "auth_failed")
                ]
            ),
            4.0
        );
    })
    .await;
}
