//! The configuration exactly as the user wrote it.
//!
//! These structs mirror the YAML: unknown keys are rejected, every value that the
//! validator may complain about keeps its source position ([`Spanned`]), and nothing
//! here is interpreted yet. [`super::validate`] turns them into a [`super::Config`].

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// The top-level document.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the metrics endpoint.
    #[serde(default)]
    pub listen: Option<Spanned<String>>,
    /// Global cap on probes running at the same time.
    #[serde(default)]
    pub max_concurrent_probes: Option<Spanned<i64>>,
    /// Values every target inherits.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// Extra trust anchors for every target.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Where the agent stands: gateway, resolvers, canaries.
    #[serde(default)]
    pub site: Option<RawSite>,
    /// TLS and basic authentication for the HTTP listener, in the shape of the
    /// Prometheus exporters' web configuration.
    #[serde(default)]
    pub web: Option<RawWeb>,
    /// What `/probe?module=…&target=…` may probe.
    #[serde(default)]
    pub probe_endpoint: Option<RawProbeEndpoint>,
    /// What to probe.
    #[serde(default)]
    pub targets: Option<Spanned<Vec<Spanned<RawTarget>>>>,
}

/// `web:` — the listener's TLS and users.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeb {
    /// Serve HTTPS with this certificate and key.
    #[serde(default)]
    pub tls_server_config: Option<Spanned<RawWebTls>>,
    /// `user: bcrypt hash` pairs; when set, every request needs basic authentication.
    #[serde(default)]
    pub basic_auth_users: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    /// How long a client may take to send a request's headers.
    #[serde(default)]
    pub header_timeout: Option<Spanned<DurationText>>,
    /// How long a connection may stay open without a byte moving either way.
    #[serde(default)]
    pub idle_timeout: Option<Spanned<DurationText>>,
    /// The most client connections open at once.
    #[serde(default)]
    pub max_connections: Option<Spanned<i64>>,
}

/// `web.tls_server_config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebTls {
    /// PEM certificate chain.
    pub cert_file: Spanned<PathBuf>,
    /// PEM private key.
    pub key_file: Spanned<PathBuf>,
}

/// `probe_endpoint:` — ad-hoc probes through `/probe`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeEndpoint {
    /// Host names (`mail.example.com`), wildcards (`*.example.com`), addresses or
    /// networks (`192.0.2.0/24`) that ad-hoc probes may reach.
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

/// `defaults:` — values inherited by every target.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// Time between two probes of a target.
    #[serde(default)]
    pub interval: Option<Spanned<DurationText>>,
    /// Upper bound on one probe.
    #[serde(default)]
    pub timeout: Option<Spanned<DurationText>>,
    /// Longest delay before a target's first probe (default: its interval).
    #[serde(default)]
    pub start_jitter: Option<Spanned<DurationText>>,
    /// Whether targets keep their own phase histograms (default: no).
    #[serde(default)]
    pub phase_histogram: Option<Spanned<bool>>,
}

/// `tls:` — global TLS settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file with extra trusted root certificates.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// `site:` — the agent's own network context.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    /// `auto`, `none` or an address.
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
    /// `system` or a list of resolver addresses.
    #[serde(default)]
    pub resolvers: Option<Spanned<ResolverList>>,
    /// Resolvers outside the site, used as the reference answer.
    #[serde(default)]
    pub reference_resolvers: Option<Vec<Spanned<String>>>,
    /// `host:port` pairs any healthy uplink reaches.
    #[serde(default)]
    pub canaries: Option<Vec<Spanned<String>>>,
}

