//! End to end with a real Prometheus: the agent probes an open and a closed port,
//! Prometheus 2.42 (Debian's `prometheus` package) scrapes it and evaluates the
//! shipped rule file deploy/prometheus/alerts.yml, and MailEndpointDown fires for the
//! closed target only, blaming the mail service (`server_service`).
//!
//! Why this test exists next to tests/prometheus_rules.rs: `promtool test rules` feeds
//! hand-written series to the rules; only a real scrape checks that the series the
//! agent actually serves (names, labels, the OpenMetrics negotiation) are the ones the
//! rules and their `query`-based annotations look up, together with the `site` label
//! that the scrape configuration adds.
//!
//! The rules' `for:` durations (minutes) are shortened to 2 s in a copy of the file;
//! nothing else in the rules is changed.
//!
//! Without /usr/bin/prometheus this test fails (it does not skip): `scripts/test`
//! installs it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::agent::{Agent, fast_loopback_config, http, open_and_closed_targets, within};
use crate::support::process::{retry_port_race, spawn_ready};
use crate::support::{ChildGuard, StartError, free_port};

const TEST_LIMIT: Duration = Duration::from_secs(120);

/// Where Debian's `prometheus` package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long Prometheus may take to answer 200 on `/-/ready` once it accepts TCP
/// (it opens an empty TSDB: well under a second when healthy).
const PROMETHEUS_READY_DEADLINE: Duration = Duration::from_secs(20);

/// How long until MailEndpointDown fires: a few 1 s scrapes and evaluations plus the
/// shortened 2 s `for:`, with a wide margin for a loaded 2-core CI machine.
const FIRING_DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two polls of Prometheus' HTTP API. Polling is the only way to wait:
/// Prometheus offers no event for "this alert now fires".
const POLL_PAUSE: Duration = Duration::from_millis(250);

/// The `site` label the scrape configuration adds to every series of the agent.
const SITE: &str = "test-site";

/// `rules` with every `for:` field set to `2s`, and how many were replaced.
/// Only lines whose first non-blank text is `for:` are fields; the file's comments
/// also mention `for:` and stay as they are.
fn with_short_for(rules: &str) -> (String, usize) {
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

/// A Prometheus configuration: scrape the agent every second with the `site` label,
/// evaluate `rules` every second.
fn prometheus_config(agent: SocketAddr, rules: &Path) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - \"{rules}\"\n\
         scrape_configs:\n\
         \x20 - job_name: mailprobe\n\
         \x20   static_configs:\n\
         \x20     - targets: [\"{agent}\"]\n\
         \x20       labels:\n\
         \x20         site: {SITE}\n",
        rules = rules.display()
    )
}

/// Starts Prometheus on `config` with its TSDB and log under `dir`, on a free port,
/// and waits until it accepts TCP. Blocking: call it inside `block_in_place`.
fn start_prometheus(dir: &Path, config: &Path) -> (ChildGuard, SocketAddr) {
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
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--web.enable-lifecycle");
            let log = dir.join("prometheus.log");
            let prometheus = spawn_ready("prometheus", cmd, &log, None, &[addr], config)?;
            Ok((prometheus, addr))
        },
    )
    .expect("start prometheus")
}

/// Polls `GET path` on Prometheus until `done` accepts the 200 body, and returns that
/// body; past `deadline` the test fails, quoting the last answer and Prometheus' log.
async fn poll_until(
    prometheus: &ChildGuard,
    addr: SocketAddr,
    path: &str,
    deadline: Duration,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = http(addr, "GET", path, &[]).await;
        if status == 200 && done(&body) {
            return body;
        }
        if start.elapsed() >= deadline {
            panic!(
                "{:?}",
                prometheus.error(&format!(
                    "GET {path} not as expected after {deadline:?}; last answer {status}: {body}"
                ))
            );
        }
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// The alerts in an `/api/v1/alerts` body, one JSON text per alert. Each chunk starts
/// at the alert's labels and holds its annotations, state and value; enough for
/// substring checks without a JSON parser.
fn alerts(body: &str) -> Vec<&str> {
    body.split("{\"labels\":").skip(1).collect()
}

/// The chunk of the MailEndpointDown alert for `target`, if Prometheus has one.
fn endpoint_down<'a>(body: &'a str, target: &str) -> Option<&'a str> {
    alerts(body).into_iter().find(|alert| {
        alert.contains("\"alertname\":\"MailEndpointDown\"")
            && alert.contains(&format!("\"target\":\"{target}\""))
    })
}

