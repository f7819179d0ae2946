//! The help-desk sentences: one place that says, in plain words, what a verdict means.
//! `mailprobe probe`, `mailprobe diagnose`, `/debug` and the status page all read
//! these, so a failure is described the same way wherever an administrator looks.

use super::{Fault, Judged};
use crate::config::{Endpoint, RoundtripTarget, TargetSpec};
use crate::probe::{ErrorKind, Failure, Phase};
use crate::site::{GatewayState, SiteContext};

/// One sentence for the help desk: what is wrong, and whose side it is on.
pub fn sentence(judged: &Judged) -> String {
    let target = &judged.target;
    let result = &judged.result;
    let Some(failure) = result.failure() else {
        return format!(
            "{} is healthy: every phase succeeded in {:.0} ms.",
            target.display_name(),
            result.duration.as_secs_f64() * 1000.0
        );
    };
    if failure.kind == ErrorKind::LocalResources {
        return format!(
            "{} could not be probed: this agent ran out of its own resources (file \
             descriptors, local ports or memory); neither the network nor the provider is \
             at fault. Raise the agent's limits or lower max_concurrent_probes.",
            target.display_name()
        );
    }
    if let TargetSpec::Roundtrip(roundtrip) = &target.spec
        && let Some(sentence) = roundtrip_sentence(judged, roundtrip, failure)
    {
        return sentence;
    }
    let identity_provider = result
        .login
        .as_ref()
        .and_then(|login| login.identity_provider.clone());
    let (host, port) = match (failure.phase, identity_provider, leg_endpoint(judged)) {
        // The token endpoint's hop failed: its host is the one in question.
        (Phase::Token, Some(provider), _) => (provider, "443".to_owned()),
        (_, _, Some(endpoint)) => (endpoint.host.clone(), endpoint.port.to_string()),
        (_, _, None) => match &target.spec {
            TargetSpec::Dns(query) => {
                (query.domain.trim_end_matches('.').to_owned(), String::new())
            }
            _ => (target.name.to_string(), String::new()),
        },
    };
    if failure.phase == Phase::Token
        && let Some(text) = token_sentence(judged, &host)
    {
        return text;
    }
    match judged.fault {
        Fault::None => format!("{} is healthy.", target.display_name()),
        Fault::ServerService if failure.kind == ErrorKind::ConnectRefused => format!(
            "{host} refused the connection on port {port}: the mail service is down (server side)."
        ),
        Fault::ServerService => format!(
            "{host} answered on port {port} but the service misbehaved ({}): a problem with the \
             mail service itself (server side).",
            failure.kind
        ),
        Fault::ServerTls => match failure.kind {
            ErrorKind::CertExpired => format!(
                "The certificate {host} presents has expired: the provider must renew it (server side)."
            ),
            ErrorKind::CertNameMismatch => format!(
                "The certificate {host} presents is for another name: the provider's certificate \
                 or the configured server name is wrong (server side)."
            ),
            ErrorKind::StarttlsUnavailable => format!(
                "{host} does not offer STARTTLS on port {port}, so mail clients cannot encrypt \
                 (server side, or a firewall here that strips STARTTLS)."
            ),
            kind => format!(
                "TLS with {host} failed ({kind}): the provider's TLS setup is at fault (server side)."
            ),
        },
        Fault::ServerAuth => login_sentence(judged, &host),
        Fault::ServerNetwork => format!(
            "{host} does not answer on port {port}, although this site reaches the internet: the \
             server or the path to it is down (server side)."
        ),
        Fault::Upstream => "The gateway answers but nothing beyond it does: the internet uplink \
             (ISP) is down (local side)."
            .to_owned(),
        Fault::LocalNetwork => "This machine cannot reach its gateway or has no route: the site's \
             network or this machine is at fault (local side)."
            .to_owned(),
        Fault::LocalDns => format!(
            "The site's DNS resolver fails or answers differently from public DNS for {host}: fix \
             the site's resolver or its internal zone (local side)."
        ),
        Fault::RemoteDns => format!(
            "Public DNS does not answer correctly for {host} ({}): the domain's DNS is at fault \
             (server side).",
            failure.kind
        ),
        Fault::Unknown => format!(
            "{} failed ({}), and there is not enough evidence to say whose fault it is.",
            target.display_name(),
            failure.kind
        ),
    }
}

