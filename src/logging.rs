//! Logs: human-readable text by default, JSON for log collectors, filtered with the
//! `RUST_LOG` syntax (`info`, `mailprobe=debug,hickory=warn`).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter used when neither `--log-filter` nor `RUST_LOG` is set: our own events
/// at info, the libraries' only when they warn.
pub const DEFAULT_FILTER: &str =
    "info,hickory_proto=warn,hickory_resolver=warn,hickory_net=warn,rustls=warn";

/// Installs the global subscriber. `filter` overrides `RUST_LOG`.
///
/// # Errors
///
/// When the filter does not parse.
pub fn init(format: LogFormat, filter: Option<&str>) -> Result<(), String> {
    let filter = match filter
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
    {
        Some(text) => {
            EnvFilter::try_new(&text).map_err(|e| format!("bad log filter `{text}`: {e}"))?
        }
        None => EnvFilter::new(DEFAULT_FILTER),
    };
    // Colours only for a person at a terminal: the journal and log files get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // Without the module path: our events carry a `target` field (the probe
        // target's name), and a JSON object must not have the key twice.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_target(false)
            .try_init(),
    };
    installed.map_err(|e| format!("cannot install the logger: {e}"))
}
