//! The verdict paragraph and the JSON report, on diagnoses built by hand.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::discover::Source;
use crate::judge::classify;
use crate::probe::{Failure, Phase, ProbeResult};
use crate::site::GatewayState;

fn config() -> Config {
    crate::config::from_str(
        "site: {gateway: none, resolvers: [\"127.0.0.1:9\"]}\n\
         targets:\n  - {name: x, protocol: tcp, host: 127.0.0.1, port: 9}\n",
        std::path::Path::new("test.yaml"),
    )
    .unwrap()
}

fn result(target: &Target, failure: Option<(Phase, ErrorKind)>) -> ProbeResult {
    ProbeResult {
        target: Arc::clone(&target.name),
        protocol: target.protocol,
        check: target.check(),
        started_at: SystemTime::now(),
        duration: Duration::from_millis(5),
        phases: Vec::new(),
        outcome: match failure {
            None => Ok(()),
            Some((phase, kind)) => Err(Failure {
                phase,
                kind,
                message: "test".to_owned(),
            }),
        },
        peer: None,
        tls: None,
        facts: ProtocolFacts::None,
        log: Default::default(),
        login: None,
    }
}

fn service(
    protocol: Protocol,
    port: u16,
    failure: Option<ErrorKind>,
    site: &Arc<SiteContext>,
) -> ServiceCheck {
    let found = Found {
        service: "svc",
        source: Source::Srv("_test._tcp"),
        protocol,
        host: "mail.example.test".to_owned(),
        port,
        tls: TlsMode::Implicit,
    };
    let schedule = (Duration::from_secs(1), Duration::from_secs(1), false);
    let target = discover::endpoint_target("svc".into(), &found, &config(), "here", schedule);
    let result = result(&target, failure.map(|kind| (Phase::Tls, kind)));
    let fault = classify(&result, Some(site));
    ServiceCheck {
        found,
        judged: Judged {
            target,
            result,
            fault,
            site: Some(Arc::clone(site)),
        },
    }
}

fn diagnosis(services: Vec<ServiceCheck>, site: Arc<SiteContext>) -> Diagnosis {
    let address = Address {
        user: None,
        domain: "example.test".to_owned(),
    };
    let options = Options {
        timeout: Duration::from_secs(1),
        progress: false,
        login: None,
    };
    let target = autodiscover_target(&address, &config(), &options);
    let result = result(&target, Some((Phase::Connect, ErrorKind::ConnectRefused)));
    let autodiscover = AutodiscoverCheck {
        judged: Judged {
            target,
            result,
            fault: Fault::ServerService,
            site: Some(Arc::clone(&site)),
        },
        published: false,
    };
    Diagnosis {
        address,
        dns: Vec::new(),
        autodiscover,
        services,
        guessed: false,
        site,
        site_resolvers: vec!["127.0.0.1:9".to_owned()],
        reference_resolvers: Vec::new(),
        roundtrips: Vec::new(),
    }
}

fn site() -> Arc<SiteContext> {
    Arc::new(SiteContext {
        measured_at: SystemTime::now(),
        gateway: GatewayState::NotChecked,
        resolvers: Vec::new(),
        canaries: Vec::new(),
    })
}

#[test]
fn both_protocols_failing_tls_blame_the_provider() {
    let site = site();
    let d = diagnosis(
        vec![
            service(Protocol::Imap, 993, Some(ErrorKind::CertExpired), &site),
            service(Protocol::Smtp, 465, Some(ErrorKind::CertExpired), &site),
        ],
        site,
    );
    assert!(!d.is_healthy());
    let verdict = verdict(&d);
    assert!(
        verdict.starts_with(
            "IMAP and SMTP both fail with server_tls, on the side of the provider: The \
             certificate mail.example.test presents has expired"
        ),
        "{verdict}"
    );
}

#[test]
fn one_failing_protocol_says_which_still_works() {
    let site = site();
    let d = diagnosis(
        vec![
            service(Protocol::Imap, 993, Some(ErrorKind::ConnectRefused), &site),
            service(Protocol::Smtp, 465, None, &site),
        ],
        site,
    );
    let verdict = verdict(&d);
    assert!(
        verdict.starts_with("Only IMAP fails (SMTP works) with server_service"),
        "{verdict}"
    );
}

#[test]
fn healthy_services_give_a_healthy_verdict() {
    let site = site();
    let d = diagnosis(vec![service(Protocol::Imap, 993, None, &site)], site);
    assert!(d.is_healthy());
    assert!(verdict(&d).starts_with("Healthy: "), "{}", verdict(&d));
    let json: serde_json::Value = serde_json::from_str(&to_json(&d)).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["services"][0]["status"], "ok");
}

/// Issue 13: diagnose never sends mail; it names the configuration's round trips to
/// the domain, and says how to run them.
#[test]
fn issue_13_round_trips_to_the_domain_are_named_not_run() {
    let yaml = "site: {gateway: none, resolvers: [\"127.0.0.1:9\"]}\n\
        targets:\n\
        \x20 - name: rt-here\n    protocol: roundtrip\n    from: a@example.test\n    to: probe@Example.TEST\n\
        \x20   send: {host: 127.0.0.1, port: 587, tls: starttls}\n\
        \x20   receive: {host: 127.0.0.1, auth: {username: probe, password_env: PATH}}\n\
        \x20 - name: rt-elsewhere\n    protocol: roundtrip\n    from: a@example.test\n    to: probe@example.net\n\
        \x20   send: {host: 127.0.0.1, port: 587, tls: starttls}\n\
        \x20   receive: {host: 127.0.0.1, auth: {username: probe, password_env: PATH}}\n";
    let config = crate::config::from_str(yaml, std::path::Path::new("rt.yaml")).unwrap();
    assert_eq!(roundtrips_to(&config, "example.test"), ["rt-here"]);
    let site = site();
    let mut d = diagnosis(vec![service(Protocol::Imap, 993, None, &site)], site);
    assert_eq!(text::roundtrip_line(&d), text::ROUNDTRIP_NOT_RUN);
    d.roundtrips = vec!["rt-here".to_owned()];
    let line = text::roundtrip_line(&d);
    assert!(
        line.contains("rt-here (`mailprobe probe --config FILE rt-here`)"),
        "{line}"
    );
    assert!(render(&d).contains(&format!("delivery (round trip): {line}")));
    let json: serde_json::Value = serde_json::from_str(&to_json(&d)).unwrap();
    assert_eq!(json["roundtrips"][0], "rt-here");
}
