//! `protocol: dns` — the records mail clients rely on, asked of every site resolver and
//! every reference resolver separately.
//!
//! The site resolvers' answer is what the office's clients see, so it decides success:
//! every site resolver must answer, match `expect` when one is given, and (unless
//! `require_consistent: false`) agree with the reference resolvers. The reference
//! answers are facts for the metrics and for fault attribution; a reference resolver
//! that cannot be reached does not fail the probe (many sites block outbound DNS).

use std::collections::BTreeSet;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::time::Instant;

use super::dial::dns_error;
use super::{ErrorKind, Failed, Phase, ProbeError, ProtocolFacts, Recorder};
use crate::config::{DnsQuery, RecordKind};
use crate::probe::env::{DnsServer, ProbeEnv, ResolverRole};

/// Each lookup ends this long before the probe's deadline so that its answer (or its
/// timeout) is still recorded per resolver rather than lost to the probe timeout.
const LOOKUP_MARGIN: Duration = Duration::from_millis(100);

/// What one resolver said.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolverAnswer {
    /// The resolver, as `address` or `address:port`: the `resolver` label.
    pub resolver: String,
    /// Site or reference.
    pub role: ResolverRole,
    /// How long it took to answer (or to give up).
    pub duration: Duration,
    /// The records, rendered and sorted, or why there are none.
    pub outcome: Result<Vec<String>, ProbeError>,
    /// Whether the answer equals `expect` (absent without `expect` or without an answer).
    pub expected_match: Option<bool>,
}

impl ResolverAnswer {
    /// The comparable part of the outcome: the record set, or a negative answer.
    /// Timeouts and server failures are not answers and compare as `None`.
    fn comparable(&self) -> Option<Result<BTreeSet<&str>, ErrorKind>> {
        match &self.outcome {
            Ok(records) => Some(Ok(records.iter().map(String::as_str).collect())),
            Err(e) if matches!(e.kind, ErrorKind::DnsNxdomain | ErrorKind::DnsNodata) => {
                Some(Err(e.kind))
            }
            Err(_) => None,
        }
    }
}

/// A DNS target's findings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DnsFacts {
    /// The record type asked.
    pub record: Option<RecordKind>,
    /// One entry per resolver, site resolvers first, in configuration order.
    pub answers: Vec<ResolverAnswer>,
    /// Whether the site answers equal the reference answers; absent when either side
    /// has no answer to compare.
    pub consistent: Option<bool>,
}

/// Asks every resolver, then judges the site's answers.
///
/// # Errors
///
/// [`Failed`] with the first failing site resolver's reason, `dns_unexpected_answer`
/// or `dns_mismatch`.
pub async fn probe(
    query: &DnsQuery,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    if env.site_dns.is_empty() {
        return Err(recorder.fail(
            Phase::Resolve,
            ProbeError::new(
                ErrorKind::DnsTimeout,
                "no site resolver to ask: /etc/resolv.conf lists no name server",
            ),
        ));
    }
    let lookup_deadline = deadline.checked_sub(LOOKUP_MARGIN).unwrap_or(deadline);
    let servers = env.site_dns.iter().chain(&env.reference_dns);
    let answers = recorder
        .phase(Phase::Resolve, async {
            Ok(futures_util::future::join_all(
                servers.map(|server| ask(server, query, lookup_deadline)),
            )
            .await)
        })
        .await?;
    let facts = judge(query, answers);
    for answer in &facts.answers {
        let said = match &answer.outcome {
            Ok(records) => records.join(", "),
            Err(error) => format!("{}: {}", error.kind, error.message),
        };
        recorder.note(format!(
            "{} resolver {} ({:.1} ms): {said}",
            answer.role.as_str(),
            answer.resolver,
            answer.duration.as_secs_f64() * 1000.0
        ));
    }
    let verdict = verdict(query, &facts);
    recorder.facts = ProtocolFacts::Dns(facts);
    verdict.map_err(|error| recorder.fail(Phase::Resolve, error))
}

