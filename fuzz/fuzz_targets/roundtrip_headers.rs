//! What a round trip reads back from a delivered message and from the IMAP answers
//! around it (`src/probe/roundtrip/headers.rs`, `message.rs`, `wire.rs`): the whole
//! input as a header block to `parse_fields` and `transit`; each line as an RFC 5322
//! date, an INTERNALDATE, a `Received:` value, a token, a LIST or SEARCH answer, a
//! literal marker and a folder name to encode.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::roundtrip::Token;
use mailprobe::probe::roundtrip::headers::{
    MAX_FIELD_LEN, MAX_FIELDS, format_rfc5322, parse_fields, parse_internaldate,
    parse_rfc5322_date, received_date, to_system_time, transit,
};
use mailprobe::probe::roundtrip::wire::{
    MAX_UIDS, literal_len, modified_utf7, parse_list, search_uids,
};

/// 9999-12-31 23:59:59 plus the largest zone offset a date may carry (99:59).
const LATEST: i64 = 253_402_300_799 + 99 * 3600 + 59 * 60;
/// 1970-01-01 00:00:00 less the largest zone offset.
const EARLIEST: i64 = -(99 * 3600 + 59 * 60);

fuzz_target!(|data: &[u8]| {
    let fields = parse_fields(data);
    assert!(fields.len() <= MAX_FIELDS);
    for (name, value) in &fields {
        assert_eq!(name, &name.to_ascii_lowercase(), "field name {name:?}");
        assert!(value.chars().count() <= MAX_FIELD_LEN, "value of {name}");
    }
    let hops = transit(&fields);
    assert!(hops.dated <= hops.hops, "{hops:?}");
    assert_eq!(hops.seconds.is_some(), hops.dated >= 2, "{hops:?}");
    for line in common::lines(data) {
        check_dates(&line);
        check_token(&line);
        check_wire(&line, data);
    }
});

fn check_dates(line: &str) {
    for seconds in [
        parse_rfc5322_date(line),
        parse_internaldate(line),
        received_date(line),
    ]
    .into_iter()
    .flatten()
    {
        assert!((EARLIEST..=LATEST).contains(&seconds), "{seconds} from {line:?}");
        if seconds >= 0 && seconds <= 253_402_300_799 {
            // What the probe writes, it reads back.
            let written = format_rfc5322(to_system_time(seconds));
            assert_eq!(parse_rfc5322_date(&written), Some(seconds), "{written:?}");
        }
    }
}

fn check_token(line: &str) {
    if let Some(token) = Token::parse(line) {
        // One spelling per token: what parses is exactly what the probe writes.
        assert_eq!(token.to_string(), line.trim(), "token from {line:?}");
        assert_eq!(Token::parse(&token.to_string()), Some(token));
        assert!(token.to_string().starts_with(&Token::route_prefix(token.route)));
    }
}

fn check_wire(line: &str, data: &[u8]) {
    let encoded = modified_utf7(line);
    assert!(
        encoded.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "{encoded:?} from {line:?}"
    );
    if line.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'&') {
        assert_eq!(encoded, line, "printable ASCII stands for itself");
    }
    if let Some(len) = literal_len(line) {
        assert!(len <= 9_999_999_999, "{len} from {line:?}");
    }
    if let Some((flags, name)) = parse_list(line, &[data.to_vec()]) {
        assert!(!name.is_empty(), "{line:?}");
        assert!(
            flags.iter().all(|f| *f == f.to_ascii_lowercase()),
            "{flags:?}"
        );
    }
    if let Some(uids) = search_uids(line) {
        assert!(uids.len() <= MAX_UIDS && uids.iter().all(|u| *u > 0), "{uids:?}");
    }
}
