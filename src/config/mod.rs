//! Configuration: the YAML users write, checked once into values the agent can trust.
//!
//! [`raw`] mirrors the file; [`load`] parses it and [`validate`](mod@validate) builds a
//! [`Config`]. Nothing outside this module ever sees an unchecked value. Every error
//! names the file, line, column and field ([`ConfigError`]).

mod error;
pub mod raw;
mod validate;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use error::{ConfigError, Invalid};
pub use validate::AdhocError;

/// The name `smtp` targets send with EHLO when `ehlo_name` is not set: this host's
/// name, or `localhost` when it cannot be read or is not a valid host name.
pub fn default_ehlo_name() -> String {
    validate::default_ehlo_name()
}

/// The names of the ad-hoc `/probe` modules, for messages.
pub fn adhoc_modules() -> Vec<&'static str> {
    validate::MODULES.iter().map(|(name, _, _)| *name).collect()
}

/// A target for an ad-hoc `/probe?module=…&target=HOST:PORT`, allowed only for hosts
/// `probe_endpoint.allow` permits.
///
/// # Errors
///
/// [`AdhocError`] for an unknown module, a malformed target or a host not allowed.
pub fn adhoc_target(config: &Config, module: &str, host_port: &str) -> Result<Target, AdhocError> {
    validate::adhoc_target(config, module, host_port)
}

/// Where the agent listens when the file does not say.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9925";
/// A probe every 30 s is frequent enough to catch an outage inside one alert `for:`
/// window and rare enough that no provider sees it as abuse.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// 10 s covers a slow TLS handshake on a congested uplink plus a provider's deliberate
/// delay on a failed login (Dovecot waits 2 s), yet still fails a dead endpoint quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Enough parallel probes for thousands of targets at the default interval when most
/// answer in milliseconds, while bounding sockets and memory if many hang until timeout.
pub const DEFAULT_MAX_CONCURRENT_PROBES: usize = 256;
/// Label values must stay short; a longer target name is almost surely a mistake.
pub const MAX_TARGET_NAME_LEN: usize = 64;

/// The protocols a target can use. The names are part of the configuration contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// IMAP (143 / 993).
    Imap,
    /// POP3 (110 / 995).
    Pop3,
    /// SMTP (25 / 587 / 465).
    Smtp,
    /// Webmail over HTTPS.
    Https,
    /// Exchange Autodiscover, EWS, ActiveSync, MAPI, OWA.
    Exchange,
    /// A DNS record.
    Dns,
    /// A TCP connect, optionally with implicit TLS.
    Tcp,
}

impl Protocol {
    /// Every protocol, in the order the documentation lists them.
    pub const ALL: [Protocol; 7] = [
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Smtp,
        Protocol::Https,
        Protocol::Exchange,
        Protocol::Dns,
        Protocol::Tcp,
    ];

    /// The configuration name and `protocol` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Smtp => "smtp",
            Protocol::Https => "https",
            Protocol::Exchange => "exchange",
            Protocol::Dns => "dns",
            Protocol::Tcp => "tcp",
        }
    }

    /// Whether the protocol has an in-band TLS upgrade (`tls: starttls`).
    pub fn has_starttls(self) -> bool {
        matches!(self, Protocol::Imap | Protocol::Pop3 | Protocol::Smtp)
    }

    fn parse(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How TLS is used on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (993, 995, 465, 443).
    Implicit,
    /// Plain text, upgraded in-band.
    Starttls,
    /// No TLS at all.
    None,
}

impl TlsMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Implicit => "implicit",
            TlsMode::Starttls => "starttls",
            TlsMode::None => "none",
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (used for reloads and in messages).
    pub source: PathBuf,
    /// The metrics endpoint address.
    pub listen: SocketAddr,
    /// Global cap on probes running at once.
    pub max_concurrent_probes: usize,
    /// Longest delay before a target's first probe; `None` spreads first probes over
    /// each target's whole interval.
    pub start_jitter: Option<Duration>,
    /// The site's network context.
    pub site: Site,
    /// Which hosts ad-hoc `/probe` requests may reach.
    pub probe_endpoint: ProbeEndpoint,
    /// TLS and basic authentication for the listener.
    pub web: WebConfig,
    /// Trust anchors from `tls.ca_file`, for probes that are not configured targets.
    pub tls_roots: Arc<[CertificateDer<'static>]>,
    /// `defaults.timeout`, for probes that are not configured targets.
    pub default_timeout: Duration,
    /// What to probe; names unique. Empty only when `discover` is not.
    pub targets: Vec<Arc<Target>>,
    /// `targets: - domain: …` shorthands, expanded into targets by discovery when the
    /// agent starts and at every reload.
    pub discover: Vec<Discovery>,
}

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

