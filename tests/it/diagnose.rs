//! `mailprobe diagnose ADDRESS`: discovery through a real dnsmasq (MX and RFC 6186
//! SRV records), probes of a real Dovecot found that way, and the exit codes
//! 0 healthy, 1 fault, 2 usage error.

use crate::support::cli::{Run, mailprobe};
use crate::support::domain::{PublishedDomain, SERVER_NAME};

/// `example.test` publishing its MX and `_imaps._tcp` SRV for a real Dovecot,
/// and a configuration using its dnsmasq as the site resolver and trusting its CA.
struct Fixture {
    domain: PublishedDomain,
    config: std::path::PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let domain = PublishedDomain::start(&["imaps"]);
        let config = domain.dir.path().join("site.yaml");
        std::fs::write(
            &config,
            format!(
                "site: {{gateway: none, resolvers: [\"{}\"]}}\n\
                 tls: {{ca_file: {}}}\n\
                 targets:\n  - {{name: unused, protocol: tcp, host: 127.0.0.1, port: 9}}\n",
                domain.dns.addr,
                domain.pki.ca_pem.display()
            ),
        )
        .unwrap();
        Fixture { domain, config }
    }

    fn diagnose(&self, extra: &[&str]) -> Run {
        let config = self.config.to_str().unwrap();
        let mut args = vec![
            "diagnose",
            "probe@example.test",
            "--config",
            config,
            "--timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        mailprobe(&args)
    }

    fn dovecot_log(&self) -> String {
        let dovecot = self.domain.dovecot.as_ref();
        dovecot.map(|d| d.log()).unwrap_or_default()
    }
}

