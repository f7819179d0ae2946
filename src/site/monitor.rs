//! The site monitor: measures the default gateway, the site and reference resolvers and
//! the canaries — every round, and again when a failure needs fresh evidence — and
//! publishes each measurement as a snapshot. It never judges: the judge reads the
//! snapshots as plain data ([`SiteContext`]).
//!
//! One measurement runs at a time, and every failure waiting for evidence newer than
//! its probe's start is served by the same one: a failure wave (the uplink goes down
//! under 5,000 targets) costs one or two measurements, not one per target.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hickory_resolver::proto::rr::RecordType;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{CanaryHealth, GatewayMethod, GatewayState, ResolverHealth, SiteContext};
use crate::config::{Config, Gateway, HostPort, TargetSpec};
use crate::probe::dial::{connect, dns_error};
use crate::probe::env::{DnsServer, ProbeEnv};
use crate::probe::{ErrorKind, dns};

/// Each check of the site context gets this long: a LAN gateway answers in
/// milliseconds and a resolver in well under a second; two seconds separates "slow"
/// from "not there" without delaying a failing probe's verdict much.
pub const SITE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Ports tried when ICMP is not permitted: a gateway that answers any of them, even
/// with a RST, is up. DNS, HTTP(S) and SSH cover what home and office routers run.
const GATEWAY_TCP_PORTS: [u16; 4] = [53, 80, 443, 22];

/// The question asked of every resolver to judge it: a name the site's mail clients
/// need (the first DNS target's, else the first target host name), so a resolver
/// that serves only internal zones is still judged on what matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverQuestion {
    /// Fully qualified name.
    pub name: String,
    /// Record type.
    pub record: RecordType,
}

impl ResolverQuestion {
    /// Picks the question for `config`.
    pub fn for_config(config: &Config) -> ResolverQuestion {
        for target in &config.targets {
            if let TargetSpec::Dns(query) = &target.spec
                && !answered_locally(&query.domain)
            {
                return ResolverQuestion {
                    name: query.domain.clone(),
                    record: dns::record_type(query.record),
                };
            }
        }
        for target in &config.targets {
            if let Some(endpoint) = target.spec.endpoint()
                && endpoint.host.parse::<IpAddr>().is_err()
                && !answered_locally(&endpoint.host)
            {
                return ResolverQuestion {
                    name: format!("{}.", endpoint.host.trim_end_matches('.')),
                    record: RecordType::A,
                };
            }
        }
        ResolverQuestion {
            name: ".".to_owned(),
            record: RecordType::NS,
        }
    }
}

/// Names a stub resolver answers without asking any server (RFC 6761: `localhost`
/// and names below it, `invalid`): asking them would not tell whether the resolver
/// is up.
fn answered_locally(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    ["localhost", "invalid"]
        .iter()
        .any(|special| name == *special || name.ends_with(&format!(".{special}")))
}

/// One published measurement: when it started (monotonic, to tell whether it is newer
/// than a failure) and what it found.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the measurement started.
    pub started: Instant,
    /// What it found.
    pub context: Arc<SiteContext>,
}

/// Measures the site context and publishes each measurement.
pub struct SiteMonitor {
    gateway: Gateway,
    canaries: Vec<HostPort>,
    question: ResolverQuestion,
    env: Arc<ProbeEnv>,
    icmp: Option<surge_ping::Client>,
    published: watch::Sender<Option<Snapshot>>,
    /// One measurement at a time; a failing target that arrives while one runs waits
    /// for it and reuses it when it started late enough.
    measuring: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SiteMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteMonitor")
            .field("gateway", &self.gateway)
            .field("question", &self.question)
            .finish_non_exhaustive()
    }
}

