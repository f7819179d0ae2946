//! One case per row of the decision table in the module documentation, and one per
//! tie-break.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{classify, needs_site, site_fault};
use crate::config::Protocol;
use crate::judge::Fault;
use crate::probe::dns::{DnsFacts, ResolverAnswer};
use crate::probe::env::ResolverRole;
use crate::probe::{ErrorKind, Failure, Phase, ProbeError, ProbeResult, ProtocolFacts};
use crate::site::{CanaryHealth, GatewayMethod, GatewayState, ResolverHealth, SiteContext};

/// A site: gateway up or down (`None`: not checked), site and reference resolvers up
/// or down, canaries up or down.
fn site(
    gateway: Option<bool>,
    site_dns: &[bool],
    reference: &[bool],
    canaries: &[bool],
) -> SiteContext {
    let resolver = |role, up: bool| ResolverHealth {
        resolver: "192.0.2.53".into(),
        role,
        up,
        duration: Duration::ZERO,
        error: (!up).then_some(ErrorKind::DnsTimeout),
    };
    SiteContext {
        measured_at: SystemTime::UNIX_EPOCH,
        gateway: gateway.map_or(GatewayState::NotChecked, |up| GatewayState::Checked {
            address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            up,
            method: GatewayMethod::Icmp,
        }),
        resolvers: site_dns
            .iter()
            .map(|up| resolver(ResolverRole::Site, *up))
            .chain(
                reference
                    .iter()
                    .map(|up| resolver(ResolverRole::Reference, *up)),
            )
            .collect(),
        canaries: canaries
            .iter()
            .map(|up| CanaryHealth {
                canary: "192.0.2.9:443".into(),
                up: *up,
            })
            .collect(),
    }
}

fn healthy() -> SiteContext {
    site(Some(true), &[true], &[true], &[true])
}

fn failed(phase: Phase, kind: ErrorKind) -> ProbeResult {
    ProbeResult {
        target: Arc::from("t"),
        protocol: Protocol::Imap,
        check: None,
        started_at: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(5),
        phases: Vec::new(),
        outcome: Err(Failure {
            phase,
            kind,
            message: String::new(),
        }),
        peer: None,
        tls: None,
        facts: ProtocolFacts::None,
        log: Default::default(),
        login: None,
    }
}

/// A DNS result failing with `kind`, with these per-resolver outcomes.
fn dns(
    kind: ErrorKind,
    answers: &[(ResolverRole, Result<&str, ErrorKind>, Option<bool>)],
) -> ProbeResult {
    let mut result = failed(Phase::Resolve, kind);
    result.protocol = Protocol::Dns;
    result.facts = ProtocolFacts::Dns(DnsFacts {
        record: None,
        answers: answers
            .iter()
            .map(|(role, outcome, expected_match)| ResolverAnswer {
                resolver: "192.0.2.53".into(),
                role: *role,
                duration: Duration::ZERO,
                outcome: outcome
                    .map(|record| vec![record.to_owned()])
                    .map_err(|kind| ProbeError::new(kind, "")),
                expected_match: *expected_match,
            })
            .collect(),
        consistent: None,
    });
    result
}

use ResolverRole::{Reference, Site};

#[test]
fn success_is_none_and_silence_without_context_is_unknown() {
    let mut ok = failed(Phase::Connect, ErrorKind::ConnectRefused);
    ok.outcome = Ok(());
    assert_eq!(classify(&ok, Some(&healthy())), Fault::None);
    assert_eq!(classify(&ok, None), Fault::None);
    assert!(!needs_site(&ok));
    let silent = failed(Phase::Connect, ErrorKind::ConnectTimeout);
    assert!(needs_site(&silent));
    assert_eq!(classify(&silent, None), Fault::Unknown);
}

