//! Site context: is this site's own network healthy? The default gateway, the site and
//! reference resolvers, and the canaries, measured every round and again at once when
//! a target fails, so that a verdict never rests on stale evidence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hickory_resolver::proto::rr::RecordType;
use tokio::time::Instant;

use crate::classify::classify;
use crate::config::{Config, Gateway, HostPort, TargetSpec};
use crate::fault::Fault;
use crate::probe::dial::{connect, dns_error};
use crate::probe::{ErrorKind, ProbeResult, dns};
use crate::runtime::{DnsServer, ProbeEnv, ResolverRole};

/// Each check of the site context gets this long: a LAN gateway answers in
/// milliseconds and a resolver in well under a second; two seconds separates "slow"
/// from "not there" without delaying a failing probe's verdict much.
pub const SITE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Ports tried when ICMP is not permitted: a gateway that answers any of them, even
/// with a RST, is up. DNS, HTTP(S) and SSH cover what home and office routers run.
const GATEWAY_TCP_PORTS: [u16; 4] = [53, 80, 443, 22];

/// How the gateway was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMethod {
    /// ICMP echo.
    Icmp,
    /// TCP connect (a RST counts as reachable), because ICMP sockets are not permitted.
    Tcp,
}

impl GatewayMethod {
    /// The `method` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayMethod::Icmp => "icmp",
            GatewayMethod::Tcp => "tcp",
        }
    }
}

/// The gateway's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayState {
    /// `site.gateway: none`.
    NotChecked,
    /// `auto`, and the routing table has no default route.
    NoDefaultRoute,
    /// Checked.
    Checked {
        /// Its address.
        address: IpAddr,
        /// Whether it answered.
        up: bool,
        /// How it was asked.
        method: GatewayMethod,
    },
}

/// One resolver's health.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverHealth {
    /// The `resolver` label.
    pub resolver: String,
    /// Site or reference.
    pub role: ResolverRole,
    /// Answered NOERROR, NXDOMAIN or NODATA in time.
    pub up: bool,
    /// How long it took.
    pub duration: Duration,
    /// Why it is down.
    pub error: Option<ErrorKind>,
}

/// One canary's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryHealth {
    /// `host:port`, the `canary` label.
    pub canary: String,
    /// Reachable (connected, or refused: the path works).
    pub up: bool,
}

/// Everything measured about the site in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteContext {
    /// When the measurement started.
    pub measured_at: SystemTime,
    /// The default gateway.
    pub gateway: GatewayState,
    /// Site resolvers then reference resolvers.
    pub resolvers: Vec<ResolverHealth>,
    /// The canaries.
    pub canaries: Vec<CanaryHealth>,
}

impl SiteContext {
    /// `Some(false)` when the gateway is known to be down or missing.
    pub fn gateway_up(&self) -> Option<bool> {
        match self.gateway {
            GatewayState::NotChecked => None,
            GatewayState::NoDefaultRoute => Some(false),
            GatewayState::Checked { up, .. } => Some(up),
        }
    }

    /// Whether any resolver of `role` answered; `None` when there is none.
    pub fn resolvers_up(&self, role: ResolverRole) -> Option<bool> {
        let mut of_role = self.resolvers.iter().filter(|r| r.role == role).peekable();
        of_role.peek()?;
        Some(of_role.any(|r| r.up))
    }

    /// Whether any canary is reachable; `None` when none is configured.
    pub fn canaries_up(&self) -> Option<bool> {
        (!self.canaries.is_empty()).then(|| self.canaries.iter().any(|c| c.up))
    }