#[test]
fn a_discovered_imap_server_is_probed_and_its_outage_is_the_servers_fault() {
    let mut fixture = Fixture::new();
    let imaps_port = fixture.domain.dovecot().imaps.port();

    let run = fixture.diagnose(&["--json"]);
    let report = run.json();
    let context = format!("{report:#}\nstderr:\n{}", run.stderr);
    assert_eq!(run.code, Some(0), "{context}\n{}", fixture.dovecot_log());
    assert_eq!(report["healthy"], true, "{context}");
    let services = report["services"].as_array().expect("services");
    let imap = services
        .iter()
        .find(|s| s["protocol"] == "imap" && s["port"] == imaps_port)
        .unwrap_or_else(|| panic!("no IMAP endpoint on port {imaps_port}: {context}"));
    assert_eq!(imap["host"], SERVER_NAME, "{context}");
    assert_eq!(imap["tls"], "implicit", "{context}");
    assert_eq!(imap["source"], "SRV _imaps._tcp", "{context}");
    assert_eq!(imap["status"], "ok", "{context}");
    // MX port 25 (nothing listens on loopback 25) is informational only.
    let mx = services
        .iter()
        .find(|s| s["port"] == 25)
        .unwrap_or_else(|| panic!("no MX endpoint: {context}"));
    assert_eq!(mx["informational"], true, "{context}");
    assert_eq!(mx["host"], SERVER_NAME, "{context}");
    let dns = report["dns"].as_array().expect("dns");
    let srv = dns
        .iter()
        .find(|d| d["name"] == "_imaps._tcp.example.test")
        .unwrap_or_else(|| panic!("no SRV question: {context}"));
    assert_eq!(srv["status"], "found", "{context}");
    let pop3 = dns
        .iter()
        .find(|d| d["name"] == "_pop3._tcp.example.test")
        .unwrap_or_else(|| panic!("no _pop3 question: {context}"));
    assert_eq!(pop3["status"], "absent", "{context}");
    // example.test publishes no Autodiscover: tried, not found, not a fault.
    assert_eq!(report["autodiscover"]["status"], "absent", "{context}");
    assert_eq!(report["autodiscover"]["published"], false, "{context}");
    assert!(
        run.stderr.is_empty(),
        "no progress lines when stderr is not a terminal: {}",
        run.stderr
    );

    fixture.domain.dovecot = None; // stops every Dovecot process
    let run = fixture.diagnose(&["--json"]);
    let report = run.json();
    let context = format!("{report:#}\nstderr:\n{}", run.stderr);
    assert_eq!(run.code, Some(1), "{context}");
    assert_eq!(report["healthy"], false, "{context}");
    let imap = report["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["protocol"] == "imap" && s["port"] == imaps_port)
        .unwrap_or_else(|| panic!("no IMAP endpoint: {context}"))
        .clone();
    assert_eq!(imap["status"], "failed", "{context}");
    assert_eq!(imap["fault"], "server_service", "{context}");
    assert_eq!(
        report["faults"],
        serde_json::json!(["server_service"]),
        "{context}"
    );
    let verdict = report["verdict"].as_str().unwrap();
    assert!(verdict.contains("server_service"), "{verdict}");
    assert!(verdict.contains("the provider"), "{verdict}");
}

#[test]
fn the_text_report_has_the_help_desk_sections() {
    let fixture = Fixture::new();
    let run = fixture.diagnose(&[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let mut at = 0;
    for heading in [
        "DNS (inside vs outside the site)",
        "Mail services",
        "Webmail/Autodiscover",
        "Site network",
        "Verdict",
    ] {
        let found = run.stdout[at..]
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no `{heading}` after byte {at}:\n{}", run.stdout));
        at += found + heading.len();
    }
    assert!(
        run.stdout.contains(&format!(
            "imaps       {SERVER_NAME}:{} tls=implicit",
            fixture.domain.dovecot().imaps.port()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Autodiscover: none found (no Exchange or Microsoft 365 for this domain)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Healthy:"), "{}", run.stdout);
}

#[test]
fn a_malformed_address_is_a_usage_error() {
    for args in [
        &["diagnose", "not an address"][..],
        &["diagnose", "not", "an", "address"][..],
        &["diagnose", "user@"][..],
    ] {
        let run = mailprobe(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
        assert!(!run.stderr.is_empty(), "{args:?}: a message on stderr");
    }
    let run = mailprobe(&["diagnose", "not an address"]);
    assert!(
        run.stderr
            .contains("`not an address` is not a mail address or domain"),
        "{}",
        run.stderr
    );
}

/// Issue 12: `--oauth2 TARGET` logs in to the discovered IMAP server with that
/// target's OAuth2 client and, when the mailbox refuses the token, names the step that
/// is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_diagnose_logs_in_with_oauth2_and_names_the_missing_step() {
    use crate::support::Dnsmasq;
    use crate::support::agent::within;
    use crate::support::oauth2::{OAuthBed, TEST_LIMIT};
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(std::time::Duration::from_secs(3600)).await;
        let imaps = bed.dovecot.imaps.port();
        let dns = Dnsmasq::builder()
            .mx("example.test", SERVER_NAME, 10)
            .srv("_imaps._tcp.example.test", SERVER_NAME, imaps, 0, 1)
            .a(SERVER_NAME, std::net::Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        let config = bed.dir.path().join("site.yaml");
        let yaml = format!(
            "site: {{gateway: none, resolvers: [\"{}\"]}}\ntls: {{ca_file: \"{}\"}}\ntargets:\n{}",
            dns.addr,
            bed.pki.ca_pem.display(),
            bed.target(
                "m365",
                "imap",
                bed.dovecot.imaps,
                "implicit",
                &bed.good(),
                ""
            )
        );
        std::fs::write(&config, yaml).unwrap();
        let config = config.to_str().unwrap().to_owned();
        let diagnose = |extra: &[&str]| {
            let mut args = vec![
                "diagnose",
                "probe@example.test",
                "--config",
                &config,
                "--timeout",
                "5s",
                "--oauth2",
                "m365",
            ];
            args.extend_from_slice(extra);
            tokio::task::block_in_place(|| mailprobe(&args))
        };
        let imap = |report: &serde_json::Value| {
            report["services"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["port"] == imaps)
                .cloned()
                .unwrap_or_else(|| panic!("no IMAP endpoint: {report:#}"))
        };

        let run = diagnose(&["--json"]);
        let report = run.json();
        assert_eq!(run.code, Some(0), "{report:#}\n{}", run.stderr);
        assert_eq!(imap(&report)["status"], "ok", "{report:#}");
        assert_eq!(bed.idp.introspections(), 1, "one login with the token");

        bed.idp.refuse_at_mailbox(true);
        let run = diagnose(&["--json"]);
        let report = run.json();
        assert_eq!(run.code, Some(1), "{report:#}");
        let service = imap(&report);
        assert_eq!(service["reason"], "auth_failed", "{report:#}");
        assert_eq!(service["fault"], "server_auth", "{report:#}");
        let step = service["missing_step"].as_str().unwrap_or_default();
        assert!(step.contains("New-ServicePrincipal"), "{report:#}");
        assert!(step.contains("Add-MailboxPermission"), "{report:#}");
        let text = diagnose(&[]);
        assert!(
            text.stdout
                .contains("missing step: register the application's service principal"),
            "{}",
            text.stdout
        );

        // A target without OAuth2 is a usage error.
        let run = tokio::task::block_in_place(|| {
            mailprobe(&[
                "diagnose",
                "probe@example.test",
                "--config",
                &config,
                "--oauth2",
                "nope",
            ])
        });
        assert_eq!(run.code, Some(2));
        assert!(run.stderr.contains("no target `nope`"), "{}", run.stderr);
    })
    .await;
}
