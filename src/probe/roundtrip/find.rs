//! Waiting for the message: `UID SEARCH HEADER X-Mailprobe-Token <token>` in each
//! folder, then IDLE in the first folder until the server reports a new message (or a
//! poll is due, for the other folders), or — without IDLE — a pause and NOOP.

use std::time::Duration;

use tokio::time::Instant;

use super::mailbox::{Access, Mailbox};
use super::message::TOKEN_HEADER;
use super::wire::modified_utf7;
use crate::config::RoundtripTarget;
use crate::probe::{ErrorKind, ProbeError};

/// The first pause between two searches: most deliveries take a second or two.
const POLL_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between two searches. It bounds how late a delivery to a folder
/// IDLE does not watch (junk), or to any folder without IDLE, is seen; doubling up to
/// it keeps a long wait to a few commands a minute.
const POLL_MAX: Duration = Duration::from_secs(15);

/// A folder a round trip searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// As configured, or as the server lists it.
    pub name: String,
    /// As it goes on the wire (modified UTF-7).
    pub wire: String,
    /// Whether a message found there was delivered to junk.
    pub junk: bool,
}

fn same_folder(a: &str, b: &str) -> bool {
    a == b || (a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX"))
}

/// The folders to search, in order: those of `folders` (where a delivery counts),
/// then those of `junk`, then the ones the server marks `\Junk` (`special`, as the
/// server names them). A folder in `junk` or marked `\Junk` is junk wherever listed.
pub fn folders(roundtrip: &RoundtripTarget, special: &[String]) -> Vec<Folder> {
    let is_junk = |wire: &str| {
        roundtrip
            .junk
            .iter()
            .any(|j| same_folder(&modified_utf7(j), wire))
            || special.iter().any(|s| same_folder(s, wire))
    };
    let mut all: Vec<Folder> = Vec::new();
    let named = roundtrip.folders.iter().chain(&roundtrip.junk);
    for name in named {
        let wire = modified_utf7(name);
        if all.iter().any(|f| same_folder(&f.wire, &wire)) {
            continue;
        }
        all.push(Folder {
            junk: is_junk(&wire),
            name: name.clone(),
            wire,
        });
    }
    for wire in special {
        if !all.iter().any(|f| same_folder(&f.wire, wire)) {
            all.push(Folder {
                name: wire.clone(),
                wire: wire.clone(),
                junk: true,
            });
        }
    }
    // Where a delivery counts first: a message is looked for there before junk.
    all.sort_by_key(|f| f.junk);
    all
}

/// Where the message was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Index into the folders searched.
    pub folder: usize,
    /// Its UID there.
    pub uid: u32,
    /// When the search that found it answered.
    pub at: Instant,
}

/// Searches `folders` for `token` until it is found or `until`; `None` when it never
/// appeared. `notes` receives what is worth a line in the probe's log.
///
/// # Errors
///
/// A [`ProbeError`] when the connection fails, the server breaks the protocol, or no
/// folder where a delivery counts exists.
pub async fn wait(
    mailbox: &mut Mailbox<'_>,
    folders: &[Folder],
    token: &str,
    until: Instant,
    notes: &mut Vec<String>,
) -> Result<Option<Seen>, ProbeError> {
    let idle = mailbox.offers("IDLE");
    let mut missing = vec![false; folders.len()];
    let mut pause = POLL_FIRST;
    let mut rounds = 0u32;
    loop {
        rounds += 1;
        for (index, folder) in folders.iter().enumerate() {
            if missing[index] {
                continue;
            }
            let already = mailbox.is_selected(&folder.wire);
            let selected = mailbox.select(&folder.wire, Access::ReadOnly).await?;
            if !selected {
                missing[index] = true;
                notes.push(format!(
                    "folder `{}` cannot be selected (does it exist?): not searched",
                    folder.name
                ));
                continue;
            }
            if already {
                // Still selected since the last round: NOOP lets the server tell of new
                // messages before the search.
                mailbox.noop().await?;
            }
            if let Some(uid) = mailbox.search_header(TOKEN_HEADER, token).await?.first() {
                notes.push(format!(
                    "found in `{}` (UID {uid}) after {rounds} search round{}",
                    folder.name,
                    if rounds == 1 { "" } else { "s" }
                ));
                return Ok(Some(Seen {
                    folder: index,
                    uid: *uid,
                    at: Instant::now(),
                }));
            }
        }
        if folders
            .iter()
            .zip(&missing)
            .all(|(folder, missing)| folder.junk || *missing)
        {
            return Err(ProbeError::new(
                ErrorKind::ProtocolError,
                "none of the folders where a delivery counts can be selected",
            ));
        }
        let now = Instant::now();
        if now >= until {
            notes.push(format!(
                "not found after {rounds} search round{} ({})",
                if rounds == 1 { "" } else { "s" },
                if idle {
                    "waiting with IDLE"
                } else {
                    "polling with NOOP"
                }
            ));
            return Ok(None);
        }
        let wake = (now + pause).min(until);
        pause = (pause * 2).min(POLL_MAX);
        let first = folders
            .iter()
            .zip(&missing)
            .find(|(_, missing)| !**missing)
            .map(|(folder, _)| folder);
        match first {
            Some(folder) if idle => {
                if mailbox.select(&folder.wire, Access::ReadOnly).await? {
                    mailbox.idle(wake).await?;
                } else {
                    tokio::time::sleep_until(wake).await;
                }
            }
            _ => tokio::time::sleep_until(wake).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Endpoint, SmtpTarget, TlsMode};

    fn roundtrip(folders: &[&str], junk: &[&str]) -> RoundtripTarget {
        let endpoint = Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            tls: TlsMode::Implicit,
            server_name: "x".into(),
            extra_roots: Arc::from(Vec::new()),
            auth: None,
        };
        RoundtripTarget {
            from: "a@example.test".into(),
            to: "a@example.test".into(),
            send: SmtpTarget {
                endpoint: endpoint.clone(),
                ehlo_name: "x".into(),
            },
            receive: endpoint,
            folders: folders.iter().map(|f| (*f).to_owned()).collect(),
            junk: junk.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn delivery_folders_come_first_and_junk_is_junk_wherever_listed() {
        let found = folders(
            &roundtrip(&["INBOX", "Junk", "Archive"], &["Spam"]),
            &["Junk".to_owned(), "Courrier ind&AOk-sirable".to_owned()],
        );
        let view: Vec<(&str, bool)> = found.iter().map(|f| (f.name.as_str(), f.junk)).collect();
        assert_eq!(
            view,
            [
                ("INBOX", false),
                ("Archive", false),
                ("Junk", true),
                ("Spam", true),
                ("Courrier ind&AOk-sirable", true)
            ]
        );
    }

    #[test]
    fn inbox_is_one_folder_whatever_its_case() {
        let found = folders(&roundtrip(&["INBOX", "inbox"], &[]), &[]);
        assert_eq!(found.len(), 1);
    }
}
