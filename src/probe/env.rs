//! What probes need at run time (the probe environment), built once per configuration load: the site resolver
//! used for dialling, one resolver per DNS server judged, and the certificate verifiers.
//!
//! Building these per probe would re-read the system trust store and re-create
//! resolver pools thousands of times a minute; building them per load keeps a reload
//! the only moment they change.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls_pki_types::CertificateDer;

use crate::config::{Config, SiteResolvers, TlsMode};
use crate::probe::logins::Logins;
use crate::probe::oauth2::{TokenCache, TokenKey};
use crate::probe::roundtrip::Sweeps;
use crate::probe::tls;

/// Per-query timeout inside hickory. The probe's own deadline bounds the whole lookup;
/// this only decides when a lost UDP datagram is retried.
const RESOLVER_QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Retries after a lost query: one retry absorbs a single lost datagram without
/// hiding a resolver that is really down.
const RESOLVER_ATTEMPTS: usize = 1;

/// Whether a resolver is the site's own or a reference outside the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolverRole {
    /// A resolver the site's clients use.
    Site,
    /// A resolver outside the site whose answer is the reference.
    Reference,
}

impl ResolverRole {
    /// The `role` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ResolverRole::Site => "site",
            ResolverRole::Reference => "reference",
        }
    }
}

/// One DNS server, judged on its own: a resolver with exactly this server and no cache.
pub struct DnsServer {
    /// `address` (port 53) or `address:port`: the `resolver` label.
    pub label: String,
    /// The server's address.
    pub address: SocketAddr,
    /// Site or reference.
    pub role: ResolverRole,
    /// A resolver that asks only this server.
    pub resolver: TokioResolver,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer")
            .field("label", &self.label)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Why the probe environment could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// `resolvers: system`, and `/etc/resolv.conf` cannot be read.
    #[error("cannot read the system resolver configuration (/etc/resolv.conf): {0}")]
    SystemResolvers(String),
    /// hickory refused the resolver configuration.
    #[error("cannot build a resolver: {0}")]
    Resolver(String),
    /// A trust anchor cannot be used.
    #[error("{}{reason}", target.as_ref().map(|t| format!("target `{t}`: ")).unwrap_or_default())]
    Trust {
        /// The target whose `ca_file` it is; `None` for `tls.ca_file` or the system roots.
        target: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything a probe needs besides its target.
pub struct ProbeEnv {
    /// Resolves target host names the way the site's clients do (all site resolvers).
    pub dial_resolver: TokioResolver,
    /// The site resolvers, one per server.
    pub site_dns: Vec<DnsServer>,
    /// The reference resolvers, one per server.
    pub reference_dns: Vec<DnsServer>,
    system_verifier: Arc<tls::ChainVerifier>,
    /// Verifiers for targets with extra trust anchors, keyed by those anchors.
    extra_verifiers: HashMap<Arc<[CertificateDer<'static>]>, Arc<tls::ChainVerifier>>,
    /// When each round-trip route last swept its mailbox, for this configuration.
    pub roundtrips: Sweeps,
    /// OAuth2 access tokens, shared by every probe and kept across reloads.
    pub tokens: Arc<TokenCache>,
    /// Each target's login state (rejections in a row, a held-back credential), kept
    /// across reloads.
    pub logins: Arc<Logins>,
}

impl fmt::Debug for ProbeEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeEnv")
            .field("site_dns", &self.site_dns)
            .field("reference_dns", &self.reference_dns)
            .finish_non_exhaustive()
    }
}

impl ProbeEnv {
    /// Builds resolvers and verifiers for `config`.
    ///
    /// # Errors
    ///
    /// [`EnvError`] when `/etc/resolv.conf` cannot be read (with `resolvers: system`),
    /// a resolver cannot be built, or a CA certificate cannot be used.
    pub fn new(config: &Config) -> Result<Self, EnvError> {
        let site_addresses = match &config.site.resolvers {
            SiteResolvers::List(list) => list.clone(),
            SiteResolvers::System => system_name_servers()?,
        };
        let dial_resolver = resolver_for(&site_addresses, ResolveHosts::Auto)?;
        let servers = |addresses: &[SocketAddr], role| -> Result<Vec<DnsServer>, EnvError> {
            addresses
                .iter()
                .map(|address| {
                    Ok(DnsServer {
                        label: resolver_label(*address),
                        address: *address,
                        role,
                        resolver: resolver_for(&[*address], ResolveHosts::Never)?,
                    })
                })
                .collect()
        };
        let site_dns = servers(&site_addresses, ResolverRole::Site)?;
        let reference_dns = servers(&config.site.reference_resolvers, ResolverRole::Reference)?;

        let system_roots = tls::system_roots();
        let trust = |target: Option<&str>| {
            let target = target.map(str::to_owned);
            move |reason| EnvError::Trust { target, reason }
        };
        let system_verifier = tls::verifier(&system_roots, &[]).map_err(trust(None))?;
        let mut extra_verifiers = HashMap::new();
        for target in &config.targets {
            for endpoint in target.spec.endpoints() {
                if endpoint.tls != TlsMode::None
                    && !endpoint.extra_roots.is_empty()
                    && !extra_verifiers.contains_key(&endpoint.extra_roots)
                {
                    let verifier = tls::verifier(&system_roots, &endpoint.extra_roots)
                        .map_err(trust(Some(&target.name)))?;
                    extra_verifiers.insert(Arc::clone(&endpoint.extra_roots), verifier);
                }
            }
        }
        // Ad-hoc `/probe` targets trust the roots of `tls.ca_file`.
        if !config.tls_roots.is_empty() && !extra_verifiers.contains_key(&config.tls_roots) {
            let verifier = tls::verifier(&system_roots, &config.tls_roots).map_err(trust(None))?;
            extra_verifiers.insert(Arc::clone(&config.tls_roots), verifier);
        }
        Ok(ProbeEnv {
            dial_resolver,
            site_dns,
            reference_dns,
            system_verifier,
            extra_verifiers,
            roundtrips: Sweeps::default(),
            tokens: Arc::new(TokenCache::new()),
            logins: Arc::new(Logins::new()),
        })
    }

