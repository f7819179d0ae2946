//! Issue 15, scale without distortion: a failure wave does not stampede the site
//! checks. Real sockets on loopback and an nftables drop rule.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::support::DropRule;
use crate::support::agent::{Agent, NO_RESOLVER, within};
use crate::support::ports::{closed_port, open_port};

/// Connections a nonblocking listener has queued since the last call (the kernel
/// completes them in the backlog; each site measurement opens one to a canary).
fn drain_accepted(listener: &TcpListener) -> usize {
    let mut accepted = 0;
    while listener.accept().is_ok() {
        accepted += 1;
    }
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_15_a_failure_wave_is_served_by_one_fresh_site_measurement() {
    within(Duration::from_secs(90), async {
        const TARGETS: usize = 400;
        // The site's uplink "goes down" for every target at once: their packets are
        // dropped, so all of them time out together and all need site evidence.
        let dark = closed_port();
        let _dark = DropRule::drop_tcp(dark);
        let (canary, canary_addr) = open_port();
        canary.set_nonblocking(true).expect("nonblocking canary");
        let mut yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             max_concurrent_probes: {TARGETS}\n\
             defaults: {{interval: 1h, timeout: 1s, start_jitter: 0s}}\n\
             site: {{gateway: none, resolvers: [\"{NO_RESOLVER}\"], canaries: [\"{canary_addr}\"]}}\n\
             targets:\n"
        );
        let names: Vec<String> = (0..TARGETS).map(|i| format!("wave{i:03}")).collect();
        for name in &names {
            yaml += &format!(
                "  - {{name: {name}, protocol: tcp, host: 127.0.0.1, port: {}}}\n",
                dark.port()
            );
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (agent, results) = Agent::start_and_wait(&yaml, &names).await;

        assert!(
            results
                .iter()
                .all(|judged| judged.failure().map(|f| f.kind.as_metrics_label())
                    == Some("connect_timeout")),
            "every target of the wave times out"
        );
        // Every verdict rests on site evidence, and the same few measurements serve
        // all of them: the one running when the wave came (if it started after the
        // probes) and at most one started for it.
        let measurements: BTreeSet<*const _> = results
            .iter()
            .map(|judged| {
                let site = judged.site.as_ref().expect("a timeout needs site evidence");
                Arc::as_ptr(site)
            })
            .collect();
        assert!(
            measurements.len() <= 2,
            "{TARGETS} failures were judged on {} site measurements",
            measurements.len()
        );
        // The canary saw it too: the agent's first measurement plus those above.
        let canary_checks = drain_accepted(&canary);
        assert!(
            (1..=3).contains(&canary_checks),
            "the canary was checked {canary_checks} times for a wave of {TARGETS} failures"
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}
