//! The probe message and its token.
//!
//! The token, in `X-Mailprobe-Token:` and the subject, is
//! `mp1.<route>.<started>.<nonce>`: `route` (16 hex digits) tells the round-trip
//! targets that share a mailbox apart, `started` is when the round began (Unix
//! milliseconds) so that any later sweep knows the message's age without trusting a
//! server's clock, and `nonce` (16 hex digits) makes each message unique.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::headers::format_rfc5322;

/// The header that marks a message as mailprobe's. Only messages carrying it (with a
/// token that parses) are ever deleted.
pub const TOKEN_HEADER: &str = "X-Mailprobe-Token";
/// The token's version prefix; a later format gets another.
const PREFIX: &str = "mp1";
/// The longest token: `mp1.` + 16 + `.` + 20 digits + `.` + 16.
pub const MAX_TOKEN_LEN: usize = 58;
/// The longest target name quoted in the message body (ASCII only).
const MAX_NAME_IN_BODY: usize = 64;

/// A round trip's token: whose route it is, when the round began, which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// The route (see [`route_of`]).
    pub route: u64,
    /// When the round began, in milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// Unique per message.
    pub nonce: u64,
}

impl Token {
    /// A fresh token for a round of `route` that began at `started`.
    pub fn new(route: u64, started: SystemTime) -> Token {
        let started_ms = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Token {
            route,
            started_ms,
            nonce: fastrand::u64(..),
        }
    }

    /// What every token of `route` begins with: a `SEARCH HEADER` for it finds all
    /// of the route's messages (IMAP's header search matches substrings).
    pub fn route_prefix(route: u64) -> String {
        format!("{PREFIX}.{route:016x}.")
    }

    /// When the round began.
    pub fn started_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.started_ms)
    }

    /// Parses a token exactly as [`Token`]'s `Display` writes it (surrounding space
    /// allowed); anything else is not mailprobe's.
    pub fn parse(text: &str) -> Option<Token> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut parts = text.split('.');
        if parts.next()? != PREFIX {
            return None;
        }
        let hex = |part: &str| {
            (part.len() == 16 && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| u64::from_str_radix(part, 16).ok())
                .flatten()
        };
        let route = hex(parts.next()?)?;
        let started = parts.next()?;
        let started_ms = (!started.is_empty()
            && started.len() <= 20
            && started.bytes().all(|b| b.is_ascii_digit())
            && !(started.len() > 1 && started.starts_with('0')))
        .then(|| started.parse().ok())
        .flatten()?;
        let nonce = hex(parts.next()?)?;
        parts.next().is_none().then_some(Token {
            route,
            started_ms,
            nonce,
        })
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{:016x}.{}.{:016x}",
            self.route, self.started_ms, self.nonce
        )
    }
}

/// The route of a round-trip target: FNV-1a (64 bits, stable across builds and
/// machines) of its name and recipient, so that targets sharing a mailbox differ and
/// a restarted agent recognises its own messages.
pub fn route_of(target: &str, to: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in target
        .bytes()
        .chain(std::iter::once(0))
        .chain(to.to_ascii_lowercase().bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

/// The message, CRLF-separated and dot-stuffed, without the final `.` line: a small
/// RFC 5322 text message (ASCII only) with the token in its header and subject and
/// the time it was sent in its body. `Auto-Submitted` keeps vacation responders from
/// answering it (RFC 3834).
pub fn compose(token: &Token, from: &str, to: &str, target: &str, sent: SystemTime) -> String {
    let domain = from
        .rsplit_once('@')
        .map_or("mailprobe.invalid", |(_, d)| d);
    let name: String = target
        .chars()
        .take(MAX_NAME_IN_BODY)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    let sent_text = humantime::format_rfc3339_millis(sent);
    let lines = [
        format!("From: <{from}>"),
        format!("To: <{to}>"),
        format!("Subject: mailprobe round trip {token}"),
        format!("Date: {}", format_rfc5322(sent)),
        format!("Message-ID: <{token}@{domain}>"),
        format!("{TOKEN_HEADER}: {token}"),
        "Auto-Submitted: auto-generated".to_owned(),
        "MIME-Version: 1.0".to_owned(),
        "Content-Type: text/plain; charset=us-ascii".to_owned(),
        String::new(),
        format!("mailprobe round trip `{name}`: this message measures mail delivery."),
        format!("Sent: {sent_text}"),
        "It is deleted as soon as it is found.".to_owned(),
    ];
    lines
        .iter()
        .map(|line| {
            if line.starts_with('.') {
                format!(".{line}")
            } else {
                line.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_written_and_read_back_exactly() {
        let token = Token {
            route: route_of("roundtrip", "probe@example.test"),
            started_ms: 1_796_024_500_123,
            nonce: 0x0123_4567_89ab_cdef,
        };
        let text = token.to_string();
        assert!(text.starts_with(&Token::route_prefix(token.route)));
        assert!(text.len() <= MAX_TOKEN_LEN);
        assert_eq!(Token::parse(&text), Some(token));
        assert_eq!(Token::parse(&format!(" {text}\t")), Some(token));
        assert_eq!(
            token.started_at(),
            UNIX_EPOCH + Duration::from_millis(1_796_024_500_123)
        );
        for bad in [
            "",
            "mp1",
            "mp2.0123456789abcdef.1.0123456789abcdef",
            "mp1.0123456789ABCDEF.1.0123456789abcdef",
            "mp1.0123456789abcdef.01.0123456789abcdef",
            "mp1.0123456789abcdef..0123456789abcdef",
            "mp1.0123456789abcdef.1.0123456789abcdef.x",
            "mp1.0123456789abcdef.99999999999999999999.0123456789abcdef",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn routes_differ_by_target_and_recipient_only() {
        let a = route_of("office-submission", "probe@example.test");
        assert_eq!(a, route_of("office-submission", "Probe@Example.TEST"));
        assert_ne!(a, route_of("office-mx", "probe@example.test"));
        assert_ne!(a, route_of("office-submission", "other@example.test"));
    }

    #[test]
    fn the_message_carries_the_token_and_is_plain_ascii() {
        let token = Token::new(7, SystemTime::now());
        let text = compose(
            &token,
            "probe@example.test",
            "probe@example.test",
            "rt\u{e9}",
            SystemTime::now(),
        );
        assert!(text.is_ascii());
        assert!(text.contains(&format!("\r\nX-Mailprobe-Token: {token}\r\n")));
        assert!(text.contains(&format!("Subject: mailprobe round trip {token}")));
        assert!(text.contains(&format!("Message-ID: <{token}@example.test>")));
        assert!(text.contains("`rt?`"));
        assert!(text.split("\r\n").all(|line| !line.starts_with('.')));
    }
}
