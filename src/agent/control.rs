//! The agent's control channels: reload requests (SIGHUP, `/-/reload`, tests) with
//! their typed answers, and the stream of judged results (tests, later consumers).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::ConfigError;
use crate::judge::Judged;
use crate::probe::env::EnvError;

/// Results kept for subscribers that fall behind; a slow subscriber loses the oldest.
const RESULT_CHANNEL_CAPACITY: usize = 1024;
/// Reload requests waiting to be handled; more than a few at once are redundant.
const RELOAD_QUEUE: usize = 4;

/// Why a reload kept the running configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The file is valid but its resolvers or trust anchors cannot be used.
    #[error("cannot prepare the probes: {0}")]
    Environment(#[from] EnvError),
    /// The task reading the file failed (a bug: it panicked).
    #[error("the reload failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The agent is stopping and no longer reloads.
    #[error("the agent is shutting down")]
    ShuttingDown,
}

/// What a reload answers: the number of probe series now configured, or why the
/// running configuration was kept.
pub type ReloadOutcome = Result<usize, ReloadError>;

/// A request to reload the configuration file.
#[derive(Debug)]
pub struct ReloadRequest {
    pub(super) reply: oneshot::Sender<ReloadOutcome>,
}

/// The daemon's side of its control channels.
#[derive(Debug)]
pub struct Control {
    pub(super) reloads: mpsc::Receiver<ReloadRequest>,
    pub(super) reload_sender: mpsc::Sender<ReloadRequest>,
    pub(super) results: broadcast::Sender<Arc<Judged>>,
}

/// The outside's side: ask for reloads and watch results.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    reloads: mpsc::Sender<ReloadRequest>,
    results: broadcast::Sender<Arc<Judged>>,
}

/// Creates the control channels for one daemon.
pub fn control() -> (Control, ControlHandle) {
    let (reload_sender, reloads) = mpsc::channel(RELOAD_QUEUE);
    let (results, _) = broadcast::channel(RESULT_CHANNEL_CAPACITY);
    (
        Control {
            reloads,
            reload_sender: reload_sender.clone(),
            results: results.clone(),
        },
        ControlHandle {
            reloads: reload_sender,
            results,
        },
    )
}

impl ControlHandle {
    /// Reloads the configuration file and waits for the outcome.
    ///
    /// # Errors
    ///
    /// [`ReloadError`]: why the new file was rejected (the running configuration
    /// stays), or that the daemon is stopping.
    pub async fn reload(&self) -> ReloadOutcome {
        request_reload(&self.reloads).await
    }

    /// Every judged result from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Judged>> {
        self.results.subscribe()
    }
}

/// Sends a reload request on `sender` and waits for its answer.
///
/// # Errors
///
/// As [`ControlHandle::reload`].
pub async fn request_reload(sender: &mpsc::Sender<ReloadRequest>) -> ReloadOutcome {
    let (reply, answer) = oneshot::channel();
    sender
        .send(ReloadRequest { reply })
        .await
        .map_err(|_| ReloadError::ShuttingDown)?;
    answer.await.map_err(|_| ReloadError::ShuttingDown)?
}