/// One entry of `targets:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name; becomes the `target` label. Optional here only so that a missing
    /// name gets the validator's message, pointing at the entry, rather than serde's.
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    /// One of the protocol names (required; optional here for the same reason).
    #[serde(default)]
    pub protocol: Option<Spanned<String>>,
    /// Host name or address to connect to.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Port; defaults from the protocol and TLS mode.
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    /// `implicit`, `starttls` or `none`.
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    /// SNI and verification name, when it differs from `host`.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    /// Extra trusted roots for this target only.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// Credentials for protocols that log in.
    #[serde(default)]
    pub auth: Option<Spanned<RawAuth>>,
    /// Overrides `defaults.interval`.
    #[serde(default)]
    pub interval: Option<Spanned<DurationText>>,
    /// Overrides `defaults.timeout`.
    #[serde(default)]
    pub timeout: Option<Spanned<DurationText>>,
    /// Overrides `defaults.phase_histogram`.
    #[serde(default)]
    pub phase_histogram: Option<Spanned<bool>>,
    /// SMTP: the name sent with EHLO.
    #[serde(default)]
    pub ehlo_name: Option<Spanned<String>>,
    /// DNS: the name to look up.
    #[serde(default)]
    pub domain: Option<Spanned<String>>,
    /// DNS: the record type.
    #[serde(default)]
    pub record: Option<Spanned<String>>,
    /// DNS: the answer the site should see.
    #[serde(default)]
    pub expect: Option<Spanned<Vec<String>>>,
    /// DNS: whether a site/reference disagreement fails the probe.
    #[serde(default)]
    pub require_consistent: Option<Spanned<bool>>,
    /// HTTPS: the URL.
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// HTTPS: acceptable status codes.
    #[serde(default)]
    pub expect_status: Option<Spanned<Vec<u16>>>,
    /// HTTPS: a regular expression the body must match.
    #[serde(default)]
    pub expect_body: Option<Spanned<String>>,
    /// Exchange: the mailbox used for Autodiscover.
    #[serde(default)]
    pub email: Option<Spanned<String>>,
    /// Exchange: which services to check.
    #[serde(default)]
    pub checks: Option<Spanned<Vec<String>>>,
    /// Mail protocols: allow `auth` over a connection without TLS (`tls: none`).
    #[serde(default)]
    pub allow_plaintext_auth: Option<Spanned<bool>>,
    /// Web protocols: hosts a redirect may lead to although it is a loopback,
    /// link-local or unspecified address, or plain HTTP from HTTPS.
    #[serde(default)]
    pub allow_redirects: Option<Spanned<Vec<String>>>,
    /// Round trip: the envelope sender and `From:` of the probe message.
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    /// Round trip: the recipient, the mailbox `receive` reads.
    #[serde(default)]
    pub to: Option<Spanned<String>>,
    /// Round trip: the SMTP endpoint the message is submitted to.
    #[serde(default)]
    pub send: Option<Spanned<RawRoundtripEndpoint>>,
    /// Round trip: the IMAP endpoint where the message is looked for.
    #[serde(default)]
    pub receive: Option<Spanned<RawRoundtripEndpoint>>,
}

/// `send:` or `receive:` of a round trip: an endpoint as a mail target writes it, plus
/// the keys of its leg (`ehlo_name` to send, `folders` and `junk` to receive).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoundtripEndpoint {
    /// Host name or address to connect to.
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    /// Port; defaults from the leg's protocol and TLS mode.
    #[serde(default)]
    pub port: Option<Spanned<i64>>,
    /// `implicit`, `starttls` or `none`.
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    /// SNI and verification name, when it differs from `host`.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    /// Extra trusted roots for this endpoint only.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// Credentials (required to receive; optional to send, as through a public MX).
    #[serde(default)]
    pub auth: Option<Spanned<RawAuth>>,
    /// Allow `auth` over a connection without TLS (`tls: none`).
    #[serde(default)]
    pub allow_plaintext_auth: Option<Spanned<bool>>,
    /// Send: the name sent with EHLO.
    #[serde(default)]
    pub ehlo_name: Option<Spanned<String>>,
    /// Receive: the folders a delivery counts in (default `[INBOX]`).
    #[serde(default)]
    pub folders: Option<Spanned<Vec<String>>>,
    /// Receive: folders that count as junk, besides those the server marks `\Junk`.
    #[serde(default)]
    pub junk: Option<Spanned<Vec<String>>>,
}

