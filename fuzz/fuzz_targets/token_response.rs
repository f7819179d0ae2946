//! The OAuth2 token endpoint answer parser (`src/probe/oauth2/response.rs`):
//! `parse_token_response` on any status and body an identity provider may send.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use mailprobe::probe::oauth2::parse_token_response;
use mailprobe::probe::oauth2::response::{Issued, MAX_TOKEN_LEN, Refusal};

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the HTTP status (100..=599); the rest is the body.
    let (status, body) = match data {
        [high, low, body @ ..] => (100 + u16::from_be_bytes([*high, *low]) % 500, body),
        _ => (200, data),
    };
    match parse_token_response(status, body) {
        Ok(issued) => {
            assert_eq!(status, 200, "a token from a {status}");
            // The token goes into a SASL string and an HTTP header.
            assert!(!issued.access_token.is_empty(), "an empty token");
            assert!(issued.access_token.len() <= MAX_TOKEN_LEN, "an unbounded token");
            assert!(
                issued.access_token.bytes().all(|b| b.is_ascii_graphic()),
                "a token with bytes a header cannot carry"
            );
            assert!(issued.lifetime.as_secs() <= 24 * 3600, "an unbounded lifetime");
            // `Debug` never shows the token: it reads the same whatever the token is.
            let other = Issued {
                access_token: "x".to_owned(),
                ..issued.clone()
            };
            assert_eq!(format!("{issued:?}"), format!("{other:?}"));
        }
        Err(refusal) => {
            if let Refusal::Rejected { error, description, aadsts } = &refusal {
                common::assert_printable_within(error, 61, body);
                common::assert_printable_within(description, 301, body);
                if let Some(code) = aadsts {
                    assert!(code.starts_with("AADSTS") && code.len() <= 6 + 20, "{code}");
                }
            }
            // The message is a probe's failure message: printable and bounded.
            common::assert_printable_within(&refusal.describe(), 1000, body);
        }
    }
});
