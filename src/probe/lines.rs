//! A bounded line reader and writer for the text protocols (IMAP, POP3, SMTP).
//!
//! Every read is bounded three ways: a line may not exceed [`MAX_LINE_LEN`], a probe may
//! not read more than [`MAX_PROBE_BYTES`] in total, and the probe's deadline bounds the
//! time (enforced by the caller). A hostile server therefore cannot make a probe hang,
//! allocate without bound, or crash the agent.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ErrorKind, ProbeError};

/// The longest line accepted from a server. RFC 5321 caps SMTP reply lines at 512
/// octets; IMAP CAPABILITY lines of large servers run to about 1 KiB. 8 KiB leaves
/// ample room while keeping what one line can make us buffer small.
pub const MAX_LINE_LEN: usize = 8 * 1024;
/// The most bytes one probe reads from a server, across all lines: a real dialogue
/// is a few KiB; 64 KiB bounds the memory a broken or hostile server can cost us.
pub const MAX_PROBE_BYTES: usize = 64 * 1024;
/// The most lines in one multi-line reply (EHLO, CAPA, untagged IMAP responses). Real
/// servers send fewer than 40; more means a broken or hostile server.
pub const MAX_REPLY_LINES: usize = 256;
/// Read granularity: one TCP segment or TLS record usually fits.
const READ_CHUNK: usize = 4 * 1024;

/// Why reading a line failed.
#[derive(Debug)]
pub enum LineError {
    /// The server closed the connection (clean EOF).
    Closed,
    /// A line exceeded [`MAX_LINE_LEN`].
    TooLong,
    /// The stream's byte budget ([`MAX_PROBE_BYTES`] unless raised), given here, is
    /// spent.
    TooMuchData(usize),
    /// The connection failed (reset, TLS error, …).
    Io(io::Error),
}

impl LineError {
    /// The typed probe error, `what` saying what we were waiting for.
    pub fn into_probe_error(self, what: &str) -> ProbeError {
        match self {
            LineError::Closed => ProbeError::new(
                ErrorKind::ProtocolError,
                format!("the server closed the connection while we waited for {what}"),
            ),
            LineError::TooLong => ProbeError::new(
                ErrorKind::ProtocolError,
                format!("a line of {what} is longer than {MAX_LINE_LEN} bytes"),
            ),
            LineError::TooMuchData(budget) => ProbeError::new(
                ErrorKind::ProtocolError,
                format!("the server sent more than {budget} bytes (while we waited for {what})"),
            ),
            LineError::Io(error) => io_error(&error, what),
        }
    }
}

/// Types a failure to read a greeting: a reset stays a reset, anything else the server
/// sent (or did not send) instead of a greeting is `bad_greeting`.
pub fn greeting_error(error: LineError) -> ProbeError {
    match error {
        LineError::Io(io) => io_error(&io, "the greeting"),
        LineError::Closed => ProbeError::new(
            ErrorKind::BadGreeting,
            "the server closed the connection without a greeting",
        ),
        other => {
            let described = other.into_probe_error("the greeting");
            ProbeError::new(ErrorKind::BadGreeting, described.message)
        }
    }
}

/// Types an I/O error on an established connection.
pub fn io_error(error: &io::Error, what: &str) -> ProbeError {
    match error.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => ProbeError::new(
            ErrorKind::ConnectionReset,
            format!("the server reset the connection while we waited for {what}"),
        ),
        _ => ProbeError::new(
            ErrorKind::ProtocolError,
            format!("reading {what} failed: {error}"),
        ),
    }
}