/// Issue 11: an answer from the server is judged at once, without waiting for a site
/// snapshot, and the same with or without one.
#[test]
fn issue_11_a_server_answer_needs_no_site_snapshot() {
    for (kind, fault) in [
        (ErrorKind::ConnectRefused, Fault::ServerService),
        (ErrorKind::ConnectionReset, Fault::ServerService),
        (ErrorKind::CertExpired, Fault::ServerTls),
        (ErrorKind::AuthFailed, Fault::ServerAuth),
        (ErrorKind::ProtocolError, Fault::ServerService),
    ] {
        let result = failed(Phase::Connect, kind);
        assert!(!needs_site(&result), "{kind}");
        assert_eq!(classify(&result, None), fault, "{kind}");
        let down = site(Some(false), &[false], &[false], &[false]);
        assert_eq!(classify(&result, Some(&down)), fault, "{kind}");
    }
}

#[test]
fn the_site_fault_prefers_the_most_local_explanation() {
    assert_eq!(
        site_fault(&site(Some(true), &[true], &[true], &[true])),
        Fault::None
    );
    assert_eq!(
        site_fault(&site(Some(false), &[false], &[false], &[false])),
        Fault::LocalNetwork
    );
    assert_eq!(
        site_fault(&site(Some(true), &[false], &[false], &[false, false])),
        Fault::Upstream
    );
    assert_eq!(
        site_fault(&site(Some(true), &[true], &[true], &[false, true])),
        Fault::None
    );
    assert_eq!(
        site_fault(&site(Some(true), &[false, false], &[true], &[true])),
        Fault::LocalDns
    );
    assert_eq!(
        site_fault(&site(Some(true), &[false, true], &[true], &[true])),
        Fault::None
    );
    // Nothing configured to check: nothing to blame.
    assert_eq!(site_fault(&site(None, &[], &[], &[])), Fault::None);
}

#[test]
fn answers_from_the_server_are_the_server_s_fault() {
    let cases = [
        (Phase::Tls, ErrorKind::TlsHandshake, Fault::ServerTls),
        (Phase::Tls, ErrorKind::CertExpired, Fault::ServerTls),
        (Phase::Tls, ErrorKind::CertNotYetValid, Fault::ServerTls),
        (Phase::Tls, ErrorKind::CertNameMismatch, Fault::ServerTls),
        (Phase::Tls, ErrorKind::CertUntrusted, Fault::ServerTls),
        (
            Phase::Starttls,
            ErrorKind::StarttlsUnavailable,
            Fault::ServerTls,
        ),
        (Phase::Auth, ErrorKind::AuthFailed, Fault::ServerAuth),
        (
            Phase::Connect,
            ErrorKind::ConnectRefused,
            Fault::ServerService,
        ),
        (
            Phase::Greeting,
            ErrorKind::ConnectionReset,
            Fault::ServerService,
        ),
        (
            Phase::Greeting,
            ErrorKind::GreetingTimeout,
            Fault::ServerService,
        ),
        (
            Phase::Greeting,
            ErrorKind::BadGreeting,
            Fault::ServerService,
        ),
        (
            Phase::Greeting,
            ErrorKind::ServiceUnavailable,
            Fault::ServerService,
        ),
        (
            Phase::Request,
            ErrorKind::ProtocolError,
            Fault::ServerService,
        ),
        (Phase::Response, ErrorKind::HttpStatus, Fault::ServerService),
        (
            Phase::Response,
            ErrorKind::BodyMismatch,
            Fault::ServerService,
        ),
        // Tie-break: a stall while logging in is the backend, not the credentials.
        (Phase::Auth, ErrorKind::Timeout, Fault::ServerService),
    ];
    for (phase, kind, expected) in cases {
        assert_eq!(
            classify(&failed(phase, kind), Some(&healthy())),
            expected,
            "{kind}"
        );
    }
}

