//! A fleet of sites behind NAT, end to end with Debian's Prometheus 2.42 and the
//! shipped files of deploy/fleet/: two "sites", each a mailprobe agent scraped by its
//! own agent-mode Prometheus (prometheus-agent.yml, with the flags of
//! mailprobe-prometheus-agent.service), remote-write to a third Prometheus started with
//! the remote-write receiver and central.yml's rules. The target failing at both sites
//! fires ProviderOutage at the centre; the one failing at one site does not. Then the
//! remote-write path is cut for a minute by an nftables rule that drops the packets (a
//! dead uplink, not a refusing centre), and the centre ends up with the samples of that
//! minute without a gap: the agents kept them in their WAL and sent them late.
//!
//! Also promtool on the fleet files: the agent config (`check config --agent`), the
//! central config with its rule files, and the fleet rules' unit tests.
//!
//! Changed from the shipped files, and only this: scrape and evaluation every second
//! instead of 30 s, `for:` 2 s, the addresses (loopback, free ports), and the
//! Alertmanager and self-scrape addresses (a closed port).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::prometheus_rules::{assert_every_alert_tested, run_promtool};
use crate::support::agent::{Agent, fast_loopback_config, http, listener_target, within};
use crate::support::prometheus::{Prometheus, alerts, with_short_for};
use crate::support::{DropRule, closed_port, open_port};

/// The whole test: start-up, firing, a minute of outage, the catch-up.
const TEST_LIMIT: Duration = Duration::from_secs(300);
/// How long the uplink is cut: the "one minute".
const OUTAGE: Duration = Duration::from_secs(60);
/// Until ProviderOutage fires at the centre: 1 s scrapes, a 5 s batch deadline, 1 s
/// evaluations and the 2 s `for:`, with room for a loaded 2-core machine.
const FIRING_DEADLINE: Duration = Duration::from_secs(90);
/// Until the outage's samples are at the centre once the link is back: a dropped SYN
/// is retried by the kernel within 16 s, a failed send after at most `max_backoff`
/// (10 s), then the backlog goes out at `max_shards` × `max_samples_per_send`.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(90);
/// The longest gap between two samples that still counts as none: scrapes are 1 s
/// apart, and a busy machine delays one by a few seconds.
const MAX_GAP_SECONDS: f64 = 5.0;
/// How much later than the cut a sample may still have been sent: one in flight
/// when the rule went in.
const SEND_SLACK_SECONDS: f64 = 3.0;

