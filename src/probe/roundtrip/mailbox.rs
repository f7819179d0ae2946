//! The IMAP commands a round trip needs after the login (`mail::open`): CAPABILITY
//! again (servers tell more after login), LIST for the `\Junk` folder (RFC 6154),
//! EXAMINE/SELECT, UID SEARCH, NOOP, IDLE (RFC 2177), UID FETCH of a few header
//! fields, UID STORE, UID EXPUNGE (RFC 4315) and EXPUNGE.
//!
//! Responses are read whole, literals included (`{n}` then `n` bytes): every line is
//! bounded by the line reader, every literal is kept only up to
//! [`MAX_LITERAL_KEPT`] bytes (the rest is read and dropped), and the session's byte
//! budget bounds the total. Tags (`r001`, …) never collide with the login's (`a001`).

use tokio::time::Instant;

use super::wire::{
    literal_len, mailbox_argument, number_after, parse_list, quoted_after, search_uids,
};
use crate::probe::imap::{Response, Status, parse_capabilities, parse_response, quoted};
use crate::probe::lines::{LineError, MAX_REPLY_LINES, sanitise};
use crate::probe::mail::{Capabilities, Lines};
use crate::probe::{ErrorKind, ProbeError};

/// The most bytes kept of one literal: the few header fields a round trip fetches
/// (`Received:` of a dozen hops, the token, the date) fit in far less.
pub const MAX_LITERAL_KEPT: usize = 16 * 1024;
/// The most literal bytes kept over one command's whole answer: a server answering one
/// FETCH with many messages, or a LIST with many literal names, costs no more memory
/// than this (later literals are read and dropped).
const MAX_LITERALS_KEPT_PER_COMMAND: usize = 64 * 1024;
/// Literals in one response: a FETCH of ours has one, a LIST answer one per name.
const MAX_LITERALS: usize = 8;
/// The longest server text quoted in a message.
const MAX_QUOTED: usize = 160;

/// One untagged response and the literals it carried, in order.
#[derive(Debug)]
struct Untagged {
    /// The text after `* `, each literal left as its `{n}` marker.
    text: String,
    literals: Vec<Vec<u8>>,
}

/// The outcome of one tagged command.
#[derive(Debug)]
struct Completion {
    untagged: Vec<Untagged>,
    status: Status,
    text: String,
}

/// Whether a folder is selected for reading only (EXAMINE) or for changes (SELECT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// EXAMINE: nothing can change, `\Recent` is left alone.
    ReadOnly,
    /// SELECT: flags can be stored and messages expunged.
    ReadWrite,
}

/// The header fields of one message, as FETCH returned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The message's UID.
    pub uid: u32,
    /// INTERNALDATE: when the server received it (seconds since the epoch).
    pub arrived: Option<i64>,
    /// The header block of the fields asked for.
    pub header: Vec<u8>,
}

/// A logged-in IMAP session, used for a round trip's commands.
#[derive(Debug)]
pub struct Mailbox<'l> {
    lines: &'l mut Lines,
    next_tag: u32,
    /// The capabilities after login.
    pub capabilities: Capabilities,
    selected: Option<(String, Access)>,
}

fn protocol_error(message: String) -> ProbeError {
    ProbeError::new(ErrorKind::ProtocolError, message)
}

fn line_error(error: LineError, what: &str) -> ProbeError {
    error.into_probe_error(what)
}

impl<'l> Mailbox<'l> {
    /// Uses the logged-in session on `lines`, whose login offered `capabilities`.
    pub fn new(lines: &'l mut Lines, capabilities: Capabilities) -> Mailbox<'l> {
        Mailbox {
            lines,
            next_tag: 0,
            capabilities,
            selected: None,
        }
    }

    fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("r{:03}", self.next_tag)
    }

