//! IMAP and POP3 against a real Dovecot, SMTP against a real Exim, both started by the
//! test on loopback with certificates from a test CA. Each test asserts the exact
//! phases, reasons and facts on `/metrics`; the last one proves the password never
//! shows in logs, `/metrics` or `/debug`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::agent::{Metrics, NO_RESOLVER, config_with, first_round, http, within};
use crate::support::binary::{Binary, assert_never_shown};
use crate::support::exchange::{self, sorted};
use crate::support::{Dovecot, Exim, TestPki, Validity};

const TEST_LIMIT: Duration = Duration::from_secs(90);
const USER: &str = "probe@example.test";
/// Distinctive, so a search for it in any output cannot match by accident.
const PASSWORD: &str = "Corr3ct-Horse-7f3a9c";
const WRONG_PASSWORD: &str = "Wr0ng-Battery-51e0d2";
const SERVER_NAME: &str = "mail.example.test";

/// A test CA, a server certificate for `mail.example.test`, and password files.
struct Fixture {
    dir: tempfile::TempDir,
    pki: TestPki,
    cert: PathBuf,
    key: PathBuf,
    good: PathBuf,
    wrong: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = pki.issue(SERVER_NAME, &[SERVER_NAME], Validity::Current);
        let good = dir.path().join("good.pass");
        let wrong = dir.path().join("wrong.pass");
        std::fs::write(&good, format!("{PASSWORD}\n")).unwrap();
        std::fs::write(&wrong, format!("{WRONG_PASSWORD}\n")).unwrap();
        Fixture {
            dir,
            pki,
            cert,
            key,
            good,
            wrong,
        }
    }

    fn dovecot(&self) -> Dovecot {
        Dovecot::builder()
            .user(USER, PASSWORD)
            .tls(&self.cert, &self.key)
            // As real providers do: no plain-text login before TLS (LOGINDISABLED).
            .plaintext_auth(false)
            .start()
            .expect("dovecot starts")
    }

    fn exim(&self) -> crate::support::exim::EximBuilder {
        Exim::builder()
            .tls(&self.cert, &self.key)
            .user(USER, PASSWORD)
            .auth_only_after_tls(true)
    }

    /// The target line of `case`.
    fn target(&self, (name, protocol, addr, tls, login): Case) -> String {
        let password = match login {
            No => None,
            Right => Some(&self.good),
            Wrong => Some(&self.wrong),
        };
        // Over `tls: none` the login goes out in clear only when allowed: these tests
        // check what the server does with it.
        let plaintext = if tls == "none" {
            ", allow_plaintext_auth: true"
        } else {
            ""
        };
        let auth = password.map_or(String::new(), |file| {
            format!(
                ", auth: {{username: \"{USER}\", password_file: \"{}\"}}{plaintext}",
                file.display()
            )
        });
        format!(
            "  - {{name: {name}, protocol: {protocol}, host: 127.0.0.1, port: {}, tls: {tls}, \
             server_name: {SERVER_NAME}, ca_file: \"{}\"{auth}}}\n",
            addr.port(),
            self.pki.ca_pem.display()
        )
    }

    /// A configuration probing `cases` once an hour with `timeout`.
    fn config(&self, timeout: &str, cases: &[Case]) -> String {
        let targets: String = cases.iter().map(|case| self.target(*case)).collect();
        config_with(NO_RESOLVER, "1h", timeout, &targets)
    }

    /// Probes each of `cases` once, with `timeout`; returns the scrape after all.
    async fn probe(&self, timeout: &str, cases: &[Case<'_>]) -> Metrics {
        let names: Vec<&str> = cases.iter().map(|case| case.0).collect();
        first_round(&self.config(timeout, cases), &names).await.1
    }
}

/// How a target logs in: not at all, with the right password, with a wrong one.
#[derive(Clone, Copy)]
enum Login {
    No,
    Right,
    Wrong,
}
use Login::{No, Right, Wrong};

/// A target: name, protocol, server address, `tls` mode and login.
type Case<'a> = (&'a str, &'a str, SocketAddr, &'a str, Login);

/// The phases of the last probe of `target`, sorted.
fn phases(m: &Metrics, target: &str) -> Vec<String> {
    exchange::phases(m, &[("target", target)])
}