#[test]
fn a_server_answer_beats_a_gateway_that_does_not_answer_pings() {
    let gateway_silent = site(Some(false), &[true], &[true], &[true]);
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::ConnectRefused),
            Some(&gateway_silent)
        ),
        Fault::ServerService
    );
}

#[test]
fn no_route_or_a_dead_gateway_is_the_local_network() {
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::NetUnreachable),
            Some(&healthy())
        ),
        Fault::LocalNetwork
    );
    let gateway_down = site(Some(false), &[false], &[false], &[false]);
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::ConnectTimeout),
            Some(&gateway_down)
        ),
        Fault::LocalNetwork
    );
    assert_eq!(
        classify(
            &failed(Phase::Resolve, ErrorKind::DnsTimeout),
            Some(&gateway_down)
        ),
        Fault::LocalNetwork
    );
    let mut no_route = healthy();
    no_route.gateway = GatewayState::NoDefaultRoute;
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::ConnectTimeout),
            Some(&no_route)
        ),
        Fault::LocalNetwork
    );
}

#[test]
fn silence_is_upstream_when_no_canary_answers_else_the_server_path() {
    let uplink_down = site(Some(true), &[true], &[false], &[false, false]);
    for kind in [ErrorKind::ConnectTimeout, ErrorKind::HostUnreachable] {
        assert_eq!(
            classify(&failed(Phase::Connect, kind), Some(&uplink_down)),
            Fault::Upstream
        );
        assert_eq!(
            classify(&failed(Phase::Connect, kind), Some(&healthy())),
            Fault::ServerNetwork
        );
    }
    // One canary answering means the uplink works.
    let one_canary = site(Some(true), &[true], &[true], &[false, true]);
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::ConnectTimeout),
            Some(&one_canary)
        ),
        Fault::ServerNetwork
    );
    // Tie-break: without canaries, silence is blamed on the server path.
    let no_canaries = site(Some(true), &[true], &[true], &[]);
    assert_eq!(
        classify(
            &failed(Phase::Connect, ErrorKind::ConnectTimeout),
            Some(&no_canaries)
        ),
        Fault::ServerNetwork
    );
}

#[test]
fn a_dns_target_is_judged_by_each_resolver_s_own_answer() {
    let ctx = healthy();
    // The site resolver fails while a reference resolver answers.
    for kind in [
        ErrorKind::DnsTimeout,
        ErrorKind::DnsServfail,
        ErrorKind::DnsRefused,
    ] {
        let result = dns(
            kind,
            &[
                (Site, Err(kind), None),
                (Reference, Ok("10 mx.example.net."), None),
            ],
        );
        assert_eq!(classify(&result, Some(&ctx)), Fault::LocalDns, "{kind}");
    }
    // The site answers differently from the reference (stale internal zone).
    let stale = dns(
        ErrorKind::DnsMismatch,
        &[
            (Site, Ok("10 mx.old.example."), None),
            (Reference, Ok("10 mx.example.net."), None),
        ],
    );
    assert_eq!(classify(&stale, Some(&ctx)), Fault::LocalDns);
    // The site says the name does not exist; the world has records.
    let site_nx = dns(
        ErrorKind::DnsNxdomain,
        &[
            (Site, Err(ErrorKind::DnsNxdomain), None),
            (Reference, Ok("192.0.2.7"), None),
        ],
    );
    assert_eq!(classify(&site_nx, Some(&ctx)), Fault::LocalDns);
    // NXDOMAIN or NODATA everywhere.
    for kind in [ErrorKind::DnsNxdomain, ErrorKind::DnsNodata] {
        let everywhere = dns(
            kind,
            &[(Site, Err(kind), None), (Reference, Err(kind), None)],
        );
        assert_eq!(
            classify(&everywhere, Some(&ctx)),
            Fault::RemoteDns,
            "{kind}"
        );
        let no_reference = dns(kind, &[(Site, Err(kind), None)]);
        assert_eq!(
            classify(&no_reference, Some(&ctx)),
            Fault::RemoteDns,
            "{kind}"
        );
    }
    // Every resolver fails: the domain's DNS, unless the uplink is down.
    let all_fail = dns(
        ErrorKind::DnsServfail,
        &[
            (Site, Err(ErrorKind::DnsServfail), None),
            (Reference, Err(ErrorKind::DnsServfail), None),
        ],
    );
    assert_eq!(classify(&all_fail, Some(&ctx)), Fault::RemoteDns);
    let uplink_down = site(Some(true), &[false], &[false], &[false]);
    let all_silent = dns(
        ErrorKind::DnsTimeout,
        &[
            (Site, Err(ErrorKind::DnsTimeout), None),
            (Reference, Err(ErrorKind::DnsTimeout), None),
        ],
    );
    assert_eq!(classify(&all_silent, Some(&uplink_down)), Fault::Upstream);
}

