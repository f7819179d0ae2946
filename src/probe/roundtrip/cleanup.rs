//! Deleting probe messages — the round's own, and the older ones a sweep finds — and
//! never anything else.
//!
//! Every message is fetched first and deleted only when its `X-Mailprobe-Token:`
//! field parses as a token the rules allow: the round's own; this route's once older
//! than the timeout (late, or left behind by a crash); another route's once older than
//! any round trip may wait ([`EXPIRED_AFTER`]). Deletion is by UID: `UID EXPUNGE` where
//! the server has UIDPLUS (RFC 4315), else `\Deleted` and `EXPUNGE` — only when no
//! other message is flagged `\Deleted`, since EXPUNGE would remove those too.

use std::time::{Duration, SystemTime};

use super::facts::Sweep;
use super::find::Folder;
use super::headers::{Transit, parse_fields, transit};
use super::mailbox::{Access, Fetched, Mailbox};
use super::message::{TOKEN_HEADER, Token};
use crate::probe::{ErrorKind, ProbeError};

/// The header fields a round trip fetches: the token to check, the hops for the
/// transit, the date for `/debug`.
pub const FIELDS: &str = "X-MAILPROBE-TOKEN RECEIVED DATE";
/// Another route's message older than this is expired: no round trip waits longer
/// than the longest timeout (7 days), so nobody still looks for it (a route that was
/// renamed or removed, an agent gone).
pub const EXPIRED_AFTER: Duration = Duration::from_secs(8 * 24 * 3600);
/// The most probe messages one sweep inspects per folder; more wait for the next
/// sweep, so a mailbox full of old probe messages costs a bounded time per round.
const MAX_SWEPT_PER_FOLDER: usize = 32;

/// What happened to the messages asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Expunged, the way described.
    Expunged(&'static str),
    /// Left in place, for the reason given.
    Left(String),
}

/// The tokens in a fetched header block (a message may carry the field twice).
fn tokens(fetched: &Fetched) -> (Vec<Token>, Vec<(String, String)>) {
    let fields = parse_fields(&fetched.header);
    let tokens = fields
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(TOKEN_HEADER))
        .filter_map(|(_, value)| Token::parse(value))
        .collect();
    (tokens, fields)
}

/// Removes `uids` from the selected folder (read-write), by UID.
///
/// # Errors
///
/// A [`ProbeError`] when the connection fails or the server refuses a command.
pub async fn remove(mailbox: &mut Mailbox<'_>, uids: &[u32]) -> Result<Removal, ProbeError> {
    if mailbox.offers("UIDPLUS") {
        mailbox.flag_deleted(uids).await?;
        mailbox.uid_expunge(uids).await?;
        return Ok(Removal::Expunged("UID EXPUNGE"));
    }
    let flagged = mailbox.search("DELETED").await?;
    let others = flagged.iter().filter(|uid| !uids.contains(uid)).count();
    if others > 0 {
        return Ok(Removal::Left(format!(
            "the server has no UIDPLUS and {others} other message(s) in the folder are flagged \
             \\Deleted: EXPUNGE would remove them too"
        )));
    }
    mailbox.flag_deleted(uids).await?;
    mailbox.expunge().await?;
    Ok(Removal::Expunged("\\Deleted and EXPUNGE"))
}

/// Deletes the round's own message, `uid` in `folder`, once its header proves it is
/// the one with `token`. Returns what was done and the transit its `Received:` fields
/// tell.
///
/// # Errors
///
/// A [`ProbeError`] when the connection fails or the server refuses a command.
pub async fn delete_own(
    mailbox: &mut Mailbox<'_>,
    folder: &Folder,
    uid: u32,
    token: &Token,
) -> Result<(String, Option<Transit>), ProbeError> {
    if !mailbox.select(&folder.wire, Access::ReadWrite).await? {
        return Err(ProbeError::new(
            ErrorKind::ProtocolError,
            format!("folder `{}` cannot be opened for changes", folder.name),
        ));
    }
    let Some(fetched) = mailbox.fetch_headers(uid, FIELDS).await? else {
        return Ok((
            format!("UID {uid} in `{}` was already gone", folder.name),
            None,
        ));
    };
    let (found, fields) = tokens(&fetched);
    let transit = Some(transit(&fields));
    if !found.contains(token) {
        return Ok((
            format!(
                "left UID {uid} in `{}`: its {TOKEN_HEADER} is not this round's",
                folder.name
            ),
            transit,
        ));
    }
    let done = match remove(mailbox, &[uid]).await? {
        Removal::Expunged(how) => format!("deleted UID {uid} from `{}` ({how})", folder.name),
        Removal::Left(why) => format!("left UID {uid} in `{}`: {why}", folder.name),
    };
    Ok((done, transit))
}

/// What a sweep decides for one probe message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it: in flight, or another route's and not expired, or the round's own.
    Keep,
    /// This route's, arrived after its round had given up.
    Late,
    /// This route's, arrived in time, left behind.
    LeftBehind,
    /// Another route's, older than any round trip waits.
    Expired,
}

