//! DNS targets against real dnsmasq and unbound on loopback: the agent is started
//! through `daemon::run`, and every test asserts the exact series on `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::agent::{first_result, first_round, within};
use crate::support::{Dnsmasq, SilentDnsServer, Unbound};

const TEST_LIMIT: Duration = Duration::from_secs(60);

/// `127.0.0.1:PORT`, as the agent labels a resolver on a port other than 53.
fn label(addr: SocketAddr) -> String {
    addr.to_string()
}

fn config(site: &[SocketAddr], reference: &[SocketAddr], target: &str) -> String {
    let list = |addrs: &[SocketAddr]| {
        addrs
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "listen: \"127.0.0.1:0\"\n\
         defaults: {{interval: 1h, timeout: 2s, start_jitter: 0s}}\n\
         site:\n  gateway: none\n  resolvers: [{}]\n  reference_resolvers: [{}]\n\
         targets:\n{target}",
        list(site),
        list(reference)
    )
}

fn provider_zone() -> Dnsmasq {
    Dnsmasq::builder()
        .mx("example.test", "mx1.example.test", 10)
        .mx("example.test", "mx2.example.test", 20)
        .a("mx1.example.test", "127.0.0.10".parse().unwrap())
        .srv("_imaps._tcp.example.test", "imap.example.test", 993, 0, 5)
        .cname("autodiscover.example.test", "mail.example.test")
        .a("mail.example.test", "127.0.0.11".parse().unwrap())
        .txt("example.test", "v=spf1 include:spf.example.net -all")
        .start()
        .expect("dnsmasq starts")
}

/// The site's internal zone still pointing at the old provider after a migration.
fn stale_site() -> Unbound {
    Unbound::builder()
        .local_zone("example.test.", "static")
        .local_data("example.test. MX 10 mx.old-provider.test.")
        .start()
        .expect("unbound starts")
}

#[tokio::test]
async fn mx_answer_that_matches_expect_everywhere_is_up_and_consistent() {
    within(TEST_LIMIT, async {
        let site = provider_zone();
        let reference = provider_zone();
        let (result, m) = first_result(
            &config(
                &[site.addr],
                &[reference.addr],
                "  - {name: mx, protocol: dns, domain: example.test, record: MX, \
                     expect: [mx1.example.test, mx2.example.test]}\n",
            ),
            "mx",
        )
        .await;
        assert!(result.is_success(), "{:?}", result.failure());
        let t = [("target", "mx"), ("protocol", "dns")];
        assert_eq!(m.value("mailprobe_up", &t), 1.0);
        for resolver in [label(site.addr), label(reference.addr)] {
            let r = [("target", "mx"), ("resolver", resolver.as_str())];
            assert_eq!(
                m.value("mailprobe_dns_records", &[r[0], r[1], ("type", "MX")]),
                2.0
            );
            assert_eq!(m.value("mailprobe_dns_expected_match", &r), 1.0);
            assert!(m.value("mailprobe_dns_lookup_duration_seconds", &r) > 0.0);
        }
        assert_eq!(m.value("mailprobe_dns_consistent", &t), 1.0);
        assert!(
            m.value(
                "mailprobe_phase_duration_seconds",
                &[t[0], ("phase", "resolve")]
            ) > 0.0
        );
        assert_eq!(
            m.value(
                "mailprobe_protocol_phase_seconds_count",
                &[("protocol", "dns"), ("phase", "resolve")]
            ),
            1.0
        );
        assert_eq!(
            m.all("mailprobe_phase_seconds_count", &[t[0]]),
            vec![],
            "a target keeps its own histogram only with phase_histogram: true"
        );
        assert_eq!(m.all("mailprobe_failures_total", &[t[0]]), vec![]);
        assert_eq!(m.fault("mx", "none"), 1.0);
        assert_eq!(
            m.all("mailprobe_fault", &[t[0]]).len(),
            1,
            "one series, at the current domain"
        );
        assert!(m.value("mailprobe_last_success_timestamp_seconds", &t) > 1.7e9);
        assert_eq!(
            m.value("mailprobe_probes_total", &[t[0], ("result", "success")]),
            1.0
        );
        assert_eq!(
            m.value("mailprobe_probes_total", &[t[0], ("result", "failure")]),
            0.0
        );
    })
    .await;
}

