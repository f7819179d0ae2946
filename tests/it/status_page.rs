//! The status page (`/`) and `/api/v1/status` of a running agent: Debian's headless
//! Chromium loads the page with scripts disabled and the rendered DOM names every
//! target and says, in words, whose fault the failing one is; the JSON says the same,
//! with the verdict sentence `mailprobe probe` prints. A target whose name is markup
//! stays text in the browser.
//!
//! Without /usr/bin/chromium the browser test fails (it does not skip): `scripts/test`
//! installs Debian's `chromium`. `MAILPROBE_SCREENSHOT_DIR=DIR` keeps a copy of the
//! screenshot (it is written under the test's temp dir, removed at the end).

use std::time::Duration;

use serde_json::Value;

use crate::support::agent::{Agent, NO_RESOLVER, config_with, http, listener_target, within};
use crate::support::browser::Chromium;
use crate::support::closed_port;

const TEST_LIMIT: Duration = Duration::from_secs(120);

/// A target name that is markup: on the page it must stay text.
const MARKUP_NAME: &str = "<img src=x onerror=alert(1)>\"'";

/// An agent with a healthy target `open`, a refused one `closed`, and a refused one
/// whose name is markup; returns it after each has a result, with the verdict
/// sentence of `closed` and the listener kept open.
async fn agent() -> (Agent, String, std::net::TcpListener) {
    let (open, addr) = crate::support::open_port();
    let closed = closed_port();
    let targets = listener_target("open", addr)
        + &listener_target("closed", closed)
        + &format!(
            "  - {{name: {}, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
            serde_json::to_string(MARKUP_NAME).unwrap(),
            closed.port()
        );
    let yaml = config_with(NO_RESOLVER, "1h", "2s", &targets);
    let (agent, results) = Agent::start_and_wait(&yaml, &["open", "closed", MARKUP_NAME]).await;
    assert!(results[0].is_success() && !results[1].is_success());
    (agent, results[1].verdict(), open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_without_javascript_shows_every_target_and_whose_fault() {
    within(TEST_LIMIT, async {
        let (agent, closed_verdict, _open) = agent().await;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://{}/?refresh=0", agent.addr);
        let capture = tokio::task::block_in_place(|| {
            let mut chromium = Chromium::start(dir.path());
            chromium.capture_without_scripts(&url, dir.path(), "status")
        });
        let dom = &capture.dom;

        // Every target is named in the targets table, the markup one as text.
        let table = dom
            .split("<table id=\"targets\">")
            .nth(1)
            .expect("the targets table");
        for name in [
            "<b>open</b>",
            "<b>closed</b>",
            "<b>&lt;img src=x onerror=alert(1)&gt;\"'</b>",
        ] {
            assert!(table.contains(name), "no {name} in {dom}");
        }
        assert!(
            !dom.contains("<img"),
            "markup from a target name became an element: {dom}"
        );
        // The failing target: whose fault, in the words `mailprobe probe` uses.
        assert!(
            closed_verdict.contains("refused the connection"),
            "{closed_verdict}"
        );
        assert!(
            dom.contains(&closed_verdict),
            "no `{closed_verdict}` in {dom}"
        );
        assert!(dom.contains("the provider:"), "{dom}");
        assert!(dom.contains("2 of 3 probes failing."), "{dom}");
        assert!(
            !dom.contains("http-equiv=\"refresh\""),
            "?refresh=0 keeps reloads off"
        );

        // The screenshot is a real PNG of the page.
        let png = std::fs::read(&capture.screenshot).expect("screenshot written");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
            "{} bytes",
            png.len()
        );
        if let Some(keep) = std::env::var_os("MAILPROBE_SCREENSHOT_DIR") {
            std::fs::copy(
                &capture.screenshot,
                std::path::Path::new(&keep).join("status.png"),
            )
            .expect("copy the screenshot");
        }
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn the_json_says_the_same_as_the_page() {
    within(TEST_LIMIT, async {
        let (agent, closed_verdict, _open) = agent().await;
        let (status, body) = http(agent.addr, "GET", "/api/v1/status", &[]).await;
        assert_eq!(status, 200, "{body}");
        let value: Value = serde_json::from_str(&body).expect("JSON");
        let targets = value["targets"].as_array().expect("targets");
        let by_name = |name: &str| {
            targets
                .iter()
                .find(|t| t["target"] == name)
                .unwrap_or_else(|| panic!("no {name} in {body}"))
        };
        assert_eq!(by_name("open")["state"], "up");
        let closed = by_name("closed");
        assert_eq!(closed["state"], "down");
        assert_eq!(closed["last"]["verdict"], closed_verdict.as_str());
        assert_eq!(closed["last"]["fault"], "server_service");
        assert_eq!(closed["last"]["failure"]["reason"], "connect_refused");
        assert_eq!(closed["recent"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            by_name(MARKUP_NAME)["debug"],
            "/debug?target=%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E%22%27"
        );
        assert_eq!(value["summary"]["down"], 2);
        assert_eq!(
            value["agent"]["config_file"],
            agent.config_path.display().to_string()
        );
        assert_eq!(value["changes"].as_array().map(Vec::len), Some(2));

        // The page itself: HTML, with the headers that keep it self-contained.
        let (status, page) = http(agent.addr, "GET", "/", &[]).await;
        assert_eq!(status, 200);
        assert!(
            page.contains("<meta http-equiv=\"refresh\" content=\"30\">"),
            "{page}"
        );
        let (status, _) = http(agent.addr, "GET", "/?refresh=1", &[]).await;
        assert_eq!(status, 400, "a refresh faster than 5 s is refused");

        // A rejected reload reaches the page's header.
        std::fs::write(&agent.config_path, "targets: [\n").unwrap();
        assert!(agent.control.reload().await.is_err());
        let (_, body) = http(agent.addr, "GET", "/api/v1/status", &[]).await;
        let value: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["agent"]["last_reload"]["successful"], false, "{body}");
        agent.stop().await.expect("clean stop");
    })
    .await;
}