/// The endpoint a failure happened at: a round trip's receiving side once its
/// message was submitted, the target's endpoint otherwise.
fn leg_endpoint(judged: &Judged) -> Option<&Endpoint> {
    let result = &judged.result;
    match &judged.target.spec {
        TargetSpec::Roundtrip(roundtrip) => {
            let submitted = result.phases.iter().any(|p| p.phase == Phase::Submit)
                && result.failure().is_none_or(|f| f.phase != Phase::Submit);
            Some(if submitted {
                &roundtrip.receive
            } else {
                &roundtrip.send.endpoint
            })
        }
        spec => spec.endpoint(),
    }
}

/// The sentences of a round trip's own reasons.
fn roundtrip_sentence(
    judged: &Judged,
    roundtrip: &RoundtripTarget,
    failure: &Failure,
) -> Option<String> {
    let send = &roundtrip.send.endpoint;
    let name = judged.target.display_name();
    Some(match failure.kind {
        ErrorKind::NotDelivered => format!(
            "{name}: {} accepted the test message for {} but it never appeared in the mailbox: \
             the provider's mail delivery is stuck or losing mail (server side).",
            send.host, roundtrip.to
        ),
        ErrorKind::DeliveredToJunk => format!(
            "{name}: the test message reached {} but was filed as junk: the provider's spam \
             filter (or a rule of the mailbox) diverts this route's mail (server side).",
            roundtrip.to
        ),
        ErrorKind::SendRejected => format!(
            "{name}: {}:{} refused the test message ({}): a permanent refusal — policy, the \
             sender or recipient, or the account may not send (server side).",
            send.host, send.port, failure.message
        ),
        ErrorKind::SendDeferred => format!(
            "{name}: {}:{} deferred the test message ({}): greylisting or a rate limit delays \
             mail on this route (server side).",
            send.host, send.port, failure.message
        ),
        ErrorKind::SendUncertain if judged.fault == Fault::ServerService => format!(
            "{name}: {}:{} did not confirm the test message after it was sent: it may or may \
             not have been accepted; the submission server is slow or hung (server side).",
            send.host, send.port
        ),
        _ => return None,
    })
}

/// A failure of the `token` phase on the provider's side (the identity provider
/// refused, misbehaved or is unreachable); `None` for the site's own faults, which
/// read the same for every hop.
fn token_sentence(judged: &Judged, provider: &str) -> Option<String> {
    let failure = judged.result.failure()?;
    let advice = advice(judged);
    Some(match judged.fault {
        Fault::ServerAuth => format!(
            "The identity provider {provider} refused mailprobe's OAuth2 client, so {} cannot \
             log in: {} (server side).",
            judged.target.display_name(),
            advice.unwrap_or("check the client id, its secret or certificate, and the consent")
        ),
        Fault::ServerNetwork => format!(
            "The identity provider {provider} does not answer, although this site reaches the \
             internet: without a token {} cannot log in; the provider's sign-in service or the \
             path to it is down, not the mail server (server side).",
            judged.target.display_name()
        ),
        Fault::ServerService => format!(
            "The identity provider {provider} answered but issued no token ({}): its sign-in \
             service misbehaves, not the mail server (server side).",
            failure.kind
        ),
        Fault::ServerTls => format!(
            "TLS with the identity provider {provider} failed ({}): the provider's TLS setup, \
             or an interception proxy here (server side).",
            failure.kind
        ),
        _ => return None,
    })
}

