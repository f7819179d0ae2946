//! The real binary run as a one-shot command (`probe`, `diagnose`, `check-config`),
//! killed if it outlives its limit, with its exit code and output.

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Each run of the binary must end within this: every check in a test has a timeout
/// of a few seconds.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A finished run.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// What it printed on stdout.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON; panics with both outputs when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `mailprobe ARGS`, killing it if it outlives [`RUN_LIMIT`].
pub fn mailprobe(args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    command.args(args);
    run(command)
}

/// Runs `command` with stdin closed — the binary, or a wrapper that execs it such
/// as `ip netns exec NS …` (the pid killed on a timeout must be the binary's
/// own) — killing it if it outlives [`RUN_LIMIT`].
pub fn run(mut command: Command) -> Run {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(RUN_LIMIT) {
        Ok(output) => output.expect("wait for mailprobe"),
        Err(_) => {
            // SAFETY: `pid` is our own child, not yet reaped (the waiting thread reaps it).
            unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
            panic!("{command:?} did not finish within {RUN_LIMIT:?}");
        }
    };
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `yaml` to a file in `dir` and returns its path as text.
pub fn config_file(dir: &std::path::Path, yaml: &str) -> String {
    let path = dir.join("mailprobe.yaml");
    std::fs::write(&path, yaml).expect("write the configuration");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}