fn capability(m: &Metrics, target: &str, capability: &str) -> Option<f64> {
    m.get(
        "mailprobe_capability_info",
        &[("target", target), ("capability", capability)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_over_starttls_and_implicit_tls_logs_in_or_is_rejected() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let dovecot = f.dovecot();
        let cases = [
            ("starttls", "imap", dovecot.imap, "starttls", Right),
            ("starttls-bad", "imap", dovecot.imap, "starttls", Wrong),
            ("implicit", "imap", dovecot.imaps, "implicit", Right),
            ("implicit-bad", "imap", dovecot.imaps, "implicit", Wrong),
            ("plain-text", "imap", dovecot.imap, "none", Right),
            ("no-login", "imap", dovecot.imap, "none", No),
        ];
        let m = f.probe("5s", &cases).await;

        m.assert_up("starttls");
        assert_eq!(
            phases(&m, "starttls"),
            sorted(&["connect", "greeting", "starttls", "tls", "request", "auth"])
        );
        assert_eq!(capability(&m, "starttls", "STARTTLS"), Some(1.0));
        assert_eq!(capability(&m, "starttls", "AUTH=PLAIN"), Some(1.0));
        // LOGINDISABLED is advertised only before TLS: the TLS capabilities do not have it.
        assert_eq!(capability(&m, "starttls", "LOGINDISABLED"), None);
        assert_eq!(
            m.value(
                "mailprobe_tls_info",
                &[("target", "starttls"), ("issuer", "mailprobe test CA")]
            ),
            1.0
        );
        m.assert_only_failure("starttls-bad", "auth", "auth_failed");

        m.assert_up("implicit");
        assert_eq!(
            phases(&m, "implicit"),
            sorted(&["connect", "tls", "greeting", "request", "auth"])
        );
        assert!(
            m.value(
                "mailprobe_tls_cert_not_after_timestamp_seconds",
                &[("target", "implicit")]
            ) > 1.7e9
        );
        m.assert_only_failure("implicit-bad", "auth", "auth_failed");

        // No TLS: the server disables plain-text login, so the probe cannot log in.
        assert_eq!(capability(&m, "plain-text", "LOGINDISABLED"), Some(1.0));
        m.assert_only_failure("plain-text", "auth", "protocol_error");
        // Without credentials a plain-text session is healthy.
        m.assert_up("no-login");
        assert_eq!(
            phases(&m, "no-login"),
            sorted(&["connect", "greeting", "request"])
        );
        drop(dovecot);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_over_stls_and_implicit_tls_logs_in_or_is_rejected() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let dovecot = f.dovecot();
        let cases = [
            ("stls", "pop3", dovecot.pop3, "starttls", Right),
            ("stls-bad", "pop3", dovecot.pop3, "starttls", Wrong),
            ("implicit", "pop3", dovecot.pop3s, "implicit", Right),
            ("implicit-bad", "pop3", dovecot.pop3s, "implicit", Wrong),
        ];
        let m = f.probe("5s", &cases).await;

        m.assert_up("stls");
        assert_eq!(
            phases(&m, "stls"),
            sorted(&["connect", "greeting", "starttls", "tls", "request", "auth"])
        );
        assert_eq!(capability(&m, "stls", "STARTTLS"), Some(1.0));
        assert_eq!(capability(&m, "stls", "USER"), Some(1.0));
        m.assert_only_failure("stls-bad", "auth", "auth_failed");
        m.assert_up("implicit");
        m.assert_only_failure("implicit-bad", "auth", "auth_failed");
        drop(dovecot);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_submission_offers_auth_only_after_starttls() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let exim = f.exim().start().expect("exim starts");
        let cases = [
            ("starttls", "smtp", exim.smtp, "starttls", Right),
            ("starttls-bad", "smtp", exim.smtp, "starttls", Wrong),
            ("implicit", "smtp", exim.submissions, "implicit", Right),
            ("plain-text", "smtp", exim.smtp, "none", Right),
        ];
        let m = f.probe("5s", &cases).await;

        m.assert_up("starttls");
        assert_eq!(
            phases(&m, "starttls"),
            sorted(&["connect", "greeting", "starttls", "tls", "request", "auth"])
        );
        // The EHLO after STARTTLS is the one that counts: it offers AUTH.
        assert_eq!(capability(&m, "starttls", "AUTH=PLAIN"), Some(1.0));
        assert_eq!(capability(&m, "starttls", "STARTTLS"), Some(1.0));
        m.assert_only_failure("starttls-bad", "auth", "auth_failed");
        m.assert_up("implicit");
        assert_eq!(
            phases(&m, "implicit"),
            sorted(&["connect", "tls", "greeting", "request", "auth"])
        );
        // Before TLS the server offers no AUTH at all.
        m.assert_only_failure("plain-text", "auth", "auth_failed");
        assert_eq!(capability(&m, "plain-text", "AUTH=PLAIN"), None);
        assert_eq!(capability(&m, "plain-text", "STARTTLS"), Some(1.0));
        drop(exim);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_banner_is_timed_and_one_slower_than_the_timeout_is_a_greeting_timeout() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let slow = f
            .exim()
            .banner_delay(Duration::from_millis(500))
            .start()
            .expect("exim starts");
        let too_slow = f
            .exim()
            .banner_delay(Duration::from_secs(4))
            .start()
            .expect("exim starts");
        let cases = [
            ("slow", "smtp", slow.submissions, "implicit", No),
            ("too-slow", "smtp", too_slow.submissions, "implicit", No),
        ];
        let m = f.probe("2s", &cases).await;
        m.assert_up("slow");
        let greeting = m.value(
            "mailprobe_phase_duration_seconds",
            &[("target", "slow"), ("phase", "greeting")],
        );
        assert!(
            (0.5..2.0).contains(&greeting),
            "greeting phase {greeting} s for a 500 ms banner delay"
        );
        m.assert_only_failure("too-slow", "greeting", "greeting_timeout");
        drop((slow, too_slow));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_554_at_connect_is_service_unavailable() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let exim = f.exim().refuse_at_connect().start().expect("exim starts");
        let m = f
            .probe("5s", &[("refused", "smtp", exim.smtp, "starttls", No)])
            .await;
        m.assert_only_failure("refused", "greeting", "service_unavailable");
        drop(exim);
    })
    .await;
}