    /// The rest of a response whose first line is `first`: the literals it announces
    /// and the lines that follow them.
    async fn finish_response(
        &mut self,
        first: String,
        room: &mut usize,
    ) -> Result<(String, Vec<Vec<u8>>), ProbeError> {
        let mut text = first;
        let mut literals = Vec::new();
        while let Some(len) = literal_len(&text) {
            if literals.len() == MAX_LITERALS {
                return Err(protocol_error(format!(
                    "more than {MAX_LITERALS} literals in one response"
                )));
            }
            let literal = self
                .lines
                .read_literal(len, MAX_LITERAL_KEPT.min(*room))
                .await
                .map_err(|e| line_error(e, "a literal"))?;
            *room = room.saturating_sub(literal.len());
            literals.push(literal);
            let more = self
                .lines
                .read_line()
                .await
                .map_err(|e| line_error(e, "the rest of a response"))?;
            text.push_str(&more);
        }
        Ok((text, literals))
    }

    async fn read_response(
        &mut self,
        what: &str,
        room: &mut usize,
    ) -> Result<(String, Vec<Vec<u8>>), ProbeError> {
        let first = self
            .lines
            .read_line()
            .await
            .map_err(|e| line_error(e, what))?;
        self.finish_response(first, room).await
    }

    /// Sends `command` and reads up to its tagged completion.
    async fn command(&mut self, command: &str, what: &str) -> Result<Completion, ProbeError> {
        let tag = self.tag();
        self.lines.write_line(&format!("{tag} {command}")).await?;
        self.complete(&tag, what).await
    }

    async fn complete(&mut self, tag: &str, what: &str) -> Result<Completion, ProbeError> {
        let mut untagged = Vec::new();
        let mut room = MAX_LITERALS_KEPT_PER_COMMAND;
        loop {
            let (text, literals) = self.read_response(what, &mut room).await?;
            match parse_response(&text).map_err(protocol_error)? {
                Response::Tagged {
                    tag: got,
                    status,
                    text,
                } if got == tag => {
                    return Ok(Completion {
                        untagged,
                        status,
                        text: sanitise(text, MAX_QUOTED),
                    });
                }
                Response::Untagged(data) if is_bye(data) => return Err(bye(&text)),
                Response::Untagged(data) => {
                    // A long answer (a LIST of a large account) is read to its end; only
                    // its first lines are kept.
                    if untagged.len() < MAX_REPLY_LINES {
                        untagged.push(Untagged {
                            text: data.to_owned(),
                            literals,
                        });
                    }
                }
                Response::Tagged { .. } | Response::Continuation(_) => {
                    return Err(protocol_error(format!(
                        "unexpected line in {what}: {}",
                        sanitise(&text, MAX_QUOTED)
                    )));
                }
            }
        }
    }

    /// Sends `command`; anything but OK is a protocol error naming `what`.
    async fn command_ok(&mut self, command: &str, what: &str) -> Result<Completion, ProbeError> {
        let completion = self.command(command, what).await?;
        match completion.status {
            Status::Ok => Ok(completion),
            _ => Err(protocol_error(format!(
                "{what} refused: {}",
                completion.text
            ))),
        }
    }

    /// Asks for the capabilities again: servers add IDLE, UIDPLUS, SPECIAL-USE after
    /// login.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the server breaks the protocol.
    pub async fn refresh_capabilities(&mut self) -> Result<(), ProbeError> {
        let completion = self.command_ok("CAPABILITY", "CAPABILITY").await?;
        if let Some(capabilities) = completion
            .untagged
            .iter()
            .find_map(|u| parse_capabilities(&u.text))
        {
            self.capabilities = capabilities;
        }
        Ok(())
    }

    /// Whether the server offers `keyword`.
    pub fn offers(&self, keyword: &str) -> bool {
        self.capabilities.has(keyword)
    }

    /// The folders the server marks `\Junk` (RFC 6154), as it names them.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails; a refused LIST is no folder.
    pub async fn junk_folders(&mut self) -> Result<Vec<String>, ProbeError> {
        let command = if self.offers("SPECIAL-USE") {
            "LIST (SPECIAL-USE) \"\" \"*\""
        } else {
            // Servers that know the attributes but not the selection option still
            // show them in a plain LIST.
            "LIST \"\" \"*\""
        };
        let completion = self.command(command, "the LIST answer").await?;
        if completion.status != Status::Ok {
            return Ok(Vec::new());
        }
        Ok(completion
            .untagged
            .iter()
            .filter_map(|u| parse_list(&u.text, &u.literals))
            .filter(|(flags, _)| {
                flags.iter().any(|f| f == "\\junk")
                    && !flags
                        .iter()
                        .any(|f| f == "\\noselect" || f == "\\nonexistent")
            })
            .map(|(_, name)| name)
            .collect())
    }

