//! `mailprobe probe --config FILE TARGET`: one probe, now, with the site context, and a
//! verdict a help-desk person can act on.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::classify::classify;
use crate::config::{Config, Target, TargetSpec};
use crate::fault::Fault;
use crate::probe::{self, ErrorKind, ProbeResult, ProtocolFacts};
use crate::runtime::ProbeEnv;
use crate::site::{SiteContext, SiteMonitor};

/// One probe's outcome with its verdict.
#[derive(Debug)]
pub struct Report {
    /// The probe result.
    pub result: ProbeResult,
    /// Whose fault a failure is.
    pub fault: Fault,
    /// The site context the verdict rests on.
    pub site: Option<Arc<SiteContext>>,
}

/// Runs `name` from `config` once, measuring the site context alongside. An exchange
/// target runs every check (`name/check` runs one).
///
/// # Errors
///
/// A message when the target does not exist or the probe environment cannot be built.
pub async fn run(config: &Config, name: &str) -> Result<Vec<(Arc<Target>, Report)>, String> {
    let env = Arc::new(ProbeEnv::new(config)?);
    let mut targets = config.targets.clone();
    for discovery in &config.discover {
        targets.extend(crate::diagnose::expand(discovery, config, &env).await);
    }
    let chosen: Vec<Arc<Target>> = targets
        .iter()
        .filter(|t| &*t.name == name || t.display_name() == name)
        .cloned()
        .collect();
    if chosen.is_empty() {
        let mut names: Vec<&str> = targets.iter().map(|t| &*t.name).collect();
        names.dedup();
        return Err(format!(
            "no target `{name}` in {}; its targets are: {}",
            config.source.display(),
            names.join(", ")
        ));
    }
    let site = SiteMonitor::new(config, Arc::clone(&env));
    let probes = futures_util::future::join_all(chosen.iter().map(|t| probe::run(t, &env)));
    let (results, context) = tokio::join!(probes, site.measure());
    Ok(chosen
        .into_iter()
        .zip(results)
        .map(|(target, result)| {
            let fault = classify(&result, Some(&context));
            let report = Report {
                result,
                fault,
                site: Some(Arc::clone(&context)),
            };
            (target, report)
        })
        .collect())
}

/// The report as text: phases, the failure, the site context, and the verdict.
pub fn render(target: &Target, report: &Report) -> String {
    let result = &report.result;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "target {} ({}, {})",
        target.display_name(),
        target.protocol,
        target.describe()
    );
    if let Some(peer) = result.peer {
        let _ = writeln!(out, "  address used: {peer}");
    }
    // A phase can run more than once (redirects, Autodiscover's methods): the failure
    // belongs to its last run.
    let failed_at = result.failure().and_then(|failure| {
        result
            .phases
            .iter()
            .rposition(|timing| timing.phase == failure.phase)
    });
    for (index, timing) in result.phases.iter().enumerate() {
        let failed = failed_at == Some(index);
        let _ = writeln!(
            out,
            "  {:<9} {:>9.1} ms{}",
            timing.phase.as_metrics_label(),
            timing.duration.as_secs_f64() * 1000.0,
            if failed { "  FAILED" } else { "" }
        );
    }
    if let ProtocolFacts::Http(http) = &result.facts {
        let _ = writeln!(out, "  http: {http}");
    }
    if let Some(failure) = result.failure() {
        let _ = writeln!(out, "  reason: {} ({})", failure.kind, failure.message);
    }
    if let Some(site) = &report.site {
        let _ = writeln!(out, "  site: {}", site_summary(site));
    }
    let _ = writeln!(out, "  fault domain: {}", report.fault);
    let _ = writeln!(out, "\n{}", verdict(target, report));
    out
}

fn site_summary(site: &SiteContext) -> String {
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

/// One sentence for the help desk: what is wrong, and whose side it is on.
pub fn verdict(target: &Target, report: &Report) -> String {
    let result = &report.result;
    let Some(failure) = result.failure() else {
        return format!(
            "{} is healthy: every phase succeeded in {:.0} ms.",
            target.display_name(),
            result.duration.as_secs_f64() * 1000.0
        );
    };
    let (host, port) = match target.spec.endpoint() {
        Some(endpoint) => (endpoint.host.clone(), endpoint.port.to_string()),
        None => match &target.spec {
            TargetSpec::Dns(query) => {
                (query.domain.trim_end_matches('.').to_owned(), String::new())
            }
            _ => (target.name.to_string(), String::new()),
        },
    };
    match report.fault {
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
        Fault::ServerAuth => {
            format!("{host} rejected the login: check the account and its password (server side).")
        }
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
