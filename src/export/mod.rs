//! Where judged results go: the Prometheus [`metrics`], the [`history`] `/debug`
//! reads, and the `process_*` metrics ([`process`]).

pub mod history;
pub mod metrics;
pub mod process;

pub use history::History;
pub use metrics::Metrics;