fn fleet_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/fleet")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `text` with the one occurrence of `from` replaced (the test fails if the shipped
/// file no longer has exactly one: the test must follow the file).
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` once in\n{text}");
    text.replacen(from, to, 1)
}

/// prometheus-agent.yml for a site whose mailprobe listens on `mailprobe`.
fn agent_config(mailprobe: SocketAddr, central: SocketAddr) -> String {
    let text = fleet_file("prometheus-agent.yml");
    let text = replace_once(&text, "scrape_interval: 30s", "scrape_interval: 1s");
    let text = replace_once(&text, "scrape_timeout: 10s", "scrape_timeout: 1s");
    let text = replace_once(&text, "[\"localhost:9925\"]", &format!("[\"{mailprobe}\"]"));
    replace_once(
        &text,
        "https://prometheus.example.net/api/v1/write",
        &format!("http://{central}/api/v1/write"),
    )
}

/// The flags of mailprobe-prometheus-agent.service's ExecStart, but for the paths and
/// the listen address, which each test process gets its own of.
fn unit_flags(storage: &Path) -> Vec<String> {
    let unit = fleet_file("mailprobe-prometheus-agent.service");
    let mut exec = String::new();
    for line in unit
        .lines()
        .skip_while(|line| !line.starts_with("ExecStart="))
    {
        exec.push_str(line.trim_end_matches('\\'));
        exec.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let mut flags: Vec<String> = exec
        .split_whitespace()
        .filter(|arg| arg.starts_with("--"))
        .filter(|arg| {
            [
                "--config.file=",
                "--storage.agent.path=",
                "--web.listen-address=",
            ]
            .iter()
            .all(|own| !arg.starts_with(own))
        })
        .map(str::to_owned)
        .collect();
    assert!(
        flags.contains(&"--enable-feature=agent,expand-external-labels".to_owned()),
        "{flags:?}"
    );
    flags.push(format!("--storage.agent.path={}", storage.display()));
    flags
}

/// central.yml and its two rule files (with `for: 2s`) in `dir`; returns its path.
fn central_config(dir: &Path) -> PathBuf {
    let closed = closed_port().to_string();
    let text = fleet_file("central.yml");
    let text = replace_once(&text, "evaluation_interval: 30s", "evaluation_interval: 1s");
    let text = replace_once(&text, "localhost:9093", &closed);
    let text = replace_once(&text, "localhost:9090", &closed);
    let path = dir.join("central.yml");
    std::fs::write(&path, text).unwrap();
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let (rules, replaced) = with_short_for(&std::fs::read_to_string(alerts).unwrap());
    assert!(replaced >= 1);
    std::fs::write(dir.join("alerts.yml"), rules).unwrap();
    let (rules, replaced) = with_short_for(&fleet_file("fleet-rules.yml"));
    assert!(replaced >= 1);
    std::fs::write(dir.join("fleet-rules.yml"), rules).unwrap();
    path
}

/// The ProviderOutage alert for `target` in an `/api/v1/alerts` body.
fn provider_outage<'a>(body: &'a str, target: &str) -> Option<&'a str> {
    alerts(body).into_iter().find(|alert| {
        alert.contains("\"alertname\":\"ProviderOutage\"")
            && alert.contains(&format!("\"target\":\"{target}\""))
    })
}

fn query_path(query: &str, time: Option<f64>) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    match time {
        Some(time) => format!("/api/v1/query?query={encoded}&time={time:.3}"),
        None => format!("/api/v1/query?query={encoded}"),
    }
}

/// The value of an instant query that returns one sample.
async fn single_value(prometheus: &Prometheus, query: &str) -> String {
    let (status, body) = http(prometheus.addr, "GET", &query_path(query, None), &[]).await;
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).expect("JSON");
    let result = value["data"]["result"].as_array().expect("a vector");
    assert_eq!(result.len(), 1, "one sample for {query}: {body}");
    result[0]["value"][1].as_str().expect("a value").to_owned()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// A gauge of a Prometheus' own /metrics (the first series of that name).
async fn own_metric(prometheus: &Prometheus, name: &str) -> f64 {
    let (status, body) = http(prometheus.addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200);
    body.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Whether a range-query body holds samples from at least `from` to at least `to`
/// with no gap over [`MAX_GAP_SECONDS`] between them.
fn covers_without_gap(body: &str, from: f64, to: f64) -> bool {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let Some([series]) = value["data"]["result"].as_array().map(Vec::as_slice) else {
        return false;
    };
    let times: Vec<f64> = series["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| pair[0].as_f64())
        .collect();
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return false;
    };
    *first <= from
        && *last >= to
        && times
            .windows(2)
            .all(|pair| pair[1] - pair[0] <= MAX_GAP_SECONDS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sites_fire_provider_outage_centrally_and_an_uplink_outage_leaves_no_gap() {
    within(TEST_LIMIT, async {
        // 1. mailprobe at two sites: `both_down` is refused at both, `one_down` at a only.
        let (_open, open_addr) = open_port();
        let closed = closed_port();
        let at_a = listener_target("both_down", closed) + &listener_target("one_down", closed);
        let at_b = listener_target("both_down", closed) + &listener_target("one_down", open_addr);
        let mailprobe_a = Agent::start(&fast_loopback_config(&at_a)).await;
        let mailprobe_b = Agent::start(&fast_loopback_config(&at_b)).await;

        // 2. The centre, then each site's agent-mode Prometheus writing to it.
        let dir = tempfile::tempdir().unwrap();
        let central_path = central_config(dir.path());
        let storage = format!(
            "--storage.tsdb.path={}",
            dir.path().join("central").display()
        );
        let receiver = "--web.enable-remote-write-receiver".to_owned();
        let central = tokio::task::block_in_place(|| {
            Prometheus::start(
                dir.path(),
                "central",
                &central_path,
                &[receiver, storage],
                &[],
            )
        });
        central.ready().await;
        let mut sites = Vec::new();
        for (site, mailprobe) in [("a", &mailprobe_a), ("b", &mailprobe_b)] {
            let config = dir.path().join(format!("agent-{site}.yml"));
            std::fs::write(&config, agent_config(mailprobe.addr, central.addr)).unwrap();
            let flags = unit_flags(&dir.path().join(format!("wal-{site}")));
            let agent = tokio::task::block_in_place(|| {
                let name = format!("agent-{site}");
                Prometheus::start(
                    dir.path(),
                    &name,
                    &config,
                    &flags,
                    &[("MAILPROBE_SITE", site)],
                )
            });
            agent.ready().await;
            sites.push((site, agent));
        }

        // 3. ProviderOutage fires centrally for the target both sites fail, naming
        // both, and not for the target only one site fails — although the centre has
        // both sites' series of it.
        let body = central
            .poll_until("/api/v1/alerts", FIRING_DEADLINE, |body| {
                provider_outage(body, "both_down")
                    .is_some_and(|a| a.contains("\"state\":\"firing\""))
            })
            .await;
        let alert = provider_outage(&body, "both_down").unwrap();
        assert!(alert.contains("Failing sites: a, b."), "{alert}");
        assert!(alert.contains("is failing from 2 of 2 sites"), "{alert}");
        assert_eq!(provider_outage(&body, "one_down"), None, "{body}");
        let one_down = "{target=\"one_down\"}";
        assert_eq!(
            single_value(&central, &format!("target:mailprobe_sites:count{one_down}")).await,
            "2"
        );
        assert_eq!(
            single_value(
                &central,
                &format!("target:mailprobe_sites_down_server_side:sum{one_down}")
            )
            .await,
            "1"
        );

        // 4. The uplink goes dark for a minute: packets to the centre are dropped.
        let cut = unix_now();
        let rule = DropRule::drop_tcp(central.addr);
        // The outage itself, not a synchronisation: it has to last a minute.
        tokio::time::sleep(OUTAGE).await;
        for (site, agent) in &sites {
            // Scraping went on, and nothing after the cut was sent.
            let scraped = own_metric(
                agent,
                "prometheus_remote_storage_highest_timestamp_in_seconds",
            )
            .await;
            let sent = own_metric(
                agent,
                "prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
            )
            .await;
            assert!(
                scraped >= cut + OUTAGE.as_secs_f64() - MAX_GAP_SECONDS,
                "site {site}: scraped up to {scraped}, cut at {cut}"
            );
            assert!(
                sent <= cut + SEND_SLACK_SECONDS,
                "site {site}: sent up to {sent} during the outage from {cut}"
            );
        }
        let restored = unix_now();
        drop(rule);

        // 5. The samples of the outage arrive, for both sites, without a gap.
        let window = (restored - cut + 2.0 * MAX_GAP_SECONDS).ceil();
        for (site, _) in &sites {
            let query = format!("mailprobe_up{{site=\"{site}\",target=\"both_down\"}}[{window}s]");
            let path = query_path(&query, Some(restored + MAX_GAP_SECONDS));
            central
                .poll_until(&path, CATCH_UP_DEADLINE, |body| {
                    covers_without_gap(body, cut, restored)
                })
                .await;
        }

        drop(sites);
        drop(central);
        mailprobe_a.stop().await.expect("clean stop");
        mailprobe_b.stop().await.expect("clean stop");
    })
    .await;
}

#[test]
fn promtool_accepts_the_fleet_configs_and_passes_the_fleet_rule_tests() {
    let output = run_promtool(&[
        "check",
        "config",
        "--agent",
        "deploy/fleet/prometheus-agent.yml",
    ]);
    assert!(output.contains("SUCCESS"), "{output}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("central.yml"), fleet_file("central.yml")).unwrap();
    std::fs::write(
        dir.path().join("fleet-rules.yml"),
        fleet_file("fleet-rules.yml"),
    )
    .unwrap();
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    std::fs::copy(alerts, dir.path().join("alerts.yml")).unwrap();
    let central = dir.path().join("central.yml");
    let output = run_promtool(&["check", "config", central.to_str().unwrap()]);
    assert!(output.contains("SUCCESS: 2 rule files found"), "{output}");
    let output = run_promtool(&["test", "rules", "deploy/fleet/fleet-rules_test.yml"]);
    assert!(
        output.contains("SUCCESS") && !output.contains("FAILED"),
        "{output}"
    );
    assert_every_alert_tested(
        "deploy/fleet/fleet-rules.yml",
        &["deploy/prometheus/alerts.yml"],
        "deploy/fleet/fleet-rules_test.yml",
        1,
    );
}
