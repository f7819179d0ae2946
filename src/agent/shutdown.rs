//! The signals an unattended agent obeys: SIGTERM and SIGINT stop it (the one shutdown
//! path: [`super::run`]'s shutdown future), SIGHUP reloads its configuration.

use std::future::Future;
use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::control::ControlHandle;

/// The installed signal handlers.
#[derive(Debug)]
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    /// Installs the handlers. Do this first thing: a SIGHUP that arrives before would
    /// end the process (its default action), e.g. a reload sent right after start-up.
    ///
    /// # Errors
    ///
    /// When a handler cannot be installed.
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Forwards SIGHUP to `control` as reload requests, and returns the future that
    /// completes on SIGTERM or SIGINT.
    pub fn serve(self, control: ControlHandle) -> impl Future<Output = ()> {
        let Signals {
            mut hangup,
            mut terminate,
            mut interrupt,
        } = self;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                // The outcome is logged and exported by the daemon itself.
                let _ = control.reload().await;
            }
        });
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        }
    }
}
