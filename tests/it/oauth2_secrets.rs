//! No OAuth2 secret is ever shown (issue 12): the real binary, logging everything at
//! the most verbose level, probes logins that succeed, fail at the identity provider,
//! are refused by the mailbox (whose challenge it decodes) and sign assertions with a
//! certificate; then no client secret, signed assertion, access token, XOAUTH2 or
//! OAUTHBEARER string — as is, base64 or form-encoded — appears in the log, on
//! `/metrics` or `/debug`. Every secret the identity provider stand-in received or
//! issued is searched for, so the token endpoint's request and response bodies are
//! covered too.

use base64::Engine as _;

use mailprobe::config::{self, Secret};

use crate::support::agent::within;
use crate::support::binary::{assert_never_shown, traced_run};
use crate::support::idp::rsa_certificate;
use crate::support::oauth2::{
    CLIENT_SECRET, OAuthBed, SERVER_NAME, SmtpTenant, TEST_LIMIT, USER, WRONG_SECRET, smtp_fake,
};

/// Every form `secret` could travel in: itself, base64 (padded and not), form-encoded.
fn forms(secret: &str) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let padded = engine.encode(secret);
    vec![
        secret.to_owned(),
        padded.trim_end_matches('=').to_owned(),
        padded,
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
    ]
}

/// The SASL strings that carried `token` for `user` (to any port of the bed).
fn sasl_forms(user: &str, token: &str, ports: &[u16]) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut found = vec![engine.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))];
    for port in ports {
        found.push(engine.encode(format!(
            "n,a={user},\x01host={SERVER_NAME}\x01port={port}\x01auth=Bearer {token}\x01\x01"
        )));
    }
    found.push(format!("Bearer {token}"));
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_secret_assertion_or_token_appears_in_any_output() {
    within(TEST_LIMIT, async {
        let bed = OAuthBed::start(std::time::Duration::from_secs(3600)).await;
        let (cert, key) = tokio::task::block_in_place(|| rsa_certificate(bed.dir.path(), "app"));
        bed.idp.accept_certificate(&cert);
        let smtp = smtp_fake(&bed, SmtpTenant::Allowed).await;
        let d = &bed.dovecot;
        let signed = format!(
            "client_certificate: \"{}\", client_key: \"{}\"",
            cert.display(),
            key.display()
        );
        let targets = bed.imaps("imap-good", &bed.good())
            + &bed.target("pop3-good", "pop3", d.pop3, "starttls", &bed.good(), ", mechanism: xoauth2")
            + &bed.target("smtp-good", "smtp", smtp.addr, "implicit", &bed.good(), "")
            + &bed.target("cert-good", "imap", d.imaps, "implicit", &signed, ", mechanism: xoauth2")
            + &bed.imaps("wrong-secret", &bed.wrong())
            // The token is issued for USER: Dovecot refuses it for another mailbox,
            // after its error challenge.
            + &bed
                .target("refused", "imap", d.imaps, "implicit", &bed.good(), ", mechanism: xoauth2")
                .replace(&format!("username: \"{USER}\""), "username: \"other@example.test\"");
        let names = [
            "imap-good",
            "pop3-good",
            "smtp-good",
            "cert-good",
            "wrong-secret",
            "refused",
        ];
        let config_path = bed.dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, bed.config("1h", "5s", &targets)).unwrap();
        let shown = traced_run(&config_path, &names, &names).await;

        for (name, up) in [
            ("imap-good", 1.0),
            ("pop3-good", 1.0),
            ("smtp-good", 1.0),
            ("cert-good", 1.0),
            ("wrong-secret", 0.0),
            ("refused", 0.0),
        ] {
            assert_eq!(shown.metrics.value("mailprobe_up", &[("target", name)]), up, "{name}");
        }
        let (_, log) = shown.outputs.last().unwrap();
        assert!(log.len() > 10_000, "trace logging produced output to search");
        // The refusal's challenge was read and decoded, and the token endpoint's
        // refusal reported: text that sits right beside the secrets.
        let debug: String = shown.outputs.iter().map(|(_, text)| text.as_str()).collect();
        assert!(debug.contains("status 401, schemes bearer, scope mail"));
        assert!(debug.contains("AADSTS7000215"));

        let seen = bed.idp.secrets_seen();
        assert!(seen.len() >= 4, "the stand-in saw secrets to search for: {}", seen.len());
        let ports = [d.imaps.port(), d.pop3.port(), smtp.addr.port()];
        let mut secrets: Vec<String> = [CLIENT_SECRET, WRONG_SECRET]
            .iter()
            .flat_map(|secret| forms(secret))
            .collect();
        for secret in &seen {
            secrets.extend(forms(secret));
        }
        for token in bed.idp.tokens() {
            secrets.extend(sasl_forms(USER, &token, &ports));
            secrets.extend(sasl_forms("other@example.test", &token, &ports));
        }
        assert_never_shown(&shown.outputs, &secrets);
    })
    .await;
}

/// The configuration's own `Debug` (what a panic message or a log of the value would
/// show) redacts the client secret and the private key.
#[test]
fn configuration_values_never_show_a_client_secret_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = crate::support::oauth2::secret_file(dir.path(), "s", CLIENT_SECRET);
    let (cert, key) = rsa_certificate(dir.path(), "app");
    let yaml = format!(
        "targets:\n\
         \x20 - {{name: a, protocol: imap, host: mail.example.test, auth: {{username: u, \
         oauth2: {{token_url: \"https://login.example.test/t/oauth2/v2.0/token\", client_id: c, \
         scope: s, client_secret_file: \"{}\"}}}}}}\n\
         \x20 - {{name: b, protocol: smtp, host: mail.example.test, auth: {{username: u, \
         oauth2: {{token_url: \"https://login.example.test/t/oauth2/v2.0/token\", client_id: c, \
         scope: s, client_certificate: \"{}\", client_key: \"{}\"}}}}}}\n",
        secret.display(),
        cert.display(),
        key.display()
    );
    let path = dir.path().join("mailprobe.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = config::load(&path).expect("the configuration loads");
    let debug = format!("{loaded:?}");
    assert!(!debug.contains(CLIENT_SECRET), "{debug}");
    let pem = std::fs::read_to_string(&key).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!debug.contains(&body[..40]), "the key shows");
    assert!(debug.contains("SigningKey(RS256, <redacted>)"), "{debug}");
    assert!(!format!("{:?}", Secret::new(CLIENT_SECRET.into())).contains(CLIENT_SECRET));
}
