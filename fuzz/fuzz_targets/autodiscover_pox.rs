//! The Autodiscover POX (XML) answer parser (`src/probe/autodiscover/answer.rs`):
//! `parse_pox` on any body a server may send.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::autodiscover::{PoxAnswer, parse_pox};

fuzz_target!(|data: &[u8]| {
    match parse_pox(data) {
        Ok(PoxAnswer::Settings(settings)) => {
            for value in settings
                .server
                .iter()
                .chain(&settings.ews_url)
                .chain(&settings.protocols)
            {
                common::assert_clipped_value(value, data);
            }
        }
        Ok(PoxAnswer::RedirectAddr(value) | PoxAnswer::RedirectUrl(value)) => {
            assert!(!value.is_empty(), "empty redirect");
            common::assert_clipped_value(&value, data);
        }
        Ok(PoxAnswer::Error { code, message }) => {
            common::assert_clipped_value(&code, data);
            common::assert_clipped_value(&message, data);
        }
        // The message goes into the probe's failure message as it is: printable, and
        // bounded by the parser's clip of 512 characters plus its own words.
        Err(message) => common::assert_printable_within(&message, 600, data),
    }
});
