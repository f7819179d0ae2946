//! Issues 12 and 13 together: a round trip's legs log in like the mail targets they
//! are. Its IMAP leg logs in with an OAuth2 token (Dovecot's `oauth2` passdb asking
//! the identity provider stand-in) while Exim takes the submission with a password and
//! delivers over LMTP into that Dovecot; and the lockout protection holds back the leg
//! whose login is rejected without holding back the other.

use std::time::Duration;

use mailprobe::judge::Judged;
use mailprobe::probe::{ErrorKind, Phase, ProtocolFacts};

use crate::support::Exim;
use crate::support::agent::{Agent, http, within};
use crate::support::oauth2::{OAuthBed, PASSWORD, SERVER_NAME, TEST_LIMIT, USER, secret_file};

/// A round every 8 s that waits at most 6 s (as in `roundtrip.rs`).
const INTERVAL: &str = "8s";
const TIMEOUT: &str = "6s";

/// The OAuth2 bed with a Dovecot that also takes deliveries, and an Exim that
/// delivers into it.
async fn start() -> (OAuthBed, Exim) {
    let bed = OAuthBed::start_with(Duration::from_secs(3600), |dovecot| dovecot.delivery()).await;
    let (cert, key) = bed.server_cert().clone();
    let lmtp = bed.dovecot.lmtp.expect("dovecot serves LMTP");
    let exim = tokio::task::block_in_place(|| {
        Exim::builder()
            .tls(&cert, &key)
            .user(USER, PASSWORD)
            .auth_only_after_tls(true)
            .deliver_to(lmtp)
            .start()
            .expect("exim starts")
    });
    (bed, exim)
}

/// A round trip `rt` submitting at Exim with the password and finding its message
/// over IMAPS with the bed's OAuth2 client (`max_failures` on that leg).
fn config(bed: &OAuthBed, exim: &Exim, max_failures: u32) -> String {
    let password = secret_file(bed.dir.path(), "probe.pass", PASSWORD);
    let ca = bed.pki.ca_pem.display();
    let target = format!(
        "  - name: rt\n    protocol: roundtrip\n    interval: {INTERVAL}\n    timeout: \
         {TIMEOUT}\n    from: {USER}\n    to: {USER}\n    send: {{host: 127.0.0.1, port: {}, \
         tls: starttls, server_name: {SERVER_NAME}, ca_file: \"{ca}\", auth: {{username: \
         \"{USER}\", password_file: \"{}\"}}}}\n    receive: {{host: 127.0.0.1, port: {}, tls: \
         implicit, server_name: {SERVER_NAME}, ca_file: \"{ca}\", auth: {{username: \"{USER}\", \
         max_failures: {max_failures}, oauth2: {{token_url: \"{}\", client_id: {}, scope: \
         \"{}\", {}}}}}}}\n",
        exim.smtp.port(),
        password.display(),
        bed.dovecot.imaps.port(),
        bed.idp.token_url(),
        crate::support::idp::CLIENT_ID,
        crate::support::oauth2::SCOPE,
        bed.good(),
    );
    bed.config("1h", "2s", &target)
}

fn submitted(judged: &Judged) -> bool {
    match &judged.result.facts {
        ProtocolFacts::Roundtrip(facts) => facts.submitted.is_some(),
        other => panic!("not a round trip's facts: {other:?}"),
    }
}

fn log(judged: &Judged) -> String {
    judged.result.log.lines().collect::<Vec<_>>().join("\n")
}

/// The receiving leg logs in with a token, and the round trip reports the token's
/// facts like any OAuth2 login: mechanism, expiry, and the expiry metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_round_trip_finds_its_message_with_an_oauth2_login() {
    within(TEST_LIMIT, async {
        let (bed, exim) = start().await;
        let (agent, results) = Agent::start_and_wait(&config(&bed, &exim, 3), &["rt"]).await;
        let judged = &results[0];
        assert!(
            judged.is_success(),
            "{:?}\n{}\nexim:\n{}\ndovecot:\n{}",
            judged.result.failure(),
            log(judged),
            exim.log(),
            bed.dovecot.log()
        );
        let login = judged.result.login.as_ref().expect("login facts");
        assert!(login.sent && !login.suspended, "{login:?}");
        assert!(login.mechanism.is_some(), "{login:?}");
        assert!(login.token_expiry.is_some(), "{login:?}");
        assert!(bed.idp.introspections() >= 1);
        let metrics = agent.metrics().await;
        let labels = [("target", "rt"), ("protocol", "roundtrip")];
        assert!(
            metrics
                .get("mailprobe_oauth2_token_expiry_timestamp_seconds", &labels)
                .is_some(),
            "{}",
            metrics.text
        );
        assert_eq!(metrics.value("mailprobe_auth_suspended", &labels), 0.0);
        let (_, debug) = http(agent.addr, "GET", "/debug?target=rt", &[]).await;
        assert!(!debug.contains(PASSWORD), "{debug}");
        for token in bed.idp.tokens() {
            assert!(!debug.contains(&token) && !metrics.text.contains(&token));
        }
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// The mailbox refuses every token: after `max_failures: 1` the receiving leg holds
/// its credential back (no more logins at Dovecot), while the sending leg, whose
/// password Exim accepts, goes on logging in and submitting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_a_rejected_receiving_login_is_held_back_without_the_sending_one() {
    within(TEST_LIMIT, async {
        let (bed, exim) = start().await;
        bed.idp.refuse_at_mailbox(true);
        let mut agent = Agent::start(&config(&bed, &exim, 1)).await;
        let first = agent.next_result("rt").await;
        let introspections = bed.idp.introspections();
        let second = agent.next_result("rt").await;
        let metrics = agent.metrics().await;
        agent.stop().await.expect("clean stop");

        for judged in [&first, &second] {
            let failure = judged.result.failure().expect("a failure");
            assert_eq!(
                (failure.phase, failure.kind),
                (Phase::Auth, ErrorKind::AuthFailed),
                "{}",
                log(judged)
            );
            assert!(
                submitted(judged),
                "the sending leg logged in:\n{}",
                log(judged)
            );
        }
        let first_login = first.result.login.as_ref().expect("login facts");
        assert!(
            first_login.sent && !first_login.suspended,
            "{first_login:?}"
        );
        let second_login = second.result.login.as_ref().expect("login facts");
        assert!(second_login.suspended, "{second_login:?}");
        assert_eq!(second_login.consecutive_failures, 1);
        let message = &second.result.failure().unwrap().message;
        assert!(message.contains("login suspended"), "{message}");
        // The held-back leg sent nothing: Dovecot asked the stand-in about no token.
        assert_eq!(bed.idp.introspections(), introspections);
        let labels = [("target", "rt"), ("protocol", "roundtrip")];
        assert_eq!(metrics.value("mailprobe_auth_suspended", &labels), 1.0);
    })
    .await;
}
