//! Whose fault is a failure? A pure function of the probe result and the site context.
//!
//! The decision, in order (the first rule that applies wins):
//!
//! 1. Success → `none`. The agent's own limits (`local_resources`: out of file
//!    descriptors, local ports, memory) → `unknown`: neither the site nor the provider.
//! 2. The server itself answered — a certificate, a TLS alert, a RST, a greeting, a
//!    status, a rejected login — so the path works whatever the site context says:
//!    - certificate and handshake failures, STARTTLS not offered → `server_tls`;
//!    - rejected credentials → `server_auth`;
//!    - refused, reset, bad or refused greeting, protocol errors, HTTP status/body, a
//!      redirect to where the probe may not follow → `server_service`;
//!    - a round trip's message refused (`send_rejected`, 5xx) or deferred
//!      (`send_deferred`, 4xx), accepted and never delivered (`not_delivered`: the
//!      mailbox was reachable, so the provider's delivery failed), or filed as junk
//!      (`delivered_to_junk`) → `server_service`.
//!
//!    These need no site context at all ([`needs_site`] is false): the pipeline judges
//!    them at once. Every other failure is judged on a site snapshot measured after the
//!    probe started; without one (none could be measured) it is `unknown`.
//! 3. This host cannot send at all (ENETUNREACH, a blackhole route, no default
//!    route), or the gateway does not answer → `local_network`.
//! 4. DNS failures (phase `resolve`), using the per-resolver answers a DNS target
//!    records, else the site context:
//!    - the site's answer differs from a reference answer (`dns_mismatch`), or a site
//!      resolver fails while a reference resolver answers, or the site says
//!      NXDOMAIN/NODATA while a reference has records → `local_dns`;
//!    - an answer other than `expect` that the reference resolvers give too → `remote_dns`
//!      (public DNS not cut over yet); one only the site gives → `local_dns`;
//!    - every resolver fails and no canary answers → `upstream`;
//!    - the site resolver fails and no reference resolver is configured → `local_dns`;
//!    - otherwise (NXDOMAIN/NODATA everywhere, every resolver failing) → `remote_dns`.
//! 5. Silence on the path (connect timeout, host unreachable):
//!    the gateway answers but no canary does → `upstream`; otherwise → `server_network`.
//! 6. A stall after the connection was made (no greeting, a timeout later in the
//!    session, no answer to a round trip's end of `DATA`: `send_uncertain`): no canary
//!    answers → `upstream` (the uplink died mid-session); otherwise → `server_service`
//!    (the server is reachable but slow or hung).
//!
//! The `token` phase (an OAuth2 login's request to the identity provider) is one more
//! hop and follows the same rules: its DNS failures are rule 4, its silence rule 5 or
//! 6, its refusals and resets rule 2, so the site's own network is still found first. A
//! refused client (`token_rejected`) is `server_auth`: the provider refused the
//! credential, as a mail server refuses a password.
//!
//! Tie-breaks, written down because they are choices:
//! - Evidence from the server beats the site context (rule 2 before 3): a RST or a TLS
//!   alert proves packets reached the provider, even if the gateway does not answer
//!   pings.
//! - With no canaries configured, silence is blamed on the server path (`server_network`):
//!   without canaries the agent cannot tell the uplink from the provider; the
//!   cross-site alert rules can.
//! - A timeout while logging in is `server_service`, not `server_auth`: a rejection is an
//!   answer; silence is a slow or broken authentication backend (rule 6).
//! - STARTTLS not offered is `server_tls` even though a middlebox that strips STARTTLS
//!   (an "SMTP inspection" firewall) would be local; the agent cannot tell them apart.

use super::Fault;
use crate::probe::dns::DnsFacts;
use crate::probe::env::ResolverRole;
use crate::probe::{ErrorKind, Phase, ProbeResult, ProtocolFacts};
use crate::site::SiteContext;

/// The fault domain of `result` given the site context measured for it (`None`: no
/// snapshot could be had).
pub fn classify(result: &ProbeResult, site: Option<&SiteContext>) -> Fault {
    let Some(failure) = result.failure() else {
        return Fault::None;
    };
    // The agent's own limits (out of file descriptors, ports, memory) say nothing
    // about the site or the provider: never blame either.
    if failure.kind == ErrorKind::LocalResources {
        return Fault::Unknown;
    }
    if let Some(fault) = server_answered(failure.kind) {
        return fault;
    }
    let Some(site) = site else {
        return Fault::Unknown;
    };
    if failure.kind == ErrorKind::NetUnreachable || site.gateway_up() == Some(false) {
        return Fault::LocalNetwork;
    }
    // The token endpoint's name is looked up like the server's: the same rules.
    if failure.phase == Phase::Resolve || (failure.phase == Phase::Token && is_dns(failure.kind)) {
        return match &result.facts {
            ProtocolFacts::Dns(dns) => dns_target_fault(failure.kind, dns, site),
            _ => host_lookup_fault(failure.kind, site),
        };
    }
    match failure.kind {
        ErrorKind::GreetingTimeout | ErrorKind::Timeout | ErrorKind::SendUncertain => {
            stall_fault(site)
        }
        _ => path_fault(site),
    }
}

