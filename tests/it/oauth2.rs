//! OAuth2 logins (issue 12) against a real Dovecot whose `oauth2` passdb validates
//! every token by introspection at the identity provider stand-in, which counts each
//! request: IMAP and POP3 with XOAUTH2 and OAUTHBEARER (IMAP with and without
//! SASL-IR), a client secret, a certificate and a Google service account; a wrong
//! secret, a refused token, an unreachable identity provider; one token for many
//! probes, a new one after expiry or after the mailbox refused the cached one. SMTP
//! logs in to an in-process server (see `support::oauth2`).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailprobe::judge::Judged;

use crate::support::agent::{Agent, Metrics, first_round, within};
use crate::support::exchange::sorted;
use crate::support::idp::rsa_certificate;
use crate::support::oauth2::{OAuthBed, SmtpTenant, TEST_LIMIT, USER, secret_file, smtp_fake};
use crate::support::{Blackhole, closed_port};

const HOUR: Duration = Duration::from_secs(3600);

/// Probes `targets` of `bed` once each (`names`), with a 5 s timeout.
async fn once(bed: &OAuthBed, targets: &str, names: &[&str]) -> (Vec<Arc<Judged>>, Metrics) {
    first_round(&bed.config("1h", "5s", targets), names).await
}

/// The phases of the last probe of `target`, sorted.
fn phases(m: &Metrics, target: &str) -> Vec<String> {
    crate::support::exchange::phases(m, &[("target", target)])
}

