//! SMTP reply parsing (`src/probe/smtp.rs`): every line goes through
//! `parse_reply_line`; the lines then form a `Reply` for `parse_ehlo` and
//! `Reply::summary`, as after an EHLO.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::smtp::{Reply, parse_ehlo, parse_reply_line};

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let mut code = None;
    let mut texts = Vec::with_capacity(lines.len());
    for line in &lines {
        match parse_reply_line(line) {
            Ok(reply) => {
                assert!(
                    (200..600).contains(&reply.code),
                    "code {} from {line:?}",
                    reply.code
                );
                assert_eq!(&line[..3], format!("{:03}", reply.code), "code of {line:?}");
                match line.as_bytes().get(3) {
                    None => assert!(reply.last && reply.text.is_empty(), "{line:?}"),
                    Some(b' ') => assert!(reply.last && reply.text == &line[4..], "{line:?}"),
                    Some(b'-') => assert!(!reply.last && reply.text == &line[4..], "{line:?}"),
                    Some(_) => panic!("accepted a bad separator in {line:?}"),
                }
                code.get_or_insert(reply.code);
                texts.push(reply.text.to_owned());
            }
            Err(message) => {
                common::assert_printable_message(&message, line);
                // Still worth parsing as EHLO text: servers are not always tidy.
                texts.push(line.clone());
            }
        }
    }
    let reply = Reply {
        code: code.unwrap_or(250),
        lines: texts,
    };
    let capabilities = parse_ehlo(&reply);
    let context = format!("{:?}", reply.lines);
    common::assert_capabilities_normalised(&capabilities, &context);
    common::assert_no_auth_keyword(&capabilities, &context);
    assert!(
        !capabilities.has("AUTH"),
        "AUTH kept as a keyword in {context}"
    );
    if let Some(greeting) = reply.lines.first() {
        // The first line is the server's name, never an extension (unless repeated).
        if let Some(name) = greeting.split_ascii_whitespace().next() {
            let name = name.to_ascii_uppercase();
            if capabilities.has(&name) {
                assert!(
                    reply.lines.iter().skip(1).any(|l| l
                        .split_ascii_whitespace()
                        .next()
                        .is_some_and(|w| w.eq_ignore_ascii_case(&name))),
                    "the greeting line became extension {name:?}"
                );
            }
        }
    }
    // The summary goes into messages: printable and bounded (160 characters + `…`).
    let summary = reply.summary();
    assert!(
        !summary.chars().any(char::is_control),
        "summary {summary:?}"
    );
    assert!(summary.chars().count() <= 161, "summary {summary:?}");
});
