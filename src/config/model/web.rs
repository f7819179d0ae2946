//! `web:` (the listener's TLS and users) and `probe_endpoint:` (ad-hoc `/probe`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A client gets this long to send a request's headers (and to finish the TLS
/// handshake): a scraper sends them at once; a client that trickles them is holding a
/// connection open.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no byte moving either way for this long is closed: longer than
/// any scrape interval a Prometheus uses (keep-alive survives), short enough that
/// abandoned connections do not pile up.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Client connections open at once: a few scrapers and an administrator's browser need
/// a handful; the cap keeps the agent's file descriptors for its probes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// `web`: how the HTTP listener is protected. Like `listen`, it takes effect at start;
/// a reload keeps the running listener.
#[derive(Clone)]
pub struct WebConfig {
    /// HTTPS instead of HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    pub basic_auth_users: Arc<std::collections::BTreeMap<String, String>>,
    /// Time allowed for a request's headers (and the TLS handshake).
    pub header_timeout: Duration,
    /// A connection idle this long is closed.
    pub idle_timeout: Duration,
    /// The most client connections open at once; more are closed as they arrive.
    pub max_connections: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            tls: None,
            basic_auth_users: Arc::default(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hashes are not secrets, but they have no business in a debug dump.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.basic_auth_users.keys().collect::<Vec<_>>(),
            )
            .field("header_timeout", &self.header_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `probe_endpoint`: the hosts ad-hoc `/probe` requests may reach. Empty: none, so
/// the agent is never an open proxy by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeEndpoint {
    /// The rules; a host is allowed when any rule matches.
    pub allow: Vec<AllowRule>,
}

impl ProbeEndpoint {
    /// Whether `host` (a name or an address) may be probed ad hoc.
    pub fn permits(&self, host: &str) -> bool {
        AllowRule::any_permits(&self.allow, host)
    }
}

impl AllowRule {
    /// Whether any of `rules` permits `host` (a name or an address).
    pub fn any_permits(rules: &[AllowRule], host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        rules.iter().any(|rule| match rule {
            AllowRule::Host(name) => *name == host,
            AllowRule::Subdomains(suffix) => {
                ip.is_none() && host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            AllowRule::Network(network, prefix) => {
                ip.is_some_and(|ip| in_network(ip, *network, *prefix))
            }
        })
    }
}

/// One `probe_endpoint.allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// Exactly this host name or address (lower case, no trailing dot).
    Host(String),
    /// Any name below this suffix (`*.example.com` is stored as `.example.com`).
    Subdomains(String),
    /// Any address in this network.
    Network(IpAddr, u8),
}

fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_endpoint_allows_only_what_it_lists() {
        let allow = ProbeEndpoint {
            allow: vec![
                AllowRule::Host("mail.example.net".into()),
                AllowRule::Subdomains(".example.com".into()),
                AllowRule::Network("192.0.2.0".parse().unwrap(), 24),
                AllowRule::Network("2001:db8::".parse().unwrap(), 32),
            ],
        };
        for host in [
            "mail.example.net",
            "MAIL.example.net.",
            "imap.example.com",
            "a.b.example.com",
            "192.0.2.77",
            "2001:db8::25",
        ] {
            assert!(allow.permits(host), "{host}");
        }
        for host in [
            "example.com",
            "evil-example.com",
            "example.net",
            "192.0.3.1",
            "10.0.0.1",
            "2001:db9::1",
            "127.0.0.1",
        ] {
            assert!(!allow.permits(host), "{host}");
        }
        assert!(
            !ProbeEndpoint::default().permits("mail.example.net"),
            "nothing by default"
        );
    }
}