/// The samples of an instant-query body, one JSON text per series (from its labels to
/// its value).
fn samples(body: &str) -> Vec<&str> {
    body.split("{\"metric\":").skip(1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_mail_endpoint_down_for_a_refused_target_only() {
    within(TEST_LIMIT, async {
        // 1. The agent: one port that accepts, one that refuses.
        let (open, targets) = open_and_closed_targets();
        let agent = Agent::start(&fast_loopback_config(&targets)).await;

        // 2. Prometheus scraping it, with the shipped rules made fast.
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
        let (rules, replaced) = with_short_for(&std::fs::read_to_string(&shipped).unwrap());
        assert!(replaced >= 1, "no `for:` field in {}", shipped.display());
        let rules_path = dir.path().join("alerts.yml");
        std::fs::write(&rules_path, rules).unwrap();
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, prometheus_config(agent.addr, &rules_path)).unwrap();
        let (prometheus, addr) =
            tokio::task::block_in_place(|| start_prometheus(dir.path(), &config_path));

        // 3. Ready (TSDB open, rules loaded), then the alert for `closed` fires.
        poll_until(
            &prometheus,
            addr,
            "/-/ready",
            PROMETHEUS_READY_DEADLINE,
            |_| true,
        )
        .await;
        let body = poll_until(
            &prometheus,
            addr,
            "/api/v1/alerts",
            FIRING_DEADLINE,
            |body| {
                endpoint_down(body, "closed").is_some_and(|a| a.contains("\"state\":\"firing\""))
            },
        )
        .await;

        // 4. Only for `closed`, and its annotations say whose fault it is. The summary
        // and description look the domain up in mailprobe_last_failure_info with the
        // scrape's job and instance, so this also checks those labels line up.
        assert_eq!(endpoint_down(&body, "open"), None, "{body}");
        let alert = endpoint_down(&body, "closed").unwrap();
        for expected in [
            format!("\"site\":\"{SITE}\""),
            "\"severity\":\"critical\"".to_owned(),
            format!(
                "\"summary\":\"closed (tcp) is down from site {SITE}: \
                 server_service (connect_refused in connect)\""
            ),
            "Whose fault: the mail service itself (server_service)".to_owned(),
        ] {
            assert!(alert.contains(&expected), "no {expected} in {alert}");
        }

        // 5. Prometheus stored both targets' mailprobe_up under the scrape's site label.
        let (status, body) = http(addr, "GET", "/api/v1/query?query=mailprobe_up", &[]).await;
        assert_eq!(status, 200, "{body}");
        let series = samples(&body);
        for (target, up) in [("open", "1"), ("closed", "0")] {
            let found: Vec<_> = series
                .iter()
                .filter(|s| s.contains(&format!("\"target\":\"{target}\"")))
                .collect();
            assert_eq!(found.len(), 1, "one mailprobe_up for {target} in {body}");
            assert!(
                found[0].contains(&format!("\"site\":\"{SITE}\""))
                    && found[0].contains("\"job\":\"mailprobe\"")
                    && found[0].contains(&format!(",\"{up}\"]")),
                "mailprobe_up{{target=\"{target}\",site=\"{SITE}\"}} {up} in {body}"
            );
        }

        drop(prometheus);
        agent.stop().await.expect("clean stop");
        drop(open);
    })
    .await;
}
