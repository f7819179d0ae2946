//! The SASL error challenge decoder (`src/probe/oauth2/sasl.rs`): `parse_challenge`
//! and `describe_challenge` on any text after an IMAP `+ `, a POP3 `+ ` or an SMTP
//! `334 `, as XOAUTH2 and OAUTHBEARER servers send it.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::oauth2::sasl::{describe_challenge, parse_challenge};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(challenge) = parse_challenge(&text) {
        for field in [&challenge.status, &challenge.schemes, &challenge.scope]
            .into_iter()
            .flatten()
        {
            // Each field is sanitised to 120 characters, plus an ellipsis.
            common::assert_printable_within(field, 121, data);
        }
    }
    // Whatever came, the message fragment is printable and bounded.
    common::assert_printable_within(&describe_challenge(&text), 420, data);
});