/// `web`: how the HTTP listener is protected. Like `listen`, it takes effect at start;
/// a reload keeps the running listener.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// HTTPS instead of HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    pub basic_auth_users: Arc<std::collections::BTreeMap<String, String>>,
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
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        self.allow.iter().any(|rule| match rule {
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
}

/// One validated target.
#[derive(Debug)]
pub struct Target {
    /// The configured name; the `target` label. Unique, except that the checks of one
    /// exchange target share it (they differ in [`Target::check`]).
    pub name: Arc<str>,
    /// The protocol.
    pub protocol: Protocol,
    /// Time between probes.
    pub interval: Duration,
    /// Upper bound on one probe; never longer than `interval`.
    pub timeout: Duration,
    /// What the protocol needs.
    pub spec: TargetSpec,
}

/// What tells one probe series from another: the target's name and, for the checks
/// of an exchange target, the check.
pub type SeriesKey = (Arc<str>, Option<ExchangeCheck>);

impl Target {
    /// The series this target's probes update.
    pub fn series_key(&self) -> SeriesKey {
        (Arc::clone(&self.name), self.check())
    }

    /// The Exchange check this probe runs (its `check` label), for exchange targets.
    pub fn check(&self) -> Option<ExchangeCheck> {
        match &self.spec {
            TargetSpec::Exchange(exchange) => Some(exchange.check),
            _ => None,
        }
    }

    /// What the target probes, in one line: `mail.example.com:993 tls=implicit login`,
    /// `example.com. MX`, the page's URL, or the mailbox Autodiscover looks up.
    pub fn describe(&self) -> String {
        let login = |endpoint: &Endpoint| {
            if endpoint.auth.is_some() {
                " login"
            } else {
                ""
            }
        };
        match &self.spec {
            TargetSpec::Dns(query) => format!("{} {}", query.domain, query.record.as_str()),
            TargetSpec::Https(https) => format!("{}{}", https.url, login(&https.endpoint)),
            TargetSpec::Exchange(exchange) if exchange.check == ExchangeCheck::Autodiscover => {
                format!(
                    "autodiscover for {}{}",
                    exchange.email.as_deref().unwrap_or("-"),
                    login(&exchange.endpoint)
                )
            }
            TargetSpec::Exchange(ExchangeTarget { endpoint, .. })
            | TargetSpec::Tcp(endpoint)
            | TargetSpec::Imap(endpoint)
            | TargetSpec::Pop3(endpoint)
            | TargetSpec::Smtp(SmtpTarget { endpoint, .. }) => format!(
                "{}:{} tls={}{}",
                endpoint.host,
                endpoint.port,
                endpoint.tls.as_str(),
                login(endpoint)
            ),
        }
    }

    /// `name`, or `name/check` for an Exchange check: what logs and messages call
    /// this probe.
    pub fn display_name(&self) -> String {
        match self.check() {
            Some(check) => format!("{}/{check}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// The protocol-specific part of a target.
#[derive(Debug)]
pub enum TargetSpec {
    /// `protocol: tcp`.
    Tcp(Endpoint),
    /// `protocol: imap`.
    Imap(Endpoint),
    /// `protocol: pop3`.
    Pop3(Endpoint),
    /// `protocol: smtp`.
    Smtp(SmtpTarget),
    /// `protocol: dns`.
    Dns(DnsQuery),
    /// `protocol: https` (webmail).
    Https(HttpsTarget),
    /// One check of a `protocol: exchange` target.
    Exchange(ExchangeTarget),
}

impl TargetSpec {
    /// The endpoint dialled, for the protocols that open a connection.
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            TargetSpec::Tcp(endpoint) | TargetSpec::Imap(endpoint) | TargetSpec::Pop3(endpoint) => {
                Some(endpoint)
            }
            TargetSpec::Smtp(smtp) => Some(&smtp.endpoint),
            TargetSpec::Https(https) => Some(&https.endpoint),
            TargetSpec::Exchange(exchange) => Some(&exchange.endpoint),
            TargetSpec::Dns(_) => None,
        }
    }
}

/// A `protocol: https` target: a web page (webmail) fetched like a browser would.
#[derive(Debug, Clone)]
pub struct HttpsTarget {
    /// The page to fetch.
    pub url: url::Url,
    /// The URL's host and port, with the target's TLS trust, SNI name and Basic
    /// credentials.
    pub endpoint: Endpoint,
    /// Acceptable final status codes; `None` accepts any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// A pattern the final body must contain.
    pub expect_body: Option<regex::bytes::Regex>,
}

/// The URL's host as a dialler takes it: a name, or an address without brackets.
pub fn url_host(url: &url::Url) -> String {
    match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => String::new(),
    }
}

/// One service of an Exchange server (or Exchange Online) a `protocol: exchange`
/// target checks. Each check is its own probe and its own series (label `check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExchangeCheck {
    /// Autodiscover, the way Outlook finds its server (POX and the v2 JSON endpoint).
    Autodiscover,
    /// Exchange Web Services, `/EWS/Exchange.asmx`.
    Ews,
    /// Exchange ActiveSync (phones), `OPTIONS /Microsoft-Server-ActiveSync`.
    Activesync,
    /// Outlook on the web, `/owa/`.
    Owa,
    /// MAPI over HTTP (Outlook), `/mapi/healthcheck.htm`.
    Mapi,
    /// The admin center, `/ecp/healthcheck.htm`.
    Ecp,
    /// The offline address book, `/oab/healthcheck.htm`.
    Oab,
    /// Outlook Anywhere (RPC over HTTP), `/rpc/healthcheck.htm`.
    Rpc,
}

impl ExchangeCheck {
    /// Every check, in the order the documentation lists them.
    pub const ALL: [ExchangeCheck; 8] = [
        ExchangeCheck::Autodiscover,
        ExchangeCheck::Ews,
        ExchangeCheck::Activesync,
        ExchangeCheck::Owa,
        ExchangeCheck::Mapi,
        ExchangeCheck::Ecp,
        ExchangeCheck::Oab,
        ExchangeCheck::Rpc,
    ];

    /// The checks a target runs when it does not list `checks`: what Outlook, phones
    /// and browsers use.
    pub const DEFAULT: [ExchangeCheck; 5] = [
        ExchangeCheck::Autodiscover,
        ExchangeCheck::Ews,
        ExchangeCheck::Activesync,
        ExchangeCheck::Mapi,
        ExchangeCheck::Owa,
    ];

    /// The configuration name and `check` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeCheck::Autodiscover => "autodiscover",
            ExchangeCheck::Ews => "ews",
            ExchangeCheck::Activesync => "activesync",
            ExchangeCheck::Owa => "owa",
            ExchangeCheck::Mapi => "mapi",
            ExchangeCheck::Ecp => "ecp",
            ExchangeCheck::Oab => "oab",
            ExchangeCheck::Rpc => "rpc",
        }
    }

    fn parse(name: &str) -> Option<ExchangeCheck> {
        ExchangeCheck::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for ExchangeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One check of a `protocol: exchange` target.
#[derive(Debug, Clone)]
pub struct ExchangeTarget {
    /// Which service this probe checks.
    pub check: ExchangeCheck,
    /// The server (`host`, `port`) with the target's TLS trust, SNI name and Basic
    /// credentials. Autodiscover finds its own hosts from the mailbox's domain and
    /// uses only the trust and credentials.
    pub endpoint: Endpoint,
    /// The mailbox Autodiscover asks about (required for that check).
    pub email: Option<String>,
}

/// An SMTP target: where to connect and how to introduce ourselves.
#[derive(Debug, Clone)]
pub struct SmtpTarget {
    /// Host, port, TLS mode, credentials.
    pub endpoint: Endpoint,
    /// The name sent with EHLO.
    pub ehlo_name: String,
}

/// A host and port to dial, with its TLS settings.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How TLS is used.
    pub tls: TlsMode,
    /// The name sent as SNI and checked against the certificate.
    pub server_name: String,
    /// Trusted roots beyond the system's: `tls.ca_file` plus the target's own `ca_file`.
    pub extra_roots: Arc<[CertificateDer<'static>]>,
    /// Login credentials, for protocols that log in.
    pub auth: Option<Credentials>,
}

/// DNS record types a target can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Mail exchangers.
    Mx,
    /// IPv4 addresses.
    A,
    /// IPv6 addresses.
    Aaaa,
    /// Service records (RFC 6186 / 8314, `_autodiscover._tcp`).
    Srv,
    /// An alias.
    Cname,
    /// Text records (SPF, verification tokens).
    Txt,
}