async fn ask(server: &DnsServer, query: &DnsQuery, deadline: Instant) -> ResolverAnswer {
    let started = Instant::now();
    let question = format!("{} {}", query.domain, query.record.as_str());
    let lookup = lookup_records(&server.resolver, &query.domain, query.record);
    let outcome = match tokio::time::timeout_at(deadline, lookup).await {
        Ok(Ok(records)) if records.is_empty() => Err(ProbeError::new(
            ErrorKind::DnsNodata,
            format!(
                "{question} has no record of that type (asked {})",
                server.label
            ),
        )),
        Ok(Ok(records)) => Ok(records),
        Ok(Err(error)) => Err(dns_error(&error, &question, Some(&server.label))),
        Err(_) => Err(ProbeError::new(
            ErrorKind::DnsTimeout,
            format!("{question} got no answer in time (asked {})", server.label),
        )),
    };
    ResolverAnswer {
        resolver: server.label.clone(),
        role: server.role,
        duration: started.elapsed(),
        outcome,
        expected_match: None,
    }
}

/// The records of type `kind` for `name`, rendered like `expect` entries and sorted
/// (an empty list is NOERROR without data). Shared with discovery, so a record reads
/// the same wherever it is shown.
///
/// # Errors
///
/// The resolver's error; [`dns_error`] types it.
pub async fn lookup_records(
    resolver: &TokioResolver,
    name: &str,
    kind: RecordKind,
) -> Result<Vec<String>, hickory_resolver::net::NetError> {
    let record_type = record_type(kind);
    let lookup = resolver.lookup(name, record_type).await?;
    let mut records: Vec<String> = lookup
        .answers()
        .iter()
        .filter(|record| record.record_type() == record_type)
        .filter_map(render)
        .collect();
    records.sort();
    records.dedup();
    Ok(records)
}

/// The hickory record type for a configured record kind.
pub fn record_type(kind: RecordKind) -> RecordType {
    match kind {
        RecordKind::Mx => RecordType::MX,
        RecordKind::A => RecordType::A,
        RecordKind::Aaaa => RecordType::AAAA,
        RecordKind::Srv => RecordType::SRV,
        RecordKind::Cname => RecordType::CNAME,
        RecordKind::Txt => RecordType::TXT,
    }
}

/// One record as text, in the same normal form as `expect` entries: names lower case
/// with a trailing dot, numeric fields first (`10 mx1.example.net.`).
fn render(record: &Record) -> Option<String> {
    let name = |n: &hickory_resolver::proto::rr::Name| {
        let mut text = n.to_lowercase().to_ascii();
        if !text.ends_with('.') {
            text.push('.');
        }
        text
    };
    Some(match &record.data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(aaaa) => aaaa.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference, name(&mx.exchange)),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name(&srv.target)
        ),
        RData::CNAME(cname) => name(&cname.0),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect::<String>(),
        _ => return None,
    })
}

/// Whether a set of rendered answers equals the `expect` list. An entry matches an
/// answer when equal to it, or to its name alone (`mx1.example.net.` matches
/// `10 mx1.example.net.`). Every answer must be matched and every entry must match.
pub fn matches_expected(answers: &[String], expect: &[String]) -> bool {
    let entry_matches =
        |entry: &str, answer: &str| entry == answer || answer.rsplit(' ').next() == Some(entry);
    answers
        .iter()
        .all(|answer| expect.iter().any(|entry| entry_matches(entry, answer)))
        && expect
            .iter()
            .all(|entry| answers.iter().any(|answer| entry_matches(entry, answer)))
}

fn judge(query: &DnsQuery, mut answers: Vec<ResolverAnswer>) -> DnsFacts {
    if let Some(expect) = &query.expect {
        for answer in &mut answers {
            answer.expected_match = answer
                .outcome
                .as_ref()
                .ok()
                .map(|records| matches_expected(records, expect));
        }
    }
    let comparable = |role: ResolverRole| -> Vec<_> {
        answers
            .iter()
            .filter(|a| a.role == role)
            .filter_map(ResolverAnswer::comparable)
            .collect()
    };
    let site = comparable(ResolverRole::Site);
    let reference = comparable(ResolverRole::Reference);
    // Reference resolvers may legitimately differ among themselves (geo-balanced
    // names), so a site answer is consistent when some reference gave the same one.
    let consistent = (!site.is_empty() && !reference.is_empty())
        .then(|| site.iter().all(|answer| reference.contains(answer)));
    DnsFacts {
        record: Some(query.record),
        answers,
        consistent,
    }
}

