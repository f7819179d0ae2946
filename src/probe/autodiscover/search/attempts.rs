//! What each Autodiscover method found instead of a service, and the report when no
//! method found one.

use super::Search;
use crate::probe::autodiscover::Method;
use crate::probe::http;
use crate::probe::{ErrorKind, Failed, Failure, Phase, ProbeError, Recorder, TlsFacts};

/// A method that found no service.
pub(super) struct Attempt {
    method: Method,
    failure: Failure,
    /// The HTTP status it got, if any.
    status: Option<u16>,
    tls: Option<TlsFacts>,
    peer: Option<std::net::SocketAddr>,
}

impl Search<'_> {
    /// Keeps what a method found instead of a service, so the next can start clean.
    pub(super) fn remember(&mut self, method: Method, recorder: &mut Recorder) {
        // Taken, so that the next method starts without this one's status.
        let status = http::http_facts(recorder).status.take();
        if let Some(failure) = recorder.take_failure() {
            self.attempts.push(Attempt {
                method,
                failure,
                status,
                tls: recorder.tls.take(),
                peer: recorder.peer.take(),
            });
        }
    }

    /// Reports the canonical method's failure, listing what every method found.
    pub(super) fn nothing_answered(&mut self, domain: &str, recorder: &mut Recorder) -> Failed {
        let summary: Vec<String> = self
            .attempts
            .iter()
            .map(|a| format!("{}: {}", a.method.as_str(), a.failure.kind))
            .collect();
        let chosen = self
            .attempts
            .iter()
            .position(|a| a.method == Method::PoxAutodiscoverHost)
            .unwrap_or(0);
        if chosen >= self.attempts.len() {
            return recorder.fail(
                Phase::Request,
                ProbeError::new(
                    ErrorKind::ProtocolError,
                    format!("no Autodiscover service found for {domain}"),
                ),
            );
        }
        let attempt = self.attempts.swap_remove(chosen);
        http::http_facts(recorder).status = attempt.status;
        recorder.tls = attempt.tls;
        recorder.peer = attempt.peer;
        recorder.restore_failure(Failure {
            message: format!(
                "no Autodiscover service found for {domain} ({}); autodiscover.{domain}: {}",
                summary.join(", "),
                attempt.failure.message
            ),
            ..attempt.failure
        });
        Failed
    }
}