/// A stream read line by line through a fixed-size buffer.
#[derive(Debug)]
pub struct LineStream<S> {
    stream: S,
    buffer: Vec<u8>,
    /// How much of `buffer` is known to hold no line end, so each byte is scanned once.
    scanned: usize,
    /// Bytes read from the stream so far, across upgrades.
    read_total: usize,
    /// The most bytes this stream may read in total ([`MAX_PROBE_BYTES`] unless raised).
    budget: usize,
    /// The command being sent, reused from one command to the next.
    outgoing: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineStream<S> {
    /// Wraps a fresh connection.
    pub fn new(stream: S) -> Self {
        Self::continuing(stream, 0)
    }

    /// Wraps an upgraded connection, carrying over the bytes already read so the
    /// budget covers the whole probe.
    pub fn continuing(stream: S, read_total: usize) -> Self {
        LineStream {
            stream,
            buffer: Vec::with_capacity(READ_CHUNK),
            scanned: 0,
            read_total,
            budget: MAX_PROBE_BYTES,
            outgoing: Vec::new(),
        }
    }

    /// Allows this stream `budget` bytes in total instead of [`MAX_PROBE_BYTES`]: for a
    /// session that legitimately lasts minutes (a round trip waiting for its message).
    /// Lines stay bounded by [`MAX_LINE_LEN`]; only the total grows.
    pub fn set_byte_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    /// Consumes the `len` bytes of an IMAP literal (`{len}` at the end of the line
    /// before it), keeping at most the first `keep`: the rest is read and dropped, so
    /// a large literal costs bytes of the budget but no memory.
    ///
    /// # Errors
    ///
    /// [`LineError`] when the connection closes or fails, or the budget is spent.
    pub async fn read_literal(&mut self, len: usize, keep: usize) -> Result<Vec<u8>, LineError> {
        let mut kept = Vec::with_capacity(keep.min(len));
        let mut remaining = len;
        loop {
            let take = remaining.min(self.buffer.len());
            let room = keep.saturating_sub(kept.len()).min(take);
            kept.extend_from_slice(&self.buffer[..room]);
            self.buffer.drain(..take);
            // What is left in the buffer has not been searched for a line end yet.
            self.scanned = 0;
            remaining -= take;
            if remaining == 0 {
                return Ok(kept);
            }
            self.fill().await?;
        }
    }

    /// The next line, without its line ending (CRLF or a bare LF), decoded lossily
    /// as UTF-8.
    ///
    /// # Errors
    ///
    /// [`LineError`] when the connection closes or fails, or a bound is exceeded.
    pub async fn read_line(&mut self) -> Result<String, LineError> {
        loop {
            let unscanned = &self.buffer[self.scanned..];
            if let Some(offset) = unscanned.iter().position(|b| *b == b'\n') {
                let end = self.scanned + offset;
                self.scanned = 0;
                let text = &self.buffer[..end];
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                // The limit is on the line itself, whatever the read sizes were.
                let line = if text.len() > MAX_LINE_LEN {
                    Err(LineError::TooLong)
                } else {
                    // One allocation per line: the text is copied straight out of the
                    // buffer, which then only shifts what follows the line end.
                    Ok(String::from_utf8_lossy(text).into_owned())
                };
                self.buffer.drain(..=end);
                return line;
            }
            self.scanned = self.buffer.len();
            // Room for the longest line plus its CR LF; beyond that no end can save it.
            if self.buffer.len() > MAX_LINE_LEN + 1 {
                return Err(LineError::TooLong);
            }
            self.fill().await?;
        }
    }

    /// Reads more bytes into the buffer.
    async fn fill(&mut self) -> Result<(), LineError> {
        let room = self.budget.saturating_sub(self.read_total);
        if room == 0 {
            return Err(LineError::TooMuchData(self.budget));
        }
        let want = room.min(READ_CHUNK);
        self.buffer.reserve(want);
        // Straight into the buffer's spare room (no zeroed chunk to copy from); `take`
        // keeps the read within the byte budget however much room the buffer has.
        let read = (&mut self.stream)
            .take(u64::try_from(want).unwrap_or(u64::MAX))
            .read_buf(&mut self.buffer)
            .await
            .map_err(LineError::Io)?;
        if read == 0 {
            return Err(LineError::Closed);
        }
        self.read_total += read;
        Ok(())
    }

    /// Sends `line` followed by CRLF and flushes.
    ///
    /// # Errors
    ///
    /// A typed [`ProbeError`] when the write fails.
    pub async fn write_line(&mut self, line: &str) -> Result<(), ProbeError> {
        // One write (one TLS record, one segment) for the line and its end, from a
        // buffer kept across commands.
        self.outgoing.clear();
        self.outgoing.extend_from_slice(line.as_bytes());
        self.outgoing.extend_from_slice(b"\r\n");
        self.stream
            .write_all(&self.outgoing)
            .await
            .map_err(|e| io_error(&e, "the server to accept our command"))?;
        self.stream
            .flush()
            .await
            .map_err(|e| io_error(&e, "the server to accept our command"))
    }

    /// Whether the server sent bytes we have not consumed yet.
    pub fn has_unread_data(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// The stream back, for a TLS upgrade, with the byte count so far.
    ///
    /// # Errors
    ///
    /// `protocol_error` when the server sent data after its STARTTLS answer: that data
    /// arrived in plain text and must never be read as if it came over TLS (the
    /// STARTTLS command-injection attack, CVE-2011-0411 and its kin).
    pub fn into_upgradable(self) -> Result<(S, usize), ProbeError> {
        if self.has_unread_data() {
            return Err(ProbeError::new(
                ErrorKind::ProtocolError,
                "the server sent data after accepting STARTTLS and before the TLS handshake \
                 (possible STARTTLS injection); refusing to upgrade",
            ));
        }
        Ok((self.stream, self.read_total))
    }

    /// Closes the write side politely (TLS close_notify, then FIN), ignoring errors:
    /// the dialogue is over either way.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// Writes a printable, bounded copy of server text for messages and `/debug`:
/// control characters become `?`, and the text is cut at `max` characters.
pub fn sanitise(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_from(data: &[u8]) -> (Vec<String>, Option<LineError>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let data = data.to_vec();
        tokio::spawn(async move {
            let _ = server.write_all(&data).await;
        });
        let mut reader = LineStream::new(&mut client);
        let mut lines = Vec::new();
        loop {
            match reader.read_line().await {
                Ok(line) => lines.push(line),
                Err(e) => return (lines, Some(e)),
            }
        }
    }

    #[tokio::test]
    async fn lines_end_at_crlf_or_lf_and_eof_is_reported() {
        let (lines, error) = lines_from(b"* OK ready\r\nsecond\nthird-no-end").await;
        assert_eq!(lines, ["* OK ready", "second"]);
        assert!(matches!(error, Some(LineError::Closed)));
    }

    #[tokio::test]
    async fn an_overlong_line_is_refused_without_buffering_it() {
        let mut long = vec![b'A'; MAX_LINE_LEN * 4];
        long.extend_from_slice(b"\r\n");
        let (lines, error) = lines_from(&long).await;
        assert!(lines.is_empty());
        assert!(matches!(error, Some(LineError::TooLong)), "{error:?}");
    }

    #[tokio::test]
    async fn the_probe_byte_budget_ends_an_endless_stream_of_short_lines() {
        let data = b"250-x\r\n".repeat(MAX_PROBE_BYTES);
        let (lines, error) = lines_from(&data).await;
        assert!(
            matches!(error, Some(LineError::TooMuchData(MAX_PROBE_BYTES))),
            "{error:?}"
        );
        assert!(lines.len() * 7 <= MAX_PROBE_BYTES);
    }

    /// Regression (found by the `line_reader` fuzz target): a line just over the limit
    /// that arrived together with its line end in one read was accepted.
    #[tokio::test]
    async fn a_line_over_the_limit_is_refused_however_the_reads_fall() {
        for length in [
            MAX_LINE_LEN + 1,
            MAX_LINE_LEN + 64,
            MAX_LINE_LEN + READ_CHUNK - 10,
        ] {
            let mut line = vec![b'A'; length];
            line.extend_from_slice(b"\r\n");
            let (mut client, mut server) = tokio::io::duplex(64 * 1024);
            server.write_all(&line).await.unwrap();
            let mut reader = LineStream::new(&mut client);
            assert!(
                matches!(reader.read_line().await, Err(LineError::TooLong)),
                "{length}"
            );
        }
        let mut exact = vec![b'A'; MAX_LINE_LEN];
        exact.extend_from_slice(b"\r\n");
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        server.write_all(&exact).await.unwrap();
        let mut reader = LineStream::new(&mut client);
        assert_eq!(reader.read_line().await.unwrap().len(), MAX_LINE_LEN);
    }

    #[tokio::test]
    async fn a_literal_is_consumed_whole_and_kept_only_up_to_its_bound() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let mut data = b"* 1 FETCH (BODY[] {10}\r\n".to_vec();
        data.extend_from_slice(b"0123456789)\r\nnext\r\n");
        server.write_all(&data).await.unwrap();
        let mut reader = LineStream::new(&mut client);
        assert_eq!(reader.read_line().await.unwrap(), "* 1 FETCH (BODY[] {10}");
        assert_eq!(reader.read_literal(10, 4).await.unwrap(), b"0123");
        assert_eq!(reader.read_line().await.unwrap(), ")");
        assert_eq!(reader.read_line().await.unwrap(), "next");
    }

    #[tokio::test]
    async fn a_raised_budget_allows_more_than_one_probe_s_worth() {
        let data = b"* OK still here\r\n".repeat(MAX_PROBE_BYTES / 8);
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let _ = server.write_all(&data).await;
        });
        let mut reader = LineStream::new(&mut client);
        reader.set_byte_budget(4 * MAX_PROBE_BYTES);
        let mut count = 0;
        while reader.read_line().await.is_ok() {
            count += 1;
        }
        assert_eq!(count, MAX_PROBE_BYTES / 8);
    }

    #[test]
    fn sanitised_text_is_printable_and_bounded() {
        assert_eq!(sanitise("ok\u{1b}[31m", 20), "ok?[31m");
        assert_eq!(sanitise("abcdef", 3), "abc…");
    }
}
