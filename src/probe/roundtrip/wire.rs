//! The text of IMAP answers a round trip reads, and the mailbox names it writes:
//! pure functions of what a server sent, bounded, never panicking.

use crate::probe::imap::quoted;

/// The most UIDs taken from one SEARCH answer: a round trip looks for one message,
/// a sweep deletes a few; the rest wait for the next sweep.
pub const MAX_UIDS: usize = 64;

/// The `{n}` at the end of a line: a literal of `n` bytes follows.
pub fn literal_len(line: &str) -> Option<usize> {
    let rest = line.strip_suffix('}')?;
    let open = rest.rfind('{')?;
    let digits = rest[open + 1..].trim_end_matches('+');
    (!digits.is_empty() && digits.len() <= 10 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A mailbox name as a command argument: modified UTF-7 (RFC 3501 §5.1.3) for names
/// beyond printable ASCII, quoted.
pub fn mailbox_argument(name: &str) -> String {
    let encoded = modified_utf7(name);
    // After encoding the name is printable ASCII, which `quoted` always accepts.
    quoted(&encoded).unwrap_or_else(|| "\"\"".to_owned())
}

/// RFC 3501 §5.1.3: printable ASCII stands for itself (`&` as `&-`), anything else
/// is `&` + base64 of its UTF-16 (with `,` for `/`, no padding) + `-`.
pub fn modified_utf7(name: &str) -> String {
    use base64::Engine as _;
    fn flush(pending: &mut Vec<u16>, out: &mut String) {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        out.push('&');
        out.push_str(&encoded.replace('/', ","));
        out.push('-');
        pending.clear();
    }
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// The UIDs in `SEARCH n n n` data.
pub fn search_uids(data: &str) -> Option<Vec<u32>> {
    let mut words = data.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("SEARCH") {
        return None;
    }
    Some(
        words
            .map_while(|w| w.parse::<u32>().ok())
            .filter(|uid| *uid > 0)
            .take(MAX_UIDS)
            .collect(),
    )
}

/// The number after `word` in `text` (case-insensitive), as in `UID 7`.
pub fn number_after(text: &str, word: &str) -> Option<u32> {
    let mut words = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| !w.is_empty());
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case(word) {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// The quoted value after `name ` in `text` (`INTERNALDATE "…"`).
pub fn quoted_after<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let upper = text.to_ascii_uppercase();
    let start = upper.find(&format!("{name} \""))? + name.len() + 2;
    let rest = text.get(start..)?;
    Some(&rest[..rest.find('"')?])
}

/// A `LIST` answer: its flags and the name, or `None` when it does not parse.
pub fn parse_list(data: &str, literals: &[Vec<u8>]) -> Option<(Vec<String>, String)> {
    let rest = data.get(..5).filter(|w| w.eq_ignore_ascii_case("LIST "))?;
    let rest = &data[rest.len()..];
    let rest = rest.strip_prefix('(')?;
    let close = rest.find(')')?;
    let flags = rest[..close]
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let rest = rest[close + 1..].trim_start();
    // The hierarchy delimiter: a quoted character or NIL.
    let rest = if let Some(quoted) = rest.strip_prefix('"') {
        let end = if quoted.starts_with('\\') { 2 } else { 1 };
        quoted.get(end..)?.strip_prefix('"')?
    } else if rest
        .get(..3)
        .is_some_and(|word| word.eq_ignore_ascii_case("NIL"))
    {
        // `get`, not slicing: byte 3 may fall inside a multi-byte character (a panic
        // found by the roundtrip_headers fuzz target).
        &rest[3..]
    } else {
        return None;
    };
    let name = rest.trim();
    let name = if literal_len(name).is_some() {
        String::from_utf8_lossy(literals.first()?).into_owned()
    } else if let Some(inner) = name.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        inner.replace("\\\"", "\"").replace("\\\\", "\\")
    } else {
        name.to_owned()
    };
    (!name.is_empty()).then_some((flags, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_are_encoded_in_modified_utf7() {
        // RFC 3501's own example and its `&` rule.
        assert_eq!(
            modified_utf7("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(modified_utf7("Junk & Spam"), "Junk &- Spam");
        assert_eq!(
            modified_utf7("Courrier indésirable"),
            "Courrier ind&AOk-sirable"
        );
        assert_eq!(mailbox_argument("Junk"), "\"Junk\"");
    }

    #[test]
    fn list_answers_give_flags_and_names() {
        assert_eq!(
            parse_list(r#"LIST (\HasNoChildren \Junk) "." Junk"#, &[]),
            Some((
                vec!["\\hasnochildren".into(), "\\junk".into()],
                "Junk".into()
            ))
        );
        assert_eq!(
            parse_list(r#"LIST (\Junk) "/" "Junk E-mail""#, &[]),
            Some((vec!["\\junk".into()], "Junk E-mail".into()))
        );
        assert_eq!(
            parse_list(r#"LIST (\Junk) NIL {4}"#, &[b"Spam".to_vec()]),
            Some((vec!["\\junk".into()], "Spam".into()))
        );
        assert_eq!(parse_list("LIST broken", &[]), None);
        assert_eq!(parse_list("LSUB () \".\" x", &[]), None);
    }

    /// Regression (found by the `roundtrip_headers` fuzz target): a LIST answer whose
    /// delimiter position holds a multi-byte character made the NIL check slice inside
    /// it and panic.
    #[test]
    fn parse_list_never_slices_inside_a_character_where_the_delimiter_goes() {
        assert_eq!(parse_list("LIST (\\Junk) N\u{e9}L x", &[]), None);
        assert_eq!(parse_list("LIST () \u{fffd}\u{fffd} {2}", &[]), None);
        assert_eq!(
            parse_list("LIST (\\Junk) NIL x\u{e9}", &[]),
            Some((vec!["\\junk".to_owned()], "x\u{e9}".to_owned()))
        );
    }

    #[test]
    fn search_and_fetch_answers_are_read() {
        assert_eq!(search_uids("SEARCH 3 17"), Some(vec![3, 17]));
        assert_eq!(search_uids("SEARCH"), Some(vec![]));
        assert_eq!(search_uids("3 EXISTS"), None);
        let fetch = r#"1 FETCH (UID 7 INTERNALDATE "30-Nov-2026 07:41:40 +0000" BODY[HEADER.FIELDS (X-MAILPROBE-TOKEN)] {25})"#;
        assert_eq!(number_after(fetch, "UID"), Some(7));
        assert_eq!(
            quoted_after(fetch, "INTERNALDATE"),
            Some("30-Nov-2026 07:41:40 +0000")
        );
        assert_eq!(literal_len("* 1 FETCH (BODY[] {25}"), Some(25));
        assert_eq!(literal_len("a OK done {x}"), None);
        assert_eq!(literal_len("no literal"), None);
    }
}
