//! The agent's life: endpoints, reload (good and bad), graceful shutdown, and the
//! binary's signal handling (SIGHUP reloads, SIGTERM exits 0).

use std::time::Duration;

use crate::support::agent::{
    Agent, Metrics, NO_RESOLVER, config_with, fast_loopback_config, first_round, http,
    listener_target, open_and_closed_targets, within,
};
use crate::support::binary::Binary;
use crate::support::{Blackhole, closed_port, open_port};

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// An agent probing `open`, a listener on 127.0.0.1 (returned: keep it), once
/// it has the first result.
async fn agent_probing_an_open_port() -> (std::net::TcpListener, Agent) {
    let (open, addr) = open_port();
    let yaml = fast_loopback_config(&listener_target("open", addr));
    let (agent, _) = Agent::start_and_wait(&yaml, &["open"]).await;
    (open, agent)
}

#[tokio::test]
async fn health_readiness_and_both_metrics_formats_are_served() {
    within(TEST_LIMIT, async {
        let (_open, agent) = agent_probing_an_open_port().await;
        assert_eq!(http(agent.addr, "GET", "/-/healthy", &[]).await.0, 200);
        assert_eq!(http(agent.addr, "GET", "/-/ready", &[]).await.0, 200);

        let (status, text) = http(agent.addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        assert!(
            text.contains("# TYPE mailprobe_probes_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let m = Metrics::parse(&text);
        assert_eq!(m.value("mailprobe_targets", &[]), 1.0);
        assert_eq!(m.value("mailprobe_config_last_reload_successful", &[]), 1.0);
        assert_eq!(m.value("mailprobe_probe_overruns_total", &[]), 0.0);
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            m.all("mailprobe_build_info", &[("version", version)]).len(),
            1
        );
        assert!(m.value("process_resident_memory_bytes", &[]) > 1e6);
        assert!(m.value("process_open_fds", &[]) > 0.0);
        assert!(m.get("process_cpu_seconds_total", &[]).is_some());

        let (status, openmetrics) = http(
            agent.addr,
            "GET",
            "/metrics",
            &[(
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )],
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            openmetrics.ends_with("# EOF\n"),
            "OpenMetrics when asked for"
        );
        assert!(openmetrics.contains("# TYPE mailprobe_probes counter\n"));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_good_reload_swaps_targets_and_removes_the_old_series() {
    within(TEST_LIMIT, async {
        let (_first, first_addr) = open_port();
        let (_second, second_addr) = open_port();
        let yaml = fast_loopback_config(&listener_target("old", first_addr));
        let (mut agent, _) = Agent::start_and_wait(&yaml, &["old"]).await;
        assert_eq!(
            agent
                .metrics()
                .await
                .value("mailprobe_up", &[("target", "old")]),
            1.0
        );

        let new_targets = [
            listener_target("new-a", second_addr),
            listener_target("new-b", second_addr),
        ]
        .concat();
        std::fs::write(&agent.config_path, fast_loopback_config(&new_targets)).unwrap();
        let (status, body) = http(agent.addr, "POST", "/-/reload", &[]).await;
        assert_eq!((status, body.as_str()), (200, "reloaded: 2 targets\n"));
        agent.next_result("new-a").await;
        agent.next_result("new-b").await;
        let m = agent.metrics().await;
        assert_eq!(m.value("mailprobe_targets", &[]), 2.0);
        assert_eq!(m.value("mailprobe_config_last_reload_successful", &[]), 1.0);
        assert_eq!(m.value("mailprobe_up", &[("target", "new-a")]), 1.0);
        let old_series: Vec<_> = m
            .samples
            .keys()
            .filter(|s| s.labels.get("target").map(String::as_str) == Some("old"))
            .collect();
        assert_eq!(
            old_series,
            Vec::<&crate::support::agent::Series>::new(),
            "every series of the removed target is gone"
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_running_configuration_and_says_why() {
    within(TEST_LIMIT, async {
        let (_open, mut agent) = agent_probing_an_open_port().await;
        let before = agent.metrics().await.value(
            "mailprobe_config_last_reload_success_timestamp_seconds",
            &[],
        );

        std::fs::write(
            &agent.config_path,
            "targets:\n  - name: broken\n    protocol: gopher\n",
        )
        .unwrap();
        let (status, body) = http(agent.addr, "POST", "/-/reload", &[]).await;
        assert_eq!(status, 500);
        let file = agent.config_path.display().to_string();
        assert!(
            body.contains(&format!(
                "{file}:3:15: targets[0].protocol: unknown protocol `gopher`"
            )),
            "{body}"
        );
        // The same through the control handle (what SIGHUP uses).
        assert!(agent.control.reload().await.is_err());

        let m = agent.metrics().await;
        assert_eq!(m.value("mailprobe_config_last_reload_successful", &[]), 0.0);
        assert_eq!(
            m.value(
                "mailprobe_config_last_reload_success_timestamp_seconds",
                &[]
            ),
            before
        );
        assert_eq!(m.value("mailprobe_targets", &[]), 1.0);
        // The running configuration still probes.
        let result = agent.next_result("open").await;
        assert!(result.is_success());
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn shutdown_cancels_in_flight_probes_and_closes_the_listener() {
    within(TEST_LIMIT, async {
        // A target that hangs until its 30 s timeout: shutdown must not wait for it.
        let silent = Blackhole::new();
        let yaml = config_with(
            NO_RESOLVER,
            "1m",
            "30s",
            &listener_target("hanging", silent.addr),
        );
        let agent = Agent::start(&yaml).await;
        let metrics_addr = agent.addr;
        assert_eq!(http(metrics_addr, "GET", "/-/ready", &[]).await.0, 200);
        let started = std::time::Instant::now();
        agent.stop().await.expect("run returns Ok after shutdown");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not wait for the hanging probe"
        );
        let refused = tokio::net::TcpStream::connect(metrics_addr).await;
        assert!(refused.is_err(), "the listener is closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reloads_on_sighup_and_exits_zero_on_sigterm() {
    within(TEST_LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("mailprobe.yaml");
        let (_open, open_addr) = open_port();
        std::fs::write(
            &config_path,
            fast_loopback_config(&listener_target("one", open_addr)),
        )
        .unwrap();
        let (mut binary, addr) = tokio::task::block_in_place(|| Binary::start(&config_path));

        let targets = [
            listener_target("one", open_addr),
            listener_target("two", open_addr),
        ]
        .concat();
        std::fs::write(&config_path, fast_loopback_config(&targets)).unwrap();
        binary.signal(libc::SIGHUP);
        // The start-up line says `"targets":1`; the reload's says 2.
        let loaded = tokio::task::block_in_place(|| binary.wait_line("\"targets\":2"));
        assert!(loaded.contains("configuration loaded"), "{loaded}");
        let (_, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(Metrics::parse(&text).value("mailprobe_targets", &[]), 2.0);

        binary.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| binary.wait_exit());
        assert_eq!(status.code(), Some(0));
    })
    .await;
}

/// Prometheus' own checker accepts what the agent serves (`promtool check metrics`
/// reads the text format from standard input).
#[tokio::test]
async fn promtool_accepts_a_real_scrape() {
    within(TEST_LIMIT, async {
        let (_open, targets) = open_and_closed_targets();
        // The scrape must answer 200 (`Agent::metrics` asserts it); its text is checked.
        let (_, scrape) = first_round(&fast_loopback_config(&targets), &["open", "closed"]).await;
        crate::support::prometheus::assert_promtool_accepts(scrape.text).await;
    })
    .await;
}

#[tokio::test]
async fn probe_endpoint_runs_a_configured_target_now_and_answers_with_its_metrics_alone() {
    within(TEST_LIMIT, async {
        let closed_addr = closed_port();
        // A long interval: only /probe can make this target's probe happen in time.
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\ndefaults: {{interval: 1h, timeout: 1s}}\n\
             site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
             probe_endpoint: {{allow: [\"127.0.0.1\"]}}\ntargets:\n{}",
            listener_target("closed", closed_addr)
        );
        let agent = Agent::start(&yaml).await;
        assert_eq!(http(agent.addr, "GET", "/-/ready", &[]).await.0, 200);

        let (status, text) = http(agent.addr, "GET", "/probe?target=closed", &[]).await;
        assert_eq!(status, 200, "{text}");
        let m = Metrics::parse(&text);
        m.assert_only_failure("closed", "connect", "connect_refused");
        assert_eq!(m.fault("closed", "server_service"), 1.0);
        // One probe's answer: no agent-wide series, and no histogram (it would hold
        // one observation and start again with every request).
        assert_eq!(m.get("mailprobe_targets", &[]), None);
        assert_eq!(m.get("mailprobe_config_last_reload_successful", &[]), None);
        assert_eq!(m.all("mailprobe_protocol_phase_seconds_count", &[]), vec![]);
        assert!(!text.contains("_bucket"), "{text}");

        // Ad hoc: only hosts probe_endpoint.allow lists; never an open proxy.
        let (_open, open_addr) = open_port();
        let target = format!("127.0.0.1:{}", open_addr.port());
        let (status, text) = http(
            agent.addr,
            "GET",
            &format!("/probe?module=tcp&target={target}"),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            Metrics::parse(&text).value("mailprobe_up", &[("target", target.as_str())]),
            1.0
        );
        let (status, _) = http(
            agent.addr,
            "GET",
            "/probe?module=imap&target=127.0.0.2:993",
            &[],
        )
        .await;
        assert_eq!(status, 403);
        let (status, body) = http(
            agent.addr,
            "GET",
            "/probe?module=gopher&target=127.0.0.1:70",
            &[],
        )
        .await;
        assert_eq!(status, 400);
        assert!(body.contains("imap_starttls"), "{body}");
        assert_eq!(
            http(agent.addr, "GET", "/probe?target=nope", &[]).await.0,
            404
        );
        assert_eq!(http(agent.addr, "GET", "/probe", &[]).await.0, 400);
        agent.stop().await.expect("clean stop");
    })
    .await;
}
