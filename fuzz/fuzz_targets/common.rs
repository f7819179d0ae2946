//! Checks shared by the protocol targets.
#![allow(dead_code)]

use mailprobe::probe::mail::Capabilities;

/// Server text goes into messages through `sanitise(…, 160)`: an error message must
/// be printable (no control character from the wire) and bounded.
pub fn assert_printable_message(message: &str, context: &str) {
    assert!(
        !message.chars().any(char::is_control),
        "control character in message {message:?} for {context:?}"
    );
    assert!(
        message.chars().count() <= 400,
        "message of {} characters for {context:?}",
        message.chars().count()
    );
}

/// What every parser promises about capabilities: keywords and mechanisms are single
/// upper-case (ASCII) words.
pub fn assert_capabilities_normalised(capabilities: &Capabilities, context: &str) {
    for keyword in &capabilities.keywords {
        assert!(!keyword.is_empty(), "empty keyword from {context:?}");
        assert!(
            !keyword
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_lowercase()),
            "keyword {keyword:?} from {context:?}"
        );
    }
    for mechanism in &capabilities.auth_mechanisms {
        assert!(
            !mechanism
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_lowercase()),
            "mechanism {mechanism:?} from {context:?}"
        );
    }
}

/// The input as the probes see it: `LineStream` decodes lossily and ends a line at LF,
/// dropping one CR before it. So lines never contain LF but may contain CR.
pub fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_owned())
        .collect()
}

/// IMAP and SMTP read `AUTH=X` as mechanism `X`, never as a keyword. (POP3 lists
/// mechanisms after `SASL`; an `AUTH=…` word there is just a keyword.)
pub fn assert_no_auth_keyword(capabilities: &Capabilities, context: &str) {
    for keyword in &capabilities.keywords {
        assert!(
            !keyword.starts_with("AUTH="),
            "AUTH= kept as a keyword {keyword:?} from {context:?}"
        );
    }
}

/// Values taken from an Autodiscover answer are clipped: at most 512 characters and
/// no control character (they reach `/debug`, logs and the diagnose report).
pub fn assert_clipped_value(value: &str, input: &[u8]) {
    assert!(
        value.chars().count() <= 512,
        "value of {} characters from {:?}",
        value.chars().count(),
        String::from_utf8_lossy(input)
    );
    assert!(
        !value.chars().any(char::is_control),
        "control character in {value:?} from {:?}",
        String::from_utf8_lossy(input)
    );
}

/// A message built from an answer: no control character, at most `max` characters.
pub fn assert_printable_within(message: &str, max: usize, input: &[u8]) {
    assert!(
        !message.chars().any(char::is_control),
        "control character in message {message:?} from {:?}",
        String::from_utf8_lossy(input)
    );
    assert!(
        message.chars().count() <= max,
        "message of {} characters from {:?}",
        message.chars().count(),
        String::from_utf8_lossy(input)
    );
}