    /// Takes over what `previous` (the environment of the configuration `config`
    /// replaces) learned across rounds: the tokens of logins `config` still has, and
    /// the login states of its targets (a suspended login tries again at once).
    pub fn adopt(&mut self, previous: &ProbeEnv, config: &Config) {
        let logins: HashSet<TokenKey> = config
            .targets
            .iter()
            .flat_map(|target| target.spec.endpoints())
            .filter_map(|endpoint| endpoint.auth.as_ref()?.oauth2.as_ref())
            .map(|oauth2| oauth2.fingerprint())
            .collect();
        previous.tokens.retain(&logins);
        self.tokens = Arc::clone(&previous.tokens);
        previous.logins.carry_over(config);
        self.logins = Arc::clone(&previous.logins);
    }

    /// The verifier for an endpoint with these extra trust anchors.
    pub fn verifier(&self, extra_roots: &[CertificateDer<'static>]) -> &Arc<tls::ChainVerifier> {
        if extra_roots.is_empty() {
            return &self.system_verifier;
        }
        // Every endpoint's roots were registered in `new`; the system verifier is a safe
        // answer should that ever not hold (it only trusts less).
        self.extra_verifiers
            .get(extra_roots)
            .unwrap_or(&self.system_verifier)
    }
}

/// `10.0.0.53` for port 53, `10.0.0.53:5353` or `[2001:db8::53]:5353` otherwise.
pub fn resolver_label(address: SocketAddr) -> String {
    if address.port() == 53 {
        address.ip().to_string()
    } else {
        address.to_string()
    }
}

/// The name servers in `/etc/resolv.conf`, in order.
fn system_name_servers() -> Result<Vec<SocketAddr>, EnvError> {
    let (config, _options) = hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| EnvError::SystemResolvers(e.to_string()))?;
    let mut addresses = Vec::new();
    for server in config.name_servers() {
        let port = server.connections.first().map_or(53, |c| c.port);
        let address = SocketAddr::new(server.ip, port);
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// A resolver asking exactly `servers`, without a cache, so that every probe measures
/// the servers as they are now.
fn resolver_for(servers: &[SocketAddr], hosts: ResolveHosts) -> Result<TokioResolver, EnvError> {
    let name_servers = servers
        .iter()
        .map(|address| {
            let mut server = NameServerConfig::udp_and_tcp(address.ip());
            for connection in &mut server.connections {
                connection.port = address.port();
            }
            server
        })
        .collect();
    let config = ResolverConfig::from_parts(None, Vec::new(), name_servers);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.timeout = RESOLVER_QUERY_TIMEOUT;
    options.attempts = RESOLVER_ATTEMPTS;
    options.use_hosts_file = hosts;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Ask the servers one after the other, as a stub resolver does.
    options.num_concurrent_reqs = 1;
    hickory_resolver::Resolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| EnvError::Resolver(e.to_string()))
}
