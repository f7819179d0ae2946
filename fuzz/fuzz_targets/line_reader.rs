//! The bounded line reader (`src/probe/lines.rs`): `LineStream` reads a scripted server
//! until it errors, and every line it returns is checked against a model of the
//! stream, together with its three bounds.
//!
//! Input format (so that a few bytes can describe the long lines and 64 KiB streams
//! the bounds are about, and a raw transcript stays a valid input):
//!
//! - byte 0 configures the stream: bits 0-2 pick how many bytes successive reads
//!   return at most (`READS`, used in a cycle), bit 3 makes every other read
//!   `Pending` first, bit 4 ends the stream with a connection reset instead of EOF;
//! - the rest is what the server sends, byte for byte, except that `0x00 B N` sends
//!   byte `B` `(N + 1) * 64` times (64 B to 16 KiB). A `0x00` in the last two bytes is
//!   sent as is.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::lines::{LineError, LineStream, MAX_LINE_LEN, MAX_PROBE_BYTES, sanitise};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most how many bytes successive reads return (in a cycle); `ALL`: as many as the
/// reader asks for. Every pattern has a big read: `LineStream` rescans its whole
/// buffer after each read, which with only 1-byte reads costs seconds per 8 KiB line
/// under coverage instrumentation and would spend the fuzzer's time on a few inputs.
const READS: [&[usize]; 8] = [
    &[ALL],
    &[1, ALL],
    &[ALL, 1],
    &[2, 3, 5, ALL],
    &[4095],
    &[1000, ALL, 7],
    &[ALL, ALL, 1, 1],
    &[8, 64, 512, ALL],
];
const ALL: usize = usize::MAX;
/// Nothing past this is ever read (the byte budget ends the probe first).
const MAX_STREAM: usize = MAX_PROBE_BYTES + 2 * MAX_LINE_LEN;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fn expand(script: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < script.len() && out.len() < MAX_STREAM {
        if script[i] == 0 && i + 2 < script.len() {
            let count = (usize::from(script[i + 2]) + 1) * 64;
            out.extend(std::iter::repeat_n(script[i + 1], count));
            i += 3;
        } else {
            out.push(script[i]);
            i += 1;
        }
    }
    out.truncate(MAX_STREAM);
    out
}

/// A server that sends `data` in reads of at most `reads[i % len]` bytes, then EOF or a
/// reset;
/// what we write to it is discarded.
struct Scripted<'a> {
    data: &'a [u8],
    read: usize,
    reads: &'static [usize],
    served: usize,
    pending: bool,
    polls: usize,
    reset_at_end: bool,
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.polls += 1;
        if self.pending && self.polls % 2 == 1 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let left = &self.data[self.read..];
        if left.is_empty() {
            if self.reset_at_end {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            return Poll::Ready(Ok(()));
        }
        let most = self.reads[self.served % self.reads.len()];
        let n = left.len().min(most).min(buf.remaining());
        buf.put_slice(&left[..n]);
        self.read += n;
        self.served += 1;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, script)) = input.split_first() else {
        return;
    };
    let stream = expand(script);
    let mut server = Scripted {
        data: &stream,
        read: 0,
        reads: READS[usize::from(flags & 7)],
        served: 0,
        pending: flags & 8 != 0,
        polls: 0,
        reset_at_end: flags & 16 != 0,
    };
    let (lines, error) = runtime().block_on(async {
        let mut reader = LineStream::new(&mut server);
        let mut lines = Vec::new();
        loop {
            match reader.read_line().await {
                Ok(line) => lines.push(line),
                Err(error) => break (lines, error),
            }
        }
    });
    let consumed = server.read;

    // The byte budget.
    assert!(consumed <= MAX_PROBE_BYTES, "read {consumed} bytes");
    // Each line is the model's next line, and within the length bound.
    let mut at = 0;
    for (index, line) in lines.iter().enumerate() {
        let end = stream[at..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| at + p)
            .unwrap_or_else(|| panic!("line {index} returned without a line feed"));
        assert!(
            end < consumed,
            "line {index} ends past the {consumed} bytes read"
        );
        let raw = &stream[at..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        assert!(
            raw.len() <= MAX_LINE_LEN,
            "line {index} is {} bytes long (MAX_LINE_LEN is {MAX_LINE_LEN}); {}",
            raw.len(),
            match server.reads {
                [ALL] => "reads returned all the reader asked for".to_owned(),
                n => format!("reads returned at most {n:?} bytes (ALL = {ALL})"),
            },
        );
        assert_eq!(*line, String::from_utf8_lossy(raw), "line {index}");
        let shown = sanitise(line, 160);
        assert!(
            !shown.chars().any(char::is_control),
            "sanitise({line:?}) = {shown:?}"
        );
        assert!(
            shown.chars().count() <= 161,
            "sanitise({line:?}) = {shown:?}"
        );
        at = end + 1;
    }
    // Nothing complete is left behind: the error comes with a partial line at most,
    // or with a complete line refused for being longer than MAX_LINE_LEN.
    let pending = &stream[at..consumed];
    if let Some(end) = pending.iter().position(|b| *b == b'\n') {
        let line = pending[..end].strip_suffix(b"\r").unwrap_or(&pending[..end]);
        assert!(
            matches!(error, LineError::TooLong) && line.len() > MAX_LINE_LEN,
            "a complete line was read but not returned before {error:?}"
        );
    }
    match error {
        LineError::Closed => {
            assert!(
                !server.reset_at_end && consumed == stream.len(),
                "early EOF"
            );
        }
        LineError::Io(e) => {
            assert!(
                server.reset_at_end && consumed == stream.len(),
                "Io({e}) early"
            );
        }
        LineError::TooMuchData(budget) => {
            assert_eq!(budget, MAX_PROBE_BYTES, "the default budget");
            assert_eq!(
                consumed, MAX_PROBE_BYTES,
                "TooMuchData before the budget was spent"
            );
        }
        LineError::TooLong => {
            assert!(
                pending.len() > MAX_LINE_LEN,
                "TooLong with {} bytes pending",
                pending.len()
            );
        }
    }
});
