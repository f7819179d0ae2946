//! Daemon processes owned by a test: killed on drop, output kept in a log file.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::free_port;

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

/// Starts a daemon on its fixed `listen` address when it has one (`fixed`), else
/// on 127.0.0.1 and a free port (`free(ip, port)`, retried on a port race). Inside
/// a network namespace (`in_netns`) a free port cannot be picked from the host, so
/// there `listen` is required.
pub fn fixed_or_free_port<L, T>(
    name: &str,
    listen: Option<L>,
    in_netns: bool,
    fixed: impl FnOnce(L) -> Result<T, StartError>,
    mut free: impl FnMut(IpAddr, u16) -> Result<T, StartError>,
) -> Result<T, StartError> {
    if let Some(listen) = listen {
        return fixed(listen);
    }
    if in_netns {
        return Err(StartError(format!("{name}: in_netns() needs listen()")));
    }
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    retry_port_race(|| free_port(ip), |port| free(ip, port))
}

/// A daemon's own temp dir, `NAME-XXXXXX`, for its config, log and state.
pub fn daemon_dir(name: &str) -> Result<tempfile::TempDir, StartError> {
    tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir()
        .map_err(|e| StartError(format!("{name}: tempdir: {e}")))
}

/// Writes a daemon's generated configuration file.
pub fn write_config(name: &str, path: &Path, text: String) -> Result<(), StartError> {
    fs::write(path, text).map_err(|e| StartError(format!("{name}: write {}: {e}", path.display())))
}

/// Spawns `cmd` (output to `log`) and returns once every address of `addrs`
/// accepts, polled from inside `netns` when it is `Some`; errors quote the log
/// and the configuration `conf`.
pub fn spawn_ready(
    name: &str,
    cmd: Command,
    log: &Path,
    netns: Option<&str>,
    addrs: &[SocketAddr],
    conf: &Path,
) -> Result<ChildGuard, StartError> {
    let mut child = ChildGuard::spawn(name, cmd, log)?;
    wait_all_ready(&mut child, netns, addrs, conf)?;
    Ok(child)
}

/// [`spawn_ready`] for a daemon that forks (Dovecot's helpers, Exim's
/// per-connection processes): it runs in a process group of its own, and the
/// [`ProcessGroup`] kills the whole group on drop, also when it never gets ready.
pub fn spawn_group_ready(
    name: &str,
    mut cmd: Command,
    log: &Path,
    netns: Option<&str>,
    addrs: &[SocketAddr],
    conf: &Path,
) -> Result<(ProcessGroup, ChildGuard), StartError> {
    cmd.process_group(0);
    let mut child = ChildGuard::spawn(name, cmd, log)?;
    let group = ProcessGroup(child.id());
    wait_all_ready(&mut child, netns, addrs, conf)?;
    Ok((group, child))
}

fn wait_all_ready(
    child: &mut ChildGuard,
    netns: Option<&str>,
    addrs: &[SocketAddr],
    conf: &Path,
) -> Result<(), StartError> {
    for addr in addrs {
        child
            .wait_ready_in(netns, *addr, READY_DEADLINE)
            .map_err(|e| e.with_config(conf))?;
    }
    Ok(())
}

/// Fails, quoting the log of `child` and `conf`, unless the first line the
/// server sends on `addr` (read from inside `netns`) starts with `want`. Why: a
/// mail daemon accepts connections before it can serve them (Dovecot greets
/// only once auth is up).
pub fn expect_greeting(
    child: &ChildGuard,
    netns: Option<&str>,
    addr: SocketAddr,
    want: &str,
    conf: &Path,
) -> Result<(), StartError> {
    let greeting = first_line_in(netns, addr, READY_DEADLINE);
    if greeting.as_deref().is_ok_and(|l| l.starts_with(want)) {
        return Ok(());
    }
    let what = format!("no `{want}` greeting on {addr}: {greeting:?}");
    Err(child.error(&what).with_config(conf))
}

/// Reads the first line a server sends on `addr` (without CRLF).
pub fn first_line(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line.trim_end().to_string())
}

/// [`first_line`], connecting from inside network namespace `netns` when `Some`.
pub fn first_line_in(
    netns: Option<&str>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<String> {
    match netns {
        None => first_line(addr, timeout),
        Some(ns) => super::netns::run_in(ns, || first_line(addr, timeout))?,
    }
}

/// `(uid, gid)` of a system user, from /etc/passwd.
pub fn system_user(name: &str) -> Result<(u32, u32), StartError> {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == name)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| {
            StartError(format!(
                "no system user {name:?}: is the package installed? (scripts/test installs it)"
            ))
        })
}

/// Makes `path` traversable by the daemon's unprivileged processes.
pub fn chmod_755(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// SIGKILLs a whole process group on drop, then waits (bounded) until none of
/// its processes is left running. Made by [`spawn_group_ready`].
/// Why: Dovecot's master forks log/auth/config/login/mail processes and Exim
/// forks one process per SMTP connection; killing only the master (what
/// [`ChildGuard`] does) would leave them serving open sessions after the test.
pub struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Ok(pgid) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: kill(2) only sends a signal; a negative pid addresses the group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let start = Instant::now();
        while group_running(self.0) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Whether any process of group `pgid` is still running (zombies don't count:
/// they hold no sockets, and orphans are reaped by init when it gets to them).
fn group_running(pgid: u32) -> bool {
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let stat = fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        // After the `(comm)` field: state, ppid, pgrp, ...
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" && f[0] != "X"
    })
}
