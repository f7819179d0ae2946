//! One fixture per configuration error, each asserting the exact message a user sees:
//! `FILE:LINE:COL: FIELD: what is wrong and what to do`.
//!
//! Cargo runs integration tests from the package root, so the fixture paths below are
//! also the paths the messages name.

use std::path::{Path, PathBuf};

use mailprobe::config::{self, ConfigError, Credentials, Secret};

const FIXTURES: &str = "tests/fixtures/config";

fn fixture_path(case: &str) -> PathBuf {
    Path::new(FIXTURES).join(format!("{case}.yaml"))
}

/// The message `mailprobe` prints for the fixture `case`.
fn error_for(case: &str) -> String {
    match config::load(&fixture_path(case)) {
        Ok(_) => panic!("{case}.yaml loaded, but it is meant to be rejected"),
        Err(error) => error.to_string(),
    }
}

/// An `auth` block with a user name but no password source.
#[test]
fn auth_without_password() {
    assert_eq!(
        error_for("auth_without_password"),
        "tests/fixtures/config/auth_without_password.yaml:7:7: targets[0].auth: `auth` needs `password_file` (a file holding the password) or `password_env` (an environment variable holding it), or `oauth2`; a password is never written in the configuration itself"
    );
}

/// A duration humantime cannot read.
#[test]
fn bad_duration() {
    assert_eq!(
        error_for("bad_duration"),
        "tests/fixtures/config/bad_duration.yaml:3:13: defaults.interval: `half a minute` is not a duration: write a whole number with a unit, such as `30s`, `2m` or `1m30s`"
    );
}

/// `listen` without a port.
#[test]
fn bad_listen_address() {
    assert_eq!(
        error_for("bad_listen_address"),
        "tests/fixtures/config/bad_listen_address.yaml:2:9: listen: `0.0.0.0` is not an IP address and port, such as `0.0.0.0:9925` or `[::]:9925`"
    );
}

/// `password_file` and `password_env` together.
#[test]
fn both_password_sources() {
    assert_eq!(
        error_for("both_password_sources"),
        "tests/fixtures/config/both_password_sources.yaml:9:21: targets[0].auth.password_env: set either `password_file` or `password_env`, not both"
    );
}

/// A `ca_file` that holds no PEM certificate.
#[test]
fn ca_file_without_certificate() {
    assert_eq!(
        error_for("ca_file_without_certificate"),
        "tests/fixtures/config/ca_file_without_certificate.yaml:3:12: tls.ca_file: `tests/fixtures/config/not-a-certificate.pem` holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)"
    );
}

/// Two targets with the same name.
#[test]
fn duplicate_target_name() {
    assert_eq!(
        error_for("duplicate_target_name"),
        "tests/fixtures/config/duplicate_target_name.yaml:8:11: targets[1].name: duplicate target name `imaps` (first used at line 3): give each target a unique name"
    );
}

/// `site.resolvers: []`.
#[test]
fn empty_site_resolvers() {
    assert_eq!(
        error_for("empty_site_resolvers"),
        "tests/fixtures/config/empty_site_resolvers.yaml:4:14: site.resolvers: the list is empty: write `system` or at least one address"
    );
}

/// `targets: []`.
#[test]
fn empty_targets() {
    assert_eq!(
        error_for("empty_targets"),
        "tests/fixtures/config/empty_targets.yaml:3:10: targets: no targets: add at least one entry under `targets:`"
    );
}

/// A target interval shorter than the inherited timeout.
#[test]
fn interval_shorter_than_timeout() {
    assert_eq!(
        error_for("interval_shorter_than_timeout"),
        "tests/fixtures/config/interval_shorter_than_timeout.yaml:10:15: targets[0].interval: interval 5s is shorter than timeout 10s: a probe must be able to finish before the next one is due"
    );
}

