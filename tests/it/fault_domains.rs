//! Fault attribution proved end to end: the real agent runs in a "site" network
//! namespace behind a router, with an "internet" (canary, reference resolver) and a
//! "provider" (Dovecot, authoritative DNS) — see tests/it/support/netns.rs. Each fault is
//! injected for real (link down, resolver stopped, stale zone, uplink dropped, packets
//! dropped, service stopped, expired certificate), the domain the agent blames is
//! checked in its log and on `/metrics`, then the fault is cleared and `none` checked
//! again.

use std::path::Path;

use crate::support::agent::Metrics;
use crate::support::binary::Binary;
use crate::support::netns::TestBed;

/// Probe interval and timeout in the bed: short, so each fault shows within seconds.
/// The interval leaves room for a failing probe's fresh site measurement (2 s).
const CONFIG_TIMING: &str = "{interval: 5s, timeout: 2s, start_jitter: 0s}";
/// How long a change may take to show: two intervals plus the site measurement.
const EXPECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(14);
/// Port the agent listens on inside the site namespace.
const AGENT_PORT: u16 = 9925;

fn config(bed: &TestBed, password_file: &Path, wrong_password_file: &Path) -> String {
    let imaps = bed.imaps;
    format!(
        "listen: \"{agent}:{AGENT_PORT}\"\n\
         defaults: {CONFIG_TIMING}\n\
         site:\n  gateway: auto\n  resolvers: [\"{site}\"]\n  reference_resolvers: [\"{reference}\"]\n  canaries: [\"{canary}\"]\n\
         targets:\n\
         \x20 - {{name: imap, protocol: imap, host: \"{ip}\", port: {port}, tls: implicit, server_name: mail.example.test, \
                  ca_file: \"{ca}\", auth: {{username: \"{user}\", password_file: \"{good}\"}}}}\n\
         \x20 - {{name: imap-wrong-password, protocol: imap, host: \"{ip}\", port: {port}, tls: implicit, server_name: mail.example.test, \
                  ca_file: \"{ca}\", auth: {{username: \"{user}\", password_file: \"{wrong}\"}}}}\n\
         \x20 - {{name: mx, protocol: dns, domain: example.test, record: MX}}\n\
         \x20 - {{name: gone, protocol: dns, domain: gone.example.test, record: MX}}\n",
        agent = bed.agent_ip,
        site = bed.site_resolver,
        reference = bed.reference_resolver,
        canary = bed.canary,
        ip = imaps.ip(),
        port = imaps.port(),
        ca = bed.ca_pem.display(),
        user = bed.user,
        good = password_file.display(),
        wrong = wrong_password_file.display(),
    )
}

/// The agent in the site namespace, and what it says.
struct SiteAgent {
    binary: Binary,
    since: usize,
    metrics_addr: std::net::SocketAddr,
}

impl SiteAgent {
    /// Remembers where the log is, so that [`expect`](Self::expect) only accepts
    /// lines logged after this (after a fault was injected or cleared).
    fn mark(&mut self) {
        self.since = self.binary.log.len();
    }

    /// Waits for the agent to log `target` turning `domain` (`none`: recovering) since
    /// the last [`mark`](Self::mark), then checks `/metrics` agrees. Bounded:
    /// [`Binary::wait_line`] gives up after 15 s, several probe intervals.
    fn expect(&mut self, bed: &TestBed, target: &str, domain: &str) {
        eprintln!("expecting {target}: {domain}");
        let needle = format!("\"target\":\"{target}\"");
        let wanted = |line: &str| {
            line.contains(&needle)
                && if domain == "none" {
                    line.contains("probe succeeded")
                } else {
                    line.contains("probe failed")
                        && line.contains(&format!("\"domain\":\"{domain}\""))
                }
        };
        if !self.binary.log[self.since..]
            .iter()
            .any(|line| wanted(line))
        {
            let deadline = std::time::Instant::now() + EXPECT_WITHIN;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match self.binary.next_line_with(&needle, left) {
                    Some(line) if wanted(&line) => break,
                    Some(_) => continue,
                    None => {
                        let said: Vec<&String> = self.binary.log[self.since..]
                            .iter()
                            .filter(|l| l.contains(&needle))
                            .collect();
                        panic!(
                            "{target} was not reported as {domain} within {EXPECT_WITHIN:?}; it said: {said:#?}"
                        );
                    }
                }
            }
        }
        let metrics = self.scrape(bed);
        assert_eq!(
            metrics.fault(target, domain),
            1.0,
            "{target} should be {domain}: {:?}",
            metrics.all("mailprobe_last_failure_info", &[("target", target)])
        );
    }

    fn scrape(&self, bed: &TestBed) -> Metrics {
        let (status, body) = bed
            .http_get_in_site(self.metrics_addr, "/metrics")
            .expect("scrape the agent");
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    fn site_fault(&self, bed: &TestBed) -> String {
        let metrics = self.scrape(bed);
        let hot = metrics.all("mailprobe_site_fault", &[]);
        let domains: Vec<&String> = hot
            .iter()
            .filter(|(_, v)| *v == 1.0)
            .map(|(l, _)| &l["domain"])
            .collect();
        assert_eq!(domains.len(), 1, "{hot:?}");
        domains[0].clone()
    }
}