#[tokio::test]
async fn every_record_type_is_answered_in_normal_form() {
    within(TEST_LIMIT, async {
        let site = provider_zone();
        let targets = "  - {name: srv, protocol: dns, domain: _imaps._tcp.example.test, record: SRV, expect: [\"0 5 993 imap.example.test\"]}\n\
                       \x20 - {name: cname, protocol: dns, domain: autodiscover.example.test, record: CNAME, expect: [mail.example.test]}\n\
                       \x20 - {name: a, protocol: dns, domain: mail.example.test, record: A, expect: [127.0.0.11]}\n\
                       \x20 - {name: txt, protocol: dns, domain: example.test, record: TXT, expect: [\"v=spf1 include:spf.example.net -all\"]}\n";
        let names = ["srv", "cname", "a", "txt"];
        let (results, m) = first_round(&config(&[site.addr], &[], targets), &names).await;
        for (name, result) in names.iter().zip(&results) {
            assert!(result.is_success(), "{name}: {:?}", result.failure());
        }
        let site_label = label(site.addr);
        for (name, record) in [("srv", "SRV"), ("cname", "CNAME"), ("a", "A"), ("txt", "TXT")] {
            let r = [("target", name), ("resolver", site_label.as_str())];
            assert_eq!(m.value("mailprobe_dns_records", &[r[0], r[1], ("type", record)]), 1.0, "{name}");
            assert_eq!(m.value("mailprobe_dns_expected_match", &r), 1.0, "{name}");
            // No reference resolvers: consistency is unknown, so not exported.
            assert_eq!(m.get("mailprobe_dns_consistent", &[r[0]]), None);
        }
    })
    .await;
}

#[tokio::test]
async fn an_answer_other_than_expected_fails_with_dns_unexpected_answer() {
    within(TEST_LIMIT, async {
        let site = provider_zone();
        let (result, m) = first_result(
            &config(
                &[site.addr],
                &[],
                "  - {name: cutover, protocol: dns, domain: example.test, record: MX, expect: [mx.new-provider.test]}\n",
            ),
            "cutover",
        )
        .await;
        let failure = result.failure().expect("the probe fails");
        assert!(failure.message.contains("10 mx1.example.test."), "{}", failure.message);
        m.assert_only_failure("cutover", "resolve", "dns_unexpected_answer");
        let site_label = label(site.addr);
        let r = [("target", "cutover"), ("resolver", site_label.as_str())];
        assert_eq!(m.value("mailprobe_dns_expected_match", &r), 0.0);
        assert_eq!(m.value("mailprobe_dns_records", &[r[0], r[1], ("type", "MX")]), 2.0);
        // No reference resolver gives the expected answer either: public DNS is not cut over.
        assert_eq!(m.fault("cutover", "remote_dns"), 1.0);
    })
    .await;
}

#[tokio::test]
async fn a_name_that_does_not_exist_is_nxdomain_and_a_missing_type_is_nodata() {
    within(TEST_LIMIT, async {
        let site = provider_zone();
        let targets = "  - {name: missing, protocol: dns, domain: nosuchhost.example.test, record: A}\n\
                       \x20 - {name: no-aaaa, protocol: dns, domain: mx1.example.test, record: AAAA}\n";
        let (_, m) = first_round(&config(&[site.addr], &[], targets), &["missing", "no-aaaa"]).await;
        m.assert_only_failure("missing", "resolve", "dns_nxdomain");
        m.assert_only_failure("no-aaaa", "resolve", "dns_nodata");
        let site_label = label(site.addr);
        // A negative answer is an answer: zero records, not a missing series.
        assert_eq!(
            m.value("mailprobe_dns_records", &[("target", "missing"), ("resolver", site_label.as_str()), ("type", "A")]),
            0.0
        );
        assert_eq!(
            m.value("mailprobe_dns_records", &[("target", "no-aaaa"), ("resolver", site_label.as_str()), ("type", "AAAA")]),
            0.0
        );
    })
    .await;
}

#[tokio::test]
async fn servfail_and_refused_from_unbound_are_told_apart() {
    within(TEST_LIMIT, async {
        let refusing_upstream = Dnsmasq::builder().start().expect("dnsmasq starts");
        let site = Unbound::builder()
            .servfail_zone("broken.test.", refusing_upstream.addr)
            .refuse_zone("refused.test.")
            .start()
            .expect("unbound starts");
        let targets = "  - {name: servfail, protocol: dns, domain: mail.broken.test, record: MX}\n\
                       \x20 - {name: refused, protocol: dns, domain: mail.refused.test, record: MX}\n";
        let (_, m) = first_round(&config(&[site.addr], &[], targets), &["servfail", "refused"]).await;
        m.assert_only_failure("servfail", "resolve", "dns_servfail");
        m.assert_only_failure("refused", "resolve", "dns_refused");
        // No answer at all: the record count is unknown, so there is no series.
        assert_eq!(m.all("mailprobe_dns_records", &[("target", "servfail")]), vec![]);
    })
    .await;
}

