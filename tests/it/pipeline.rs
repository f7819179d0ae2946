//! Issue 11, one probe pipeline: a failure waiting for site evidence keeps no
//! concurrency slot, discovery never blocks the listener or shutdown, and every face
//! (the scheduler's `/metrics` and `/debug`, `/probe`, `mailprobe probe --json`,
//! `mailprobe diagnose --json`) reports the same fault domain for the same fault.
//! Real listeners, a real dnsmasq and nftables rules on loopback.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::support::agent::{Agent, Metrics, http, within};
use crate::support::binary::Binary;
use crate::support::cli::{config_file, mailprobe};
use crate::support::{Dnsmasq, DropRule, SilentDnsServer};

const SERVER_NAME: &str = "mail.example.test";

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_a_refused_target_keeps_no_slot_while_the_site_checks_are_slow() {
    within(Duration::from_secs(60), async {
        let healthy = TcpListener::bind("127.0.0.1:0").expect("bind");
        let healthy_port = healthy.local_addr().unwrap().port();
        // Every site check takes its full timeout: a resolver that never answers and
        // a canary whose packets are dropped.
        let resolver = SilentDnsServer::start();
        let canary: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
        let _silence = DropRule::drop_tcp(canary);
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             max_concurrent_probes: 1\n\
             defaults: {{interval: 1s, timeout: 1s, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"{}\"], canaries: [\"{canary}\"]}}\n\
             targets:\n\
             \x20 - {{name: closed, protocol: tcp, host: 127.0.0.1, port: {}}}\n\
             \x20 - {{name: healthy, protocol: tcp, host: 127.0.0.1, port: {healthy_port}}}\n",
            resolver.addr,
            closed_port()
        );
        let mut agent = Agent::start(&yaml).await;
        for _ in 0..10 {
            let result = agent.next_result("healthy").await;
            assert!(result.is_success(), "{:?}", result.failure());
        }
        let closed = agent.next_result("closed").await;
        assert_eq!(closed.fault.as_metrics_label(), "server_service");
        let m = agent.metrics().await;
        assert_eq!(
            m.value("mailprobe_probe_overruns_total", &[]),
            0.0,
            "a refused target waiting on the site checks would starve the healthy one"
        );
        assert!(
            m.value(
                "mailprobe_probes_total",
                &[("target", "healthy"), ("result", "success")]
            ) >= 10.0
        );
        let (status, debug) = http(agent.addr, "GET", "/debug?target=closed", &[]).await;
        assert_eq!(status, 200, "{debug}");
        assert!(
            debug.contains("FAILURE phase=connect reason=connect_refused domain=server_service"),
            "{debug}"
        );
        assert!(
            debug.contains("verdict: 127.0.0.1 refused the connection"),
            "{debug}"
        );
        agent.stop().await.expect("clean stop");
        drop(healthy);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_the_listener_answers_and_sigterm_exits_while_discovery_waits_on_a_dead_resolver()
{
    within(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let resolver = SilentDnsServer::start();
        // Discovery's questions each wait 20 s for the silent resolver.
        let path = config_file(
            dir.path(),
            &format!(
                "site: {{gateway: none, resolvers: [\"{}\"]}}\n\
                 targets:\n  - {{domain: example.test, interval: 1m, timeout: 20s}}\n",
                resolver.addr
            ),
        );
        let (mut binary, addr) = Binary::start(std::path::Path::new(&path));
        let (status, body) = http(addr, "GET", "/-/healthy", &[]).await;
        assert_eq!((status, body.as_str()), (200, "OK\n"));
        // The targets are counted before this line is logged.
        tokio::task::block_in_place(|| binary.wait_line("configuration loaded"));
        let (status, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        let m = Metrics::parse(&text);
        assert_eq!(
            m.value("mailprobe_targets", &[]),
            1.0,
            "only the -mx target runs while discovery waits"
        );
        binary.signal(libc::SIGTERM);
        let exit = binary.wait_exit();
        assert!(exit.success(), "{exit:?}\n{}", binary.log.join("\n"));
    })
    .await;
}

/// The fault domain a face reports for `target`, as `/metrics` one-hot says it.
fn domain_in(m: &Metrics, target: &str) -> String {
    let hot: Vec<String> = m
        .all("mailprobe_fault", &[("target", target)])
        .into_iter()
        .filter(|(_, value)| *value == 1.0)
        .map(|(labels, _)| labels["domain"].clone())
        .collect();
    assert_eq!(hot.len(), 1, "{target}: {hot:?}\n{}", m.text);
    hot[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_every_face_reports_the_same_fault_domain_for_the_same_fault() {
    within(Duration::from_secs(120), async {
        let dir = tempfile::tempdir().unwrap();
        let refused = closed_port();
        let silent = closed_port();
        let _drop = DropRule::drop_tcp(format!("127.0.0.1:{silent}").parse().unwrap());
        let dns = Dnsmasq::builder()
            .mx("example.test", SERVER_NAME, 10)
            .srv("_imaps._tcp.example.test", SERVER_NAME, refused, 0, 1)
            .srv("_pop3s._tcp.example.test", SERVER_NAME, silent, 0, 1)
            .a(SERVER_NAME, "127.0.0.1".parse().unwrap())
            .start()
            .expect("dnsmasq starts");
        let path = config_file(
            dir.path(),
            &format!(
                "listen: \"127.0.0.1:0\"\n\
                 defaults: {{interval: 1h, timeout: 2s, start_jitter: 0s}}\n\
                 site: {{gateway: none, resolvers: [\"{}\"]}}\n\
                 targets:\n\
                 \x20 - {{name: imaps, protocol: imap, host: {SERVER_NAME}, port: {refused}}}\n\
                 \x20 - {{name: pop3s, protocol: pop3, host: {SERVER_NAME}, port: {silent}}}\n",
                dns.addr
            ),
        );
        let expected = [
            ("imaps", refused, "server_service"),
            ("pop3s", silent, "server_network"),
        ];

        let yaml = std::fs::read_to_string(&path).unwrap();
        let mut agent = Agent::start(&yaml).await;
        for (name, _, domain) in expected {
            let judged = agent.next_result(name).await;
            assert_eq!(judged.fault.as_metrics_label(), domain, "scheduled {name}");
        }
        let scraped = agent.metrics().await;
        for (name, _, domain) in expected {
            assert_eq!(domain_in(&scraped, name), domain, "/metrics {name}");
            let (status, text) =
                http(agent.addr, "GET", &format!("/probe?target={name}"), &[]).await;
            assert_eq!(status, 200, "{text}");
            assert_eq!(
                domain_in(&Metrics::parse(&text), name),
                domain,
                "/probe {name}"
            );
        }
        agent.stop().await.expect("clean stop");

        for (name, _, domain) in expected {
            let run = mailprobe(&["probe", "--config", &path, "--json", name]);
            assert_eq!(run.code, Some(1), "{}", run.stderr);
            let report = run.json();
            assert_eq!(report[0]["fault"], domain, "probe --json {name}: {report}");
            assert_eq!(report[0]["target"], name);
            assert!(report[0]["verdict"].as_str().is_some_and(|v| !v.is_empty()));
            assert!(report[0]["site"]["measured_at"].is_string(), "{report}");
        }

        let run = mailprobe(&[
            "diagnose",
            "probe@example.test",
            "--config",
            &path,
            "--json",
            "--timeout",
            "2s",
        ]);
        let report = run.json();
        for (name, port, domain) in expected {
            let service = report["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["port"] == port)
                .unwrap_or_else(|| panic!("diagnose found no endpoint on {port}: {report}"));
            assert_eq!(
                service["fault"], domain,
                "diagnose --json {name}: {service}"
            );
        }
    })
    .await;
}
