//! The site context as plain data: what one measurement of the gateway, the
//! resolvers and the canaries found. [`super::monitor`] measures it; the judge reads it.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::probe::ErrorKind;
use crate::probe::env::ResolverRole;

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
}