impl RecordKind {
    /// Every kind, as the documentation lists them.
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Mx,
        RecordKind::A,
        RecordKind::Aaaa,
        RecordKind::Srv,
        RecordKind::Cname,
        RecordKind::Txt,
    ];

    /// The record type's name (`MX`), also the `type` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Mx => "MX",
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Srv => "SRV",
            RecordKind::Cname => "CNAME",
            RecordKind::Txt => "TXT",
        }
    }

    fn parse(name: &str) -> Option<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
    }
}

/// A DNS target's question and expectations.
#[derive(Debug, Clone)]
pub struct DnsQuery {
    /// The fully qualified name asked (with its trailing dot).
    pub domain: String,
    /// The record type asked.
    pub record: RecordKind,
    /// The answer the site should see, normalised (lower case, trailing dot on names).
    pub expect: Option<Vec<String>>,
    /// Whether a site/reference disagreement fails the probe.
    pub require_consistent: bool,
}

/// A user name and a password that never leaves this process in readable form.
#[derive(Clone)]
pub struct Credentials {
    /// The login name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A secret string. `Debug` and `Display` print `<redacted>`; only [`Secret::expose`]
/// gives the value, so every use is greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The secret itself: only for writing it onto the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Reads, parses and validates the configuration file at `path`.
///
/// # Errors
///
/// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] for
/// anything wrong inside it, naming line, column and field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })?;
    from_str(&text, path)
}