impl RawTarget {
    /// The protocol-specific keys this entry sets, with their positions, for the
    /// "does not apply to this protocol" check.
    pub fn protocol_keys(&self) -> Vec<(&'static str, serde_saphyr::Location)> {
        let mut keys = Vec::new();
        let mut note = |name: &'static str, at: Option<serde_saphyr::Location>| {
            if let Some(at) = at {
                keys.push((name, at));
            }
        };
        note("host", self.host.as_ref().map(|v| v.referenced));
        note("port", self.port.as_ref().map(|v| v.referenced));
        note("tls", self.tls.as_ref().map(|v| v.referenced));
        note(
            "server_name",
            self.server_name.as_ref().map(|v| v.referenced),
        );
        note("ca_file", self.ca_file.as_ref().map(|v| v.referenced));
        note("auth", self.auth.as_ref().map(|v| v.referenced));
        note("ehlo_name", self.ehlo_name.as_ref().map(|v| v.referenced));
        note("domain", self.domain.as_ref().map(|v| v.referenced));
        note("record", self.record.as_ref().map(|v| v.referenced));
        note("expect", self.expect.as_ref().map(|v| v.referenced));
        note(
            "require_consistent",
            self.require_consistent.as_ref().map(|v| v.referenced),
        );
        note("url", self.url.as_ref().map(|v| v.referenced));
        note(
            "expect_status",
            self.expect_status.as_ref().map(|v| v.referenced),
        );
        note(
            "expect_body",
            self.expect_body.as_ref().map(|v| v.referenced),
        );
        note("email", self.email.as_ref().map(|v| v.referenced));
        note("checks", self.checks.as_ref().map(|v| v.referenced));
        note(
            "allow_plaintext_auth",
            self.allow_plaintext_auth.as_ref().map(|v| v.referenced),
        );
        note(
            "allow_redirects",
            self.allow_redirects.as_ref().map(|v| v.referenced),
        );
        note("from", self.from.as_ref().map(|v| v.referenced));
        note("to", self.to.as_ref().map(|v| v.referenced));
        note("send", self.send.as_ref().map(|v| v.referenced));
        note("receive", self.receive.as_ref().map(|v| v.referenced));
        keys
    }
}

/// `auth:` — a user name and where its password comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// The login name (required; optional here so that the validator reports it).
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// A file whose first line is the password.
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// Log in with an OAuth2 access token instead of a password.
    #[serde(default)]
    pub oauth2: Option<Spanned<RawOAuth2>>,
    /// Consecutive rejected logins after which the credential is no longer sent.
    #[serde(default)]
    pub max_failures: Option<Spanned<i64>>,
}

/// `auth.oauth2:` — where the access token comes from and how it is presented.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    /// The identity provider's token endpoint.
    #[serde(default)]
    pub token_url: Option<Spanned<String>>,
    /// The application (client) id.
    #[serde(default)]
    pub client_id: Option<Spanned<String>>,
    /// A file whose first line is the client secret.
    #[serde(default)]
    pub client_secret_file: Option<Spanned<PathBuf>>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<Spanned<String>>,
    /// A PEM certificate registered with the application (signed client assertion).
    #[serde(default)]
    pub client_certificate: Option<Spanned<PathBuf>>,
    /// The PEM private key of `client_certificate`.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
    /// A Google service-account JSON key (JWT-bearer grant, domain-wide delegation).
    #[serde(default)]
    pub service_account_file: Option<Spanned<PathBuf>>,
    /// The mailbox a service account acts as (`sub`); defaults to `auth.username`.
    #[serde(default)]
    pub subject: Option<Spanned<String>>,
    /// The scope asked for.
    #[serde(default)]
    pub scope: Option<Spanned<String>>,
    /// `auto`, `xoauth2` or `oauthbearer`.
    #[serde(default)]
    pub mechanism: Option<Spanned<String>>,
}

/// A duration as written (`30s`, `1m30s`), parsed by the validator so that a bad value
/// gets a message of ours with its position.
#[derive(Debug, Clone)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, such as `30s` or `2m`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Err(E::custom(format!(
                    "`{v}` has no unit: write a duration such as `{v}s`"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

/// `resolvers:` — either the word `system` or a list of addresses.
#[derive(Debug, Clone)]
pub enum ResolverList {
    /// Use the name servers in `/etc/resolv.conf`.
    System,
    /// These addresses, as written.
    Addresses(Vec<String>),
}

impl<'de> Deserialize<'de> for ResolverList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = ResolverList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`system` or a list of resolver addresses")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResolverList, E> {
                if v == "system" {
                    Ok(ResolverList::System)
                } else {
                    Err(E::custom(format!(
                        "`{v}` is not `system`: write `system` or a list such as [\"10.0.0.53\"]"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ResolverList, A::Error> {
                let mut addresses = Vec::new();
                while let Some(address) = seq.next_element::<String>()? {
                    addresses.push(address);
                }
                Ok(ResolverList::Addresses(addresses))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}
