//! A changed secret file reloads the configuration: a rotated client secret, a renewed
//! certificate or a fixed password is picked up without a SIGHUP, and a login held
//! back after repeated rejections is tried again at once (see
//! [`crate::probe::logins`]).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::control::{ReloadRequest, request_reload};

/// How often the secret files are looked at: a fix is picked up within seconds, and a
/// `stat` of a few files this often costs nothing.
pub const SECRET_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// What tells one version of a file from the next: size, modification time, inode.
/// `None`: the file is not there (or not ours to read).
type Stamp = Option<(u64, Option<SystemTime>, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    files
        .iter()
        .map(|file| {
            std::fs::metadata(file)
                .ok()
                .map(|m| (m.len(), m.modified().ok(), m.ino()))
        })
        .collect()
}

/// Watches `files` every [`SECRET_CHECK_INTERVAL`] and asks for a reload (on `reloads`)
/// when one changes, until `stop`. A reload that fails keeps the running configuration
/// and the watch goes on; one that succeeds starts a new watch and stops this one.
pub async fn reload_on_change(
    files: Vec<PathBuf>,
    reloads: mpsc::Sender<ReloadRequest>,
    stop: CancellationToken,
) {
    if files.is_empty() {
        return;
    }
    let files = std::sync::Arc::new(files);
    let read = |files: std::sync::Arc<Vec<PathBuf>>| async move {
        // A `stat` on a hung network file system blocks: off the runtime's threads.
        tokio::task::spawn_blocking(move || stamps(&files))
            .await
            .unwrap_or_default()
    };
    let mut seen = read(std::sync::Arc::clone(&files)).await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SECRET_CHECK_INTERVAL) => {}
        }
        let now = read(std::sync::Arc::clone(&files)).await;
        if now.len() != files.len() || now == seen {
            continue;
        }
        let changed: Vec<String> = files
            .iter()
            .zip(now.iter().zip(&seen))
            .filter(|(_, (new, old))| new != old)
            .map(|(file, _)| file.display().to_string())
            .collect();
        seen = now;
        tracing::info!(
            files = ?changed,
            "a secret file changed: reloading the configuration"
        );
        tokio::select! {
            () = stop.cancelled() => return,
            outcome = request_reload(&reloads) => if let Err(error) = outcome {
                tracing::warn!(%error, "the reload after a secret file changed was rejected");
            },
        }
    }
}