#[tokio::test]
async fn a_silent_resolver_times_out_within_the_probe_timeout() {
    within(TEST_LIMIT, async {
        let silent = SilentDnsServer::start();
        let (result, m) = first_result(
            &config(
                &[silent.addr],
                &[],
                "  - {name: mx, protocol: dns, domain: example.test, record: MX, timeout: 1s}\n",
            ),
            "mx",
        )
        .await;
        assert!(
            result.duration < Duration::from_millis(1500),
            "bounded by the 1 s timeout: {:?}",
            result.duration
        );
        m.assert_only_failure("mx", "resolve", "dns_timeout");
        assert_eq!(m.all("mailprobe_dns_records", &[("target", "mx")]), vec![]);
        assert!(
            silent.drain_udp_queries() >= 1,
            "the query reached the silent server"
        );
    })
    .await;
}

#[tokio::test]
async fn a_stale_internal_zone_disagreeing_with_the_reference_is_a_mismatch() {
    within(TEST_LIMIT, async {
        let site = stale_site();
        let reference = provider_zone();
        let targets = "  - {name: mx, protocol: dns, domain: example.test, record: MX, \
                           expect: [mx1.example.test, mx2.example.test]}\n\
                       \x20 - {name: mx-relaxed, protocol: dns, domain: example.test, record: MX, require_consistent: false}\n";
        let yaml = config(&[site.addr], &[reference.addr], targets);
        let (_, m) = first_round(&yaml, &["mx", "mx-relaxed"]).await;
        // With `expect`, the stale answer is first of all not the expected one.
        m.assert_only_failure("mx", "resolve", "dns_unexpected_answer");
        let (site_label, reference_label) = (label(site.addr), label(reference.addr));
        assert_eq!(m.value("mailprobe_dns_expected_match", &[("target", "mx"), ("resolver", site_label.as_str())]), 0.0);
        assert_eq!(m.value("mailprobe_dns_expected_match", &[("target", "mx"), ("resolver", reference_label.as_str())]), 1.0);
        assert_eq!(m.value("mailprobe_dns_consistent", &[("target", "mx")]), 0.0);
        // Without `expect` and without requiring consistency the probe passes, but
        // the disagreement is still exported.
        assert_eq!(m.value("mailprobe_up", &[("target", "mx-relaxed")]), 1.0);
        assert_eq!(m.value("mailprobe_dns_consistent", &[("target", "mx-relaxed")]), 0.0);
    })
    .await;
}

#[tokio::test]
async fn site_and_reference_disagreeing_without_expect_fails_with_dns_mismatch() {
    within(TEST_LIMIT, async {
        let site = stale_site();
        let reference = provider_zone();
        let (result, m) = first_result(
            &config(
                &[site.addr],
                &[reference.addr],
                "  - {name: mx, protocol: dns, domain: example.test, record: MX}\n",
            ),
            "mx",
        )
        .await;
        let message = &result.failure().expect("fails").message;
        assert!(
            message.contains("mx.old-provider.test.") && message.contains("mx1.example.test."),
            "{message}"
        );
        m.assert_only_failure("mx", "resolve", "dns_mismatch");
        assert_eq!(
            m.value("mailprobe_dns_consistent", &[("target", "mx")]),
            0.0
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_reference_resolver_does_not_fail_the_site() {
    within(TEST_LIMIT, async {
        let site = provider_zone();
        let silent_reference = SilentDnsServer::start();
        let (result, m) = first_result(
            &config(
                &[site.addr],
                &[silent_reference.addr],
                "  - {name: mx, protocol: dns, domain: example.test, record: MX, timeout: 1s}\n",
            ),
            "mx",
        )
        .await;
        assert!(result.is_success(), "{:?}", result.failure());
        assert_eq!(m.value("mailprobe_up", &[("target", "mx")]), 1.0);
        assert_eq!(m.get("mailprobe_dns_consistent", &[("target", "mx")]), None);
        let reference_label = label(silent_reference.addr);
        assert_eq!(
            m.all(
                "mailprobe_dns_records",
                &[("target", "mx"), ("resolver", reference_label.as_str())]
            ),
            vec![]
        );
    })
    .await;
}
