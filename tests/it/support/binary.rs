//! The real `mailprobe` binary as a child process: its JSON log is read line by line
//! from a pipe (each line an event, no polling), and it is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::agent::{Metrics, http};

/// The real binary, its JSON log read line by line from a pipe (each line arrives as
/// an event: no polling), killed on drop.
pub struct Binary {
    /// Every log line read so far.
    pub log: Vec<String>,
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    /// Starts `mailprobe --config FILE --listen 127.0.0.1:0` and returns it with the
    /// address it reports serving on.
    pub fn start(config_path: &std::path::Path) -> (Binary, SocketAddr) {
        Self::start_with(config_path, "info")
    }

    /// Like [`start`](Self::start) with a log filter (`RUST_LOG` syntax).
    pub fn start_with(config_path: &std::path::Path, log_filter: &str) -> (Binary, SocketAddr) {
        Self::start_via(
            Command::new(env!("CARGO_BIN_EXE_mailprobe")),
            config_path,
            "127.0.0.1:0",
            log_filter,
        )
    }

    /// Starts the agent through `command` (the binary itself, or a wrapper such as
    /// `ip netns exec NS …` whose last argument is the binary), listening on `listen`.
    pub fn start_via(
        mut command: Command,
        config_path: &std::path::Path,
        listen: &str,
        log_filter: &str,
    ) -> (Binary, SocketAddr) {
        let mut child = command
            .arg("--config")
            .arg(config_path)
            .args([
                "--listen",
                listen,
                "--log-format",
                "json",
                "--log-filter",
                log_filter,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mailprobe starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut binary = Binary {
            log: Vec::new(),
            child,
            lines,
        };
        let serving = binary.wait_line("serving /metrics");
        let address = serving
            .split("\"address\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {serving}"));
        (binary, address)
    }

    /// The next log line containing `needle`, or `None` after `patience` without one.
    pub fn next_line_with(&mut self, needle: &str, patience: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The next log line containing `needle`.
    pub fn wait_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(15)) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no log line with `{needle}`: {e}"),
            }
        }
    }

    /// The logged result (`probe succeeded` or `probe failed`) of each of
    /// `targets` (their `"target"` values in the log), in that order, waiting for
    /// those not read yet. The first result of a target is always logged (a state
    /// change), and may have been read while waiting for another one. Blocking.
    pub fn results_logged(&mut self, targets: &[&str]) -> Vec<String> {
        let mut lines = Vec::new();
        for target in targets {
            let needle = format!("\"target\":\"{target}\"");
            let is_result = |line: &str| {
                line.contains(&needle)
                    && (line.contains("probe succeeded") || line.contains("probe failed"))
            };
            let seen = self.log.iter().find(|line| is_result(line)).cloned();
            lines.push(seen.unwrap_or_else(|| {
                loop {
                    let line = self.wait_line(&needle);
                    if is_result(&line) {
                        return line;
                    }
                }
            }));
        }
        lines
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped; no memory involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the process to exit: its stderr closes when it does.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(15)) {
                Ok(line) => self.log.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("mailprobe did not exit"),
            }
        }
        self.child.wait().expect("wait for mailprobe")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the binary showed in a [`traced_run`].
pub struct Shown {
    /// The scrape once every result was logged.
    pub metrics: Metrics,
    /// Every output a secret must never appear in, as `(place, text)`:
    /// `/metrics`, then `/debug?target=NAME` of each target asked for, then
    /// `the log` (everything logged until the binary exited).
    pub outputs: Vec<(String, String)>,
}

/// Runs the binary on `config_path` logging everything at the most verbose
/// level, libraries included, until the result of each of `logged` (its
/// `"target"` value in the log) is logged; then reads `/metrics` (must answer
/// 200) and the `/debug` page of each of `debug` (each must answer 200), stops
/// it with SIGTERM (it must exit 0) and returns what it showed. Blocks in place:
/// needs the multi-thread runtime.
pub async fn traced_run(config_path: &Path, logged: &[&str], debug: &[&str]) -> Shown {
    let (mut binary, addr) =
        tokio::task::block_in_place(|| Binary::start_with(config_path, "trace"));
    tokio::task::block_in_place(|| binary.results_logged(logged));
    let (status, text) = http(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    let metrics = Metrics::parse(&text);
    let mut outputs = vec![("/metrics".to_owned(), text)];
    for name in debug {
        let (status, body) = http(addr, "GET", &format!("/debug?target={name}"), &[]).await;
        assert_eq!(status, 200, "{body}");
        outputs.push((format!("/debug?target={name}"), body));
    }
    binary.signal(libc::SIGTERM);
    let status = tokio::task::block_in_place(|| binary.wait_exit());
    assert_eq!(status.code(), Some(0));
    outputs.push(("the log".to_owned(), binary.log.join("\n")));
    Shown { metrics, outputs }
}

/// The forms a Basic password could leak in: itself and the header value for
/// `user`.
pub fn basic_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine as _;
    vec![
        password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
    ]
}

/// Asserts that no form of a secret, `forms`, appears in any output of
/// `outputs` (`(place, text)`).
pub fn assert_never_shown(outputs: &[(String, String)], forms: &[String]) {
    for form in forms {
        for (place, text) in outputs {
            assert!(!text.contains(form), "a password form appears in {place}");
        }
    }
}
