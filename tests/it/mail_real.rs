//! IMAP and POP3 against a real Dovecot, SMTP against a real Exim, both started by the
//! test on loopback with certificates from a test CA. Each test asserts the exact
//! phases, reasons and facts on `/metrics`; the last one proves the password never
//! shows in logs, `/metrics` or `/debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::agent::{Agent, Metrics, http, within};
use crate::support::binary::{Binary, assert_never_shown};
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

    /// One target line; `password` is `None` (no login), or the file to use.
    fn target(
        &self,
        name: &str,
        protocol: &str,
        addr: SocketAddr,
        tls: &str,
        password: Option<&Path>,
    ) -> String {
        let auth = password.map_or(String::new(), |file| {
            format!(
                ", auth: {{username: \"{USER}\", password_file: \"{}\"}}",
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

    fn config(&self, timeout: &str, targets: &[String]) -> String {
        format!(
            "listen: \"127.0.0.1:0\"\n\
             defaults: {{interval: 1h, timeout: {timeout}, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             targets:\n{}",
            targets.concat()
        )
    }
}

fn phases(m: &Metrics, target: &str) -> Vec<String> {
    let mut phases: Vec<String> = m
        .all("mailprobe_phase_duration_seconds", &[("target", target)])
        .into_iter()
        .map(|(labels, _)| labels["phase"].clone())
        .collect();
    phases.sort();
    phases
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    items.sort();
    items
}

fn capability(m: &Metrics, target: &str, capability: &str) -> Option<f64> {
    m.get(
        "mailprobe_capability_info",
        &[("target", target), ("capability", capability)],
    )
}

fn assert_up(m: &Metrics, target: &str) {
    assert_eq!(
        m.value("mailprobe_up", &[("target", target)]),
        1.0,
        "{target}: {:?}",
        m.all("mailprobe_last_failure_info", &[("target", target)])
    );
    assert_eq!(
        m.all("mailprobe_failures_total", &[("target", target)]),
        vec![]
    );
}

async fn run_once(config: &str, targets: &[&str]) -> Metrics {
    let mut agent = Agent::start(config).await;
    for target in targets {
        agent.next_result(target).await;
    }
    let metrics = agent.metrics().await;
    agent.stop().await.expect("clean stop");
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_over_starttls_and_implicit_tls_logs_in_or_is_rejected() {
    within(TEST_LIMIT, async {
        let f = Fixture::new();
        let dovecot = f.dovecot();
        let targets = [
            f.target("starttls", "imap", dovecot.imap, "starttls", Some(&f.good)),
            f.target(
                "starttls-bad",
                "imap",
                dovecot.imap,
                "starttls",
                Some(&f.wrong),
            ),
            f.target("implicit", "imap", dovecot.imaps, "implicit", Some(&f.good)),
            f.target(
                "implicit-bad",
                "imap",
                dovecot.imaps,
                "implicit",
                Some(&f.wrong),
            ),
            f.target("plain-text", "imap", dovecot.imap, "none", Some(&f.good)),
            f.target("no-login", "imap", dovecot.imap, "none", None),
        ];
        let names = [
            "starttls",
            "starttls-bad",
            "implicit",
            "implicit-bad",
            "plain-text",
            "no-login",
        ];
        let m = run_once(&f.config("5s", &targets), &names).await;

        assert_up(&m, "starttls");
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

        assert_up(&m, "implicit");
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
        assert_up(&m, "no-login");
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
        let targets = [
            f.target("stls", "pop3", dovecot.pop3, "starttls", Some(&f.good)),
            f.target("stls-bad", "pop3", dovecot.pop3, "starttls", Some(&f.wrong)),
            f.target("implicit", "pop3", dovecot.pop3s, "implicit", Some(&f.good)),
            f.target(
                "implicit-bad",
                "pop3",
                dovecot.pop3s,
                "implicit",
                Some(&f.wrong),
            ),
        ];
        let m = run_once(
            &f.config("5s", &targets),
            &["stls", "stls-bad", "implicit", "implicit-bad"],
        )
        .await;

        assert_up(&m, "stls");
        assert_eq!(
            phases(&m, "stls"),
            sorted(&["connect", "greeting", "starttls", "tls", "request", "auth"])
        );
        assert_eq!(capability(&m, "stls", "STARTTLS"), Some(1.0));
        assert_eq!(capability(&m, "stls", "USER"), Some(1.0));
        m.assert_only_failure("stls-bad", "auth", "auth_failed");
        assert_up(&m, "implicit");
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
        let targets = [
            f.target("starttls", "smtp", exim.smtp, "starttls", Some(&f.good)),
            f.target(
                "starttls-bad",
                "smtp",
                exim.smtp,
                "starttls",
                Some(&f.wrong),
            ),
            f.target(
                "implicit",
                "smtp",
                exim.submissions,
                "implicit",
                Some(&f.good),
            ),
            f.target("plain-text", "smtp", exim.smtp, "none", Some(&f.good)),
        ];
        let m = run_once(
            &f.config("5s", &targets),
            &["starttls", "starttls-bad", "implicit", "plain-text"],
        )
        .await;

        assert_up(&m, "starttls");
        assert_eq!(
            phases(&m, "starttls"),
            sorted(&["connect", "greeting", "starttls", "tls", "request", "auth"])
        );
        // The EHLO after STARTTLS is the one that counts: it offers AUTH.
        assert_eq!(capability(&m, "starttls", "AUTH=PLAIN"), Some(1.0));
        assert_eq!(capability(&m, "starttls", "STARTTLS"), Some(1.0));
        m.assert_only_failure("starttls-bad", "auth", "auth_failed");
        assert_up(&m, "implicit");
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
        let targets = [
            f.target("slow", "smtp", slow.submissions, "implicit", None),
            f.target("too-slow", "smtp", too_slow.submissions, "implicit", None),
        ];
        let m = run_once(&f.config("2s", &targets), &["slow", "too-slow"]).await;
        assert_up(&m, "slow");
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
        let targets = [f.target("refused", "smtp", exim.smtp, "starttls", None)];
        let m = run_once(&f.config("5s", &targets), &["refused"]).await;
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
        let targets = vec![
            f.target("imap-good", "imap", dovecot.imap, "starttls", Some(&f.good)),
            f.target(
                "imap-bad",
                "imap",
                dovecot.imaps,
                "implicit",
                Some(&f.wrong),
            ),
            f.target("imap-plain", "imap", dovecot.imap, "none", Some(&f.good)),
            f.target("pop3-good", "pop3", dovecot.pop3, "starttls", Some(&f.good)),
            f.target(
                "pop3-bad",
                "pop3",
                dovecot.pop3s,
                "implicit",
                Some(&f.wrong),
            ),
            f.target("smtp-good", "smtp", exim.smtp, "starttls", Some(&f.good)),
            f.target(
                "smtp-bad",
                "smtp",
                exim.submissions,
                "implicit",
                Some(&f.wrong),
            ),
            f.target("smtp-plain", "smtp", exim.smtp, "none", Some(&f.good)),
        ];
        let names = [
            "imap-good",
            "imap-bad",
            "imap-plain",
            "pop3-good",
            "pop3-bad",
            "smtp-good",
            "smtp-bad",
            "smtp-plain",
        ];
        let config_path = f.dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, f.config("5s", &targets)).unwrap();

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
