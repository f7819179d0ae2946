//! The listener's `web:` settings: HTTPS with the configured certificate, and basic
//! authentication against bcrypt hashes, as Prometheus exporters do.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::agent::{Agent, http, within};
use crate::support::{TestPki, Validity};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// One HTTPS request trusting `ca`; returns the status code.
async fn https_status(
    addr: SocketAddr,
    ca: &std::path::Path,
    path: &str,
    authorization: Option<&str>,
) -> u16 {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("metrics.example.test").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the agent");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: metrics.example.test\r\nConnection: close\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line")
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn https_with_basic_auth_admits_only_the_configured_user() {
    within(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::new(dir.path());
        let (cert, key) = pki.issue("metrics.example.test", &["metrics.example.test"], Validity::Current);
        // Cost 4 keeps the test fast; production hashes use 10 or more.
        let hash = bcrypt::hash("scrape-secret", 4).unwrap();
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             web:\n  tls_server_config: {{cert_file: \"{}\", key_file: \"{}\"}}\n  basic_auth_users: {{prometheus: \"{hash}\"}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             targets:\n  - {{name: open, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
            cert.display(),
            key.display(),
            open.local_addr().unwrap().port()
        );
        let agent = Agent::start(&yaml).await;

        assert_eq!(https_status(agent.addr, &pki.ca_pem, "/metrics", None).await, 401);
        let wrong = basic("prometheus", "guess");
        assert_eq!(https_status(agent.addr, &pki.ca_pem, "/metrics", Some(&wrong)).await, 401);
        let stranger = basic("stranger", "scrape-secret");
        assert_eq!(https_status(agent.addr, &pki.ca_pem, "/metrics", Some(&stranger)).await, 401);
        let right = basic("prometheus", "scrape-secret");
        assert_eq!(https_status(agent.addr, &pki.ca_pem, "/metrics", Some(&right)).await, 200);
        assert_eq!(https_status(agent.addr, &pki.ca_pem, "/-/ready", Some(&right)).await, 200);
        // The status page and its JSON are behind the same TLS and login.
        for path in ["/", "/api/v1/status"] {
            assert_eq!(https_status(agent.addr, &pki.ca_pem, path, None).await, 401, "{path}");
            assert_eq!(https_status(agent.addr, &pki.ca_pem, path, Some(&right)).await, 200, "{path}");
        }

        // Plain HTTP gets no answer from an HTTPS listener.
        let plain = tokio::time::timeout(Duration::from_secs(5), async {
            let mut stream = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
            stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            response
        })
        .await
        .expect("the listener closes a plain-text connection");
        assert!(!String::from_utf8_lossy(&plain).contains("200 OK"));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn basic_auth_without_tls_still_guards_every_endpoint() {
    within(TEST_LIMIT, async {
        let hash = bcrypt::hash("scrape-secret", 4).unwrap();
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             web: {{basic_auth_users: {{prometheus: \"{hash}\"}}}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             targets:\n  - {{name: open, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
            open.local_addr().unwrap().port()
        );
        let agent = Agent::start(&yaml).await;
        for path in [
            "/",
            "/api/v1/status",
            "/metrics",
            "/debug?target=open",
            "/probe?target=open",
            "/-/ready",
        ] {
            let (status, _) = http(agent.addr, "GET", path, &[]).await;
            assert_eq!(status, 401, "{path}");
        }
        let (status, _) = http(agent.addr, "POST", "/-/reload", &[]).await;
        assert_eq!(status, 401);
        let right = basic("prometheus", "scrape-secret");
        let (status, _) = http(
            agent.addr,
            "GET",
            "/metrics",
            &[("Authorization", right.as_str())],
        )
        .await;
        assert_eq!(status, 200);
        agent.stop().await.expect("clean stop");
    })
    .await;
}
