//! One validated target: its protocol-specific part, the endpoint it dials, the DNS
//! question it asks, its credentials.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;

use super::{AllowRule, OAuth2, Protocol, RoundtripTarget, TlsMode};

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
    /// Whether the target keeps its own phase histogram (`phase_histogram: true`);
    /// every probe also counts in its protocol's histogram.
    pub phase_histogram: bool,
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
        let login = |endpoint: &Endpoint| match &endpoint.auth {
            Some(credentials) if credentials.oauth2.is_some() => " login (oauth2)",
            Some(_) => " login",
            None => "",
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
            TargetSpec::Roundtrip(roundtrip) => format!(
                "{} to {} via {}:{} tls={}{}, found at {}:{} tls={}{}",
                roundtrip.from,
                roundtrip.to,
                roundtrip.send.endpoint.host,
                roundtrip.send.endpoint.port,
                roundtrip.send.endpoint.tls.as_str(),
                login(&roundtrip.send.endpoint),
                roundtrip.receive.host,
                roundtrip.receive.port,
                roundtrip.receive.tls.as_str(),
                login(&roundtrip.receive),
            ),
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
#[derive(Debug, Clone)]
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
    /// `protocol: roundtrip`.
    Roundtrip(Box<RoundtripTarget>),
}

impl TargetSpec {
    /// The endpoint dialled, for the protocols that open a connection (a round trip's
    /// first: the SMTP endpoint it sends through).
    pub fn endpoint(&self) -> Option<&Endpoint> {
        match self {
            TargetSpec::Tcp(endpoint) | TargetSpec::Imap(endpoint) | TargetSpec::Pop3(endpoint) => {
                Some(endpoint)
            }
            TargetSpec::Smtp(smtp) => Some(&smtp.endpoint),
            TargetSpec::Https(https) => Some(&https.endpoint),
            TargetSpec::Exchange(exchange) => Some(&exchange.endpoint),
            TargetSpec::Roundtrip(roundtrip) => Some(&roundtrip.send.endpoint),
            TargetSpec::Dns(_) => None,
        }
    }

    /// Every endpoint the target dials: one, or a round trip's two (send, receive).
    pub fn endpoints(&self) -> Vec<&Endpoint> {
        match self {
            TargetSpec::Roundtrip(roundtrip) => vec![&roundtrip.send.endpoint, &roundtrip.receive],
            other => other.endpoint().into_iter().collect(),
        }
    }

    /// The same, without credentials: what a probe whose login is suspended runs. (A
    /// round trip holds back each leg's credential on its own: `probe::roundtrip::login`.)
    #[must_use]
    pub fn without_credentials(&self) -> TargetSpec {
        let mut spec = self.clone();
        match &mut spec {
            TargetSpec::Tcp(endpoint) | TargetSpec::Imap(endpoint) | TargetSpec::Pop3(endpoint) => {
                endpoint.auth = None;
            }
            TargetSpec::Smtp(smtp) => smtp.endpoint.auth = None,
            TargetSpec::Https(https) => https.endpoint.auth = None,
            TargetSpec::Exchange(exchange) => exchange.endpoint.auth = None,
            TargetSpec::Roundtrip(roundtrip) => {
                roundtrip.send.endpoint.auth = None;
                roundtrip.receive.auth = None;
            }
            TargetSpec::Dns(_) => {}
        }
        spec
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
    /// Hosts a redirect may lead to although they are loopback, link-local or
    /// unspecified addresses, or plain HTTP after HTTPS (`allow_redirects`).
    pub allow_redirects: Vec<AllowRule>,
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

    pub(crate) fn parse(name: &str) -> Option<ExchangeCheck> {
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
    /// As [`HttpsTarget::allow_redirects`].
    pub allow_redirects: Vec<AllowRule>,
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

    pub(crate) fn parse(name: &str) -> Option<RecordKind> {
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

/// A user name and a password (or an OAuth2 client) that never leaves this process in
/// readable form.
#[derive(Clone)]
pub struct Credentials {
    /// The login name.
    pub username: String,
    /// The password (empty with `oauth2`).
    pub password: Secret,
    /// Whether they may be sent over a connection without TLS
    /// (`allow_plaintext_auth: true` with `tls: none`).
    pub plaintext_allowed: bool,
    /// Log in with an OAuth2 access token (`auth.oauth2`) instead of the password.
    pub oauth2: Option<Arc<OAuth2>>,
    /// Consecutive rejected logins after which the credential is no longer sent
    /// (`auth.max_failures`).
    pub max_failures: u32,
}

impl Credentials {
    /// A digest of the login name and every secret it uses: a changed password or
    /// client is a new login, whose failures do not count against the old one.
    /// Never shown anywhere.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        digest.update(self.username.as_bytes());
        digest.update(b"\0");
        match &self.oauth2 {
            Some(oauth2) => digest.update(&oauth2.fingerprint()),
            None => digest.update(self.password.expose().as_bytes()),
        }
        let mut out = [0; 32];
        out.copy_from_slice(digest.finish().as_ref());
        out
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("plaintext_allowed", &self.plaintext_allowed)
            .field("oauth2", &self.oauth2)
            .field("max_failures", &self.max_failures)
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