/// `url` on a tcp target.
#[test]
fn key_not_for_protocol() {
    assert_eq!(
        error_for("key_not_for_protocol"),
        "tests/fixtures/config/key_not_for_protocol.yaml:8:10: targets[0].url: `url` does not apply to protocol `tcp`: remove it or change `protocol` (tcp takes: host, port, tls, server_name, ca_file)"
    );
}

/// A dns target without `domain`.
#[test]
fn missing_domain() {
    assert_eq!(
        error_for("missing_domain"),
        "tests/fixtures/config/missing_domain.yaml:3:5: targets[0].domain: target `mx` (protocol `dns`) needs `domain`: the name to look up, e.g. `example.com`"
    );
}

/// A tcp target without `host`.
#[test]
fn missing_host() {
    assert_eq!(
        error_for("missing_host"),
        "tests/fixtures/config/missing_host.yaml:8:5: targets[1].host: target `submission-tls` (protocol `tcp`) needs `host`: the server's name or IP address"
    );
}

/// An https target without `url`: reported before "not implemented".
#[test]
fn missing_url() {
    assert_eq!(
        error_for("missing_url"),
        "tests/fixtures/config/missing_url.yaml:3:5: targets[0].url: target `webmail` (protocol `https`) needs `url`: the page to fetch, e.g. `https://webmail.example.com/`"
    );
}

/// A port above 65535.
#[test]
fn port_out_of_range() {
    assert_eq!(
        error_for("port_out_of_range"),
        "tests/fixtures/config/port_out_of_range.yaml:10:11: targets[1].port: port 250000 is out of range (1-65535)"
    );
}

/// An `expect_body` that is not a regular expression.
#[test]
fn bad_body_pattern() {
    assert_eq!(
        error_for("bad_body_pattern"),
        "tests/fixtures/config/bad_body_pattern.yaml:6:18: targets[0].expect_body: not a valid regular expression: unclosed group"
    );
}

/// A typo in an exchange target's `checks`.
#[test]
fn unknown_exchange_check() {
    assert_eq!(
        error_for("unknown_exchange_check"),
        "tests/fixtures/config/unknown_exchange_check.yaml:7:13: targets[0].checks: unknown check `ewz` (did you mean `ews`?); expected some of autodiscover, ews, activesync, owa, mapi, ecp, oab, rpc"
    );
}

/// Autodiscover (a default check) without the mailbox to look up.
#[test]
fn autodiscover_without_email() {
    assert_eq!(
        error_for("autodiscover_without_email"),
        "tests/fixtures/config/autodiscover_without_email.yaml:3:5: targets[0].email: target `exchange` (protocol `exchange`) needs `email`: a mailbox for Autodiscover to look up, e.g. `probe@example.com` (or leave `autodiscover` out of `checks`)"
    );
}

/// A password in the URL: refused, and not repeated in the message.
#[test]
fn url_with_credentials() {
    let error = error_for("url_with_credentials");
    assert_eq!(
        error,
        "tests/fixtures/config/url_with_credentials.yaml:5:10: targets[0].url: the URL carries credentials; put them under `auth` (with `password_file`) so they never appear in metrics or logs"
    );
    assert!(!error.contains("secret"));
}

/// `tls: starttls` on a protocol without STARTTLS.
#[test]
fn starttls_unsupported() {
    assert_eq!(
        error_for("starttls_unsupported"),
        "tests/fixtures/config/starttls_unsupported.yaml:7:10: targets[0].tls: protocol `tcp` has no STARTTLS; use `implicit` or `none` (STARTTLS exists for imap, pop3 and smtp)"
    );
}

/// A misspelt key.
#[test]
fn unknown_key() {
    assert_eq!(
        error_for("unknown_key"),
        "tests/fixtures/config/unknown_key.yaml:8:7: targets[0].auth.pasword_file: unknown key `pasword_file`: did you mean `password_file`? (expected one of username, password_file, password_env, oauth2, max_failures)"
    );
}

