//! In-process fake servers, only for misbehaviour no real server produces on demand
//! (a 10 MB line, an endless reply, a reset in the middle of a TLS handshake, data
//! injected after STARTTLS …). Each accepts connections on 127.0.0.1 and runs a script
//! per connection; the listener task ends when the value is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::agent::{Agent, Metrics, hourly_loopback_config, http};

/// Limit on a whole test against a fake.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);
/// The probe timeout of a fake's target (that of [`hourly_loopback_config`]);
/// every probe must end within it.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One probe of the target `fake` (`target`: its line under `targets:`) by an
/// agent on loopback: asserts that it ended within its timeout, and returns the
/// scrape and the target's `/debug` page.
pub async fn probe_fake(target: &str) -> (Metrics, String) {
    let yaml = hourly_loopback_config(target);
    let (agent, results) = Agent::start_and_wait(&yaml, &["fake"]).await;
    assert!(
        results[0].duration <= PROBE_TIMEOUT + Duration::from_millis(200),
        "the probe is bounded by its timeout: {:?}",
        results[0].duration
    );
    let metrics = agent.metrics().await;
    let (_, debug) = http(agent.addr, "GET", "/debug?target=fake", &[]).await;
    agent.stop().await.expect("clean stop");
    (metrics, debug)
}

/// A listening fake; aborted on drop.
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    /// Listens on a free loopback port and runs `script` for every connection.
    pub async fn start<F, Fut>(script: F) -> FakeServer
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake server");
        let addr = listener.local_addr().expect("local addr");
        let script = std::sync::Arc::new(script);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(script(stream));
            }
        });
        FakeServer { addr, task }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A line-oriented view of a fake's connection.
pub struct Peer {
    reader: BufReader<TcpStream>,
}

impl Peer {
    /// Wraps an accepted connection.
    pub fn new(stream: TcpStream) -> Peer {
        Peer {
            reader: BufReader::new(stream),
        }
    }

    /// Sends raw bytes; false once the client has gone.
    pub async fn send(&mut self, data: &[u8]) -> bool {
        self.reader.get_mut().write_all(data).await.is_ok()
    }

    /// Reads one line from the client (without CRLF); `None` at EOF.
    pub async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    /// Waits for the client to close the connection.
    pub async fn until_closed(&mut self) {
        while self.line().await.is_some() {}
    }

    /// The raw stream, e.g. to read a TLS ClientHello.
    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}
