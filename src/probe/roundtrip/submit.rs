//! The SMTP transaction of a round trip (RFC 5321 §3.3): `MAIL FROM`, `RCPT TO`,
//! `DATA`, the message, and the reply to its end — over a session that already said
//! EHLO, upgraded with STARTTLS and logged in (`mail::open`).
//!
//! A 5xx reply is `send_rejected`, a 4xx `send_deferred` (greylisting, rate limits);
//! no reply to the end of `DATA` is `send_uncertain`: the server may have accepted the
//! message, so it is never counted as sent, nor as refused.

use tokio::time::Instant;

use crate::probe::lines::sanitise;
use crate::probe::mail::Lines;
use crate::probe::smtp::{Reply, Smtp};
use crate::probe::{ErrorKind, ProbeError};

/// The longest reply text kept for `/debug` and messages.
const MAX_REPLY_TEXT: usize = 200;

/// What the server said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The reply to the end of `DATA`, as one line (`250 2.0.0 OK id=…`).
    pub reply: String,
    /// Its enhanced status code (RFC 3463), when it has one.
    pub enhanced: Option<String>,
    /// When the reply arrived.
    pub at: Instant,
}

/// The enhanced status code (`4.7.1`) at the start of a reply's text (RFC 3463).
pub fn enhanced_code(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let digits = |part: &str, max: usize| {
        !part.is_empty() && part.len() <= max && part.bytes().all(|b| b.is_ascii_digit())
    };
    (matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3)
        && parts.next().is_none())
    .then(|| word.to_owned())
}

/// The reply as one bounded line.
fn summary(reply: &Reply) -> String {
    sanitise(&reply.summary(), MAX_REPLY_TEXT)
}

/// A reply other than the one `step` expects, typed by its class.
fn refused(step: &str, reply: &Reply) -> ProbeError {
    let text = summary(reply);
    match reply.code {
        400..=499 => ProbeError::new(ErrorKind::SendDeferred, format!("{step} deferred: {text}")),
        500..=599 => ProbeError::new(ErrorKind::SendRejected, format!("{step} refused: {text}")),
        _ => ProbeError::new(
            ErrorKind::ProtocolError,
            format!("unexpected answer to {step}: {text}"),
        ),
    }
}

/// Sends `message` (CRLF-separated, dot-stuffed, without the final `.`) from `from`
/// to `to`. The reply to the end of `DATA` must come before `uncertain_after`.
/// `log` receives each step's reply.
///
/// # Errors
///
/// A [`ProbeError`]: `send_rejected`, `send_deferred`, `send_uncertain`, or the
/// connection's own failure before `DATA` ended.
pub async fn submit(
    lines: &mut Lines,
    from: &str,
    to: &str,
    message: &str,
    uncertain_after: Instant,
    log: &mut Vec<String>,
) -> Result<Accepted, ProbeError> {
    let mail = Smtp::command(
        lines,
        &format!("MAIL FROM:<{from}>"),
        "the MAIL FROM answer",
    )
    .await?;
    log.push(format!("MAIL FROM: {}", summary(&mail)));
    if mail.code != 250 {
        return Err(refused("MAIL FROM", &mail));
    }
    let rcpt = Smtp::command(lines, &format!("RCPT TO:<{to}>"), "the RCPT TO answer").await?;
    log.push(format!("RCPT TO: {}", summary(&rcpt)));
    // 251: "user not local; will forward" is an acceptance too.
    if !matches!(rcpt.code, 250 | 251) {
        return Err(refused("RCPT TO", &rcpt));
    }
    let data = Smtp::command(lines, "DATA", "the DATA answer").await?;
    log.push(format!("DATA: {}", summary(&data)));
    if data.code != 354 {
        return Err(refused("DATA", &data));
    }
    // The message and its end in one write; from here on the server may hold it.
    let ended = tokio::time::timeout_at(
        uncertain_after,
        Smtp::command(
            lines,
            &format!("{message}\r\n."),
            "the answer to the end of DATA",
        ),
    )
    .await;
    let reply = match ended {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => {
            return Err(ProbeError::new(
                ErrorKind::SendUncertain,
                format!(
                    "the message was sent but its acceptance is unknown: {}",
                    error.message
                ),
            ));
        }
        Err(_) => {
            return Err(ProbeError::new(
                ErrorKind::SendUncertain,
                "the message was sent but no answer to the end of DATA came in time: the \
                 server may or may not have accepted it",
            ));
        }
    };
    log.push(format!("end of DATA: {}", summary(&reply)));
    if reply.code != 250 {
        return Err(refused("the message", &reply));
    }
    Ok(Accepted {
        enhanced: reply.lines.first().and_then(|text| enhanced_code(text)),
        reply: summary(&reply),
        at: Instant::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_codes_are_recognised_only_in_their_form() {
        assert_eq!(
            enhanced_code("4.7.1 Greylisted, try again").as_deref(),
            Some("4.7.1")
        );
        assert_eq!(enhanced_code("2.0.0 OK").as_deref(), Some("2.0.0"));
        for none in ["OK id=1xX", "", "3.0.0 x", "5.7", "5.7.1.2 x", "5.1234.1 x"] {
            assert_eq!(enhanced_code(none), None, "{none}");
        }
    }

    #[test]
    fn a_refusal_is_typed_by_its_class() {
        let reply = |code| Reply {
            code,
            lines: vec!["4.7.1 Greylisted".into()],
        };
        assert_eq!(
            refused("RCPT TO", &reply(451)).kind,
            ErrorKind::SendDeferred
        );
        assert_eq!(
            refused("RCPT TO", &reply(550)).kind,
            ErrorKind::SendRejected
        );
        assert_eq!(
            refused("RCPT TO", &reply(354)).kind,
            ErrorKind::ProtocolError
        );
        assert!(
            refused("RCPT TO", &reply(451))
                .message
                .contains("451 4.7.1")
        );
    }
}
