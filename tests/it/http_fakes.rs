//! Hostile and broken web servers, simulated in-process over real TLS because no real
//! server misbehaves like this on demand: headers that never end, an answer that never
//! comes, bytes that are not HTTP, a body that never ends. Each test asserts the phase
//! and reason on `/metrics` and that the probe ended within its timeout.

use std::sync::Arc;
use std::time::Duration;

use crate::support::agent::{Metrics, within};
use crate::support::binary::{assert_never_shown, basic_forms};
use crate::support::certs::{TestPki, Validity};
use crate::support::fake::{FakeServer, TEST_LIMIT, probe_fake};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A TLS fake: the certificate for `127.0.0.1` from a test CA, and a script run over
/// each accepted TLS session after the request head has been read.
struct TlsFake {
    server: FakeServer,
    pki: TestPki,
    _dir: tempfile::TempDir,
}

impl TlsFake {
    async fn start<F, Fut>(script: F) -> TlsFake
    where
        F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = TestPki::new(dir.path());
        let (cert, key) = pki.issue("127.0.0.1", &["127.0.0.1"], Validity::Current);
        let acceptor = crate::support::certs::acceptor(&cert, &key);
        let script = Arc::new(script);
        let server = FakeServer::start(move |stream| {
            let acceptor = acceptor.clone();
            let script = Arc::clone(&script);
            async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if read_request_head(&mut tls).await {
                    script(tls).await;
                }
            }
        })
        .await;
        TlsFake {
            server,
            pki,
            _dir: dir,
        }
    }

    /// Runs one probe and returns the scrape and the `/debug` page.
    async fn probe_once(&self) -> (Metrics, String) {
        self.probe_once_with("").await
    }

    /// [`probe_once`](Self::probe_once) with `extra` keys on the target.
    async fn probe_once_with(&self, extra: &str) -> (Metrics, String) {
        probe_fake(&format!(
            "  - {{name: fake, protocol: https, url: \"https://127.0.0.1:{}/\", ca_file: {}{extra}}}\n",
            self.server.addr.port(),
            self.pki.ca_pem.display()
        ))
        .await
    }
}

/// Probes target `fake` once against a TLS fake running `script`, and asserts
/// that it failed, every time, in the request phase with `reason`.
async fn fails_in_request<F, Fut>(reason: &str, script: F)
where
    F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    within(TEST_LIMIT, async {
        let (m, _) = TlsFake::start(script).await.probe_once().await;
        m.assert_only_failure("fake", "request", reason);
    })
    .await;
}

/// Reads until the blank line ending the request head; false if the client left.
async fn read_request_head(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

#[tokio::test]
async fn headers_that_never_end_are_a_protocol_error_not_a_memory_leak() {
    fails_in_request("protocol_error", |mut tls| async move {
        let _ = tls.write_all(b"HTTP/1.1 200 OK\r\n").await;
        let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
        // 10 MB of headers, far past the 64 KiB the client buffers.
        for _ in 0..10_000 {
            if tls.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_in_the_request_phase() {
    fails_in_request("timeout", |tls| async move {
        // Hold the connection open, say nothing.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(tls);
    })
    .await;
}

#[tokio::test]
async fn bytes_that_are_not_http_are_a_protocol_error() {
    fails_in_request("protocol_error", |mut tls| async move {
        let _ = tls.write_all(b"* OK IMAP4rev1 ready\r\n").await;
        let _ = tls.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn an_endless_body_is_read_to_one_mebibyte_and_no_further() {
    within(TEST_LIMIT, async {
        let fake = TlsFake::start(|mut tls| async move {
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = format!("10000\r\n{}\r\n", "b".repeat(0x10000));
            // An endless chunked body: the client must stop on its own.
            while tls.write_all(chunk.as_bytes()).await.is_ok() {}
        })
        .await;
        let (m, debug) = fake.probe_once().await;
        assert_eq!(m.value("mailprobe_up", &[("target", "fake")]), 1.0);
        assert_eq!(
            m.value("mailprobe_http_status_code", &[("target", "fake")]),
            200.0
        );
        assert!(
            debug.contains("1048576 body bytes read (truncated)"),
            "{debug}"
        );
    })
    .await;
}

/// Issue 16: a server that puts our `Authorization` value in its answer (a
/// `WWW-Authenticate` challenge and the body) never gets it shown: not in `/debug`,
/// not in the metrics, in no form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_16_an_echoed_authorization_header_never_reaches_debug() {
    use base64::Engine as _;
    within(TEST_LIMIT, async {
        const PASSWORD: &str = "Ech0ed-Secret-71b2";
        // The fake has read the request head; it answers with what a server that
        // echoes our Authorization header would send back.
        let authorization = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("probe:{PASSWORD}"))
        );
        let fake = TlsFake::start(move |mut tls| {
            let authorization = authorization.clone();
            async move {
                let body = format!("you sent {authorization}, password {PASSWORD}");
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"{authorization}\"\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let pass = dir.path().join("web.pass");
        std::fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
        std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let (m, debug) = fake
            .probe_once_with(&format!(
                ", auth: {{username: probe, password_file: \"{}\"}}",
                pass.display()
            ))
            .await;
        m.assert_only_failure("fake", "auth", "auth_failed");
        assert!(
            debug.contains("www-authenticate: Basic realm=\"Basic <redacted>\""),
            "{debug}"
        );
        let outputs = [
            ("/debug".to_owned(), debug),
            ("/metrics".to_owned(), m.text.clone()),
        ];
        assert_never_shown(&outputs, &basic_forms("probe", PASSWORD));
    })
    .await;
}