#[test]
fn every_fault_is_blamed_on_the_right_domain_and_clears() {
    let mut bed = TestBed::start();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.pass");
    let wrong = dir.path().join("wrong.pass");
    std::fs::write(&good, format!("{}\n", bed.password)).unwrap();
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let config_path = dir.path().join("mailprobe.yaml");
    std::fs::write(&config_path, config(&bed, &good, &wrong)).unwrap();

    let command = bed.command_in_site(env!("CARGO_BIN_EXE_mailprobe"));
    let listen = format!("{}:{AGENT_PORT}", bed.agent_ip);
    let (binary, metrics_addr) = Binary::start_via(command, &config_path, &listen, "info");
    let mut agent = SiteAgent {
        binary,
        since: 0,
        metrics_addr,
    };

    // Healthy, except what is broken by design.
    agent.expect(&bed, "imap", "none");
    agent.expect(&bed, "mx", "none");
    agent.expect(&bed, "imap-wrong-password", "server_auth");
    agent.expect(&bed, "gone", "remote_dns");
    assert_eq!(agent.site_fault(&bed), "none");
    let m = agent.scrape(&bed);
    assert_eq!(m.value("mailprobe_site_gateway_up", &[]), 1.0);
    let canary = bed.canary.to_string();
    assert_eq!(
        m.value("mailprobe_site_canary_up", &[("canary", canary.as_str())]),
        1.0
    );
    let site_resolver = bed.site_resolver.ip().to_string();
    assert_eq!(
        m.value(
            "mailprobe_site_resolver_up",
            &[("resolver", site_resolver.as_str()), ("role", "site")]
        ),
        1.0
    );

    // The site's link goes down: no route at all.
    bed.site_link_down();
    agent.mark();
    agent.expect(&bed, "imap", "local_network");
    assert_eq!(agent.site_fault(&bed), "local_network");
    bed.site_link_up();
    agent.mark();
    agent.expect(&bed, "imap", "none");

    // The site resolver stops; public DNS still answers.
    bed.stop_site_resolver();
    agent.mark();
    agent.expect(&bed, "mx", "local_dns");
    assert_eq!(agent.site_fault(&bed), "local_dns");
    bed.start_site_resolver();
    agent.mark();
    agent.expect(&bed, "mx", "none");

    // The internal zone still points at the old provider after a migration.
    bed.site_resolver_serves_stale_mx("mx.old-provider.test");
    agent.mark();
    agent.expect(&bed, "mx", "local_dns");
    let m = agent.scrape(&bed);
    assert!(
        m.value(
            "mailprobe_failures_total",
            &[("target", "mx"), ("reason", "dns_mismatch")]
        ) >= 1.0
    );
    assert_eq!(
        m.value("mailprobe_dns_consistent", &[("target", "mx")]),
        0.0
    );
    bed.site_resolver_forwards();
    agent.mark();
    agent.expect(&bed, "mx", "none");

    // The uplink is dropped at the gateway: the gateway answers, nothing beyond it.
    bed.drop_uplink();
    agent.mark();
    agent.expect(&bed, "imap", "upstream");
    assert_eq!(agent.site_fault(&bed), "upstream");
    bed.restore_uplink();
    agent.mark();
    agent.expect(&bed, "imap", "none");

    // The provider silently drops packets; the rest of the internet works.
    bed.provider_drops_packets();
    agent.mark();
    agent.expect(&bed, "imap", "server_network");
    bed.provider_accepts();
    agent.mark();
    agent.expect(&bed, "imap", "none");

    // The service is stopped: connections are refused.
    bed.stop_dovecot();
    agent.mark();
    agent.expect(&bed, "imap", "server_service");
    bed.start_dovecot();
    agent.mark();
    agent.expect(&bed, "imap", "none");

    // An expired certificate.
    bed.use_expired_certificate();
    agent.mark();
    agent.expect(&bed, "imap", "server_tls");
    bed.use_valid_certificate();
    agent.mark();
    agent.expect(&bed, "imap", "none");
    assert_eq!(agent.site_fault(&bed), "none");
}
