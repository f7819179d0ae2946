//! Issue 16, the agent tried as an attacker and a careless administrator would: the
//! listener's limits with real sockets, the agent's own limits never blamed on the
//! provider, SIGTERM with requests in flight, configured files that are FIFOs or
//! devices, absurd durations, clear-text logins, secrets a server echoes, and
//! `check-config` where the secrets are not.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use crate::support::DropRule;
use crate::support::agent::{Agent, Metrics, http, within};
use crate::support::binary::Binary;
use crate::support::cli::{config_file, mailprobe, run};
use crate::support::netns::{MAIL_HOST, TestBed};

/// Reads from `stream` until the other side closes it; `false` when it stays open for
/// `patience` (then the peer still holds the connection).
fn closed_within(stream: &mut TcpStream, patience: Duration) -> bool {
    stream
        .set_read_timeout(Some(patience))
        .expect("read timeout");
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error) => {
                return !matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    }
}

/// The binary with its open-files limit set to `limit` (as `LimitNOFILE` would).
fn binary_with_fd_limit(config: &std::path::Path, limit: u64) -> (Binary, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    // SAFETY: setrlimit(2) is async-signal-safe and only touches the child's limits.
    unsafe {
        command.pre_exec(move || {
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Binary::start_via(command, config, "127.0.0.1:0", "info")
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_idle_and_half_sent_connections_are_closed_within_the_header_timeout() {
    within(Duration::from_secs(60), async {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             web: {{header_timeout: 1s}}\n\
             defaults: {{interval: 1h, timeout: 1s, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             targets:\n  - {{name: t, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
            open.local_addr().unwrap().port()
        );
        let agent = Agent::start(&yaml).await;
        let addr = agent.addr;
        let closed = tokio::task::spawn_blocking(move || {
            let mut idle = TcpStream::connect(addr).unwrap();
            let mut half = TcpStream::connect(addr).unwrap();
            half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            // Far longer than the header timeout, far shorter than forever.
            let patience = Duration::from_secs(10);
            (
                closed_within(&mut idle, patience),
                closed_within(&mut half, patience),
            )
        })
        .await
        .unwrap();
        assert_eq!(
            closed,
            (true, true),
            "(idle, half-sent) closed by the agent"
        );
        let (status, _) = http(addr, "GET", "/-/healthy", &[]).await;
        assert_eq!(status, 200, "the listener still serves");
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_three_hundred_idle_connections_make_no_probe_fail() {
    within(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let path = config_file(
            dir.path(),
            &format!(
                "web: {{max_connections: 16, header_timeout: 10s}}\n\
                 defaults: {{interval: 1s, timeout: 1s, start_jitter: 0s}}\n\
                 site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
                 targets:\n  - {{name: t, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
                open.local_addr().unwrap().port()
            ),
        );
        // Fewer descriptors than idle clients: without a cap they would take them all.
        let (mut binary, addr) =
            tokio::task::block_in_place(|| binary_with_fd_limit(std::path::Path::new(&path), 256));
        let idle: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        // Every one is closed by the agent: at once beyond the cap, after the header
        // timeout (10 s) within it. All the while, the probe runs once a second.
        let all_closed = tokio::task::spawn_blocking(move || {
            idle.into_iter()
                .all(|mut stream| closed_within(&mut stream, Duration::from_secs(20)))
        })
        .await
        .unwrap();
        assert!(all_closed, "an idle client kept its connection");
        let (status, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200, "{text}");
        let m = Metrics::parse(&text);
        let failures = m.value(
            "mailprobe_probes_total",
            &[("target", "t"), ("result", "failure")],
        );
        let successes = m.value(
            "mailprobe_probes_total",
            &[("target", "t"), ("result", "success")],
        );
        assert_eq!(failures, 0.0, "{}", binary.log.join("\n"));
        // About ten ran while the capped connections were held open.
        assert!(successes >= 5.0, "probes kept running: {successes}");
        assert!(
            !binary.log.iter().any(|l| l.contains("own limits")),
            "{}",
            binary.log.join("\n")
        );
        binary.signal(libc::SIGTERM);
        assert!(tokio::task::block_in_place(|| binary.wait_exit()).success());
        drop(open);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_running_out_of_file_descriptors_is_never_the_providers_fault() {
    within(Duration::from_secs(90), async {
        let dir = tempfile::tempdir().unwrap();
        // Every probe holds a socket for its whole timeout.
        let silent: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        let _drop = DropRule::drop_tcp(silent);
        let targets: String = (0..80)
            .map(|i| {
                format!(
                    "  - {{name: t{i}, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
                    silent.port()
                )
            })
            .collect();
        let path = config_file(
            dir.path(),
            &format!(
                "defaults: {{interval: 1h, timeout: 3s, start_jitter: 0s}}\n\
                 site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
                 targets:\n{targets}"
            ),
        );
        let (mut binary, addr) =
            tokio::task::block_in_place(|| binary_with_fd_limit(std::path::Path::new(&path), 48));
        tokio::task::block_in_place(|| binary.wait_line("own limits"));
        // Once the probes' timeouts free their sockets, the listener answers again.
        let (status, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200, "{text}");
        let m = Metrics::parse(&text);
        let local = m.all(
            "mailprobe_last_failure_info",
            &[("reason", "local_resources")],
        );
        assert!(
            !local.is_empty(),
            "some probe ran out of descriptors:\n{text}"
        );
        for (labels, _) in &local {
            assert_eq!(labels["domain"], "unknown", "{labels:?}");
            let target = labels["target"].as_str();
            let hot: Vec<String> = m
                .all("mailprobe_fault", &[("target", target)])
                .into_iter()
                .filter(|(_, v)| *v == 1.0)
                .map(|(l, _)| l["domain"].clone())
                .collect();
            assert_eq!(hot, ["unknown"], "{target}");
        }
        binary.signal(libc::SIGTERM);
        assert!(tokio::task::block_in_place(|| binary.wait_exit()).success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_sigterm_exits_at_once_with_a_probe_and_a_half_sent_request_in_flight() {
    within(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        // Accepts and never says a word: an IMAP greeting that never comes.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let path = config_file(
            dir.path(),
            &format!(
                "defaults: {{interval: 1h, timeout: 60s, start_jitter: 0s}}\n\
                 site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
                 targets:\n  - {{name: silent, protocol: imap, host: 127.0.0.1, port: {}, tls: none}}\n",
                silent.local_addr().unwrap().port()
            ),
        );
        let (mut binary, addr) =
            tokio::task::block_in_place(|| Binary::start(std::path::Path::new(&path)));
        // `/probe` answers 503 until the configuration is in force.
        tokio::task::block_in_place(|| binary.wait_line("configuration loaded"));
        silent.set_nonblocking(true).unwrap();
        let silent = tokio::net::TcpListener::from_std(silent).unwrap();
        // The scheduled probe and the /probe request both connect; the request's
        // answer is never read.
        let mut request = TcpStream::connect(addr).unwrap();
        request
            .write_all(b"GET /probe?target=silent HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut accepted = Vec::new();
        for _ in 0..2 {
            let (stream, _) = silent.accept().await.expect("a probe connects");
            accepted.push(stream);
        }
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
        binary.signal(libc::SIGTERM);
        // wait_exit gives up after 15 s without a log line: far less than the probe's
        // 60 s timeout that a shutdown waiting for the request would take.
        let exit = tokio::task::block_in_place(|| binary.wait_exit());
        assert!(exit.success(), "{exit:?}\n{}", binary.log.join("\n"));
        drop((accepted, request));
    })
    .await;
}

#[test]
fn issue_16_a_fifo_or_a_device_as_a_configured_file_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret.fifo");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let target = |auth: &str, extra: &str| {
        format!(
            "targets:\n  - {{name: imaps, protocol: imap, host: mail.example.test{auth}{extra}}}\n"
        )
    };
    let cases = [
        (
            target(
                &format!(
                    ", auth: {{username: u, password_file: \"{}\"}}",
                    fifo.display()
                ),
                "",
            ),
            "targets[0].auth.password_file: cannot read",
            "a FIFO (named pipe), not a regular file",
        ),
        (
            target(", auth: {username: u, password_file: /dev/zero}", ""),
            "targets[0].auth.password_file: cannot read `/dev/zero`",
            "a character device, not a regular file",
        ),
        (
            target("", ", ca_file: /dev/zero"),
            "targets[0].ca_file: cannot read `/dev/zero`",
            "a character device",
        ),
        (
            format!(
                "tls: {{ca_file: \"{}\"}}\n{}",
                fifo.display(),
                target("", "")
            ),
            "tls.ca_file: cannot read",
            "a FIFO (named pipe)",
        ),
    ];
    for (yaml, field, what) in cases {
        let path = config_file(dir.path(), &yaml);
        let run = mailprobe(&["check-config", &path]);
        assert_eq!(run.code, Some(1), "{yaml}\n{}", run.stderr);
        assert!(
            run.stderr.contains(field) && run.stderr.contains(what),
            "{yaml}\n{}",
            run.stderr
        );
    }
    let run = mailprobe(&["check-config", "/dev/zero"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        "/dev/zero: cannot read the configuration: it is a character device, not a regular \
         file (only regular files are read, so that a reload can never block or read without \
         end)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_a_reload_naming_a_fifo_is_rejected_and_keeps_the_running_config() {
    within(Duration::from_secs(30), async {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             defaults: {{interval: 1h, timeout: 1s, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             targets:\n  - {{name: t, protocol: tcp, host: 127.0.0.1, port: {port}}}\n"
        );
        let mut agent = Agent::start(&yaml).await;
        agent.next_result("t").await;
        let fifo = agent.config_path.with_file_name("pass.fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        std::fs::write(
            &agent.config_path,
            format!(
                "{yaml}  - {{name: m, protocol: imap, host: 127.0.0.1, port: {port}, \
                 auth: {{username: u, password_file: \"{}\"}}}}\n",
                fifo.display()
            ),
        )
        .unwrap();
        let error = agent.control.reload().await.unwrap_err().to_string();
        assert!(error.contains("a FIFO (named pipe)"), "{error}");
        let m = agent.metrics().await;
        assert_eq!(m.value("mailprobe_config_last_reload_successful", &[]), 0.0);
        assert_eq!(m.value("mailprobe_targets", &[]), 1.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// One configuration text and the error it must give, for the values issue 16 found
/// accepted or worded badly.
fn config_error(yaml: &str) -> String {
    mailprobe::config::from_str(yaml, std::path::Path::new("t.yaml"))
        .expect_err(yaml)
        .to_string()
}

#[test]
fn issue_16_absurd_durations_names_and_clear_text_logins_are_refused() {
    let target = "targets:\n  - {name: t, protocol: tcp, host: 127.0.0.1, port: 9";
    assert_eq!(
        config_error(&format!("{target}, interval: 10000000000000000000s}}\n")),
        "t.yaml:2:66: targets[0].interval: `10000000000000000000s` is too long: at most 7 days (`7d`)"
    );
    assert_eq!(
        config_error(&format!("{target}, interval: 1ms, timeout: 1ms}}\n")),
        "t.yaml:2:66: targets[0].interval: 1ms is too short: probe at most once a second (`1s`)"
    );
    assert_eq!(
        config_error(
            "defaults: {timeout: 8d}\ntargets:\n  - {name: t, protocol: tcp, host: h, port: 9}\n"
        ),
        "t.yaml:1:21: defaults.timeout: `8d` is too long: at most 7 days (`7d`)"
    );
    let bidi = config_error(
        "targets:\n  - {name: \"imap\u{202E}gnp.exe\", protocol: tcp, host: h, port: 9}\n",
    );
    assert!(
        bidi.contains("without control or text-direction characters"),
        "{bidi}"
    );
    let clear = config_error(
        "targets:\n  - {name: m, protocol: imap, host: h, tls: none, auth: {username: u, password_env: HOME}}\n",
    );
    assert!(
        clear.contains("targets[0].auth: target `m` would send its password in clear text"),
        "{clear}"
    );
    let allowed = mailprobe::config::from_str(
        "targets:\n  - {name: m, protocol: imap, host: h, tls: none, allow_plaintext_auth: true, auth: {username: u, password_env: HOME}}\n",
        std::path::Path::new("t.yaml"),
    );
    assert!(allowed.is_ok(), "{allowed:?}");
}

#[test]
fn issue_16_a_huge_document_and_a_broken_certificate_get_sentences() {
    let mut yaml = String::from("targets:\n");
    for i in 0..60_000 {
        yaml.push_str(&format!(
            "  - {{name: t{i}, protocol: tcp, host: 127.0.0.1, port: 9}}\n"
        ));
    }
    let error = config_error(&yaml);
    assert!(
        error.contains("the document is too large or too complex for a configuration"),
        "{}",
        &error[..error.len().min(300)]
    );
    assert!(!error.contains("Nodes {"), "no Rust debug text");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(
        &bad,
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = config_error(&format!(
        "tls: {{ca_file: \"{}\"}}\ntargets:\n  - {{name: t, protocol: tcp, host: h, port: 9}}\n",
        bad.display()
    ));
    assert!(
        error.contains("certificate 1 in") && error.contains("is not a valid X.509 certificate"),
        "{error}"
    );
    let invalid_utf8 = dir.path().join("pass");
    std::fs::write(&invalid_utf8, [0xff, 0xfe, b'\n']).unwrap();
    let error = config_error(&format!(
        "targets:\n  - {{name: m, protocol: imap, host: h, auth: {{username: u, password_file: \"{}\"}}}}\n",
        invalid_utf8.display()
    ));
    assert_eq!(error.matches("UTF-8").count(), 1, "{error}");
}

#[test]
fn issue_16_check_config_passes_the_example_without_its_secrets_unless_strict() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/example.yaml");
    let lenient = mailprobe(&["check-config", example]);
    assert_eq!(lenient.code, Some(0), "{}", lenient.stderr);
    assert!(
        lenient.stderr.contains("warning: ")
            && lenient
                .stderr
                .contains("password_env: environment variable"),
        "{}",
        lenient.stderr
    );
    assert!(lenient.stdout.contains(": OK"), "{}", lenient.stdout);
    let strict = mailprobe(&["check-config", "--strict", example]);
    assert_eq!(strict.code, Some(1), "{}", strict.stderr);
    assert!(strict.stderr.contains("is not set"), "{}", strict.stderr);
}

#[test]
fn issue_16_a_world_readable_password_file_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("imap.pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let path = config_file(
        dir.path(),
        &format!(
            "targets:\n  - {{name: m, protocol: imap, host: h, auth: {{username: u, password_file: \"{}\"}}}}\n",
            pass.display()
        ),
    );
    let run = mailprobe(&["check-config", "--strict", &path]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("targets[0].auth.password_file")
            && run
                .stderr
                .contains("is readable by every user of this machine"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("s3cret"));
}

/// Issue 16, against nginx in the namespace bed: the provider's HTTPS server
/// redirects into the agent's own host (loopback), to a metadata address
/// (link-local) and down to plain HTTP. Each fails in `request` with
/// `redirect_refused`; `allow_redirects` lets the downgrade through (it then reaches
/// nothing on port 80: refused, which proves it was followed).
#[test]
fn issue_16_redirects_to_loopback_link_local_or_plain_http_are_refused() {
    let bed = TestBed::start();
    let dir = tempfile::tempdir().unwrap();
    let target = |name: &str, path: &str, extra: &str| {
        format!(
            "  - {{name: {name}, protocol: https, url: \"https://{MAIL_HOST}{path}\", \
             ca_file: \"{}\"{extra}}}\n",
            bed.ca_pem.display()
        )
    };
    let path = config_file(
        dir.path(),
        &format!(
            "defaults: {{interval: 1h, timeout: 3s}}\n\
             site: {{gateway: none, resolvers: [\"{}\"]}}\n\
             targets:\n{}{}{}{}",
            bed.site_resolver,
            target("loopback", "/redirect/loopback", ""),
            target("link-local", "/redirect/link-local", ""),
            target("plain-http", "/redirect/plain-http", ""),
            target(
                "plain-http-allowed",
                "/redirect/plain-http",
                &format!(", allow_redirects: [{MAIL_HOST}]")
            ),
        ),
    );
    let probe = |name: &str| {
        let mut command = bed.command_in_site(env!("CARGO_BIN_EXE_mailprobe"));
        command.args(["probe", "--config", &path, "--json", name]);
        let outcome = run(command);
        assert_eq!(outcome.code, Some(1), "{name}: {}", outcome.stderr);
        outcome.json()[0].clone()
    };
    for name in ["loopback", "link-local", "plain-http"] {
        let report = probe(name);
        assert_eq!(report["failure"]["phase"], "request", "{name}: {report}");
        assert_eq!(
            report["failure"]["reason"], "redirect_refused",
            "{name}: {report}"
        );
        assert_eq!(report["fault"], "server_service", "{name}: {report}");
    }
    let followed = probe("plain-http-allowed");
    assert_eq!(
        followed["failure"]["reason"], "connect_refused",
        "{followed}"
    );
}
