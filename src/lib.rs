//! mailprobe — a long-running agent that probes a site's mail endpoints and says
//! whose fault a failure is.
//!
//! The data flows one way:
//!
//! ```text
//! config (YAML) -> config::Config -> scheduler -> probe::run(target) -> ProbeResult
//!                                 site context ---^          |
//!                                 classify::classify(result, context) -> Fault
//!                                                  metrics::Metrics::record(result, fault)
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
//! - [`site`] — the site context: gateway, site and reference resolvers, canaries.
//! - [`classify`] — `(ProbeResult, SiteContext) -> Fault`, a pure, table-tested function.
//! - [`fault`] — the fault domains.
//! - [`history`] — recent results per target for `/debug` (failures kept longer).
//! - [`daemon`] — wiring, reload and the one shutdown path; [`http`] — the endpoints.
//! - [`on_demand`] — `/probe?target=NAME`: one configured target now, its metrics alone.
//! - [`oneshot`] — `mailprobe probe`: one target now, with a help-desk verdict.
//! - [`diagnose`] — `mailprobe diagnose ADDRESS`: discover a domain's mail services, probe them all, one verdict.
//! - [`logging`] — text or JSON logs with a `RUST_LOG`-style filter.

pub mod classify;
pub mod config;
pub mod daemon;
pub mod diagnose;
pub mod fault;
pub mod history;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod on_demand;
pub mod oneshot;
pub mod probe;
pub mod process;
pub mod runtime;
pub mod scheduler;
pub mod site;