/// The sweep's rule for a message with `found` token that arrived at `arrived`
/// (seconds since the epoch, when known), for the round with token `own` whose
/// timeout is `timeout` and whose wait ends `window` after it starts.
pub fn verdict(
    found: &Token,
    arrived: Option<i64>,
    own: &Token,
    now: SystemTime,
    timeout: Duration,
    window: Duration,
) -> Verdict {
    if found == own {
        return Verdict::Keep;
    }
    let age = now
        .duration_since(found.started_at())
        .unwrap_or(Duration::ZERO);
    if found.route != own.route {
        return if age > EXPIRED_AFTER {
            Verdict::Expired
        } else {
            Verdict::Keep
        };
    }
    if age <= timeout {
        return Verdict::Keep;
    }
    // Late: it arrived after its round stopped waiting. INTERNALDATE has whole
    // seconds, so an arrival counts from the end of its second: a message arriving
    // just after the wait is late, not left behind. Unknown arrival is not counted
    // late: a late message must be proven so.
    let waited_until = u128::from(found.started_ms) + window.as_millis();
    match arrived.and_then(|seconds| u128::try_from(seconds).ok()) {
        Some(arrived) if (arrived + 1) * 1000 > waited_until => Verdict::Late,
        _ => Verdict::LeftBehind,
    }
}

/// Sweeps `folders` for older probe messages (see [`verdict`]) and deletes those the
/// rules allow.
///
/// # Errors
///
/// A [`ProbeError`] when the connection fails or the server refuses a command.
pub async fn sweep(
    mailbox: &mut Mailbox<'_>,
    folders: &[Folder],
    own: &Token,
    timeout: Duration,
    window: Duration,
    notes: &mut Vec<String>,
) -> Result<Sweep, ProbeError> {
    let mut report = Sweep::default();
    let now = SystemTime::now();
    for folder in folders {
        if !mailbox.select(&folder.wire, Access::ReadWrite).await? {
            continue;
        }
        // Every mailprobe message (IMAP matches the substring): other routes' are
        // needed to find the expired ones.
        let uids = mailbox.search_header(TOKEN_HEADER, "mp1.").await?;
        let mut doomed: Vec<(u32, Verdict)> = Vec::new();
        for uid in uids.into_iter().take(MAX_SWEPT_PER_FOLDER) {
            let Some(fetched) = mailbox.fetch_headers(uid, FIELDS).await? else {
                continue;
            };
            let (found, _) = tokens(&fetched);
            // A message without a token that parses is not ours: never touched.
            let Some(token) = found.first() else {
                continue;
            };
            if token == own {
                // This round's own message, arrived already: not the sweep's business.
                continue;
            }
            match verdict(token, fetched.arrived, own, now, timeout, window) {
                Verdict::Keep => report.kept += 1,
                other => doomed.push((uid, other)),
            }
        }
        if doomed.is_empty() {
            continue;
        }
        let uids: Vec<u32> = doomed.iter().map(|(uid, _)| *uid).collect();
        match remove(mailbox, &uids).await? {
            Removal::Expunged(_) => {
                for (_, verdict) in &doomed {
                    match verdict {
                        Verdict::Late => report.late += 1,
                        Verdict::LeftBehind => report.left_behind += 1,
                        Verdict::Expired => report.expired += 1,
                        Verdict::Keep => {}
                    }
                }
                notes.push(format!(
                    "sweep: deleted {} older probe message(s) from `{}`",
                    uids.len(),
                    folder.name
                ));
            }
            Removal::Left(why) => {
                report.stuck += u64::try_from(uids.len()).unwrap_or(u64::MAX);
                notes.push(format!(
                    "sweep: left {} in `{}`: {why}",
                    uids.len(),
                    folder.name
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(120);
    const WINDOW: Duration = Duration::from_secs(108);

    fn token(route: u64, started_s: u64, nonce: u64) -> Token {
        Token {
            route,
            started_ms: started_s * 1000,
            nonce,
        }
    }

    #[test]
    fn the_sweep_deletes_only_what_its_rules_allow() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let own = token(1, 1_000_000, 1);
        let judge = |found: &Token, arrived| verdict(found, arrived, &own, now, TIMEOUT, WINDOW);
        assert_eq!(judge(&own, Some(1_000_000)), Verdict::Keep);
        // This route, still in flight.
        assert_eq!(judge(&token(1, 999_950, 2), None), Verdict::Keep);
        // This route, old: late when it arrived after its round's wait.
        let old = token(1, 999_000, 3);
        assert_eq!(judge(&old, Some(999_000 + 108)), Verdict::Late);
        assert_eq!(judge(&old, Some(999_000 + 106)), Verdict::LeftBehind);
        assert_eq!(judge(&old, Some(999_000 + 5)), Verdict::LeftBehind);
        assert_eq!(judge(&old, None), Verdict::LeftBehind);
        // Another route: only when expired.
        assert_eq!(judge(&token(2, 999_000, 4), None), Verdict::Keep);
        let ancient = 1_000_000 - EXPIRED_AFTER.as_secs() - 1;
        assert_eq!(judge(&token(2, ancient, 5), None), Verdict::Expired);
    }
}