#[test]
fn an_unexpected_answer_is_local_only_if_the_world_sees_the_expected_one() {
    let ctx = healthy();
    let site_behind = dns(
        ErrorKind::DnsUnexpectedAnswer,
        &[
            (Site, Ok("10 mx.old.example."), Some(false)),
            (Reference, Ok("10 mx.new.example."), Some(true)),
        ],
    );
    assert_eq!(classify(&site_behind, Some(&ctx)), Fault::LocalDns);
    let not_cut_over = dns(
        ErrorKind::DnsUnexpectedAnswer,
        &[
            (Site, Ok("10 mx.old.example."), Some(false)),
            (Reference, Ok("10 mx.old.example."), Some(false)),
        ],
    );
    assert_eq!(classify(&not_cut_over, Some(&ctx)), Fault::RemoteDns);
}

#[test]
fn a_host_lookup_before_connecting_uses_the_site_context() {
    let lookup = |kind| failed(Phase::Resolve, kind);
    let site_resolver_down = site(Some(true), &[false], &[true], &[true]);
    assert_eq!(
        classify(&lookup(ErrorKind::DnsTimeout), Some(&site_resolver_down)),
        Fault::LocalDns
    );
    assert_eq!(
        classify(&lookup(ErrorKind::DnsNxdomain), Some(&healthy())),
        Fault::RemoteDns
    );
    assert_eq!(
        classify(&lookup(ErrorKind::DnsServfail), Some(&healthy())),
        Fault::RemoteDns
    );
    let uplink_down = site(Some(true), &[true], &[false], &[false]);
    assert_eq!(
        classify(&lookup(ErrorKind::DnsTimeout), Some(&uplink_down)),
        Fault::Upstream
    );
    // Site and reference resolvers both fail while the uplink works: the domain's DNS
    // (its authoritative servers drop queries, say).
    let all_resolvers_down = site(Some(true), &[false], &[false], &[true]);
    assert_eq!(
        classify(&lookup(ErrorKind::DnsTimeout), Some(&all_resolvers_down)),
        Fault::RemoteDns
    );
    // Without reference resolvers, a failing site resolver is all the evidence there is.
    let no_reference = site(Some(true), &[false], &[], &[true]);
    assert_eq!(
        classify(&lookup(ErrorKind::DnsServfail), Some(&no_reference)),
        Fault::LocalDns
    );
}

#[test]
fn a_stall_after_connecting_is_the_service_unless_the_uplink_died() {
    let uplink_down = site(Some(true), &[true], &[false], &[false]);
    for (phase, kind) in [
        (Phase::Greeting, ErrorKind::GreetingTimeout),
        (Phase::Auth, ErrorKind::Timeout),
    ] {
        // Tie-break: a stall while logging in is the backend, not the credentials.
        assert_eq!(
            classify(&failed(phase, kind), Some(&healthy())),
            Fault::ServerService,
            "{kind}"
        );
        assert_eq!(
            classify(&failed(phase, kind), Some(&uplink_down)),
            Fault::Upstream,
            "{kind}"
        );
    }
}