/// Parses and validates configuration text; `path` is used in messages and to resolve
/// nothing else (relative paths in the file are relative to the working directory,
/// like every other daemon's).
///
/// # Errors
///
/// [`ConfigError::Invalid`] for anything wrong, naming line, column and field.
pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw = parse(text, path)?;
    validate::validate(raw, path)
}

fn parse(text: &str, path: &Path) -> Result<raw::RawConfig, ConfigError> {
    let mut options = serde_saphyr::Options::default();
    // We print our own one-line message; the snippet would repeat the position.
    options.with_snippet = false;
    let mut failed_at: Option<String> = None;
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize(de).map_err(|error| {
            failed_at = Some(error.path().to_string());
            error.into_inner()
        })
    });
    parsed.map_err(|error| error::from_parse_error(path, text, failed_at, &error))
}

/// A one-screen description of a configuration, for `check-config`.
pub fn summary(config: &Config) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}: OK", config.source.display());
    let _ = writeln!(out, "listen: {}", config.listen);
    let _ = writeln!(
        out,
        "max_concurrent_probes: {}",
        config.max_concurrent_probes
    );
    let resolvers = match &config.site.resolvers {
        SiteResolvers::System => "system (/etc/resolv.conf)".to_owned(),
        SiteResolvers::List(list) => join(list),
    };
    let _ = writeln!(out, "site resolvers: {resolvers}");
    let _ = writeln!(
        out,
        "reference resolvers: {}",
        if config.site.reference_resolvers.is_empty() {
            "none".to_owned()
        } else {
            join(&config.site.reference_resolvers)
        }
    );
    let mut by_protocol = std::collections::BTreeMap::<Protocol, usize>::new();
    for target in &config.targets {
        *by_protocol.entry(target.protocol).or_default() += 1;
    }
    let protocols: Vec<String> = by_protocol
        .iter()
        .map(|(protocol, count)| format!("{protocol} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "targets: {} ({})",
        config.targets.len(),
        protocols.join(", ")
    );
    for discovery in &config.discover {
        let _ = writeln!(
            out,
            "  {:<20} discover every {:<6} timeout {:<6} the MX and SRV endpoints of {}",
            format!("{}-*", discovery.name),
            humantime::format_duration(discovery.interval).to_string(),
            humantime::format_duration(discovery.timeout).to_string(),
            discovery.domain
        );
    }
    for target in &config.targets {
        let _ = writeln!(
            out,
            "  {:<20} {:<8} every {:<6} timeout {:<6} {}",
            target.display_name(),
            target.protocol.as_str(),
            humantime::format_duration(target.interval).to_string(),
            humantime::format_duration(target.timeout).to_string(),
            target.describe()
        );
    }
    out
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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
