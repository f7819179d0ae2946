//! Fault domains: whose fault a failure is. [`super::classify`] decides; this is the
//! vocabulary.

use std::fmt;

/// Where a failure lies. The label values are part of the metrics contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The probe succeeded.
    None,
    /// This site's LAN or host.
    LocalNetwork,
    /// This site's resolver.
    LocalDns,
    /// The ISP or uplink.
    Upstream,
    /// The domain's public DNS.
    RemoteDns,
    /// The path to the provider, or the host is down.
    ServerNetwork,
    /// The service itself.
    ServerService,
    /// The provider's TLS.
    ServerTls,
    /// Credentials rejected.
    ServerAuth,
    /// Not enough evidence.
    Unknown,
}

impl Fault {
    /// Every domain, so one-hot gauges can always export all of them.
    pub const ALL: [Fault; 10] = [
        Fault::None,
        Fault::LocalNetwork,
        Fault::LocalDns,
        Fault::Upstream,
        Fault::RemoteDns,
        Fault::ServerNetwork,
        Fault::ServerService,
        Fault::ServerTls,
        Fault::ServerAuth,
        Fault::Unknown,
    ];

    /// The domains `mailprobe_site_fault` is one-hot over: the site's own faults.
    pub const SITE: [Fault; 5] = [
        Fault::None,
        Fault::LocalNetwork,
        Fault::LocalDns,
        Fault::Upstream,
        Fault::Unknown,
    ];

    /// The `domain` label value.
    pub fn as_metrics_label(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::LocalNetwork => "local_network",
            Fault::LocalDns => "local_dns",
            Fault::Upstream => "upstream",
            Fault::RemoteDns => "remote_dns",
            Fault::ServerNetwork => "server_network",
            Fault::ServerService => "server_service",
            Fault::ServerTls => "server_tls",
            Fault::ServerAuth => "server_auth",
            Fault::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_metrics_label())
    }
}
