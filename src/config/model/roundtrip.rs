//! A validated `protocol: roundtrip` target: who sends to whom, through which SMTP
//! endpoint, and which IMAP mailbox (and folders) the message must appear in.

use std::time::Duration;

use super::{Endpoint, SmtpTarget};

/// A round trip every 5 minutes sends 288 messages a day: often enough to see a
/// delivery outage inside an alert's `for:` window, rarely enough that no provider
/// counts the probe mailbox as a bulk sender.
pub const DEFAULT_ROUNDTRIP_INTERVAL: Duration = Duration::from_secs(300);
/// Most mail is delivered in seconds; two minutes allows for a provider's queueing and
/// spam scanning under load while still calling a stuck queue a failure.
pub const DEFAULT_ROUNDTRIP_TIMEOUT: Duration = Duration::from_secs(120);

/// A mail round trip: submit through `send`, find through `receive`, delete.
#[derive(Debug, Clone)]
pub struct RoundtripTarget {
    /// The envelope sender and `From:` address.
    pub from: String,
    /// The recipient: the mailbox `receive` logs in to.
    pub to: String,
    /// The SMTP endpoint (submission, or a public MX) and the EHLO name.
    pub send: SmtpTarget,
    /// The IMAP endpoint; its credentials are required.
    pub receive: Endpoint,
    /// The folders where a delivery counts (`INBOX` by default), as configured.
    pub folders: Vec<String>,
    /// Folders where a delivery counts as junk, besides those the server marks
    /// `\Junk` (RFC 6154).
    pub junk: Vec<String>,
}