#[test]
fn a_failing_site_resolver_without_references_is_local_like_the_site_verdict() {
    let ctx = site(Some(true), &[false], &[], &[true]);
    let result = dns(
        ErrorKind::DnsTimeout,
        &[(Site, Err(ErrorKind::DnsTimeout), None)],
    );
    assert_eq!(classify(&result, Some(&ctx)), Fault::LocalDns);
    assert_eq!(site_fault(&ctx), Fault::LocalDns);
}

/// Issue 16: the agent's own limits are never the provider's (nor the site's) fault.
#[test]
fn issue_16_local_resources_are_never_a_server_domain() {
    let result = failed(Phase::Connect, ErrorKind::LocalResources);
    assert!(!needs_site(&result));
    for site in [healthy(), site(Some(false), &[false], &[false], &[false])] {
        assert_eq!(classify(&result, Some(&site)), Fault::Unknown);
    }
    assert_eq!(classify(&result, None), Fault::Unknown);
}

/// Issue 13: a round trip's own reasons are answers from its servers, judged at once;
/// no answer to the end of DATA is a stall (rule 6).
#[test]
fn issue_13_round_trip_reasons() {
    for (phase, kind) in [
        (Phase::Submit, ErrorKind::SendRejected),
        (Phase::Submit, ErrorKind::SendDeferred),
        (Phase::Deliver, ErrorKind::NotDelivered),
        (Phase::Deliver, ErrorKind::DeliveredToJunk),
    ] {
        let mut result = failed(phase, kind);
        result.protocol = Protocol::Roundtrip;
        assert!(!needs_site(&result), "{kind}");
        assert_eq!(classify(&result, None), Fault::ServerService, "{kind}");
        let down = site(Some(false), &[false], &[false], &[false]);
        assert_eq!(
            classify(&result, Some(&down)),
            Fault::ServerService,
            "{kind}"
        );
    }
    let uncertain = failed(Phase::Submit, ErrorKind::SendUncertain);
    assert!(needs_site(&uncertain));
    assert_eq!(classify(&uncertain, Some(&healthy())), Fault::ServerService);
    let uplink_down = site(Some(true), &[true], &[true], &[false]);
    assert_eq!(classify(&uncertain, Some(&uplink_down)), Fault::Upstream);
}

/// Issue 12: the token endpoint is one more hop. A refused client is `server_auth`
/// and needs no site evidence; its network failures are judged like any path's, so
/// the site's own network is still found first.
#[test]
fn issue_12_the_token_hop_is_judged_like_any_other() {
    let rejected = failed(Phase::Token, ErrorKind::TokenRejected);
    assert!(!needs_site(&rejected));
    assert_eq!(classify(&rejected, None), Fault::ServerAuth);
    let silent = failed(Phase::Token, ErrorKind::ConnectTimeout);
    assert!(needs_site(&silent));
    assert_eq!(classify(&silent, Some(&healthy())), Fault::ServerNetwork);
    let no_uplink = site(Some(true), &[true], &[true], &[false]);
    assert_eq!(classify(&silent, Some(&no_uplink)), Fault::Upstream);
    let no_gateway = site(Some(false), &[true], &[true], &[true]);
    assert_eq!(classify(&silent, Some(&no_gateway)), Fault::LocalNetwork);
    let lookup = failed(Phase::Token, ErrorKind::DnsTimeout);
    let site_dns_down = site(Some(true), &[false], &[true], &[true]);
    assert_eq!(classify(&lookup, Some(&site_dns_down)), Fault::LocalDns);
    let refused = failed(Phase::Token, ErrorKind::ConnectRefused);
    assert_eq!(classify(&refused, None), Fault::ServerService);
    let hung = failed(Phase::Token, ErrorKind::Timeout);
    assert_eq!(classify(&hung, Some(&healthy())), Fault::ServerService);
}