fn verdict(query: &DnsQuery, facts: &DnsFacts) -> Result<(), ProbeError> {
    let site = facts
        .answers
        .iter()
        .filter(|a| a.role == ResolverRole::Site);
    for answer in site.clone() {
        if let Err(error) = &answer.outcome {
            return Err(error.clone());
        }
    }
    if let Some(wrong) = site.clone().find(|a| a.expected_match == Some(false)) {
        return Err(ProbeError::new(
            ErrorKind::DnsUnexpectedAnswer,
            format!(
                "{} {} from {} is [{}], expected [{}]",
                query.domain,
                query.record.as_str(),
                wrong.resolver,
                wrong
                    .outcome
                    .as_ref()
                    .map(|r| r.join(", "))
                    .unwrap_or_default(),
                query.expect.as_deref().unwrap_or_default().join(", ")
            ),
        ));
    }
    if query.require_consistent && facts.consistent == Some(false) {
        let describe = |role: ResolverRole| -> String {
            facts
                .answers
                .iter()
                .filter(|a| a.role == role)
                .map(|a| match &a.outcome {
                    Ok(records) => format!("{}: [{}]", a.resolver, records.join(", ")),
                    Err(e) => format!("{}: {}", a.resolver, e.kind),
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(ProbeError::new(
            ErrorKind::DnsMismatch,
            format!(
                "{} {}: the site resolvers answer differently from the reference resolvers \
                 (site {}; reference {})",
                query.domain,
                query.record.as_str(),
                describe(ResolverRole::Site),
                describe(ResolverRole::Reference)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn expected_names_match_with_or_without_preference() {
        let answers = strings(&["10 mx1.example.net.", "20 mx2.example.net."]);
        assert!(matches_expected(
            &answers,
            &strings(&["mx1.example.net.", "mx2.example.net."])
        ));
        assert!(matches_expected(
            &answers,
            &strings(&["10 mx1.example.net.", "mx2.example.net."])
        ));
        // The old provider's MX still present: not cut over.
        assert!(!matches_expected(&answers, &strings(&["mx1.example.net."])));
        // An expected MX missing.
        assert!(!matches_expected(
            &answers[..1],
            &strings(&["mx1.example.net.", "mx2.example.net."])
        ));
        assert!(!matches_expected(
            &answers,
            &strings(&["30 mx1.example.net.", "mx2.example.net."])
        ));
    }

    fn answer(role: ResolverRole, outcome: Result<Vec<String>, ErrorKind>) -> ResolverAnswer {
        ResolverAnswer {
            resolver: format!("{role:?}"),
            role,
            duration: Duration::ZERO,
            outcome: outcome.map_err(|kind| ProbeError::new(kind, "x")),
            expected_match: None,
        }
    }

    fn query() -> DnsQuery {
        DnsQuery {
            domain: "example.test.".into(),
            record: RecordKind::Mx,
            expect: None,
            require_consistent: true,
        }
    }

    #[test]
    fn a_stale_site_answer_is_a_mismatch() {
        let facts = judge(
            &query(),
            vec![
                answer(ResolverRole::Site, Ok(strings(&["10 old.example.test."]))),
                answer(
                    ResolverRole::Reference,
                    Ok(strings(&["10 new.example.test."])),
                ),
            ],
        );
        assert_eq!(facts.consistent, Some(false));
        assert_eq!(
            verdict(&query(), &facts).unwrap_err().kind,
            ErrorKind::DnsMismatch
        );
        let relaxed = DnsQuery {
            require_consistent: false,
            ..query()
        };
        assert_eq!(verdict(&relaxed, &facts), Ok(()));
    }

    #[test]
    fn an_unreachable_reference_leaves_consistency_unknown_and_the_probe_green() {
        let facts = judge(
            &query(),
            vec![
                answer(ResolverRole::Site, Ok(strings(&["10 mx.example.test."]))),
                answer(ResolverRole::Reference, Err(ErrorKind::DnsTimeout)),
            ],
        );
        assert_eq!(facts.consistent, None);
        assert_eq!(verdict(&query(), &facts), Ok(()));
    }

    #[test]
    fn nxdomain_on_both_sides_is_consistent_but_still_a_failure() {
        let facts = judge(
            &query(),
            vec![
                answer(ResolverRole::Site, Err(ErrorKind::DnsNxdomain)),
                answer(ResolverRole::Reference, Err(ErrorKind::DnsNxdomain)),
            ],
        );
        assert_eq!(facts.consistent, Some(true));
        assert_eq!(
            verdict(&query(), &facts).unwrap_err().kind,
            ErrorKind::DnsNxdomain
        );
    }
}
