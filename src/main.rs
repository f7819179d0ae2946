//! The `mailprobe` command: parse arguments, set up logging, and hand over to the agent
//! ([`mailprobe::agent::run`]) or a one-shot command ([`mailprobe::cmd`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mailprobe::logging::{self, LogFormat};
use mailprobe::{agent, cmd, config};

/// The source revision of this build: the release build sets `MAILPROBE_REVISION`
/// (`git rev-parse --short=12 HEAD`); other builds say `unknown`. Read here only, so a
/// new commit never rebuilds the library and the tests.
const REVISION: &str = match option_env!("MAILPROBE_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// How long the runtime waits for blocking work (a file read) after the agent stopped.
const BLOCKING_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Probes a site's mail endpoints and DNS, and exports Prometheus metrics that say
/// whose fault a failure is.
#[derive(Debug, Parser)]
#[command(name = "mailprobe", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address for /metrics, overriding `listen` in the file.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter in RUST_LOG syntax (default: RUST_LOG, else `info`).
    #[arg(long, value_name = "FILTER", global = true)]
    log_filter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a configuration file and print a summary; exit 1 if it is invalid. A
    /// secret that cannot be resolved here (an unset `password_env`) is a warning.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// Also fail when a secret cannot be resolved (what the agent needs to start).
        #[arg(long)]
        strict: bool,
    },
    /// Probe one configured target once and say whose fault a failure is; exit 0 when
    /// healthy, 1 on a fault, 2 on a usage or configuration error.
    Probe {
        /// Configuration file (YAML).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
        /// Print the judged result as JSON (phases, reason, fault domain, site
        /// snapshot, verdict) instead of text.
        #[arg(long)]
        json: bool,
        /// The target's name (`name/check` for one check of an exchange target).
        target: String,
    },
    /// Discover a mail address's servers (MX, SRV, autodiscover), probe them all and say
    /// whose fault a failure is; exit 0 when healthy, 1 on a fault, 2 on a usage error.
    Diagnose {
        /// `user@domain` or `domain`.
        address: String,
        /// Configuration file for the site context: resolvers, reference resolvers,
        /// gateway, canaries and `tls.ca_file` (its targets are ignored).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print one JSON object instead of the text report.
        #[arg(long)]
        json: bool,
        /// Upper bound on each check.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// Log in to the discovered IMAP, POP3 and submission endpoints with the
        /// `auth.oauth2` settings of this configured target (needs --config), and name
        /// the missing step when the login fails.
        #[arg(long, value_name = "TARGET", requires = "config")]
        oauth2: Option<String>,
    },
}

fn main() -> ExitCode {
    agent::allocator::tune();
    let cli = Cli::parse();
    mailprobe::export::metrics::set_build_revision(REVISION);
    match &cli.command {
        Some(Command::CheckConfig { file, strict }) => return check_config(file, *strict),
        Some(Command::Probe {
            config,
            json,
            target,
        }) => return probe_once(config, target, *json, &cli),
        Some(Command::Diagnose {
            address,
            config,
            json,
            timeout,
            oauth2,
        }) => {
            let options = DiagnoseOptions {
                config: config.as_deref(),
                json: *json,
                timeout: *timeout,
                oauth2: oauth2.as_deref(),
            };
            return diagnose(address, &options, &cli);
        }
        None => {}
    }
    let Some(config_path) = cli.config.clone() else {
        eprintln!("mailprobe: --config FILE is required to run the agent (see --help)");
        return ExitCode::from(2);
    };
    if let Err(reason) = logging::init(cli.log_format, cli.log_filter.as_deref()) {
        eprintln!("mailprobe: {reason}");
        return ExitCode::from(2);
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mailprobe: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run_agent(config_path, cli.listen));
    // A file read stuck in the kernel must not keep a stopped agent alive.
    runtime.shutdown_timeout(BLOCKING_SHUTDOWN_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("mailprobe: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: one thread runs every probe, the scheduler and the listener,
/// unless `TOKIO_WORKER_THREADS` asks for more.
///
/// A probe spends microseconds of CPU per millisecond of waiting, so one thread keeps up
/// with thousands of targets (5,000 targets every 30 s take 4 % of one core, `bench/run scale`),
/// and the work that takes milliseconds (rendering `/metrics` and the status page,
/// reading files, bcrypt) runs on the blocking pool, off that thread. A second runtime
/// thread costs about 7 % more CPU per probe (tokio wakes an idle thread to share each
/// task an I/O event readies, and it finds nothing to do) and measures no better
/// (docs/performance.md).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().build()
}

/// What a one-shot command (`probe`, `diagnose`) needs before it starts: logging
/// (only problems on stderr: the report is the output), the configuration and an
/// async runtime. A failure is reported on stderr and is a usage error (exit 2).
fn one_shot_setup(
    cli: &Cli,
    loaded: Result<config::Config, config::ConfigError>,
) -> Result<(config::Config, tokio::runtime::Runtime), ExitCode> {
    let filter = cli.log_filter.as_deref().unwrap_or("warn");
    if let Err(reason) = logging::init(cli.log_format, Some(filter)) {
        eprintln!("mailprobe: {reason}");
        return Err(ExitCode::from(2));
    }
    let config = loaded.map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(2)
    })?;
    let runtime = runtime().map_err(|error| {
        eprintln!("mailprobe: cannot start the async runtime: {error}");
        ExitCode::from(2)
    })?;
    Ok((config, runtime))
}

