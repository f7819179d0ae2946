//! Daemon processes owned by a test: killed on drop, output kept in a log file.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to accept TCP connections after being spawned.
/// Generous because CI machines have 2 cores shared with a parallel test run.
pub const READY_DEADLINE: Duration = Duration::from_secs(10);

/// Error from starting a test daemon. `Debug` prints the message as-is (not
/// escaped) so that `.expect()` / `?` in a test shows the daemon's log readably.
pub struct StartError(pub String);

impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// Appends the generated config file, numbered, since daemons report
    /// config errors by line number ("bad option at line 3").
    pub fn with_config(self, path: &Path) -> StartError {
        let text = fs::read_to_string(path).unwrap_or_default();
        let numbered: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{:3} {l}\n", i + 1))
            .collect();
        StartError(format!(
            "{}\n----- {} -----\n{numbered}-----",
            self.0,
            path.display()
        ))
    }
}

/// A spawned daemon that is SIGKILLed and reaped when dropped — including
/// during unwinding of a failed test — so no daemon outlives its test.
/// Its stdout and stderr go to `log` (never inherited: an inherited pipe would
/// keep the test runner's output open and interleave daemon noise with test output).
pub struct ChildGuard {
    child: Child,
    /// Where the daemon's stdout+stderr go; quoted in errors.
    pub log: PathBuf,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`.
    /// `name` is used in error messages.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, StartError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| StartError(format!("{name}: cannot open log {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| StartError(format!("{name}: cannot dup log fd: {e}")))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .map_err(|e| StartError(format!("{name}: cannot spawn {cmd:?}: {e}")))?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
            name: name.to_string(),
        })
    }

    /// The daemon's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Current content of the daemon's log file (empty string if unreadable).
    pub fn log_contents(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until `addr` accepts TCP connections or `deadline` passes, failing
    /// early if the daemon exits. Errors quote the daemon's log.
    pub fn wait_ready(&mut self, addr: SocketAddr, deadline: Duration) -> Result<(), StartError> {
        let child = &mut self.child;
        poll_tcp(addr, deadline, || match child.try_wait() {
            Ok(Some(status)) => Some(format!("exited early with {status}")),
            Ok(None) => None,
            Err(e) => Some(format!("try_wait failed: {e}")),
        })
        .map_err(|e| self.error(&e))
    }

    /// [`wait_ready`](Self::wait_ready), but the TCP connects are made from inside
    /// network namespace `netns` when it is `Some`. Why: an address inside a test
    /// bed namespace is not reachable from the host (the bed's `prohibit` route
    /// makes such a connect fail at once), so readiness must be polled from within.
    pub fn wait_ready_in(
        &mut self,
        netns: Option<&str>,
        addr: SocketAddr,
        deadline: Duration,
    ) -> Result<(), StartError> {
        let Some(ns) = netns else {
            return self.wait_ready(addr, deadline);
        };
        let child = &mut self.child;
        let polled = super::netns::run_in(ns, || {
            poll_tcp(addr, deadline, || match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited early with {status}")),
                Ok(None) => None,
                Err(e) => Some(format!("try_wait failed: {e}")),
            })
        });
        match polled {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.error(&e)),
            Err(e) => Err(self.error(&format!("cannot enter netns {ns}: {e}"))),
        }
    }

    /// Builds a `StartError` for this daemon that quotes its log.
    pub fn error(&self, what: &str) -> StartError {
        StartError(format!(
            "{} (pid {}): {what}\n----- {} -----\n{}\n-----",
            self.name,
            self.id(),
            self.log.display(),
            self.log_contents()
        ))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL; wait() reaps it so no zombie is left and
        // its listening sockets are closed before the temp dir is removed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` as a [`Command`], run inside network namespace `netns` when it is
/// `Some` (as `ip netns exec NETNS program`). `ip` execs the program, so the
/// child's pid (and process group) is the daemon's own and [`ChildGuard`] and
/// process-group kills reach it. `ip netns exec` also bind-mounts the files of
/// `/etc/netns/NETNS/` (e.g. `resolv.conf`) over `/etc` for that process.
pub fn command(program: impl AsRef<OsStr>, netns: Option<&str>) -> Command {
    match netns {
        None => Command::new(program),
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(program);
            cmd
        }
    }
}

/// Polls `addr` with TCP connects (short, growing backoff) until one succeeds
/// or `deadline` passes. Why: daemons give no readiness signal we can read, and
/// readiness polling with a deadline is the only acceptable wait in these tests.
/// Prefer [`ChildGuard::wait_ready`], which also quotes the daemon's log.
pub fn wait_tcp_ready(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    poll_tcp(addr, deadline, || None)
}

fn poll_tcp(
    addr: SocketAddr,
    deadline: Duration,
    mut gone: impl FnMut() -> Option<String>,
) -> Result<(), String> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(2);
    loop {
        if let Some(why) = gone() {
            return Err(format!("not ready on {addr}: {why}"));
        }
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() >= deadline => {
                return Err(format!("{addr} not accepting TCP after {deadline:?}: {e}"));
            }
            Err(_) => {}
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// Runs `start(port)` with a fresh port from `pick`, retrying up to 3 times
/// when the daemon failed because another process grabbed the port between
/// [`free_port`](super::ports::free_port) and the daemon's bind.
pub fn retry_port_race<T>(
    mut pick: impl FnMut() -> u16,
    mut start: impl FnMut(u16) -> Result<T, StartError>,
) -> Result<T, StartError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match start(pick()) {
            Err(e) if tries < 3 && e.0.contains("in use") => continue,
            other => return other,
        }
    }
}
