//! The `targets: - domain: example.test` shorthand: the agent discovers the domain's
//! MX and the endpoints its SRV records publish, and probes them like configured
//! targets. Real dnsmasq and Dovecot on loopback.

use std::time::Duration;

use crate::support::agent::{first_round, within};
use crate::support::domain::PublishedDomain;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_entry_becomes_its_mx_and_its_published_mail_endpoints() {
    within(Duration::from_secs(60), async {
        let domain = PublishedDomain::start(&["imaps", "pop3s"]);
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\n\
             defaults: {{interval: 1h, timeout: 3s, start_jitter: 0s}}\n\
             tls: {{ca_file: \"{}\"}}\n\
             site: {{gateway: none, resolvers: [\"{}\"]}}\n\
             targets:\n  - domain: example.test\n",
            domain.pki.ca_pem.display(),
            domain.dns.addr
        );
        let names = [
            "example.test-mx",
            "example.test-imaps",
            "example.test-pop3s",
        ];
        let (results, m) = first_round(&yaml, &names).await;
        for (name, result) in names.iter().zip(&results) {
            assert!(result.is_success(), "{name}: {:?}", result.failure());
        }
        assert_eq!(m.value("mailprobe_targets", &[]), 3.0);
        assert_eq!(
            m.value(
                "mailprobe_up",
                &[("target", "example.test-imaps"), ("protocol", "imap")]
            ),
            1.0
        );
        assert_eq!(
            m.value(
                "mailprobe_up",
                &[("target", "example.test-pop3s"), ("protocol", "pop3")]
            ),
            1.0
        );
        assert_eq!(
            m.value(
                "mailprobe_up",
                &[("target", "example.test-mx"), ("protocol", "dns")]
            ),
            1.0
        );
        drop(domain);
    })
    .await;
}

#[test]
fn a_domain_entry_takes_only_name_interval_and_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailprobe.yaml");
    std::fs::write(&path, "targets:\n  - domain: example.test\n    port: 993\n").unwrap();
    let error = mailprobe::config::load(&path).unwrap_err().to_string();
    assert!(
        error.ends_with(
            "3:11: targets[0].port: a `domain:` entry without `protocol` discovers its targets; it takes only `name`, `interval` and `timeout` (for `port`, write the target out with a `protocol`)"
        ),
        "{error}"
    );
}