fn probe_once(config_path: &Path, target: &str, json: bool, cli: &Cli) -> ExitCode {
    let (config, runtime) = match one_shot_setup(cli, config::load(config_path)) {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    match runtime.block_on(cmd::probe::run(&config, target)) {
        Ok(judged) => {
            if json {
                print!("{}", cmd::probe::to_json(&judged));
            } else {
                let texts: Vec<String> = judged.iter().map(cmd::probe::render).collect();
                print!("{}", texts.join("\n"));
            }
            if judged.iter().all(|j| j.is_success()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("mailprobe: {error}");
            ExitCode::from(2)
        }
    }
}

/// The command line of `diagnose`.
struct DiagnoseOptions<'a> {
    config: Option<&'a Path>,
    json: bool,
    timeout: Duration,
    oauth2: Option<&'a str>,
}

fn diagnose(address: &str, arguments: &DiagnoseOptions<'_>, cli: &Cli) -> ExitCode {
    use mailprobe::cmd::diagnose;
    let DiagnoseOptions {
        config: config_path,
        json,
        timeout,
        oauth2,
    } = *arguments;
    let address = match diagnose::parse_address(address) {
        Ok(address) => address,
        Err(error) => {
            eprintln!("mailprobe: {error}");
            return ExitCode::from(2);
        }
    };
    if timeout.is_zero() {
        eprintln!("mailprobe: --timeout must be longer than zero");
        return ExitCode::from(2);
    }
    let loaded = match config_path {
        Some(path) => config::load(path),
        None => config::from_str(
            "site: {resolvers: system}\n\
             targets:\n  - {name: placeholder, protocol: tcp, host: 127.0.0.1, port: 9}\n",
            Path::new("<diagnose defaults>"),
        ),
    };
    let (config, runtime) = match one_shot_setup(cli, loaded) {
        Ok(ready) => ready,
        Err(code) => return code,
    };
    let mut options = diagnose::Options::new(timeout);
    if let Some(target) = oauth2 {
        match diagnose::oauth2_login(&config, target) {
            Ok(login) => options.login = Some(login),
            Err(error) => {
                eprintln!("mailprobe: {error}");
                return ExitCode::from(2);
            }
        }
    }
    match runtime.block_on(diagnose::run(config, address, &options)) {
        Ok(diagnosis) => {
            if json {
                print!("{}", diagnose::to_json(&diagnosis));
            } else {
                print!("{}", diagnose::render(&diagnosis));
            }
            if diagnosis.is_healthy() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("mailprobe: {error}");
            ExitCode::from(2)
        }
    }
}

fn check_config(file: &Path, strict: bool) -> ExitCode {
    let secrets = if strict {
        config::Secrets::Required
    } else {
        config::Secrets::Optional
    };
    match config::check(file, secrets) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            print!("{}", config::summary(&config));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run_agent(config_path: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let signals = agent::Signals::install().context("cannot watch signals")?;
    let mut config = config::load(&config_path)?;
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (control, handle) = agent::control();
    let shutdown = signals.serve(handle);
    tracing::info!(address = %listener.local_addr()?, "serving /metrics");
    agent::run(config, listener, control, shutdown).await?;
    Ok(())
}
