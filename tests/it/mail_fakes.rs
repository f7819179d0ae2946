//! Hostile and broken mail servers, simulated in-process because no real server
//! misbehaves like this on demand. Each test asserts the exact phase and reason on
//! `/metrics`, and that the probe ended within its timeout.

use std::time::Duration;

use crate::support::agent::{Agent, Metrics, within};
use crate::support::fake::{FakeServer, Peer};
use tokio::io::AsyncReadExt;

const TEST_LIMIT: Duration = Duration::from_secs(60);
/// The probe timeout in these tests; every probe must end within it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn config(protocol: &str, tls: &str, addr: std::net::SocketAddr) -> String {
    format!(
        "listen: \"127.0.0.1:0\"\n\
         defaults: {{interval: 1h, timeout: 2s, start_jitter: 0s}}\n\
         site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
         targets:\n  - {{name: fake, protocol: {protocol}, host: 127.0.0.1, port: {}, tls: {tls}}}\n",
        addr.port()
    )
}

/// Runs one probe against `server` and returns the scrape.
async fn probe_once(protocol: &str, tls: &str, server: &FakeServer) -> Metrics {
    let mut agent = Agent::start(&config(protocol, tls, server.addr)).await;
    let result = agent.next_result("fake").await;
    assert!(
        result.duration <= PROBE_TIMEOUT + Duration::from_millis(200),
        "the probe is bounded by its timeout: {:?}",
        result.duration
    );
    let metrics = agent.metrics().await;
    agent.stop().await.expect("clean stop");
    metrics
}

#[tokio::test]
async fn a_ten_megabyte_greeting_line_is_a_bad_greeting_not_a_memory_leak() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..160 {
                let _ = peer.send(&chunk).await;
            }
            let _ = peer.send(b"\r\n").await;
        })
        .await;
        let m = probe_once("smtp", "none", &server).await;
        m.assert_only_failure("fake", "greeting", "bad_greeting");
    })
    .await;
}

#[tokio::test]
async fn an_endless_multi_line_ehlo_reply_is_cut_off_as_a_protocol_error() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"220 fake ESMTP\r\n").await;
            if peer.line().await.is_some() {
                // Until the client hangs up.
                while peer.send(b"250-PIPELINING\r\n").await {}
            }
        })
        .await;
        let m = probe_once("smtp", "none", &server).await;
        m.assert_only_failure("fake", "request", "protocol_error");
    })
    .await;
}

#[tokio::test]
async fn a_greeting_never_sent_is_a_greeting_timeout() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            Peer::new(stream).until_closed().await;
        })
        .await;
        let m = probe_once("imap", "none", &server).await;
        m.assert_only_failure("fake", "greeting", "greeting_timeout");
    })
    .await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_the_tls_handshake_is_connection_reset() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|mut stream| async move {
            let mut hello = [0u8; 64];
            let _ = stream.read(&mut hello).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        })
        .await;
        let m = probe_once("imap", "implicit", &server).await;
        m.assert_only_failure("fake", "tls", "connection_reset");
    })
    .await;
}

#[tokio::test]
async fn garbage_instead_of_a_tls_handshake_is_tls_handshake() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"* OK this is plain text, not TLS\r\n").await;
            peer.until_closed().await;
        })
        .await;
        let m = probe_once("imap", "implicit", &server).await;
        m.assert_only_failure("fake", "tls", "tls_handshake");
    })
    .await;
}

#[tokio::test]
async fn starttls_not_advertised_is_starttls_unavailable() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"220 fake ESMTP\r\n").await;
            while let Some(line) = peer.line().await {
                if line.starts_with("EHLO") {
                    let _ = peer
                        .send(b"250-fake\r\n250-PIPELINING\r\n250 SIZE 1000\r\n")
                        .await;
                } else if line == "QUIT" {
                    let _ = peer.send(b"221 bye\r\n").await;
                } else {
                    let _ = peer.send(b"502 no\r\n").await;
                }
            }
        })
        .await;
        let m = probe_once("smtp", "starttls", &server).await;
        m.assert_only_failure("fake", "starttls", "starttls_unavailable");
    })
    .await;
}

#[tokio::test]
async fn data_injected_before_the_tls_handshake_is_refused() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"220 fake ESMTP\r\n").await;
            while let Some(line) = peer.line().await {
                if line.starts_with("EHLO") {
                    let _ = peer.send(b"250-fake\r\n250 STARTTLS\r\n").await;
                } else if line == "STARTTLS" {
                    // The go-ahead and a forged reply in one segment: a client that
                    // reads the second after the handshake trusts plain-text data.
                    let _ = peer
                        .send(b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n")
                        .await;
                } else {
                    let _ = peer.send(b"502 no\r\n").await;
                }
            }
        })
        .await;
        let m = probe_once("smtp", "starttls", &server).await;
        m.assert_only_failure("fake", "starttls", "protocol_error");
    })
    .await;
}

#[tokio::test]
async fn an_smtp_greeting_on_an_imap_target_is_a_bad_greeting() {
    within(TEST_LIMIT, async {
        // An IMAP target pointed at an SMTP port: the greeting is not IMAP.
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"220 mail.example.test ESMTP\r\n").await;
            peer.until_closed().await;
        })
        .await;
        let m = probe_once("imap", "none", &server).await;
        m.assert_only_failure("fake", "greeting", "bad_greeting");
    })
    .await;
}

/// Regression (found by fuzzing): a multi-byte character in the first bytes of an
/// untagged IMAP line made the probe panic, and the target was never probed again.
#[tokio::test]
async fn a_non_ascii_untagged_imap_line_is_a_protocol_error_not_a_panic() {
    within(TEST_LIMIT, async {
        let server = FakeServer::start(|stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"* OK ready\r\n").await;
            while let Some(line) = peer.line().await {
                let tag = line.split(' ').next().unwrap_or_default().to_owned();
                let _ = peer.send("* Grüße\r\n".as_bytes()).await;
                let _ = peer.send(format!("{tag} OK done\r\n").as_bytes()).await;
            }
        })
        .await;
        let m = probe_once("imap", "none", &server).await;
        m.assert_only_failure("fake", "request", "protocol_error");
    })
    .await;
}
