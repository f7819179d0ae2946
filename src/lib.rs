//! mailprobe — a long-running agent that probes a site's mail endpoints and says
//! whose fault a failure is.
//!
//! The data flows one way:
//!
//! ```text
//! config (YAML) -> config::Config -> scheduler -> probe::run(target) -> ProbeResult
//!                                                  metrics::Metrics::record(result)
//!                                                  history::History::push(result)
//! HTTP server (http): /metrics  /debug  /-/healthy  /-/ready  /-/reload
//! ```
//!
//! Modules, in the order a newcomer should read them:
//!
//! - [`config`] — the YAML users write, checked into a [`config::Config`].
//! - [`probe`] — the probe contract (phases, typed errors, results) and one file per
//!   protocol, on top of shared dialling and TLS code.
//! - [`runtime`] — resolvers and certificate verifiers built once per config load.
//! - [`scheduler`] — one task per target, jittered start, fixed interval, a global
//!   concurrency cap; overruns are counted, never queued.
//! - [`metrics`] — the Prometheus metric families and how a result updates them.
//! - [`fault`] — fault domains (the classifier that fills them lands with site context).
//! - [`history`] — recent results per target for `/debug` (failures kept longer).
//! - [`daemon`] — wiring, reload and the one shutdown path; [`http`] — the endpoints.
//! - [`logging`] — text or JSON logs with a `RUST_LOG`-style filter.

pub mod config;
pub mod daemon;
pub mod fault;
pub mod history;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod process;
pub mod runtime;
pub mod scheduler;
