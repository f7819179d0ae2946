//! The one-shot commands: [`probe`] (one target now, with a verdict) and [`diagnose`]
//! (the help-desk checklist for an address). Both run through the same
//! [`pipeline`](crate::pipeline) as the agent.

pub mod diagnose;
pub mod probe;
