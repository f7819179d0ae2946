//! The agent's HTTP face: the [`endpoints`], the [`listener`] that serves them (TLS,
//! basic authentication), `/probe` ([`on_demand`]) and the status page ([`status`]).

pub mod basic_auth;
pub mod endpoints;
pub mod listener;
pub mod on_demand;
pub mod status;

pub use endpoints::{AppState, router};
pub use listener::serve;
pub use on_demand::{OnDemand, ProbeContext, ProbeRequest, Refusal};
