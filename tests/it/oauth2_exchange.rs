//! EWS and Autodiscover (v2 JSON) with an OAuth2 token (issue 12), against a real
//! nginx playing the Exchange front end: its `auth_request` asks the identity provider
//! stand-in whether each request's `Authorization: Bearer` is good, as Exchange Online
//! validates the token. ActiveSync, which has no app-only login, is sent nothing.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::agent::{Agent, http, within};
use crate::support::autodiscover::Host::{Autodiscover, Domain};
use crate::support::autodiscover::{Scenario, assert_found};
use crate::support::exchange::{
    AD, AUTODISCOVER_JSON, EMAIL, MAIL_HOST, assert_failed, assert_up, check, config, ews_url,
    json_answer, probed,
};
use crate::support::idp::{BEARER_CHECK_PATH, CLIENT_ID, IdentityProvider};
use crate::support::oauth2::{CLIENT_SECRET, SCOPE, TEST_LIMIT, USER, secret_file};
use crate::support::{Dnsmasq, Nginx, TestPki, Validity};

const HOUR: Duration = Duration::from_secs(3600);

/// An internal location asking the stand-in about the request's bearer token; a
/// location guarded by it answers only after the stand-in said 204.
fn bearer_gate(idp: &IdentityProvider) -> String {
    format!(
        "location = /bearer-check {{\n  internal;\n  proxy_pass https://127.0.0.1:{}{BEARER_CHECK_PATH};\n  \
         proxy_pass_request_body off;\n  proxy_set_header Content-Length \"\";\n}}\n",
        idp.addr.port()
    )
}

/// `oauth2:` keys logging in with the stand-in's client and the good secret in `file`.
fn oauth2_keys(idp: &IdentityProvider, file: &std::path::Path) -> String {
    format!(
        "auth: {{username: \"{USER}\", oauth2: {{token_url: \"{}\", client_id: {CLIENT_ID}, \
         scope: \"{SCOPE}\", client_secret_file: \"{}\"}}}}",
        idp.token_url(),
        file.display()
    )
}

/// EWS behind the bearer gate (the answer from a named location, so that the gate
/// runs first), ActiveSync answering OPTIONS only when no credentials come.
fn front_end(idp: &IdentityProvider) -> String {
    bearer_gate(idp)
        + "location = /EWS/Exchange.asmx {\n  auth_request /bearer-check;\n  \
           try_files /no-such-file @ews;\n}\n\
           location @ews { return 200 'EWS'; }\n\
           location = /Microsoft-Server-ActiveSync {\n  \
           if ($http_authorization) { return 400; }\n  \
           add_header MS-ASProtocolVersions \"14.1,16.1\" always;\n  return 200;\n}\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ews_is_sent_the_token_as_a_bearer_and_activesync_nothing() {
    within(TEST_LIMIT, async {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = pki.issue(MAIL_HOST, &[MAIL_HOST], Validity::Current);
        let idp = IdentityProvider::start(&pki, USER, HOUR).await;
        idp.accept_secret(CLIENT_SECRET);
        let secret = secret_file(dir.path(), "client.secret", CLIENT_SECRET);
        let dns = Dnsmasq::builder()
            .a(MAIL_HOST, Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        let nginx = Nginx::builder()
            .tls(&cert, &key)
            .server_block_extra(&front_end(&idp))
            .start()
            .expect("nginx starts");
        let target = format!(
            "  - {{name: ex, protocol: exchange, host: {MAIL_HOST}, port: {}, \
             checks: [ews, activesync], ca_file: \"{}\", {}}}\n",
            nginx.addr.port(),
            pki.ca_pem.display(),
            oauth2_keys(&idp, &secret)
        );
        let yaml = config(dns.addr, "5s", &target);
        let series = [&check("ex", "ews")[..], &check("ex", "activesync")[..]];

        let agent = Agent::start(&yaml).await;
        let m = probed(&agent, &series, 1.0).await;
        agent.stop().await.expect("clean stop");
        assert_up(&m, &check("ex", "ews"));
        assert_up(&m, &check("ex", "activesync"));
        // The token went to EWS with the mailbox it is about, once; ActiveSync got
        // nothing (it would have answered 400).
        assert_eq!(idp.anchors(), [USER]);
        assert_eq!(idp.token_requests(), 1);

        // The mailbox refuses the token: EWS fails in auth, naming the missing role.
        idp.refuse_at_mailbox(true);
        let agent = Agent::start(&yaml).await;
        let m = probed(&agent, &series, 1.0).await;
        let (_, debug) = http(agent.addr, "GET", "/debug?target=ex", &[]).await;
        agent.stop().await.expect("clean stop");
        assert_failed(
            &m,
            &check("ex", "ews"),
            "auth",
            "auth_failed",
            "server_auth",
        );
        assert_up(&m, &check("ex", "activesync"));
        assert!(
            debug.contains("Office 365 Exchange Online → full_access_as_app"),
            "{debug}"
        );
        drop(nginx);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_autodiscover_json_endpoint_is_shown_the_token() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Domain, Autodiscover]);
        let idp = IdentityProvider::start(&s.bed.pki, EMAIL, HOUR).await;
        idp.accept_secret(CLIENT_SECRET);
        let secret = secret_file(s.bed.dir.path(), "client.secret", CLIENT_SECRET);
        s.bed.write("ad", AUTODISCOVER_JSON, &json_answer(&ews));
        // No POX service; the v2 endpoint answers only a good bearer token.
        let directives = format!(
            "root {};\n{}location = {AUTODISCOVER_JSON} {{\n  auth_request /bearer-check;\n  \
             default_type application/json;\n}}\n",
            s.bed.root("ad").display(),
            bearer_gate(&idp)
        );
        let keys = format!(
            "email: {EMAIL}, checks: [autodiscover], {}",
            oauth2_keys(&idp, &secret)
        );
        let m = s
            .https(Autodiscover, directives)
            .keys(keys)
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "json", &ews, MAIL_HOST);
        assert_eq!(idp.anchors().len(), 1, "one bearer check");
        assert_eq!(idp.token_requests(), 1);
    })
    .await;
}
