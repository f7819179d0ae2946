//! Debian's headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: commands on the child's fd 3, answers on its fd 4, one
//! JSON message per NUL-terminated chunk), so that a page can be loaded with scripts
//! disabled and its rendered DOM read and screenshotted in one run. Why not the
//! command line: `--dump-dom` prints nothing once scripts are disabled, and
//! `--screenshot` writes no file then (Chromium 156), so neither can show a page as a
//! browser without JavaScript renders it. No WebSocket and no Node are needed.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one DevTools command (a navigation, a screenshot) may take on a loaded
/// 2-core machine; a healthy one answers in well under a second.
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// The window the page is laid out in: a laptop screen.
pub const WINDOW: (u32, u32) = (1280, 900);

/// What a page looked like in the browser.
pub struct Capture {
    /// The DOM after the browser parsed and laid out the page (`outerHTML`).
    pub dom: String,
    /// A PNG of the whole page.
    pub screenshot: PathBuf,
}

/// A headless Chromium with its own profile under a temp dir; killed on drop.
pub struct Chromium {
    child: Child,
    commands: std::io::PipeWriter,
    messages: mpsc::Receiver<Value>,
    /// Events and answers read while waiting for something else.
    pending: VecDeque<Value>,
    next_id: u64,
    stderr: PathBuf,
}

impl Chromium {
    /// Starts Chromium headless with its profile and log under `dir`.
    pub fn start(dir: &Path) -> Chromium {
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing: run scripts/test, which installs Debian's `chromium` package"
        );
        let (to_child, commands) = std::io::pipe().expect("pipe");
        let (answers, from_child) = std::io::pipe().expect("pipe");
        let (read_fd, write_fd) = (to_child.as_raw_fd(), from_child.as_raw_fd());
        let stderr = dir.join("chromium.log");
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                // Without these, Chromium keeps trying the internet, and this machine's
                // closed network refuses its connections many at a time.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("chromium log"));
        // SAFETY: between fork and exec only async-signal-safe calls (fcntl, dup2)
        // that move the two pipe ends to the descriptors Chromium expects.
        unsafe {
            command.pre_exec(move || place_fds(read_fd, write_fd));
        }
        let child = command.spawn().expect("chromium starts");
        drop((to_child, from_child));
        let (send, messages) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            let mut chunk = Vec::new();
            while reader.read_until(0, &mut chunk).is_ok_and(|n| n > 0) {
                chunk.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&chunk)
                    && send.send(value).is_err()
                {
                    break;
                }
                chunk.clear();
            }
        });
        Chromium {
            child,
            commands,
            messages,
            pending: VecDeque::new(),
            next_id: 1,
            stderr,
        }
    }

    /// Sends `method` (to the page `session`, or to the browser) and returns its result.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("send to chromium");
        let answer = self.wait(&format!("answer to {method}"), |m| m["id"] == json!(id));
        if let Some(error) = answer.get("error") {
            panic!("{method} failed: {error}");
        }
        answer["result"].clone()
    }

    /// Waits for the event `method` of `session`.
    pub fn event(&mut self, session: &str, method: &str) -> Value {
        self.wait(method, |m| {
            m["method"] == method && m["sessionId"] == session
        })
    }

    fn wait(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self.pending.iter().position(&wanted) {
            return self.pending.remove(index).expect("found above");
        }
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(message) if wanted(&message) => return message,
                Ok(other) => self.pending.push_back(other),
                Err(_) => panic!(
                    "no {what} from chromium within {COMMAND_DEADLINE:?}; its log:\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            }
        }
    }

    /// Opens a page with scripts disabled and returns its session.
    pub fn page_without_scripts(&mut self) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let owned = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        let session = Some(owned.as_str());
        self.call(session, "Page.enable", json!({}));
        self.call(
            session,
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        );
        self.call(
            session,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WINDOW.0, "height": WINDOW.1, "deviceScaleFactor": 1, "mobile": false}),
        );
        owned
    }

    /// Loads `url` in `session` and returns its DOM once the load event fired.
    pub fn load(&mut self, session: &str, url: &str) -> String {
        let navigated = self.call(Some(session), "Page.navigate", json!({"url": url}));
        assert!(
            navigated.get("errorText").is_none(),
            "cannot load {url}: {navigated}"
        );
        self.event(session, "Page.loadEventFired");
        let document = self.call(Some(session), "DOM.getDocument", json!({"depth": -1}));
        let html = self.call(
            Some(session),
            "DOM.getOuterHTML",
            json!({"nodeId": document["root"]["nodeId"]}),
        );
        html["outerHTML"].as_str().expect("outerHTML").to_owned()
    }

    /// A PNG of the whole page in `session`, written to `path`.
    pub fn screenshot(&mut self, session: &str, path: &Path) {
        let metrics = self.call(Some(session), "Page.getLayoutMetrics", json!({}));
        let height = metrics["cssContentSize"]["height"]
            .as_f64()
            .unwrap_or(f64::from(WINDOW.1));
        let shot = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": 0, "width": WINDOW.0, "height": height, "scale": 1},
            }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Loads `url` with scripts disabled, after proving on a page of its own that a
    /// script really does not run in this browser; returns the DOM and a screenshot
    /// saved as `dir/NAME.png`.
    pub fn capture_without_scripts(&mut self, url: &str, dir: &Path, name: &str) -> Capture {
        let session = self.page_without_scripts();
        let probe = self.load(
            &session,
            "data:text/html,<title>static</title><script>document.title='script ran'</script>",
        );
        assert!(
            probe.contains("<title>static</title>"),
            "scripts are not disabled: {probe}"
        );
        let dom = self.load(&session, url);
        let screenshot = dir.join(format!("{name}.png"));
        self.screenshot(&session, &screenshot);
        Capture { dom, screenshot }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts `read` on fd 3 and `write` on fd 4 without the close-on-exec flag: both are
/// first copied above fd 10, since either may already sit on 3 or 4.
fn place_fds(read: RawFd, write: RawFd) -> std::io::Result<()> {
    /// Above the descriptors the moves write to.
    const SCRATCH_FROM: RawFd = 10;
    // SAFETY: fcntl and dup2 on descriptors this process owns; both are
    // async-signal-safe.
    unsafe {
        let high_read = libc::fcntl(read, libc::F_DUPFD, SCRATCH_FROM);
        let high_write = libc::fcntl(write, libc::F_DUPFD, SCRATCH_FROM);
        if high_read < 0
            || high_write < 0
            || libc::dup2(high_read, 3) < 0
            || libc::dup2(high_write, 4) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