/// A protocol name that does not exist.
#[test]
fn unknown_protocol() {
    assert_eq!(
        error_for("unknown_protocol"),
        "tests/fixtures/config/unknown_protocol.yaml:4:15: targets[0].protocol: unknown protocol `imaps`; expected one of imap, pop3, smtp, https, exchange, dns, tcp, roundtrip (for imap over TLS write `protocol: imap` and `tls: implicit`)"
    );
}

/// A DNS record type mailprobe does not ask for.
#[test]
fn unknown_record_type() {
    assert_eq!(
        error_for("unknown_record_type"),
        "tests/fixtures/config/unknown_record_type.yaml:6:13: targets[0].record: unknown record type `SPF`; expected one of MX, A, AAAA, SRV, CNAME, TXT"
    );
}

/// A TLS mode that does not exist.
#[test]
fn unknown_tls_mode() {
    assert_eq!(
        error_for("unknown_tls_mode"),
        "tests/fixtures/config/unknown_tls_mode.yaml:7:10: targets[0].tls: unknown TLS mode `ssl`; expected one of implicit (TLS from the first byte, as on ports 993, 995, 465, 443), starttls, none"
    );
}

/// A password file that does not exist (not a permission problem: tests run as root).
#[test]
fn unreadable_password_file() {
    assert_eq!(
        error_for("unreadable_password_file"),
        "tests/fixtures/config/unreadable_password_file.yaml:8:22: targets[0].auth.password_file: cannot read `/nonexistent/mailprobe-test/imap.pass`: No such file or directory (os error 2)"
    );
}

/// Text where a number belongs.
#[test]
fn wrong_type() {
    assert_eq!(
        error_for("wrong_type"),
        "tests/fixtures/config/wrong_type.yaml:6:11: targets[0].port: expected a whole number, found `imaps`"
    );
}

/// A YAML syntax error (bad indentation).
#[test]
fn yaml_syntax_error() {
    assert_eq!(
        error_for("yaml_syntax_error"),
        "tests/fixtures/config/yaml_syntax_error.yaml:9:10: targets[1]: YAML syntax error: mapping values are not allowed in this context; check this line's indentation: keys of one entry start in the same column"
    );
}

/// `max_concurrent_probes: 0`.
#[test]
fn zero_max_concurrent_probes() {
    assert_eq!(
        error_for("zero_max_concurrent_probes"),
        "tests/fixtures/config/zero_max_concurrent_probes.yaml:2:24: max_concurrent_probes: 0 is out of range: it must be between 1 and 65536"
    );
}

