//! The real agent, started through `daemon::run` on 127.0.0.1 port 0, with helpers to
//! wait for probe results and to read `/metrics` as exact series.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailprobe::agent::{self, ControlHandle, DaemonError};
use mailprobe::judge::Judged;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// How long a test waits for one probe result: a few intervals of the short test
/// intervals, far below the test's own timeout.
pub const RESULT_DEADLINE: Duration = Duration::from_secs(20);

/// A `targets:` entry probing a TCP listener on 127.0.0.1.
pub fn listener_target(name: &str, addr: SocketAddr) -> String {
    format!(
        "  - {{name: {name}, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
        addr.port()
    )
}

/// A site resolver on loopback where nothing answers.
pub const NO_RESOLVER: &str = "127.0.0.1:9";

/// A configuration for `targets` probed every `interval` with `timeout`, all
/// starting at once, with no gateway and `resolver` as the only site resolver.
pub fn config_with(
    resolver: impl std::fmt::Display,
    interval: &str,
    timeout: &str,
    targets: &str,
) -> String {
    format!(
        "listen: \"127.0.0.1:0\"\n\
         defaults: {{interval: {interval}, timeout: {timeout}, start_jitter: 0s}}\n\
         site: {{gateway: none, resolvers: [\"{resolver}\"]}}\n\
         targets:\n{targets}"
    )
}

/// A configuration for `targets` probed every second, all starting at once, with no
/// gateway and a site resolver that never answers (loopback only).
pub fn fast_loopback_config(targets: &str) -> String {
    config_with(NO_RESOLVER, "1s", "1s", targets)
}

/// Like [`fast_loopback_config`], probed once an hour (each test sees the first
/// round only) with a 2 s timeout.
pub fn hourly_loopback_config(targets: &str) -> String {
    config_with(NO_RESOLVER, "1h", "2s", targets)
}

/// Targets `open`, a listener on 127.0.0.1 (returned: keep it to keep the port
/// open), and `closed`, a port where nothing listens.
pub fn open_and_closed_targets() -> (std::net::TcpListener, String) {
    let (open, addr) = super::ports::open_port();
    let targets = listener_target("open", addr) + &listener_target("closed", super::closed_port());
    (open, targets)
}

/// Runs an agent on `yaml` until each of `targets` has its first result; returns
/// those results, in that order, and the scrape after them. The agent must then
/// stop cleanly.
pub async fn first_round(yaml: &str, targets: &[&str]) -> (Vec<Arc<Judged>>, Metrics) {
    let (agent, results) = Agent::start_and_wait(yaml, targets).await;
    let metrics = agent.metrics().await;
    agent.stop().await.expect("clean stop");
    (results, metrics)
}

/// [`first_round`] of one target: its first result and the scrape after it.
pub async fn first_result(yaml: &str, target: &str) -> (Arc<Judged>, Metrics) {
    let (mut results, metrics) = first_round(yaml, &[target]).await;
    (results.remove(0), metrics)
}

/// Bounds a whole test: every network test must end, pass or fail.
pub async fn within<T>(limit: Duration, test: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, test)
        .await
        .expect("the test exceeded its time limit")
}

/// A running agent.
pub struct Agent {
    /// Where /metrics is served.
    pub addr: SocketAddr,
    /// Reload and result channels.
    pub control: ControlHandle,
    /// The configuration file (rewrite it, then reload).
    pub config_path: PathBuf,
    results: broadcast::Receiver<Arc<Judged>>,
    /// Results received while waiting for another target, oldest first.
    pending: std::collections::VecDeque<Arc<Judged>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
    _dir: tempfile::TempDir,
}

