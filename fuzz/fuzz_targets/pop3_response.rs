//! POP3 response parsing (`src/probe/pop3.rs`): every line goes through `parse_status`
//! and `unstuff`; all lines go through `parse_capa`, once raw and once as the probe
//! feeds it (the unstuffed body up to the lone `.`).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::pop3::{Status, parse_capa, parse_status, unstuff};

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let mut body = Vec::new();
    let mut ended = false;
    for line in &lines {
        check_status(line);
        match unstuff(line) {
            None => {
                assert_eq!(line, ".", "unstuff ended the body at {line:?}");
                ended = true;
            }
            Some(content) => {
                assert_ne!(line, ".", "unstuff kept the terminator");
                let expected = line.strip_prefix('.').unwrap_or(line);
                assert_eq!(content, expected, "unstuff({line:?})");
                if !ended {
                    body.push(content);
                }
            }
        }
    }
    check_capa(lines.iter().map(String::as_str), &lines);
    check_capa(body.iter().copied(), &lines);
});

fn check_status(line: &str) {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let expected = if word.eq_ignore_ascii_case("+OK") {
        Some((Status::Ok, rest))
    } else if word.eq_ignore_ascii_case("-ERR") {
        Some((Status::Err, rest))
    } else {
        None
    };
    assert_eq!(parse_status(line), expected, "parse_status({line:?})");
}

fn check_capa<'a>(input: impl Iterator<Item = &'a str> + Clone, context: &[String]) {
    let capabilities = parse_capa(input.clone());
    common::assert_capabilities_normalised(&capabilities, &format!("{context:?}"));
    assert!(!capabilities.has("SASL"), "SASL kept as a keyword");
    assert!(!capabilities.has("STLS"), "STLS not mapped to STARTTLS");
    let first_words: Vec<String> = input
        .filter_map(|line| line.split_ascii_whitespace().next())
        .map(str::to_ascii_uppercase)
        .collect();
    let starttls = first_words.iter().any(|w| w == "STLS" || w == "STARTTLS");
    assert_eq!(
        capabilities.has("STARTTLS"),
        starttls,
        "STARTTLS from {context:?}"
    );
    // Every keyword is the first word of some line.
    for keyword in &capabilities.keywords {
        assert!(
            keyword == "STARTTLS" || first_words.contains(keyword),
            "keyword {keyword:?} from nowhere in {context:?}"
        );
    }
}