    /// Whether `wire` is the selected folder.
    pub fn is_selected(&self, wire: &str) -> bool {
        self.selected.as_ref().is_some_and(|(name, _)| name == wire)
    }

    /// Selects `wire` (a name as the server spells it) with `access`, unless it is
    /// already selected so. `false` when the server refuses (no such folder).
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the server rejects the command.
    pub async fn select(&mut self, wire: &str, access: Access) -> Result<bool, ProbeError> {
        if let Some((name, held)) = &self.selected
            && name == wire
            && (*held == access || *held == Access::ReadWrite)
        {
            return Ok(true);
        }
        let verb = match access {
            Access::ReadOnly => "EXAMINE",
            Access::ReadWrite => "SELECT",
        };
        let quoted = quoted(wire).unwrap_or_else(|| mailbox_argument(wire));
        let completion = self
            .command(&format!("{verb} {quoted}"), &format!("the {verb} answer"))
            .await?;
        self.selected = None;
        match completion.status {
            Status::Ok => {
                self.selected = Some((wire.to_owned(), access));
                Ok(true)
            }
            Status::No => Ok(false),
            Status::Bad => Err(protocol_error(format!(
                "{verb} not understood: {}",
                completion.text
            ))),
        }
    }

    /// `UID SEARCH criteria` in the selected folder: at most [`MAX_UIDS`](super::wire::MAX_UIDS) UIDs.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the search is refused.
    pub async fn search(&mut self, criteria: &str) -> Result<Vec<u32>, ProbeError> {
        let completion = self
            .command_ok(&format!("UID SEARCH {criteria}"), "UID SEARCH")
            .await?;
        Ok(completion
            .untagged
            .iter()
            .find_map(|u| search_uids(&u.text))
            .unwrap_or_default())
    }

    /// The UIDs whose `header` contains `value` (IMAP matches substrings).
    ///
    /// # Errors
    ///
    /// As [`Mailbox::search`].
    pub async fn search_header(
        &mut self,
        header: &str,
        value: &str,
    ) -> Result<Vec<u32>, ProbeError> {
        let value = quoted(value).ok_or_else(|| {
            protocol_error("internal error: a search value that cannot be quoted".to_owned())
        })?;
        self.search(&format!("HEADER {header} {value}")).await
    }

    /// INTERNALDATE and the header `fields` of message `uid` of the selected folder,
    /// without setting `\Seen`; `None` when the server has no such message.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the fetch is refused.
    pub async fn fetch_headers(
        &mut self,
        uid: u32,
        fields: &str,
    ) -> Result<Option<Fetched>, ProbeError> {
        let completion = self
            .command_ok(
                &format!("UID FETCH {uid} (UID INTERNALDATE BODY.PEEK[HEADER.FIELDS ({fields})])"),
                "UID FETCH",
            )
            .await?;
        Ok(completion.untagged.into_iter().find_map(|u| {
            let is_fetch = u
                .text
                .split_whitespace()
                .nth(1)
                .is_some_and(|w| w.eq_ignore_ascii_case("FETCH"));
            if !is_fetch || number_after(&u.text, "UID") != Some(uid) {
                return None;
            }
            let arrived =
                quoted_after(&u.text, "INTERNALDATE").and_then(super::headers::parse_internaldate);
            let header = u.literals.into_iter().next().unwrap_or_default();
            Some(Fetched {
                uid,
                arrived,
                header,
            })
        }))
    }

    /// `UID STORE uids +FLAGS.SILENT (\Deleted)` in the selected folder.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the store is refused.
    pub async fn flag_deleted(&mut self, uids: &[u32]) -> Result<(), ProbeError> {
        self.command_ok(
            &format!("UID STORE {} +FLAGS.SILENT (\\Deleted)", uid_set(uids)),
            "UID STORE",
        )
        .await
        .map(drop)
    }

