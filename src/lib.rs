//! mailprobe — a long-running agent that probes a site's mail endpoints and says
//! whose fault a failure is.
//!
//! The data flows one way, through one pipeline that every caller uses:
//!
//! ```text
//! config (YAML) -> config::Config ------------------------------> agent (schedule, reload, shutdown)
//! discover(domain) -> targets   (the `domain:` shorthand and diagnose)       |
//!                                                                             v
//! pipeline: probe::run(target) -> judge(result, site snapshot) -> Judged  <- /probe, probe, diagnose
//! export: metrics.record(&Judged), history.push(Judged), logs;  web: the endpoints
//! ```
//!
//! Modules, in the order a newcomer should read them:
//!
//! - [`config`] — the YAML users write, checked into a [`config::Config`].
//! - [`probe`] — the probe contract (phases, typed errors, results, the recorder, the
//!   probe environment) and one file per protocol, on shared dialling, TLS and line code.
//! - [`site`] — the site context as plain data, and the monitor that measures it.
//! - [`judge`] — fault domains, the pure classifier, the help-desk sentences, the JSON
//!   view of a judged result.
//! - [`pipeline`] — the one path: run a probe, judge it (waiting for site evidence only
//!   when the failure needs it, and never holding a concurrency slot for it).
//! - [`discover`] — a domain's mail endpoints from MX and SRV records: one set of rules.
//! - [`agent`] — the long-running agent: wiring, scheduler, control, signals.
//! - [`export`] — metrics, the `/debug` history, `process_*` metrics.
//! - [`web`] — the HTTP endpoints, the listener (TLS, basic auth), `/probe`.
//! - [`cmd`] — the one-shot commands `probe` and `diagnose`.
//! - [`logging`] — text or JSON logs with a `RUST_LOG`-style filter.

pub mod agent;
pub mod cmd;
pub mod config;
pub mod discover;
pub mod export;
pub mod judge;
pub mod logging;
pub mod pipeline;
pub mod probe;
pub mod site;
pub mod web;
