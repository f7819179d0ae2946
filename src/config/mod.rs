//! Configuration: the YAML users write, checked once into values the agent can trust.
//!
//! [`raw`] mirrors the file; [`load`] parses it and [`validate`](mod@validate) builds a
//! [`Config`]. Nothing outside this module ever sees an unchecked value. Every error
//! names the file, line, column and field ([`ConfigError`]).

mod error;
pub mod files;
mod model;
pub mod raw;
mod validate;

use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use error::{ConfigError, Invalid};
pub use model::*;
pub use validate::{AdhocError, bcrypt_cost};

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

/// Reads, parses and validates the configuration file at `path`.
///
/// # Errors
///
/// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] for
/// anything wrong inside it, naming line, column and field.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    check(path, Secrets::Required)
}

/// How a secret that cannot be resolved (an unset `password_env`, a missing
/// `password_file`) is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// An error: the agent and `probe` need every secret.
    Required,
    /// A warning in [`Config::warnings`]: `check-config` on a machine without the
    /// secrets (CI, a configuration repository).
    Optional,
}

/// Reads, parses and validates the configuration file at `path`, resolving secrets as
/// `secrets` says.
///
/// # Errors
///
/// As [`load`].
pub fn check(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
    let text =
        files::read_text(path, files::MAX_DOCUMENT_BYTES).map_err(|reason| ConfigError::Read {
            file: path.to_path_buf(),
            reason,
        })?;
    parse(&text, path).and_then(|raw| validate::validate(raw, path, secrets))
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
    validate::validate(raw, path, Secrets::Required)
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