impl SiteMonitor {
    /// A monitor for `config`'s site, using `env`'s resolvers. Must be created inside
    /// the runtime (the ICMP client runs a receive task).
    pub fn new(config: &Config, env: Arc<ProbeEnv>) -> SiteMonitor {
        let icmp = match surge_ping::Client::new(&surge_ping::Config::default()) {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::info!(%error, "ICMP sockets are not permitted here; the gateway is checked with TCP");
                None
            }
        };
        SiteMonitor {
            gateway: config.site.gateway,
            canaries: config.site.canaries.clone(),
            question: ResolverQuestion::for_config(config),
            env,
            icmp,
            published: watch::Sender::new(None),
            measuring: tokio::sync::Mutex::new(()),
        }
    }

    /// The latest measurement, if any.
    pub fn latest(&self) -> Option<Arc<SiteContext>> {
        self.published
            .borrow()
            .as_ref()
            .map(|snapshot| Arc::clone(&snapshot.context))
    }

    /// Every measurement from now on (the metrics record them as they come).
    pub fn subscribe(&self) -> watch::Receiver<Option<Snapshot>> {
        self.published.subscribe()
    }

    /// A measurement that started at or after `since`: the latest if it qualifies,
    /// otherwise the one running now if it started late enough, otherwise a new one.
    /// Bounded: every check has [`SITE_CHECK_TIMEOUT`], so this waits at most two
    /// measurements.
    pub async fn fresh_since(&self, since: Instant) -> Arc<SiteContext> {
        if let Some(context) = self.published_since(since) {
            return context;
        }
        let _one_at_a_time = self.measuring.lock().await;
        if let Some(context) = self.published_since(since) {
            return context;
        }
        self.measure_now().await
    }

    fn published_since(&self, since: Instant) -> Option<Arc<SiteContext>> {
        self.published
            .borrow()
            .as_ref()
            .filter(|snapshot| snapshot.started >= since)
            .map(|snapshot| Arc::clone(&snapshot.context))
    }

    /// Measures now (all checks in parallel, each bounded by [`SITE_CHECK_TIMEOUT`]).
    pub async fn measure(&self) -> Arc<SiteContext> {
        let _one_at_a_time = self.measuring.lock().await;
        self.measure_now().await
    }

    async fn measure_now(&self) -> Arc<SiteContext> {
        let started = Instant::now();
        let measured_at = SystemTime::now();
        let resolvers = self.env.site_dns.iter().chain(&self.env.reference_dns);
        let (gateway, resolvers, canaries) = tokio::join!(
            self.check_gateway(),
            futures_util::future::join_all(resolvers.map(|server| self.check_resolver(server))),
            futures_util::future::join_all(self.canaries.iter().map(check_canary)),
        );
        // A check the agent's own limits broke (out of file descriptors) measured
        // nothing: it is left out, so it cannot blame the uplink or the site's DNS.
        let resolvers = resolvers.into_iter().flatten().collect();
        let canaries = canaries.into_iter().flatten().collect();
        let context = Arc::new(SiteContext {
            measured_at,
            gateway,
            resolvers,
            canaries,
        });
        self.published.send_replace(Some(Snapshot {
            started,
            context: Arc::clone(&context),
        }));
        context
    }

    async fn check_gateway(&self) -> GatewayState {
        let address = match self.gateway {
            Gateway::None => return GatewayState::NotChecked,
            Gateway::Address(address) => address,
            Gateway::Auto => match default_gateway() {
                Some(address) => IpAddr::V4(address),
                None => return GatewayState::NoDefaultRoute,
            },
        };
        if let Some(client) = &self.icmp
            && address.is_ipv4()
        {
            let mut pinger = client
                .pinger(address, surge_ping::PingIdentifier(fastrand::u16(..)))
                .await;
            pinger.timeout(SITE_CHECK_TIMEOUT);
            let up = pinger
                .ping(surge_ping::PingSequence(0), &[0; 16])
                .await
                .is_ok();
            return GatewayState::Checked {
                address,
                up,
                method: GatewayMethod::Icmp,
            };
        }
        let deadline = Instant::now() + SITE_CHECK_TIMEOUT;
        let attempts = GATEWAY_TCP_PORTS.map(|port| async move {
            match connect(&[address], port, deadline).await {
                Ok(_) => Some(true),
                Err(error) if error.kind == ErrorKind::LocalResources => None,
                Err(error) => Some(error.kind == ErrorKind::ConnectRefused),
            }
        });
        let answers = futures_util::future::join_all(attempts).await;
        if answers.iter().all(Option::is_none) {
            // The agent's own limits broke every attempt: nothing was measured.
            return GatewayState::NotChecked;
        }
        GatewayState::Checked {
            address,
            up: answers.into_iter().flatten().any(|up| up),
            method: GatewayMethod::Tcp,
        }
    }

    async fn check_resolver(&self, server: &DnsServer) -> Option<ResolverHealth> {
        let started = Instant::now();
        let lookup = server
            .resolver
            .lookup(self.question.name.as_str(), self.question.record);
        let error = match tokio::time::timeout(SITE_CHECK_TIMEOUT, lookup).await {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => {
                Some(dns_error(&error, &self.question.name, Some(&server.label)).kind)
            }
            Err(_) => Some(ErrorKind::DnsTimeout),
        };
        if error == Some(ErrorKind::LocalResources) {
            return None;
        }
        // NXDOMAIN and NODATA are answers: the resolver works.
        let up =
            error.is_none_or(|kind| matches!(kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata));
        Some(ResolverHealth {
            resolver: server.label.clone(),
            role: server.role,
            up,
            duration: started.elapsed(),
            error: error.filter(|_| !up),
        })
    }
}

