//! The long-running agent: [`daemon::run`] wires the pipeline, the [`scheduler`], the
//! exports and the endpoints; [`control`] carries reloads and results; [`shutdown`]
//! turns signals into the one shutdown path.

pub mod control;
pub mod daemon;
pub mod scheduler;
pub mod secrets;
pub mod shutdown;

pub use control::{ControlHandle, ReloadError, ReloadOutcome, control};
pub use daemon::{DaemonError, run};
pub use shutdown::Signals;