/// A rejected login, a held-back credential, and the missing step when the provider's
/// answer names one.
fn login_sentence(judged: &Judged, host: &str) -> String {
    let login = judged.result.login.as_ref();
    let oauth2 = login.is_some_and(|l| l.mechanism.is_some() || l.identity_provider.is_some());
    let fix = advice(judged).unwrap_or(if oauth2 {
        "check the application's permissions and its access to the mailbox"
    } else {
        "check the account and its password"
    });
    match login {
        Some(login) if login.suspended => format!(
            "{host} rejected the login {} times in a row; to keep the account from being locked \
             out mailprobe holds the credential back and tries again at {}: {fix} (server side).",
            login.consecutive_failures,
            login.next_attempt.map_or_else(
                || "the next round".to_owned(),
                |at| { humantime::format_rfc3339_seconds(at).to_string() }
            )
        ),
        _ => format!(
            "{host} rejected the {}login: {fix} (server side).",
            if oauth2 { "OAuth2 " } else { "" }
        ),
    }
}

/// The provider-specific next step of a failed OAuth2 login, if one is known.
fn advice(judged: &Judged) -> Option<&str> {
    judged
        .result
        .login
        .as_ref()
        .and_then(|login| login.advice.as_deref())
}

/// Whose side a fault domain is on, in words: `the local network (this site)`.
pub fn side(fault: Fault) -> &'static str {
    match fault {
        Fault::LocalNetwork => "the local network (this site)",
        Fault::LocalDns => "the local DNS (this site's resolver)",
        Fault::Upstream => "the uplink (the site's ISP)",
        Fault::RemoteDns
        | Fault::ServerNetwork
        | Fault::ServerService
        | Fault::ServerTls
        | Fault::ServerAuth => "the provider",
        Fault::None | Fault::Unknown => "unknown (not enough evidence)",
    }
}

/// The site's own state (`mailprobe_site_fault`) as a sentence.
pub fn site_state(fault: Fault) -> &'static str {
    match fault {
        Fault::None => "This site's network is healthy.",
        Fault::LocalNetwork => {
            "This machine cannot reach its gateway or has no route: the site's network is down."
        }
        Fault::Upstream => "The gateway answers but no canary does: the internet uplink is down.",
        Fault::LocalDns => "No site resolver answers: the site's DNS is down.",
        _ => "The site's network has not been measured yet.",
    }
}

/// The site snapshot in one line: gateway, each resolver, the canaries.
pub fn site_summary(site: &SiteContext) -> String {
    let gateway = match site.gateway_up() {
        None => "gateway not checked".to_owned(),
        Some(true) => "gateway answers".to_owned(),
        Some(false) => "gateway DOES NOT answer".to_owned(),
    };
    let resolvers = site
        .resolvers
        .iter()
        .map(|r| match r.error {
            None => format!("{} resolver {} up", r.role.as_str(), r.resolver),
            Some(kind) => format!("{} resolver {} DOWN ({kind})", r.role.as_str(), r.resolver),
        })
        .collect::<Vec<_>>();
    let canaries = match site.canaries_up() {
        None => "no canaries".to_owned(),
        Some(true) => "canaries reachable".to_owned(),
        Some(false) => "NO canary reachable".to_owned(),
    };
    [vec![gateway], resolvers, vec![canaries]]
        .concat()
        .join("; ")
}

/// The site snapshot, one line per check, with addresses and methods.
pub fn site_lines(site: &SiteContext) -> Vec<String> {
    let mut lines = vec![match &site.gateway {
        GatewayState::NotChecked => "gateway: not checked".to_owned(),
        GatewayState::NoDefaultRoute => "gateway: NO DEFAULT ROUTE".to_owned(),
        GatewayState::Checked {
            address,
            up,
            method,
        } => format!(
            "gateway {address}: {} ({})",
            if *up { "answers" } else { "DOES NOT answer" },
            method.as_str()
        ),
    }];
    for r in &site.resolvers {
        lines.push(match r.error {
            None => format!("{} resolver {}: up", r.role.as_str(), r.resolver),
            Some(kind) => format!("{} resolver {}: DOWN ({kind})", r.role.as_str(), r.resolver),
        });
    }
    if site.canaries.is_empty() {
        lines.push("canaries: none configured".to_owned());
    }
    for canary in &site.canaries {
        lines.push(format!(
            "canary {}: {}",
            canary.canary,
            if canary.up {
                "reachable"
            } else {
                "NOT reachable"
            }
        ));
    }
    lines
}