/// A canary's state; `None` when the agent's own limits kept it from being checked.
async fn check_canary(canary: &HostPort) -> Option<CanaryHealth> {
    let deadline = Instant::now() + SITE_CHECK_TIMEOUT;
    // Canaries are addresses by design (a name would make them depend on DNS).
    let up = match canary.host.parse::<IpAddr>() {
        Ok(ip) => match connect(&[ip], canary.port, deadline).await {
            Ok(_) => true,
            Err(error) if error.kind == ErrorKind::LocalResources => return None,
            Err(error) => error.kind == ErrorKind::ConnectRefused,
        },
        Err(_) => false,
    };
    Some(CanaryHealth {
        canary: canary.to_string(),
        up,
    })
}

/// The IPv4 default gateway from `/proc/net/route`.
pub fn default_gateway() -> Option<Ipv4Addr> {
    parse_default_gateway(&std::fs::read_to_string("/proc/net/route").ok()?)
}

/// The gateway of the first default route (destination and mask 0) in the text of
/// `/proc/net/route`, whose addresses are little-endian hex.
pub fn parse_default_gateway(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, mask) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
        if *destination != "00000000" || *mask != "00000000" {
            return None;
        }
        let raw = u32::from_str_radix(gateway, 16).ok()?;
        (raw != 0).then(|| Ipv4Addr::from(raw.swap_bytes()))
    })
}

/// The socket address a canary string names, for tests and messages.
pub fn canary_address(canary: &HostPort) -> Option<SocketAddr> {
    canary
        .host
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, canary.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: `localhost` is answered without the network, so it never judges a
    /// resolver; the root zone's NS is asked instead.
    #[test]
    fn issue_16_the_resolver_question_is_never_answered_locally() {
        let config = crate::config::from_str(
            "targets:\n  - {name: l, protocol: dns, domain: localhost, record: A}\n  \
             - {name: s, protocol: tcp, host: mail.localhost, port: 25}\n",
            std::path::Path::new("t.yaml"),
        )
        .unwrap();
        let question = ResolverQuestion::for_config(&config);
        assert_eq!(question.name, ".");
        assert_eq!(question.record, RecordType::NS);
        assert!(answered_locally("LOCALHOST.") && answered_locally("a.localhost"));
        assert!(!answered_locally("localhost.example.com"));
    }

    #[test]
    fn the_default_route_is_read_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t0000FEA9\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                     eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_gateway(table),
            Some(Ipv4Addr::new(192, 168, 1, 1))
        );
        let no_default =
            "Iface\tDestination\tGateway\n eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(parse_default_gateway(no_default), None);
    }
}
