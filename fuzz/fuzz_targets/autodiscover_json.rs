//! The Autodiscover v2 (JSON) answer parser (`src/probe/autodiscover/answer.rs`):
//! `parse_json` on any body a server may send.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::autodiscover::{JsonAnswer, parse_json};

fuzz_target!(|data: &[u8]| {
    match parse_json(data) {
        Ok(JsonAnswer::Url { protocol, url }) => {
            assert!(!protocol.is_empty() && !url.is_empty(), "empty field");
            common::assert_clipped_value(&protocol, data);
            common::assert_clipped_value(&url, data);
        }
        Ok(JsonAnswer::Error { code, message }) => {
            assert!(!code.is_empty(), "empty ErrorCode");
            common::assert_clipped_value(&code, data);
            common::assert_clipped_value(&message, data);
        }
        // The message goes into the probe's failure message as it is: printable, and
        // bounded by the parser's clip of 512 characters plus its own words.
        Err(message) => common::assert_printable_within(&message, 600, data),
    }
});
