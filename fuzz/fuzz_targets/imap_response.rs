//! IMAP response parsing (`src/probe/imap.rs`): every line of the input goes through
//! `parse_greeting`, `parse_response`, `parse_capabilities` and `quoted`, as a server's
//! lines would. None may panic, and each result must agree with the line it came from.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::imap::{
    Greeting, Response, Status, parse_capabilities, parse_greeting, parse_response, quoted,
};

fuzz_target!(|data: &[u8]| {
    for line in common::lines(data) {
        check_line(&line);
    }
    // Whole input, newlines included: `quoted` must refuse it or quote it properly.
    check_quoted(&String::from_utf8_lossy(data));
});

fn check_line(line: &str) {
    check_greeting(line);
    match parse_response(line) {
        Ok(Response::Untagged(data)) => {
            assert_eq!(line.strip_prefix("* "), Some(data), "untagged {line:?}");
            // The probe looks for capabilities in untagged data.
            check_capabilities(data);
        }
        Ok(Response::Continuation(text)) => {
            assert!(
                line == "+" || line.starts_with("+ "),
                "continuation {line:?}"
            );
            assert!(line.ends_with(text), "continuation text of {line:?}");
            assert_eq!(text.len(), line.len().saturating_sub(2), "{line:?}");
        }
        Ok(Response::Tagged { tag, status, text }) => {
            assert!(!tag.is_empty(), "empty tag from {line:?}");
            assert!(!tag.contains(' '), "tag {tag:?} with a space from {line:?}");
            assert!(
                line.starts_with(tag),
                "tag {tag:?} not at the start of {line:?}"
            );
            let word = line[tag.len()..]
                .strip_prefix(' ')
                .and_then(|rest| rest.split(' ').next())
                .unwrap_or_else(|| panic!("no status word after the tag in {line:?}"));
            let expected = match status {
                Status::Ok => "OK",
                Status::No => "NO",
                Status::Bad => "BAD",
            };
            assert!(
                word.eq_ignore_ascii_case(expected),
                "{status:?} from {line:?}"
            );
            assert!(
                line.ends_with(text),
                "text {text:?} not the end of {line:?}"
            );
            // The completion text may carry `[CAPABILITY …]`.
            check_capabilities(text);
        }
        Err(message) => common::assert_printable_message(&message, line),
    }
    check_capabilities(line);
    check_quoted(line);
}

fn check_greeting(line: &str) {
    let mut words = line.split(' ');
    let first = words.next();
    let second = words.next().unwrap_or_default();
    let expected = match (first, second.to_ascii_uppercase().as_str()) {
        (Some("*"), "OK") => Greeting::Ok,
        (Some("*"), "PREAUTH") => Greeting::Preauth,
        (Some("*"), "BYE") => Greeting::Bye,
        _ => Greeting::Invalid,
    };
    assert_eq!(parse_greeting(line), expected, "greeting {line:?}");
}

fn check_capabilities(data: &str) {
    if let Some(capabilities) = parse_capabilities(data) {
        let upper = data.to_ascii_uppercase();
        assert!(
            upper.starts_with("CAPABILITY ") || upper.contains("[CAPABILITY "),
            "capabilities from {data:?}"
        );
        common::assert_capabilities_normalised(&capabilities, data);
        common::assert_no_auth_keyword(&capabilities, data);
    }
}

fn check_quoted(text: &str) {
    let needs_literal = text
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0 || !b.is_ascii());
    match quoted(text) {
        None => assert!(needs_literal, "quoted refused {text:?}"),
        Some(q) => {
            assert!(!needs_literal, "quoted accepted {text:?}");
            assert!(
                q.len() >= 2 && q.starts_with('"') && q.ends_with('"'),
                "quoted({text:?}) = {q:?}"
            );
            // Unescaping the inside gives the text back, and no bare `"` ends it early.
            let mut inside = q[1..q.len() - 1].chars();
            let mut back = String::with_capacity(text.len());
            while let Some(c) = inside.next() {
                match c {
                    '\\' => back.push(
                        inside
                            .next()
                            .unwrap_or_else(|| panic!("dangling escape in {q:?}")),
                    ),
                    '"' => panic!("bare quote inside {q:?}"),
                    c => back.push(c),
                }
            }
            assert_eq!(back, text, "quoted({text:?}) = {q:?} does not round-trip");
        }
    }
}
