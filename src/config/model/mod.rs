//! The validated configuration: what the rest of the program uses. Every value here
//! was checked by [`super::validate`]; nothing outside `config` builds one from text.

mod oauth2;
mod roundtrip;
mod site;
mod target;
mod web;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

pub use oauth2::{
    ClientCertificate, ClientCredential, Grant, KeyError, Mechanism, OAuth2, Provider,
    ServiceAccount, SigningKey,
};
pub use roundtrip::{DEFAULT_ROUNDTRIP_INTERVAL, DEFAULT_ROUNDTRIP_TIMEOUT, RoundtripTarget};
pub use site::{Discovery, Gateway, HostPort, Site, SiteResolvers};
pub use target::{
    Credentials, DnsQuery, Endpoint, ExchangeCheck, ExchangeTarget, HttpsTarget, RecordKind,
    Secret, SeriesKey, SmtpTarget, Target, TargetSpec, url_host,
};
pub use web::{AllowRule, ProbeEndpoint, WebConfig};

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
    /// A mail round trip: submit a message over SMTP, find it over IMAP, delete it.
    Roundtrip,
}

impl Protocol {
    /// Every protocol, in the order the documentation lists them.
    pub const ALL: [Protocol; 8] = [
        Protocol::Imap,
        Protocol::Pop3,
        Protocol::Smtp,
        Protocol::Https,
        Protocol::Exchange,
        Protocol::Dns,
        Protocol::Tcp,
        Protocol::Roundtrip,
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
            Protocol::Roundtrip => "roundtrip",
        }
    }

    /// Whether the protocol has an in-band TLS upgrade (`tls: starttls`).
    pub fn has_starttls(self) -> bool {
        matches!(self, Protocol::Imap | Protocol::Pop3 | Protocol::Smtp)
    }

    pub(crate) fn parse(name: &str) -> Option<Protocol> {
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
    /// What is worth saying but not an error: a secret file anyone can read, a secret
    /// `check-config` could not resolve. Logged at load, printed by `check-config`.
    pub warnings: Vec<super::Invalid>,
    /// The secret files the configuration names (passwords, client secrets, keys,
    /// certificates): the agent reloads when one changes.
    pub secret_files: Vec<PathBuf>,
}
