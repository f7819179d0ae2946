//! The DNS family: `protocol: dns` — the name, the record type, the expected answer.

use std::net::IpAddr;

use super::normalise_name;
use super::target::Entry;
use crate::config::error::ErrorSite;
use crate::config::{ConfigError, DnsQuery, RecordKind};

pub(super) fn dns_query(
    errors: &ErrorSite<'_>,
    entry: &Entry<'_>,
) -> Result<DnsQuery, ConfigError> {
    let raw = entry.raw;
    let domain = entry.required(
        errors,
        raw.domain.as_ref(),
        "domain",
        "the name to look up, e.g. `example.com`",
    )?;
    let fqdn = normalise_name(&domain.value).ok_or_else(|| {
        errors.at(
            domain.referenced,
            entry.key("domain"),
            format!("`{}` is not a valid DNS name", domain.value),
        )
    })?;
    let known: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
    let record = entry.required(
        errors,
        raw.record.as_ref(),
        "record",
        &format!("the record type, one of {}", known.join(", ")),
    )?;
    let kind = RecordKind::parse(&record.value).ok_or_else(|| {
        errors.at(
            record.referenced,
            entry.key("record"),
            format!(
                "unknown record type `{}`; expected one of {}",
                record.value,
                known.join(", ")
            ),
        )
    })?;
    let expect = match &raw.expect {
        Some(expect) if expect.value.is_empty() => {
            return Err(errors.at(
                expect.referenced,
                entry.key("expect"),
                "`expect` is empty: list the answers the site should see, or remove it",
            ));
        }
        Some(expect) => Some(
            expect
                .value
                .iter()
                .map(|item| normalise_expected(kind, item))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    errors.at(
                        expect.referenced,
                        entry.key("expect"),
                        format!("an entry is not a valid {} answer", kind.as_str()),
                    )
                })?,
        ),
        None => None,
    };
    Ok(DnsQuery {
        domain: fqdn,
        record: kind,
        expect,
        require_consistent: raw.require_consistent.as_ref().is_none_or(|v| v.value),
    })
}

/// One `expect` entry in the form the DNS probe renders answers in.
fn normalise_expected(kind: RecordKind, item: &str) -> Option<String> {
    match kind {
        RecordKind::A | RecordKind::Aaaa => {
            item.trim().parse::<IpAddr>().ok().map(|ip| ip.to_string())
        }
        RecordKind::Txt => Some(item.to_owned()),
        RecordKind::Mx | RecordKind::Srv | RecordKind::Cname => {
            // Names may be given alone or with the numeric fields in front
            // (`10 mx1.example.net`); the last word is the name.
            let words: Vec<&str> = item.split_whitespace().collect();
            let (name, numbers) = words.split_last()?;
            if !numbers.iter().all(|n| n.parse::<u16>().is_ok()) {
                return None;
            }
            let mut normalised: Vec<String> = numbers.iter().map(|n| (*n).to_owned()).collect();
            normalised.push(normalise_name(name)?);
            Some(normalised.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_answers_are_normalised_like_rendered_answers() {
        assert_eq!(
            normalise_expected(RecordKind::Mx, "MX1.Example.NET"),
            Some("mx1.example.net.".into())
        );
        assert_eq!(
            normalise_expected(RecordKind::Mx, "10 mx1.example.net."),
            Some("10 mx1.example.net.".into())
        );
        assert_eq!(
            normalise_expected(RecordKind::A, "192.0.2.1"),
            Some("192.0.2.1".into())
        );
        assert_eq!(normalise_expected(RecordKind::A, "mx1"), None);
        assert_eq!(
            normalise_expected(RecordKind::Srv, "x 993 imap.example.net"),
            None
        );
    }
}