    /// The site's own fault, independent of any target: `local_network` (no route or
    /// the gateway is down), `upstream` (the gateway answers, no canary does),
    /// `local_dns` (no site resolver answers), else `none`.
    pub fn fault(&self) -> Fault {
        if self.gateway_up() == Some(false) {
            return Fault::LocalNetwork;
        }
        if self.canaries_up() == Some(false) {
            return Fault::Upstream;
        }
        if self.resolvers_up(ResolverRole::Site) == Some(false) {
            return Fault::LocalDns;
        }
        Fault::None
    }
}

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
            if let TargetSpec::Dns(query) = &target.spec {
                return ResolverQuestion {
                    name: query.domain.clone(),
                    record: dns::record_type(query.record),
                };
            }
        }
        for target in &config.targets {
            if let Some(endpoint) = target.spec.endpoint()
                && endpoint.host.parse::<IpAddr>().is_err()
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

/// Measures the site context and keeps the latest measurement.
pub struct SiteMonitor {
    gateway: Gateway,
    canaries: Vec<HostPort>,
    question: ResolverQuestion,
    env: Arc<ProbeEnv>,
    icmp: Option<surge_ping::Client>,
    latest: Mutex<Option<(Instant, Arc<SiteContext>)>>,
    /// One measurement at a time; a failing target that arrives while one runs waits
    /// for it and reuses it.
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
            latest: Mutex::new(None),
            measuring: tokio::sync::Mutex::new(()),
        }
    }

    /// The latest measurement, if any.
    pub fn latest(&self) -> Option<Arc<SiteContext>> {
        self.lock().as_ref().map(|(_, context)| Arc::clone(context))
    }

    /// A measurement that started at or after `since`: the latest if it qualifies,
    /// otherwise a new one.
    pub async fn fresh_since(&self, since: Instant) -> Arc<SiteContext> {
        let _one_at_a_time = self.measuring.lock().await;
        if let Some((started, context)) = self.lock().as_ref()
            && *started >= since
        {
            return Arc::clone(context);
        }
        self.measure_now().await
    }

    /// Whose fault `result` is, for a probe that started at `started`: a success
    /// needs no new evidence; a failure is judged on the site as it is now, not as
    /// it was a round ago. Returns the context used when a new one was measured.
    pub async fn judge(
        &self,
        result: &ProbeResult,
        started: Instant,
    ) -> (Fault, Option<Arc<SiteContext>>) {
        if result.is_success() {
            return (Fault::None, None);
        }
        let context = self.fresh_since(started).await;
        (classify(result, Some(&context)), Some(context))
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
        let context = Arc::new(SiteContext {
            measured_at,
            gateway,
            resolvers,
            canaries,
        });
        *self.lock() = Some((started, Arc::clone(&context)));
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
                Ok(_) => true,
                Err(error) => error.kind == ErrorKind::ConnectRefused,
            }
        });
        let up = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .any(|up| up);
        GatewayState::Checked {
            address,
            up,
            method: GatewayMethod::Tcp,
        }
    }

    async fn check_resolver(&self, server: &DnsServer) -> ResolverHealth {
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
        // NXDOMAIN and NODATA are answers: the resolver works.
        let up =
            error.is_none_or(|kind| matches!(kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata));
        ResolverHealth {
            resolver: server.label.clone(),
            role: server.role,
            up,
            duration: started.elapsed(),
            error: error.filter(|_| !up),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<SiteContext>)>> {
        // Replacing an Arc cannot be left half-done by a panic.
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn check_canary(canary: &HostPort) -> CanaryHealth {
    let deadline = Instant::now() + SITE_CHECK_TIMEOUT;
    // Canaries are addresses by design (a name would make them depend on DNS).
    let up = match canary.host.parse::<IpAddr>() {
        Ok(ip) => match connect(&[ip], canary.port, deadline).await {
            Ok(_) => true,
            Err(error) => error.kind == ErrorKind::ConnectRefused,
        },
        Err(_) => false,
    };
    CanaryHealth {
        canary: canary.to_string(),
        up,
    }
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

    fn context(
        gateway: Option<bool>,
        site_dns: &[bool],
        reference: &[bool],
        canaries: &[bool],
    ) -> SiteContext {
        let resolver = |role, up: &bool| ResolverHealth {
            resolver: "r".into(),
            role,
            up: *up,
            duration: Duration::ZERO,
            error: None,
        };
        SiteContext {
            measured_at: SystemTime::UNIX_EPOCH,
            gateway: match gateway {
                None => GatewayState::NotChecked,
                Some(up) => GatewayState::Checked {
                    address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    up,
                    method: GatewayMethod::Icmp,
                },
            },
            resolvers: site_dns
                .iter()
                .map(|up| resolver(ResolverRole::Site, up))
                .chain(
                    reference
                        .iter()
                        .map(|up| resolver(ResolverRole::Reference, up)),
                )
                .collect(),
            canaries: canaries
                .iter()
                .map(|up| CanaryHealth {
                    canary: "c".into(),
                    up: *up,
                })
                .collect(),
        }
    }

    #[test]
    fn the_site_fault_prefers_the_most_local_explanation() {
        assert_eq!(
            context(Some(true), &[true], &[true], &[true]).fault(),
            Fault::None
        );
        assert_eq!(
            context(Some(false), &[false], &[false], &[false]).fault(),
            Fault::LocalNetwork
        );
        assert_eq!(
            context(Some(true), &[false], &[false], &[false, false]).fault(),
            Fault::Upstream
        );
        assert_eq!(
            context(Some(true), &[true], &[true], &[false, true]).fault(),
            Fault::None
        );
        assert_eq!(
            context(Some(true), &[false, false], &[true], &[true]).fault(),
            Fault::LocalDns
        );
        assert_eq!(
            context(Some(true), &[false, true], &[true], &[true]).fault(),
            Fault::None
        );
        // Nothing configured to check: nothing to blame.
        assert_eq!(context(None, &[], &[], &[]).fault(), Fault::None);
    }
}
