//! `site:` (the gateway, the resolvers, the canaries) and the `domain:` shorthand.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The site's own network context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// How to find the default gateway.
    pub gateway: Gateway,
    /// The resolvers the site's clients use.
    pub resolvers: SiteResolvers,
    /// Resolvers outside the site whose answer is the reference.
    pub reference_resolvers: Vec<SocketAddr>,
    /// `host:port` pairs reachable from any healthy uplink.
    pub canaries: Vec<HostPort>,
}

/// `site.gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// The default route's next hop.
    Auto,
    /// This address.
    Address(IpAddr),
    /// Do not check a gateway.
    None,
}

/// `site.resolvers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteResolvers {
    /// The name servers in `/etc/resolv.conf`.
    System,
    /// These servers.
    List(Vec<SocketAddr>),
}

/// A host and port as written in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A `targets: - domain: example.com` shorthand: probe whatever the domain's DNS
/// tells mail clients to use (its MX, and the endpoints of its RFC 6186/8314 SRV
/// records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Prefix of the discovered targets' names (`name` or the domain).
    pub name: String,
    /// The domain, lower case, without a trailing dot.
    pub domain: String,
    /// Interval of the discovered targets.
    pub interval: Duration,
    /// Timeout of the discovered targets.
    pub timeout: Duration,
    /// Whether the discovered targets keep their own phase histograms.
    pub phase_histogram: bool,
}
