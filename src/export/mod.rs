//! Where judged results go: the Prometheus [`metrics`], the [`history`] `/debug`
//! reads, the `process_*` metrics ([`process`]), and the status page's state
//! ([`status`]).

pub mod history;
pub mod metrics;
pub mod process;
pub mod status;

pub use history::History;
pub use metrics::Metrics;
pub use status::Status;
