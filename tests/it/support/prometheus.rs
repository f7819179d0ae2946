//! Debian's Prometheus 2.42 as a test peer: started on a free loopback port with its
//! data and log under a temp dir, killed on drop; polled through its HTTP API (it
//! offers no event for "this alert fires now" or "these samples arrived").

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::agent::http;
use super::process::{retry_port_race, spawn_ready};
use super::{ChildGuard, StartError, free_port};

/// Where Debian's `prometheus` package puts the server.
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long Prometheus may take to answer 200 on `/-/ready` once it accepts TCP
/// (it opens an empty TSDB or WAL: well under a second when healthy).
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Pause between two polls of Prometheus' HTTP API.
pub const POLL_PAUSE: Duration = Duration::from_millis(250);

/// A running Prometheus (server or agent mode).
pub struct Prometheus {
    /// The process, with its log.
    pub child: ChildGuard,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Starts `prometheus --config.file=CONFIG --web.listen-address=(free port) ARGS`
    /// with `envs`, its log as `dir/NAME.log`, and waits until it accepts TCP.
    /// Blocking: call it inside `block_in_place`.
    pub fn start(
        dir: &Path,
        name: &str,
        config: &Path,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} is missing: run scripts/test, which installs Debian's `prometheus` package"
        );
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        retry_port_race(
            || free_port(localhost),
            |port| -> Result<_, StartError> {
                let addr = SocketAddr::new(localhost, port);
                let mut cmd = Command::new(PROMETHEUS);
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--web.listen-address={addr}"))
                    .args(args)
                    .envs(envs.iter().copied());
                let log = dir.join(format!("{name}.log"));
                let child = spawn_ready(name, cmd, &log, None, &[addr], config)?;
                Ok(Prometheus { child, addr })
            },
        )
        .unwrap_or_else(|e| panic!("start {name}: {e:?}"))
    }

    /// Polls `GET path` until `done` accepts the 200 body, and returns that body; past
    /// `deadline` the test fails, quoting the last answer and Prometheus' log.
    pub async fn poll_until(
        &self,
        path: &str,
        deadline: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let (status, body) = http(self.addr, "GET", path, &[]).await;
            if status == 200 && done(&body) {
                return body;
            }
            if start.elapsed() >= deadline {
                panic!(
                    "{:?}",
                    self.child.error(&format!(
                        "GET {path} not as expected after {deadline:?}; last answer {status}: {body}"
                    ))
                );
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Waits until `/-/ready` answers 200.
    pub async fn ready(&self) {
        self.poll_until("/-/ready", READY_DEADLINE, |_| true).await;
    }
}

/// `rules` with every `for:` field set to `2s`, and how many were replaced.
/// Only lines whose first non-blank text is `for:` are fields; the file's comments
/// also mention `for:` and stay as they are.
pub fn with_short_for(rules: &str) -> (String, usize) {
    let mut replaced = 0;
    let mut out = String::with_capacity(rules.len());
    for line in rules.lines() {
        let field = line.trim_start();
        if field.starts_with("for:") {
            let indent = &line[..line.len() - field.len()];
            out.push_str(indent);
            out.push_str("for: 2s");
            replaced += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, replaced)
}

/// The alerts in an `/api/v1/alerts` body, one JSON text per alert. Each chunk starts
/// at the alert's labels and holds its annotations, state and value; enough for
/// substring checks without a JSON parser.
pub fn alerts(body: &str) -> Vec<&str> {
    body.split("{\"labels\":").skip(1).collect()
}

/// The samples of an instant-query body, one JSON text per series (from its labels to
/// its value).
pub fn samples(body: &str) -> Vec<&str> {
    body.split("{\"metric\":").skip(1).collect()
}

/// Fails unless Prometheus' own checker accepts `scrape` (`promtool check metrics`
/// reads the text format from standard input).
pub async fn assert_promtool_accepts(scrape: String) {
    let checked = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool is installed (scripts/test installs Debian's prometheus)");
        promtool
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(scrape.as_bytes())
            .expect("feed promtool");
        promtool.wait_with_output().expect("promtool runs")
    })
    .await
    .unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
