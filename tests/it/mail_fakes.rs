//! Hostile and broken mail servers, simulated in-process because no real server
//! misbehaves like this on demand. Each test asserts the exact phase and reason on
//! `/metrics`, and that the probe ended within its timeout.

use std::future::Future;

use crate::support::agent::within;
use crate::support::fake::{FakeServer, Peer, TEST_LIMIT, probe_fake};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Probes target `fake` (`protocol`, `tls`) once against a fake running `script`
/// on every connection, and asserts that it failed, every time, in `phase` with
/// `reason`.
async fn fails_in<F, Fut>(protocol: &str, tls: &str, (phase, reason): (&str, &str), script: F)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    within(TEST_LIMIT, async {
        let server = FakeServer::start(script).await;
        let target = format!(
            "  - {{name: fake, protocol: {protocol}, host: 127.0.0.1, port: {}, tls: {tls}}}\n",
            server.addr.port()
        );
        let (m, _) = probe_fake(&target).await;
        m.assert_only_failure("fake", phase, reason);
    })
    .await;
}

/// Sends `greeting`, then only listens until the client hangs up.
async fn greets_then_listens(stream: TcpStream, greeting: &'static [u8]) {
    let mut peer = Peer::new(stream);
    let _ = peer.send(greeting).await;
    peer.until_closed().await;
}

/// An SMTP server answering EHLO with `ehlo`, `command` with `reply` and anything
/// else with 502.
async fn smtp_answering(
    stream: TcpStream,
    ehlo: &'static [u8],
    (command, reply): (&'static str, &'static [u8]),
) {
    let mut peer = Peer::new(stream);
    let _ = peer.send(b"220 fake ESMTP\r\n").await;
    while let Some(line) = peer.line().await {
        if line.starts_with("EHLO") {
            let _ = peer.send(ehlo).await;
        } else if line == command {
            let _ = peer.send(reply).await;
        } else {
            let _ = peer.send(b"502 no\r\n").await;
        }
    }
}

#[tokio::test]
async fn a_ten_megabyte_greeting_line_is_a_bad_greeting_not_a_memory_leak() {
    fails_in(
        "smtp",
        "none",
        ("greeting", "bad_greeting"),
        |stream| async move {
            let mut peer = Peer::new(stream);
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..160 {
                let _ = peer.send(&chunk).await;
            }
            let _ = peer.send(b"\r\n").await;
        },
    )
    .await;
}

#[tokio::test]
async fn an_endless_multi_line_ehlo_reply_is_cut_off_as_a_protocol_error() {
    fails_in(
        "smtp",
        "none",
        ("request", "protocol_error"),
        |stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"220 fake ESMTP\r\n").await;
            if peer.line().await.is_some() {
                // Until the client hangs up.
                while peer.send(b"250-PIPELINING\r\n").await {}
            }
        },
    )
    .await;
}

#[tokio::test]
async fn a_greeting_never_sent_is_a_greeting_timeout() {
    fails_in(
        "imap",
        "none",
        ("greeting", "greeting_timeout"),
        |stream| async move {
            Peer::new(stream).until_closed().await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_the_tls_handshake_is_connection_reset() {
    fails_in(
        "imap",
        "implicit",
        ("tls", "connection_reset"),
        |mut stream| async move {
            let mut hello = [0u8; 64];
            let _ = stream.read(&mut hello).await;
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        },
    )
    .await;
}

#[tokio::test]
async fn garbage_instead_of_a_tls_handshake_is_tls_handshake() {
    fails_in("imap", "implicit", ("tls", "tls_handshake"), |stream| {
        greets_then_listens(stream, b"* OK this is plain text, not TLS\r\n")
    })
    .await;
}

#[tokio::test]
async fn starttls_not_advertised_is_starttls_unavailable() {
    let ehlo = b"250-fake\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
    let quit = ("QUIT", &b"221 bye\r\n"[..]);
    let unavailable = ("starttls", "starttls_unavailable");
    fails_in("smtp", "starttls", unavailable, move |stream| {
        smtp_answering(stream, ehlo, quit)
    })
    .await;
}

#[tokio::test]
async fn data_injected_before_the_tls_handshake_is_refused() {
    // The go-ahead and a forged reply in one segment: a client that reads the
    // second after the handshake trusts plain-text data.
    let starttls = (
        "STARTTLS",
        &b"220 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n"[..],
    );
    let ehlo = b"250-fake\r\n250 STARTTLS\r\n";
    fails_in(
        "smtp",
        "starttls",
        ("starttls", "protocol_error"),
        move |stream| smtp_answering(stream, ehlo, starttls),
    )
    .await;
}

#[tokio::test]
async fn an_smtp_greeting_on_an_imap_target_is_a_bad_greeting() {
    // An IMAP target pointed at an SMTP port: the greeting is not IMAP.
    fails_in("imap", "none", ("greeting", "bad_greeting"), |stream| {
        greets_then_listens(stream, b"220 mail.example.test ESMTP\r\n")
    })
    .await;
}

/// Regression (found by fuzzing): a multi-byte character in the first bytes of an
/// untagged IMAP line made the probe panic, and the target was never probed again.
#[tokio::test]
async fn a_non_ascii_untagged_imap_line_is_a_protocol_error_not_a_panic() {
    fails_in(
        "imap",
        "none",
        ("request", "protocol_error"),
        |stream| async move {
            let mut peer = Peer::new(stream);
            let _ = peer.send(b"* OK ready\r\n").await;
            while let Some(line) = peer.line().await {
                let tag = line.split(' ').next().unwrap_or_default().to_owned();
                let _ = peer.send("* Grüße\r\n".as_bytes()).await;
                let _ = peer.send(format!("{tag} OK done\r\n").as_bytes()).await;
            }
        },
    )
    .await;
}