/// Whether judging `result` needs a fresh site snapshot: a failure that is not an
/// answer from the server. A success, or a refusal, a TLS alert, a rejected login, is
/// judged without one, so a probe never waits on the site checks for it.
pub fn needs_site(result: &ProbeResult) -> bool {
    result.failure().is_some_and(|failure| {
        failure.kind != ErrorKind::LocalResources && server_answered(failure.kind).is_none()
    })
}

/// The site's own fault, independent of any target: `local_network` (no route or the
/// gateway is down), `upstream` (the gateway answers, no canary does), `local_dns` (no
/// site resolver answers), else `none`.
pub fn site_fault(site: &SiteContext) -> Fault {
    if site.gateway_up() == Some(false) {
        return Fault::LocalNetwork;
    }
    if site.canaries_up() == Some(false) {
        return Fault::Upstream;
    }
    if site.resolvers_up(ResolverRole::Site) == Some(false) {
        return Fault::LocalDns;
    }
    Fault::None
}

/// Rule 6: the session stalled after the connection was made. The server was
/// reachable, so the service is slow or hung, unless the uplink died meanwhile.
fn stall_fault(site: &SiteContext) -> Fault {
    if site.canaries_up() == Some(false) {
        Fault::Upstream
    } else {
        Fault::ServerService
    }
}

/// Rule 2: the kinds that are an answer from the server.
fn server_answered(kind: ErrorKind) -> Option<Fault> {
    Some(match kind {
        ErrorKind::TlsHandshake
        | ErrorKind::CertExpired
        | ErrorKind::CertNotYetValid
        | ErrorKind::CertNameMismatch
        | ErrorKind::CertUntrusted
        | ErrorKind::StarttlsUnavailable => Fault::ServerTls,
        // The identity provider refused the client: the credential is wrong or not
        // (yet) allowed, on the provider's side, like a rejected password.
        ErrorKind::AuthFailed | ErrorKind::TokenRejected => Fault::ServerAuth,
        ErrorKind::ConnectRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::BadGreeting
        | ErrorKind::ServiceUnavailable
        | ErrorKind::ProtocolError
        | ErrorKind::HttpStatus
        | ErrorKind::BodyMismatch
        | ErrorKind::RedirectRefused
        | ErrorKind::SendRejected
        | ErrorKind::SendDeferred
        | ErrorKind::NotDelivered
        | ErrorKind::DeliveredToJunk => Fault::ServerService,
        _ => return None,
    })
}

/// The reasons of a failed name lookup.
fn is_dns(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::DnsNxdomain
            | ErrorKind::DnsNodata
            | ErrorKind::DnsServfail
            | ErrorKind::DnsRefused
            | ErrorKind::DnsTimeout
    )
}

/// Rule 5: silence on the way to the server.
fn path_fault(site: &SiteContext) -> Fault {
    if site.canaries_up() == Some(false) {
        Fault::Upstream
    } else {
        Fault::ServerNetwork
    }
}

/// Rule 4 for a DNS target, which has every resolver's own answer.
fn dns_target_fault(kind: ErrorKind, dns: &DnsFacts, site: &SiteContext) -> Fault {
    let answers = |role: ResolverRole| dns.answers.iter().filter(move |a| a.role == role);
    let has_records = |role| answers(role).any(|a| a.outcome.is_ok());
    let answered = |role| {
        answers(role).any(|a| match &a.outcome {
            Ok(_) => true,
            Err(e) => matches!(e.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata),
        })
    };
    match kind {
        ErrorKind::DnsMismatch => Fault::LocalDns,
        // The reference resolvers show what the world sees: if they give the expected
        // answer, only the site is behind.
        ErrorKind::DnsUnexpectedAnswer => {
            if answers(ResolverRole::Reference).any(|a| a.expected_match == Some(true)) {
                Fault::LocalDns
            } else {
                Fault::RemoteDns
            }
        }
        ErrorKind::DnsNxdomain | ErrorKind::DnsNodata => {
            if has_records(ResolverRole::Reference) {
                Fault::LocalDns
            } else {
                Fault::RemoteDns
            }
        }
        _ => {
            if answered(ResolverRole::Reference) {
                Fault::LocalDns
            } else if site.canaries_up() == Some(false) {
                Fault::Upstream
            } else if answers(ResolverRole::Reference).next().is_none() {
                // No reference resolver to compare with: the failing site resolver is
                // all the evidence (as in the site context's own verdict).
                Fault::LocalDns
            } else {
                Fault::RemoteDns
            }
        }
    }
}

/// Rule 4 for a host name lookup before connecting: only the site context's resolver
/// checks are known.
fn host_lookup_fault(kind: ErrorKind, site: &SiteContext) -> Fault {
    let site_up = site.resolvers_up(ResolverRole::Site);
    let reference_up = site.resolvers_up(ResolverRole::Reference);
    match kind {
        // The resolvers work and say the name does not exist: the domain's DNS.
        ErrorKind::DnsNxdomain | ErrorKind::DnsNodata => Fault::RemoteDns,
        // The site fails where the world succeeds.
        _ if site_up == Some(false) && reference_up == Some(true) => Fault::LocalDns,
        _ if site.canaries_up() == Some(false) => Fault::Upstream,
        // No reference to compare with: the site's resolver is all the evidence.
        _ if site_up == Some(false) && reference_up.is_none() => Fault::LocalDns,
        // Site and reference resolvers fail alike: the domain's DNS.
        _ => Fault::RemoteDns,
    }
}

#[cfg(test)]
mod tests;
