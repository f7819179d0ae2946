//! What a round trip did, step by step: kept in the result for `/debug`, `mailprobe
//! probe` and the metrics (delivery time, late messages).

use std::time::{Duration, SystemTime};

use super::headers::Transit;
use crate::probe::TlsFacts;
use crate::probe::mail::MailFacts;

/// The reply that took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The reply to the end of `DATA`, as one line.
    pub reply: String,
    /// Its enhanced status code (RFC 3463), when it has one.
    pub enhanced: Option<String>,
    /// When it arrived.
    pub at: SystemTime,
}

/// Where and when the message was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The folder, as configured or as the server names it.
    pub folder: String,
    /// Whether that folder is a junk folder.
    pub junk: bool,
    /// The message's UID there.
    pub uid: u32,
    /// When it was seen.
    pub at: SystemTime,
    /// From the server's acceptance (the reply to the end of `DATA`) to being seen:
    /// the delivery time.
    pub after: Duration,
}

/// What a sweep of older probe messages found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// This route's messages that arrived after their round had given up, deleted.
    pub late: u64,
    /// This route's messages that arrived in time but were left (a crash, a failed
    /// cleanup), deleted.
    pub left_behind: u64,
    /// Other routes' messages older than any round trip waits, deleted.
    pub expired: u64,
    /// Probe messages left alone: still in flight, or another route's (the round's
    /// own message is not counted).
    pub kept: u64,
    /// Messages that should have gone but could not be expunged safely (no UIDPLUS
    /// and other messages flagged `\Deleted`).
    pub stuck: u64,
}

/// Everything a round trip records beyond its phases.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundtripFacts {
    /// The message's token.
    pub token: String,
    /// The SMTP session: banner and capabilities.
    pub send: Option<MailFacts>,
    /// The IMAP session: banner and capabilities.
    pub receive: Option<MailFacts>,
    /// The SMTP server's certificate.
    pub send_tls: Option<TlsFacts>,
    /// The IMAP server's certificate.
    pub receive_tls: Option<TlsFacts>,
    /// The reply that took the message.
    pub submitted: Option<Submission>,
    /// Where and when the message appeared.
    pub found: Option<Delivery>,
    /// Whether the wait used IDLE (`false`: NOOP polling); `None` when there was no
    /// wait (the round ended before it).
    pub idle: Option<bool>,
    /// What the `Received:` fields say.
    pub transit: Option<Transit>,
    /// What the cleanup did with the message.
    pub cleanup: Option<String>,
    /// What a sweep found, when one ran.
    pub sweep: Option<Sweep>,
}

impl RoundtripFacts {
    /// The delivery time, when the message was found (in any folder, junk included:
    /// it measures the transport).
    pub fn delivery(&self) -> Option<Duration> {
        self.found.as_ref().map(|found| found.after)
    }

    /// Late messages the sweep deleted.
    pub fn late(&self) -> u64 {
        self.sweep.map_or(0, |sweep| sweep.late)
    }

    /// The facts in lines of text, for `/debug` and `mailprobe probe`.
    pub fn lines(&self) -> Vec<String> {
        let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let mut lines = vec![format!("token: {}", self.token)];
        if let Some(submitted) = &self.submitted {
            lines.push(format!(
                "submitted at {}: {}{}",
                time(submitted.at),
                submitted.reply,
                submitted
                    .enhanced
                    .as_ref()
                    .map_or(String::new(), |code| format!(" (status {code})"))
            ));
        }
        let waited = match self.idle {
            Some(true) => ", waited with IDLE",
            Some(false) => ", polled with NOOP",
            None => "",
        };
        match &self.found {
            Some(found) => lines.push(format!(
                "found in {}{} (UID {}) at {}, {:.3} s after submission{waited}",
                found.folder,
                if found.junk { " (junk)" } else { "" },
                found.uid,
                time(found.at),
                found.after.as_secs_f64(),
            )),
            None if self.idle.is_some() => lines.push(format!("not found{waited}")),
            None => {}
        }
        if let Some(transit) = &self.transit {
            lines.push(match transit.seconds {
                Some(seconds) => format!(
                    "transit: {seconds} s from the first hop to the last by the servers' clocks \
                     ({} Received: fields, {} dated)",
                    transit.hops, transit.dated
                ),
                None => format!(
                    "transit: unknown ({} Received: fields, {} dated)",
                    transit.hops, transit.dated
                ),
            });
        }
        if let Some(cleanup) = &self.cleanup {
            lines.push(format!("cleanup: {cleanup}"));
        }
        if let Some(sweep) = &self.sweep {
            lines.push(format!(
                "sweep: deleted {} late, {} left behind, {} expired of other routes; kept {}; \
                 could not expunge {}",
                sweep.late, sweep.left_behind, sweep.expired, sweep.kept, sweep.stuck
            ));
        }
        for (leg, mail) in [("send", &self.send), ("receive", &self.receive)] {
            if let Some(mail) = mail {
                lines.push(format!("{leg} banner: {}", mail.banner));
            }
        }
        for (leg, tls) in [("send", &self.send_tls), ("receive", &self.receive_tls)] {
            if let Some(tls) = tls {
                lines.push(format!(
                    "{leg} tls: version={} issuer={} not_after={}",
                    tls.version.as_deref().unwrap_or("-"),
                    tls.issuer.as_deref().unwrap_or("-"),
                    tls.not_after.map_or("-".to_owned(), |t| t.to_string())
                ));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_say_what_was_done_and_only_that() {
        let mut facts = RoundtripFacts {
            token: "mp1.x".into(),
            ..RoundtripFacts::default()
        };
        assert_eq!(facts.lines(), ["token: mp1.x"]);
        facts.submitted = Some(Submission {
            reply: "250 2.0.0 OK".into(),
            enhanced: Some("2.0.0".into()),
            at: SystemTime::UNIX_EPOCH,
        });
        // Submitted, then the mailbox could not be searched: no "not found".
        assert!(!facts.lines().iter().any(|l| l.starts_with("not found")));
        facts.idle = Some(false);
        assert!(
            facts
                .lines()
                .contains(&"not found, polled with NOOP".to_owned())
        );
        facts.found = Some(Delivery {
            folder: "Junk".into(),
            junk: true,
            uid: 7,
            at: SystemTime::UNIX_EPOCH,
            after: Duration::from_millis(1500),
        });
        let found = facts
            .lines()
            .into_iter()
            .find(|l| l.starts_with("found"))
            .unwrap();
        assert!(found.starts_with("found in Junk (junk) (UID 7)"), "{found}");
        assert!(
            found.ends_with("1.500 s after submission, polled with NOOP"),
            "{found}"
        );
        assert_eq!(facts.delivery(), Some(Duration::from_millis(1500)));
    }
}
