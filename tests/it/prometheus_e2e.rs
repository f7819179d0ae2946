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

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::agent::{Agent, fast_loopback_config, http, open_and_closed_targets, within};
use crate::support::prometheus::{Prometheus, alerts, samples, with_short_for};

const TEST_LIMIT: Duration = Duration::from_secs(120);

/// How long until MailEndpointDown fires: a few 1 s scrapes and evaluations plus the
/// shortened 2 s `for:`, with a wide margin for a loaded 2-core CI machine.
const FIRING_DEADLINE: Duration = Duration::from_secs(60);

/// The `site` label the scrape configuration adds to every series of the agent.
const SITE: &str = "test-site";

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

/// The chunk of the MailEndpointDown alert for `target`, if Prometheus has one.
fn endpoint_down<'a>(body: &'a str, target: &str) -> Option<&'a str> {
    alerts(body).into_iter().find(|alert| {
        alert.contains("\"alertname\":\"MailEndpointDown\"")
            && alert.contains(&format!("\"target\":\"{target}\""))
    })
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
        let storage = format!("--storage.tsdb.path={}", dir.path().join("data").display());
        let prometheus = tokio::task::block_in_place(|| {
            Prometheus::start(dir.path(), "prometheus", &config_path, &[storage], &[])
        });
        let addr = prometheus.addr;

        // 3. Ready (TSDB open, rules loaded), then the alert for `closed` fires.
        prometheus.ready().await;
        let body = prometheus
            .poll_until("/api/v1/alerts", FIRING_DEADLINE, |body| {
                endpoint_down(body, "closed").is_some_and(|a| a.contains("\"state\":\"firing\""))
            })
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
