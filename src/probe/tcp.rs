//! `protocol: tcp` — can this host open a TCP connection (and, with `tls: implicit`, a
//! verified TLS session) to the endpoint?

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::dial;
use super::{Failed, Recorder};
use crate::config::Endpoint;
use crate::probe::env::ProbeEnv;

/// Connects (and handshakes), then closes politely.
///
/// # Errors
///
/// [`Failed`] when a phase failed; the recorder holds the details.
pub async fn probe(
    endpoint: &Endpoint,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let mut connection = dial::open(endpoint, env, deadline, recorder).await?;
    // Close politely (TLS close_notify, then FIN). The endpoint already proved itself;
    // a peer that mishandles the close is not a failure of this probe.
    let _ = connection.shutdown().await;
    Ok(())
}