fn message(judged: &Judged) -> &str {
    judged
        .failure()
        .map_or("", |failure| failure.message.as_str())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_and_pop3_log_in_with_xoauth2_and_oauthbearer_and_share_one_token() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let d = &bed.dovecot;
        let targets = bed.imaps("imap-auto", &bed.good())
            + &bed.target(
                "imap-xoauth2",
                "imap",
                d.imap,
                "starttls",
                &bed.good(),
                ", mechanism: xoauth2",
            )
            + &bed.target("pop3-auto", "pop3", d.pop3s, "implicit", &bed.good(), "")
            + &bed.target(
                "pop3-xoauth2",
                "pop3",
                d.pop3,
                "starttls",
                &bed.good(),
                ", mechanism: xoauth2",
            );
        let names = ["imap-auto", "imap-xoauth2", "pop3-auto", "pop3-xoauth2"];
        let (results, m) = once(&bed, &targets, &names).await;
        for name in names {
            m.assert_up(name);
        }
        assert_eq!(
            phases(&m, "imap-auto"),
            sorted(&["connect", "tls", "greeting", "request", "token", "auth"])
        );
        assert_eq!(
            phases(&m, "pop3-xoauth2"),
            sorted(&[
                "connect", "greeting", "starttls", "tls", "request", "token", "auth"
            ])
        );
        let mechanisms: Vec<Option<&str>> = results
            .iter()
            .map(|r| r.result.login.as_ref().and_then(|l| l.mechanism))
            .collect();
        assert_eq!(
            mechanisms,
            [
                Some("OAUTHBEARER"),
                Some("XOAUTH2"),
                Some("OAUTHBEARER"),
                Some("XOAUTH2")
            ]
        );
        // Four logins, one token: the probes that started together waited for the
        // one request in flight.
        assert_eq!(bed.idp.token_requests(), 1);
        assert_eq!(bed.idp.introspections(), 4);
        let expiry = m.value(
            "mailprobe_oauth2_token_expiry_timestamp_seconds",
            &[("target", "imap-auto")],
        );
        assert!(
            (now() + 3000.0..now() + 3700.0).contains(&expiry),
            "{expiry}"
        );
        assert_eq!(
            m.value("mailprobe_auth_suspended", &[("target", "pop3-auto")]),
            0.0
        );
        assert!(
            m.value(
                "mailprobe_auth_last_attempt_timestamp_seconds",
                &[("target", "imap-auto")]
            ) > now() - 60.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_without_sasl_ir_sends_the_response_after_the_prompt() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start_with(HOUR, |dovecot| {
            dovecot.imap_capability("IMAP4rev1 LITERAL+ ID ENABLE IDLE")
        })
        .await;
        let d = &bed.dovecot;
        let targets = bed.target(
            "xoauth2",
            "imap",
            d.imaps,
            "implicit",
            &bed.good(),
            ", mechanism: xoauth2",
        ) + &bed.target(
            "oauthbearer",
            "imap",
            d.imaps,
            "implicit",
            &bed.good(),
            ", mechanism: oauthbearer",
        );
        let (_, m) = once(&bed, &targets, &["xoauth2", "oauthbearer"]).await;
        m.assert_up("xoauth2");
        m.assert_up("oauthbearer");
        assert_eq!(
            m.get(
                "mailprobe_capability_info",
                &[("target", "xoauth2"), ("capability", "SASL-IR")]
            ),
            None
        );
        assert_eq!(bed.idp.introspections(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_fails_in_token_with_token_rejected() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let targets = bed.imaps("imap", &bed.wrong());
        let (results, m) = once(&bed, &targets, &["imap"]).await;
        m.assert_only_failure("imap", "token", "token_rejected");
        assert_eq!(m.fault("imap", "server_auth"), 1.0);
        let text = message(&results[0]);
        assert!(
            text.contains("invalid_client (AADSTS7000215: invalid client secret"),
            "{text}"
        );
        // The mailbox never saw a login.
        assert_eq!(bed.idp.introspections(), 0);
        let verdict = results[0].verdict();
        assert!(
            verdict.contains("identity provider 127.0.0.1 refused"),
            "{verdict}"
        );
        assert!(verdict.contains("Certificates & secrets"), "{verdict}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_mailbox_refuses_fails_in_auth_with_the_decoded_challenge() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        bed.idp.refuse_at_mailbox(true);
        let d = &bed.dovecot;
        let targets = bed.target(
            "imap-x",
            "imap",
            d.imaps,
            "implicit",
            &bed.good(),
            ", mechanism: xoauth2",
        ) + &bed.imaps("imap-o", &bed.good())
            + &bed.target(
                "pop3-x",
                "pop3",
                d.pop3s,
                "implicit",
                &bed.good(),
                ", mechanism: xoauth2",
            )
            + &bed.target("pop3-o", "pop3", d.pop3s, "implicit", &bed.good(), "");
        let names = ["imap-x", "imap-o", "pop3-x", "pop3-o"];
        let (results, m) = once(&bed, &targets, &names).await;
        for (name, judged) in names.iter().zip(&results) {
            m.assert_only_failure(name, "auth", "auth_failed");
            assert_eq!(m.fault(name, "server_auth"), 1.0, "{name}");
            let text = message(judged);
            let challenge = if name.ends_with("-x") {
                "the server says: status 401, schemes bearer, scope mail"
            } else {
                "the server says: status invalid_token"
            };
            assert!(text.contains(challenge), "{name}: {text}");
            let verdict = judged.verdict();
            assert!(
                verdict.contains("New-ServicePrincipal"),
                "{name}: {verdict}"
            );
        }
        // A probe that asked for its token fails at once; one that took it from the
        // cache tries once more with a new one (a cached token may have been
        // revoked): the first of those asks for it, the others share it.
        let retried = results
            .iter()
            .filter(|r| {
                r.result
                    .log
                    .lines()
                    .any(|l| l.contains("refused the cached token"))
            })
            .count();
        assert!(retried <= 3, "at least the first probe's token was fresh");
        assert_eq!(bed.idp.introspections(), 4 + retried);
        let requests = bed.idp.token_requests();
        assert!((1..=1 + retried).contains(&requests), "{requests} requests");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_provider_that_does_not_answer_fails_in_token_with_a_network_reason() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let silent = Blackhole::new();
        let refused = format!(
            "https://127.0.0.1:{}/t/oauth2/v2.0/token",
            closed_port().port()
        );
        let dropped = format!(
            "https://127.0.0.1:{}/t/oauth2/v2.0/token",
            silent.addr.port()
        );
        let d = &bed.dovecot;
        let targets = bed.target_via(
            "refused",
            "imap",
            d.imaps,
            "implicit",
            &refused,
            &bed.good(),
            "",
        ) + &bed.target_via(
            "dropped",
            "imap",
            d.imaps,
            "implicit",
            &dropped,
            &bed.good(),
            "",
        );
        let yaml = bed.config("1h", "2s", &targets);
        let (results, m) = first_round(&yaml, &["refused", "dropped"]).await;
        m.assert_only_failure("refused", "token", "connect_refused");
        assert_eq!(m.fault("refused", "server_service"), 1.0);
        m.assert_only_failure("dropped", "token", "connect_timeout");
        // No canary, no gateway: silence is the path to the provider.
        assert_eq!(m.fault("dropped", "server_network"), 1.0);
        for judged in &results {
            let verdict = judged.verdict();
            assert!(verdict.contains("identity provider 127.0.0.1"), "{verdict}");
            assert!(verdict.contains("not the mail server"), "{verdict}");
            assert!(message(judged).contains("token endpoint 127.0.0.1 (connect)"));
        }
        assert_eq!(bed.idp.introspections(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_is_asked_once_for_many_probes() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let d = &bed.dovecot;
        let targets = bed.imaps("a", &bed.good())
            + &bed.target("b", "pop3", d.pop3s, "implicit", &bed.good(), "")
            + &bed.target("c", "imap", d.imap, "starttls", &bed.good(), "");
        let mut agent = Agent::start(&bed.config("2s", "2s", &targets)).await;
        for _ in 0..4 {
            for name in ["a", "b", "c"] {
                let judged = agent.next_result(name).await;
                assert!(judged.is_success(), "{name}: {}", message(&judged));
            }
        }
        agent.stop().await.expect("clean stop");
        assert_eq!(bed.idp.token_requests(), 1);
        assert!(bed.idp.introspections() >= 12);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_replaced_before_it_expires() {
    within(TEST_LIMIT, async {
        // Three seconds: handed out for 2.25 s (a quarter is the margin).
        let bed = OAuthBed::start(Duration::from_secs(3)).await;
        let targets = bed.imaps("imap", &bed.good());
        let mut agent = Agent::start(&bed.config("1s", "1s", &targets)).await;
        let mut expiries = Vec::new();
        const ROUNDS: usize = 8;
        for _ in 0..ROUNDS {
            let judged = agent.next_result("imap").await;
            assert!(judged.is_success(), "{}", message(&judged));
            expiries.push(
                judged
                    .result
                    .login
                    .as_ref()
                    .and_then(|l| l.token_expiry)
                    .unwrap(),
            );
        }
        agent.stop().await.expect("clean stop");
        expiries.dedup();
        // Every request gave one token, used until shortly before it expired: more
        // than one request, fewer than one per probe.
        assert_eq!(bed.idp.token_requests(), expiries.len());
        assert!((2..ROUNDS).contains(&expiries.len()), "{expiries:?}");
        // A login never used a token past its expiry (Dovecot would have refused it).
        assert_eq!(bed.idp.introspections(), ROUNDS);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_the_mailbox_refuses_is_replaced_once() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let targets = bed.imaps("imap", &bed.good());
        let mut agent = Agent::start(&bed.config("2s", "2s", &targets)).await;
        assert!(agent.next_result("imap").await.is_success());
        // Revoked before it expired: the next probe's cached token is refused.
        bed.idp.revoke_all();
        let second = agent.next_result("imap").await;
        agent.stop().await.expect("clean stop");
        assert!(second.is_success(), "{}", message(&second));
        assert_eq!(bed.idp.token_requests(), 2);
        // One login, then the refused one and its replacement.
        assert_eq!(bed.idp.introspections(), 3);
        let log: Vec<&str> = second.result.log.lines().collect();
        assert!(
            log.iter().any(|l| l.contains("refused the cached token")),
            "{log:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_signs_the_client_assertion_the_provider_verifies() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let (cert, key) = tokio::task::block_in_place(|| rsa_certificate(bed.dir.path(), "app"));
        let (other_cert, other_key) =
            tokio::task::block_in_place(|| rsa_certificate(bed.dir.path(), "unregistered"));
        bed.idp.accept_certificate(&cert);
        let credential = |cert: &std::path::Path, key: &std::path::Path| {
            format!(
                "client_certificate: \"{}\", client_key: \"{}\"",
                cert.display(),
                key.display()
            )
        };
        let d = &bed.dovecot;
        let targets = bed.target(
            "registered",
            "imap",
            d.imaps,
            "implicit",
            &credential(&cert, &key),
            "",
        ) + &bed.target(
            "unregistered",
            "pop3",
            d.pop3s,
            "implicit",
            &credential(&other_cert, &other_key),
            "",
        );
        let (results, m) = once(&bed, &targets, &["registered", "unregistered"]).await;
        m.assert_up("registered");
        let pem = std::fs::read(&cert).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            m.value(
                "mailprobe_oauth2_client_certificate_not_after_timestamp_seconds",
                &[("target", "registered")]
            ),
            parsed.validity().not_after.timestamp() as f64
        );
        m.assert_only_failure("unregistered", "token", "token_rejected");
        assert!(
            message(&results[1]).contains("AADSTS700027"),
            "{}",
            message(&results[1])
        );
        assert!(results[1].verdict().contains("upload `client_certificate`"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_service_account_acts_as_the_mailbox() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let (cert, key) = tokio::task::block_in_place(|| rsa_certificate(bed.dir.path(), "sa"));
        let email = "mailprobe@example-project.iam.gserviceaccount.com";
        bed.idp.accept_service_account(email, &cert);
        let json = serde_json::json!({
            "type": "service_account",
            "project_id": "example-project",
            "private_key_id": "0123456789abcdef",
            "private_key": std::fs::read_to_string(&key).unwrap(),
            "client_email": email,
            "client_id": "123456789012345678901",
            "token_uri": bed.idp.token_url(),
        });
        let file = secret_file(bed.dir.path(), "sa.json", &json.to_string());
        let target = format!(
            "  - {{name: gmail, protocol: imap, host: 127.0.0.1, port: {}, tls: implicit, \
             server_name: mail.example.test, ca_file: \"{}\", auth: {{username: \"{USER}\", \
             oauth2: {{service_account_file: \"{}\"}}}}}}\n",
            bed.dovecot.imaps.port(),
            bed.pki.ca_pem.display(),
            file.display()
        );
        let (_, m) = once(&bed, &target, &["gmail"]).await;
        m.assert_up("gmail");
        assert_eq!(bed.idp.token_requests(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_logs_in_with_xoauth2_and_names_smtp_auth_disabled_for_the_tenant() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(HOUR).await;
        let allowed = smtp_fake(&bed, SmtpTenant::Allowed).await;
        let disabled = smtp_fake(&bed, SmtpTenant::Disabled).await;
        let targets = bed.target("smtp", "smtp", allowed.addr, "implicit", &bed.good(), "")
            + &bed.target(
                "smtp-off",
                "smtp",
                disabled.addr,
                "implicit",
                &bed.good(),
                "",
            );
        let (results, m) = once(&bed, &targets, &["smtp", "smtp-off"]).await;
        m.assert_up("smtp");
        assert_eq!(
            results[0].result.login.as_ref().and_then(|l| l.mechanism),
            Some("XOAUTH2")
        );
        m.assert_only_failure("smtp-off", "auth", "auth_failed");
        assert!(
            message(&results[1]).contains("535 5.7.139"),
            "{}",
            message(&results[1])
        );
        let verdict = results[1].verdict();
        assert!(verdict.contains("turn SMTP AUTH on"), "{verdict}");
        assert!(
            verdict.contains("SmtpClientAuthenticationDisabled"),
            "{verdict}"
        );
    })
    .await;
}