/// Every fixture's message starts with `FILE:LINE:COL: ` and says the position only
/// there, not again as the parser's ` at line L, column C` suffix.
#[test]
fn every_message_starts_with_file_line_and_column_and_says_them_once() {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("the fixture directory exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 20, "fixtures went missing: {fixtures:?}");
    for path in fixtures {
        let error = config::load(&path).expect_err("every fixture is invalid");
        let ConfigError::Invalid(invalid) = &error else {
            panic!(
                "{}: expected a positioned error, got {error:?}",
                path.display()
            );
        };
        let rendered = error.to_string();
        let prefix = format!("{}:{}:{}: ", path.display(), invalid.line, invalid.column);
        assert!(
            rendered.starts_with(&prefix),
            "{rendered:?} does not start with {prefix:?}"
        );
        assert!(invalid.line >= 1 && invalid.column >= 1, "{rendered}");
        assert!(
            rendered.starts_with(&format!("{prefix}{}: ", invalid.field)),
            "{rendered:?} does not name the field right after the position"
        );
        let message = &invalid.message;
        assert!(
            !(message.contains(" at line ") && message.contains(", column ")),
            "the position is repeated in {rendered:?}"
        );
        assert!(!message.contains('\n'), "{rendered:?} is not one line");
    }
}

/// A password read from its file appears in no error message and no `Debug` output.
#[test]
fn a_password_never_appears_in_errors_or_debug_output() {
    const PASSWORD: &str = "S3cr3t-Fixture-Pa55";
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let password_file = dir.path().join("imap.pass");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("write the password");

    // The password is read and the configuration is valid: neither its `Debug` nor
    // the summary shows the password.
    let config_file = dir.path().join("mailprobe.yaml");
    let imap = format!(
        "targets:\n  - name: imap\n    protocol: imap\n    host: mail.example.com\n    \
         auth:\n      username: probe@example.com\n      password_file: {}\n",
        password_file.display()
    );
    std::fs::write(&config_file, &imap).expect("write the configuration");
    let config = config::load(&config_file).expect("a valid imap target");
    let endpoint = config.targets[0].spec.endpoint().expect("imap dials");
    assert_eq!(
        endpoint.auth.as_ref().map(|a| a.password.expose()),
        Some(PASSWORD)
    );
    assert!(!format!("{config:?}").contains(PASSWORD));
    assert!(!config::summary(&config).contains(PASSWORD));

    // The password is read, then a later check of the same target fails.
    let bad_host = imap.replace("mail.example.com", "mail example com");
    std::fs::write(&config_file, bad_host).expect("write the configuration");
    let result = config::load(&config_file);
    let error = result.as_ref().expect_err("the host is invalid");
    assert!(error.to_string().contains("targets[0].host"), "{error}");
    assert!(!error.to_string().contains(PASSWORD));
    assert!(!format!("{result:?}").contains(PASSWORD));

    // Where credentials do exist, their `Debug` redacts the password.
    let credentials = Credentials {
        username: "probe@example.com".to_owned(),
        password: Secret::new(PASSWORD.to_owned()),
        plaintext_allowed: false,
        oauth2: None,
        max_failures: 3,
    };
    let debug = format!("{credentials:?}");
    assert!(!debug.contains(PASSWORD), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert_eq!(credentials.password.expose(), PASSWORD);
}

/// A plain password where `web.basic_auth_users` wants a bcrypt hash.
#[test]
fn web_password_instead_of_hash() {
    let message = error_for("web_password_instead_of_hash");
    assert_eq!(
        message,
        "tests/fixtures/config/web_password_instead_of_hash.yaml:4:5: web.basic_auth_users.prometheus: is not a bcrypt hash (write the hash, never the password; e.g. `htpasswd -nBC 10 \"\" | tr -d ':'`)"
    );
    assert!(
        !message.contains("hunter2"),
        "the message must not repeat the password"
    );
}

/// Issue 13: a round trip's timeout must be shorter than its interval.
#[test]
fn roundtrip_timeout_not_shorter() {
    assert_eq!(
        error_for("roundtrip_timeout_not_shorter"),
        "tests/fixtures/config/roundtrip_timeout_not_shorter.yaml:6:14: targets[0].timeout: a round trip's timeout (2m) must be shorter than its interval (2m): the next message must not be sent while the last one is still awaited"
    );
}

/// Issue 13: the receiving leg logs in, so it needs credentials.
#[test]
fn roundtrip_receive_without_auth() {
    assert_eq!(
        error_for("roundtrip_receive_without_auth"),
        "tests/fixtures/config/roundtrip_receive_without_auth.yaml:8:14: targets[0].receive.auth: target `roundtrip` `receive` (protocol `imap`) needs `auth`: the round trip logs in to the mailbox to find its message"
    );
}

/// Issue 13: `from` and `to` are plain addresses.
#[test]
fn roundtrip_bad_address() {
    assert_eq!(
        error_for("roundtrip_bad_address"),
        "tests/fixtures/config/roundtrip_bad_address.yaml:6:9: targets[0].to: `Probe <probe@example.com>` is not a plain mail address: write `local@domain` in ASCII, without a display name or angle brackets"
    );
}

/// Issue 13: each leg takes only its own keys.
#[test]
fn roundtrip_folders_on_send() {
    assert_eq!(
        error_for("roundtrip_folders_on_send"),
        "tests/fixtures/config/roundtrip_folders_on_send.yaml:7:71: targets[0].send.folders: `folders` belongs to the other leg of a round trip (`send` takes ehlo_name, `receive` takes folders and junk)"
    );
}

/// Issue 13: each leg is checked as the mail target it is.
#[test]
fn roundtrip_missing_send_host() {
    assert_eq!(
        error_for("roundtrip_missing_send_host"),
        "tests/fixtures/config/roundtrip_missing_send_host.yaml:7:11: targets[0].send.host: target `roundtrip` `send` (protocol `smtp`) needs `host`: the server's name or IP address"
    );
}

/// Issue 12: An `auth.oauth2` block without the client's credential.
#[test]
fn issue_12_oauth2_without_credential() {
    assert_eq!(
        error_for("oauth2_without_credential"),
        "tests/fixtures/config/oauth2_without_credential.yaml:9:9: targets[0].auth.oauth2: `oauth2` needs the client's credential: `client_secret_file`, `client_secret_env`, `client_certificate` with `client_key`, or `service_account_file` (Google)"
    );
}

/// Issue 12: A client secret and a certificate on one OAuth2 client.
#[test]
fn issue_12_oauth2_two_credentials() {
    assert_eq!(
        error_for("oauth2_two_credentials"),
        "tests/fixtures/config/oauth2_two_credentials.yaml:12:29: targets[0].auth.oauth2.client_certificate: set only one of `client_secret_file`, `client_secret_env`, `client_certificate` with `client_key`, or `service_account_file` (Google)"
    );
}

/// Issue 12: A token endpoint over plain HTTP.
#[test]
fn issue_12_oauth2_plain_http_token_url() {
    assert_eq!(
        error_for("oauth2_plain_http_token_url"),
        "tests/fixtures/config/oauth2_plain_http_token_url.yaml:9:20: targets[0].auth.oauth2.token_url: the token URL is not an https:// URL (a client secret and the token must not cross the network in clear text); write the identity provider's https:// token endpoint, e.g. `https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`"
    );
}

/// Issue 12: A password and `oauth2` on one login.
#[test]
fn issue_12_oauth2_and_password() {
    assert_eq!(
        error_for("oauth2_and_password"),
        "tests/fixtures/config/oauth2_and_password.yaml:8:22: targets[0].auth.password_file: set either a password or `oauth2`, not both"
    );
}

/// Issue 12: `client_certificate` without `client_key`.
#[test]
fn issue_12_oauth2_certificate_without_key() {
    assert_eq!(
        error_for("oauth2_certificate_without_key"),
        "tests/fixtures/config/oauth2_certificate_without_key.yaml:11:29: targets[0].auth.oauth2.client_key: `client_certificate` needs `client_key`: the certificate's private key (PEM)"
    );
}

/// Issue 12: A SASL mechanism that carries no token.
#[test]
fn issue_12_oauth2_unknown_mechanism() {
    assert_eq!(
        error_for("oauth2_unknown_mechanism"),
        "tests/fixtures/config/oauth2_unknown_mechanism.yaml:13:20: targets[0].auth.oauth2.mechanism: unknown mechanism `plain`; expected auto (OAUTHBEARER when the server offers it, else XOAUTH2), xoauth2 or oauthbearer"
    );
}

/// Issue 12: `oauth2` on a protocol that has no token login.
#[test]
fn issue_12_oauth2_on_webmail() {
    assert_eq!(
        error_for("oauth2_on_webmail"),
        "tests/fixtures/config/oauth2_on_webmail.yaml:9:9: targets[0].auth.oauth2: `oauth2` applies to imap, pop3, smtp, exchange (ews, autodiscover) and roundtrip targets; webmail logs in with a password"
    );
}

/// Issue 12: `auth.max_failures: 0`.
#[test]
fn issue_12_max_failures_out_of_range() {
    assert_eq!(
        error_for("max_failures_out_of_range"),
        "tests/fixtures/config/max_failures_out_of_range.yaml:9:21: targets[0].auth.max_failures: 0 is out of range: after 1 to 100 rejected logins in a row the credential is no longer sent"
    );
}