impl Agent {
    /// Writes `yaml` to a temp file, validates it and starts the daemon on it.
    pub async fn start(yaml: &str) -> Agent {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        let config = mailprobe::config::load(&config_path)
            .unwrap_or_else(|e| panic!("test configuration is invalid: {e}\n{yaml}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (control, handle) = agent::control();
        let results = handle.subscribe();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent::run(config, listener, control, async {
            let _ = stopped.await;
        }));
        Agent {
            addr,
            control: handle,
            config_path,
            results,
            pending: std::collections::VecDeque::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// [`start`](Self::start), then waits for the first result of each of
    /// `targets`; returns them in that order.
    pub async fn start_and_wait(yaml: &str, targets: &[&str]) -> (Agent, Vec<Arc<Judged>>) {
        let mut agent = Agent::start(yaml).await;
        let mut results = Vec::new();
        for target in targets {
            results.push(agent.next_result(target).await);
        }
        (agent, results)
    }

    /// Waits for the next result of `target` (results of other targets that arrive
    /// meanwhile are kept for their own `next_result`).
    pub async fn next_result(&mut self, target: &str) -> Arc<Judged> {
        if let Some(index) = self
            .pending
            .iter()
            .position(|r| &*r.result.target == target)
        {
            return self.pending.remove(index).expect("index found above");
        }
        let wait = async {
            loop {
                match self.results.recv().await {
                    Ok(result) if &*result.result.target == target => return result,
                    Ok(other) => self.pending.push_back(other),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("the agent stopped"),
                }
            }
        };
        tokio::time::timeout(RESULT_DEADLINE, wait)
            .await
            .unwrap_or_else(|_| {
                panic!("no result for target `{target}` within {RESULT_DEADLINE:?}")
            })
    }

    /// Scrapes /metrics in the Prometheus text format.
    pub async fn metrics(&self) -> Metrics {
        let (status, body) = http(self.addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Stops the agent the way a signal would and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("agent task");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the agent did not stop within 10 s")
            .expect("agent task panicked")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A minimal HTTP/1.1 client: one request, `Connection: close`, whole body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect to the agent");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        let text = String::from_utf8(raw).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (status, body)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("HTTP request to the agent timed out")
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// One sample: metric name and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    /// The sample name (with `_total`, `_bucket`… suffixes as exposed).
    pub name: String,
    /// The labels, sorted by name.
    pub labels: BTreeMap<String, String>,
}

/// A parsed scrape.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Every sample.
    pub samples: BTreeMap<Series, f64>,
    /// The raw text, for assertion messages.
    pub text: String,
}

impl Metrics {
    /// Parses the Prometheus text format (the subset the agent writes).
    pub fn parse(text: &str) -> Metrics {
        let mut samples = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in `{line}`"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            samples.insert(
                Series {
                    name: name.to_owned(),
                    labels,
                },
                value,
            );
        }
        Metrics {
            samples,
            text: text.to_owned(),
        }
    }

    /// Every sample called `name` whose labels include all of `labels`.
    pub fn all(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(|(series, _)| {
                series.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| series.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(series, value)| (series.labels.clone(), *value))
            .collect()
    }

    /// The value of the one sample called `name` with these labels; `None` when there
    /// is none; panics when the labels match several series.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.all(name, labels);
        assert!(
            found.len() <= 1,
            "{name} {labels:?} matches {} series: {found:?}",
            found.len()
        );
        found.first().map(|(_, v)| *v)
    }

    /// `target` failed, every time, in `phase` with `reason`: exactly one failure
    /// series, counting every failed probe; `mailprobe_up` 0; and
    /// `mailprobe_last_failure_info` naming the phase and reason.
    pub fn assert_only_failure(&self, target: &str, phase: &str, reason: &str) {
        let failures = self.all("mailprobe_failures_total", &[("target", target)]);
        assert_eq!(failures.len(), 1, "{target}: {failures:?}");
        assert_eq!(
            (
                failures[0].0["phase"].as_str(),
                failures[0].0["reason"].as_str()
            ),
            (phase, reason),
            "{target}"
        );
        assert!(failures[0].1 >= 1.0, "{target}");
        assert_eq!(
            self.value(
                "mailprobe_probes_total",
                &[("target", target), ("result", "failure")]
            ),
            failures[0].1,
            "{target}: every failed probe is counted under this phase and reason"
        );
        assert_eq!(
            self.value("mailprobe_up", &[("target", target)]),
            0.0,
            "{target}"
        );
        assert_eq!(
            self.value(
                "mailprobe_last_failure_info",
                &[("target", target), ("phase", phase), ("reason", reason)]
            ),
            1.0,
            "{target}"
        );
    }

    /// `target` is up and never failed: `mailprobe_up` 1 (else the assertion shows its
    /// last failure) and no failure series.
    pub fn assert_up(&self, target: &str) {
        assert_eq!(
            self.value("mailprobe_up", &[("target", target)]),
            1.0,
            "{target}: {:?}",
            self.all("mailprobe_last_failure_info", &[("target", target)])
        );
        assert_eq!(
            self.all("mailprobe_failures_total", &[("target", target)]),
            vec![],
            "{target}"
        );
    }

    /// `mailprobe_fault` of `target` for fault domain `domain`: 1 for the domain
    /// blamed, 0 for any other. The agent exports one series per target, at its
    /// current domain, so a probed target has exactly one.
    pub fn fault(&self, target: &str, domain: &str) -> f64 {
        let series = self.all("mailprobe_fault", &[("target", target)]);
        assert!(
            !series.is_empty() && series.iter().all(|(_, value)| *value == 1.0),
            "{target}: {series:?}"
        );
        self.get("mailprobe_fault", &[("target", target), ("domain", domain)])
            .unwrap_or(0.0)
    }

    /// Like [`get`](Self::get) but the series must exist.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name} {labels:?} in:\n{}", self.text))
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        labels.insert(name.trim_start_matches(',').to_owned(), value);
        rest = &after[end..];
    }
    labels
}