/// Every form in which a password could leak: as is, and base64-encoded as SASL
/// PLAIN and LOGIN send it.
fn secret_forms(password: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    vec![
        password.to_owned(),
        b64(password.as_bytes()),
        b64(format!("\0{USER}\0{password}").as_bytes()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_appears_in_no_log_metric_or_debug_output() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let dovecot = f.dovecot();
        let exim = f.exim().start().expect("exim starts");
        let cases = [
            ("imap-good", "imap", dovecot.imap, "starttls", Right),
            ("imap-bad", "imap", dovecot.imaps, "implicit", Wrong),
            ("imap-plain", "imap", dovecot.imap, "none", Right),
            ("pop3-good", "pop3", dovecot.pop3, "starttls", Right),
            ("pop3-bad", "pop3", dovecot.pop3s, "implicit", Wrong),
            ("smtp-good", "smtp", exim.smtp, "starttls", Right),
            ("smtp-bad", "smtp", exim.submissions, "implicit", Wrong),
            ("smtp-plain", "smtp", exim.smtp, "none", Right),
        ];
        let names: Vec<&str> = cases.iter().map(|case| case.0).collect();
        let config_path = f.dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, f.config("5s", &cases)).unwrap();

        // Everything the agent logs, at the most verbose level, libraries included.
        let (mut binary, addr) =
            tokio::task::block_in_place(|| Binary::start_with(&config_path, "trace"));
        let lines = tokio::task::block_in_place(|| binary.results_logged(&names));
        for (name, line) in names.iter().zip(&lines) {
            assert_eq!(
                line.contains("probe succeeded"),
                name.ends_with("-good"),
                "{line}"
            );
        }
        let mut outputs = vec![("the log".to_owned(), binary.log.join("\n"))];
        outputs.push((
            "/metrics".to_owned(),
            http(addr, "GET", "/metrics", &[]).await.1,
        ));
        for name in names {
            let (status, body) = http(addr, "GET", &format!("/debug?target={name}"), &[]).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("banner: "), "{body}");
            // The per-probe log, step by step (and searched for secrets below).
            assert!(
                body.contains("connect: ok") && body.contains("greeting: "),
                "{body}"
            );
            outputs.push((format!("/debug?target={name}"), body));
        }
        binary.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| binary.wait_exit());
        assert_eq!(status.code(), Some(0));
        outputs.push(("the log after shutdown".to_owned(), binary.log.join("\n")));

        assert!(
            outputs[0].1.len() > 10_000,
            "trace logging produced output to search"
        );
        for password in [PASSWORD, WRONG_PASSWORD] {
            assert_never_shown(&outputs, &secret_forms(password));
        }
        drop((dovecot, exim));
    })
    .await;
}