    /// `UID EXPUNGE uids` (UIDPLUS, RFC 4315): removes exactly these messages.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the expunge is refused.
    pub async fn uid_expunge(&mut self, uids: &[u32]) -> Result<(), ProbeError> {
        self.command_ok(&format!("UID EXPUNGE {}", uid_set(uids)), "UID EXPUNGE")
            .await
            .map(drop)
    }

    /// `EXPUNGE`: removes every message flagged `\Deleted` in the selected folder.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the expunge is refused.
    pub async fn expunge(&mut self) -> Result<(), ProbeError> {
        self.command_ok("EXPUNGE", "EXPUNGE").await.map(drop)
    }

    /// `NOOP`: lets the server report new messages in the selected folder.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails or the server breaks the protocol.
    pub async fn noop(&mut self) -> Result<(), ProbeError> {
        self.command_ok("NOOP", "NOOP").await.map(drop)
    }

    /// IDLE in the selected folder until the server reports a new message (`true`)
    /// or `until` (`false`), then DONE.
    ///
    /// # Errors
    ///
    /// A [`ProbeError`] when the connection fails, IDLE is refused or the server
    /// breaks the protocol.
    pub async fn idle(&mut self, until: Instant) -> Result<bool, ProbeError> {
        let tag = self.tag();
        self.lines.write_line(&format!("{tag} IDLE")).await?;
        loop {
            let (text, _) = self.read_response("the IDLE go-ahead", &mut 0).await?;
            match parse_response(&text).map_err(protocol_error)? {
                Response::Continuation(_) => break,
                Response::Untagged(data) if is_bye(data) => return Err(bye(&text)),
                Response::Untagged(_) => {}
                Response::Tagged { tag: got, text, .. } if got == tag => {
                    return Err(protocol_error(format!(
                        "IDLE refused: {}",
                        sanitise(text, MAX_QUOTED)
                    )));
                }
                Response::Tagged { .. } => {
                    return Err(protocol_error(format!(
                        "unexpected line before IDLE: {}",
                        sanitise(&text, MAX_QUOTED)
                    )));
                }
            }
        }
        let mut woke = false;
        // Only the first line of each update waits on the clock: reading a line is
        // cancel-safe, the rest of a response (a literal) is not.
        while let Ok(first) = tokio::time::timeout_at(until, self.lines.read_line()).await {
            let first = first.map_err(|e| line_error(e, "updates during IDLE"))?;
            let (text, _) = self.finish_response(first, &mut 0).await?;
            match parse_response(&text).map_err(protocol_error)? {
                Response::Untagged(data) if is_bye(data) => return Err(bye(&text)),
                Response::Untagged(data) => {
                    let news = data.split_whitespace().nth(1).is_some_and(|w| {
                        w.eq_ignore_ascii_case("EXISTS") || w.eq_ignore_ascii_case("RECENT")
                    });
                    if news {
                        woke = true;
                        break;
                    }
                }
                _ => {
                    return Err(protocol_error(format!(
                        "unexpected line during IDLE: {}",
                        sanitise(&text, MAX_QUOTED)
                    )));
                }
            }
        }
        self.lines.write_line("DONE").await?;
        let completion = self.complete(&tag, "the end of IDLE").await?;
        if completion.status != Status::Ok {
            return Err(protocol_error(format!(
                "IDLE ended with an error: {}",
                completion.text
            )));
        }
        Ok(woke)
    }
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn is_bye(data: &str) -> bool {
    // `get`, not slicing: byte 3 may fall inside a multi-byte character.
    data.get(..3)
        .is_some_and(|word| word.eq_ignore_ascii_case("BYE"))
}

fn bye(line: &str) -> ProbeError {
    ProbeError::new(
        ErrorKind::ServiceUnavailable,
        format!(
            "the server closed the session: {}",
            sanitise(line, MAX_QUOTED)
        ),
    )
}
