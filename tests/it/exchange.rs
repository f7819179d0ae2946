//! The Exchange host checks (EWS, ActiveSync, MAPI and the other virtual
//! directories, OWA) against a real nginx playing an Exchange front end, its name
//! resolved by a real dnsmasq. One test per check per outcome: each asserts the
//! check's own series (`check` label) — up, or the failing phase, reason and fault
//! domain — and the HTTP status it saw.

use std::net::Ipv4Addr;

use crate::support::agent::{Agent, Metrics, within};
use crate::support::autodiscover::Host::{Autodiscover, Mail};
use crate::support::autodiscover::Scenario;
use crate::support::exchange::{
    CHALLENGE_401, EMAIL, MAIL_HOST, PROBE_TIMEOUT, TEST_LIMIT, assert_failed, assert_up, check,
    config, ews_url, phases, probed, sorted,
};
use crate::support::{Dnsmasq, Nginx, TestPki, Validity};

const EWS: &str = "/EWS/Exchange.asmx";
const ACTIVESYNC: &str = "/Microsoft-Server-ActiveSync";
/// What Exchange answers on `/<vdir>/healthcheck.htm` when the virtual directory is healthy.
const HEALTHY: &str = "return 200 '200 OK<br/>mbx1.example.test<br/>';";
/// OPTIONS answered as Exchange does for an anonymous ActiveSync client; any
/// other method is 405, so a probe that does not send OPTIONS fails.
const ACTIVESYNC_OK: &str = "if ($request_method = OPTIONS) {\n\
                             \x20 add_header MS-ASProtocolVersions \"2.5,12.0,12.1,14.0,14.1,16.0,16.1\" always;\n\
                             \x20 add_header MS-ASProtocolCommands \"Sync,SendMail,SmartForward,FolderSync\" always;\n\
                             \x20 return 200;\n\
                             }\n\
                             return 405;";

/// A test CA and certificate for `mail.example.test`, resolved to 127.0.0.1 by
/// dnsmasq, and an nginx there on a free port.
struct Front {
    _dir: tempfile::TempDir,
    pki: TestPki,
    dns: Dnsmasq,
    nginx: Nginx,
}

impl Front {
    /// The front end with `locations` (every other path is 404).
    fn new(locations: &str) -> Front {
        Self::with_cert(locations, false)
    }

    /// Like [`new`](Self::new), with a self-signed certificate when `untrusted`.
    fn with_cert(locations: &str, untrusted: bool) -> Front {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = if untrusted {
            pki.self_signed(MAIL_HOST, &[MAIL_HOST])
        } else {
            pki.issue(MAIL_HOST, &[MAIL_HOST], Validity::Current)
        };
        let dns = Dnsmasq::builder()
            .a(MAIL_HOST, Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        let nginx = Nginx::builder()
            .tls(&cert, &key)
            .server_block_extra(locations)
            .start()
            .expect("nginx starts");
        Front {
            _dir: dir,
            pki,
            dns,
            nginx,
        }
    }

    /// An agent probing target `ex` with `checks` on this front end.
    async fn agent(&self, checks: &str) -> Agent {
        self.agent_with(checks, "").await
    }

    /// [`agent`](Self::agent) with more keys for the target, e.g. `, auth: {…}`.
    async fn agent_with(&self, checks: &str, extra: &str) -> Agent {
        let target = format!(
            "  - {{name: ex, protocol: exchange, host: {MAIL_HOST}, port: {}, checks: [{checks}], \
             ca_file: \"{}\"{extra}}}\n",
            self.nginx.addr.port(),
            self.pki.ca_pem.display()
        );
        Agent::start(&config(self.dns.addr, PROBE_TIMEOUT, &target)).await
    }
}

/// `location = PATH { BODY }`.
fn location(path: &str, body: &str) -> String {
    format!("location = {path} {{\n{body}\n}}\n")
}

/// Probes the one check `name` once on a front end with `locations`; returns the scrape.
async fn probe_check(name: &str, locations: &str) -> Metrics {
    let front = Front::new(locations);
    let agent = front.agent(name).await;
    let m = probed(&agent, &[&check("ex", name)], 1.0).await;
    agent.stop().await.expect("clean stop");
    drop(front);
    m
}

/// Asserts that `check` got HTTP status `status`.
fn assert_status(m: &Metrics, name: &str, status: f64) {
    assert_eq!(
        m.value("mailprobe_http_status_code", &check("ex", name)),
        status,
        "{name}"
    );
}

/// The failure of a check that answered a status it must not.
const BAD_STATUS: (&str, &str, &str) = ("request", "http_status", "server_service");

/// Probes check `name` once on a front end with `locations`, and asserts that it
/// is up with HTTP status `status`; returns the scrape.
async fn check_is_up(name: &str, locations: &str, status: f64) -> Metrics {
    let m = probe_check(name, locations).await;
    assert_up(&m, &check("ex", name));
    assert_status(&m, name, status);
    m
}

/// Probes check `name` once on a front end with `locations`, and asserts that it
/// failed in `(phase, reason, fault domain)`, with HTTP status `status` if given.
async fn check_fails(
    name: &str,
    locations: &str,
    (phase, reason, domain): (&str, &str, &str),
    status: Option<f64>,
) {
    let m = probe_check(name, locations).await;
    assert_failed(&m, &check("ex", name), phase, reason, domain);
    if let Some(status) = status {
        assert_status(&m, name, status);
    }
}

// ---- EWS ------------------------------------------------------------------------

#[tokio::test]
async fn ews_answering_401_with_negotiate_and_ntlm_challenges_is_up() {
    within(TEST_LIMIT, async {
        let m = check_is_up("ews", &location(EWS, CHALLENGE_401), 401.0).await;
        // Judged on the headers: the body may or may not be read.
        let ran = phases(&m, &check("ex", "ews"));
        for phase in ["resolve", "connect", "tls", "request"] {
            assert!(ran.contains(&phase.to_owned()), "{phase}: {ran:?}");
        }
        assert!(
            m.value(
                "mailprobe_tls_cert_not_after_timestamp_seconds",
                &check("ex", "ews")
            ) > 1.7e9
        );
    })
    .await;
}

#[tokio::test]
async fn ews_answering_200_is_up() {
    within(
        TEST_LIMIT,
        check_is_up("ews", &location(EWS, "return 200 'EWS';"), 200.0),
    )
    .await;
}

#[tokio::test]
async fn ews_answering_401_without_a_challenge_fails_in_request_with_http_status() {
    within(
        TEST_LIMIT,
        check_fails(
            "ews",
            &location(EWS, "return 401;"),
            BAD_STATUS,
            Some(401.0),
        ),
    )
    .await;
}

#[tokio::test]
async fn ews_answering_503_fails_in_request_with_http_status() {
    within(
        TEST_LIMIT,
        check_fails(
            "ews",
            &location(EWS, "return 503;"),
            BAD_STATUS,
            Some(503.0),
        ),
    )
    .await;
}

const USER: &str = "probe@example.test";
/// Distinctive, so it can be searched for.
const PASSWORD: &str = "Exch4nge-Kettle-61d09a";

/// EWS behind Basic login (nginx `auth_basic`, which challenges with `Basic`), and
/// an agent logging in with `password`.
async fn ews_login(password: &str) -> Metrics {
    let dir = tempfile::tempdir().expect("temp dir");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
    let password_file = dir.path().join("ews.pass");
    std::fs::write(&password_file, format!("{password}\n")).unwrap();
    // The answer comes from a named location reached by try_files: a `return` in
    // the location itself would run in nginx's rewrite phase, before the login
    // is checked, and answer 200 to any password.
    let front = Front::new(
        &(location(
            EWS,
            &format!(
                "auth_basic \"EWS\";\nauth_basic_user_file {};\ntry_files /no-such-file @ews;",
                htpasswd.display()
            ),
        ) + "location @ews { return 200 'EWS'; }\n"),
    );
    let agent = front
        .agent_with(
            "ews",
            &format!(
                ", auth: {{username: \"{USER}\", password_file: \"{}\"}}",
                password_file.display()
            ),
        )
        .await;
    let m = probed(&agent, &[&check("ex", "ews")], 1.0).await;
    agent.stop().await.expect("clean stop");
    assert!(!m.text.contains(password), "the password shows in /metrics");
    m
}

#[tokio::test]
async fn ews_accepting_the_login_is_up() {
    within(TEST_LIMIT, async {
        let m = ews_login(PASSWORD).await;
        assert_up(&m, &check("ex", "ews"));
        assert_status(&m, "ews", 200.0);
    })
    .await;
}

#[tokio::test]
async fn ews_rejecting_the_login_fails_in_auth_with_auth_failed() {
    within(TEST_LIMIT, async {
        // A 401 with a challenge is alive without credentials, but a rejection
        // when credentials were sent.
        let m = ews_login("Wr0ng-Spoon-0c4e2b").await;
        assert_failed(
            &m,
            &check("ex", "ews"),
            "auth",
            "auth_failed",
            "server_auth",
        );
        assert_status(&m, "ews", 401.0);
    })
    .await;
}

#[tokio::test]
async fn ews_behind_an_untrusted_certificate_fails_in_tls_with_cert_untrusted() {
    within(TEST_LIMIT, async {
        let front = Front::with_cert(&location(EWS, CHALLENGE_401), true);
        let agent = front.agent("ews").await;
        let ews = check("ex", "ews");
        let m = probed(&agent, &[&ews], 1.0).await;
        assert_failed(&m, &ews, "tls", "cert_untrusted", "server_tls");
        // The certificate's facts are kept even though it is not trusted.
        assert!(m.value("mailprobe_tls_cert_not_after_timestamp_seconds", &ews) > 1.7e9);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_host_given_as_an_address_is_verified_against_server_name() {
    within(TEST_LIMIT, async {
        let front = Front::new(&location(EWS, CHALLENGE_401));
        let target = |name: &str, server_name: &str| {
            format!(
                "  - {{name: {name}, protocol: exchange, host: 127.0.0.1, port: {}, \
                 checks: [ews], ca_file: \"{}\"{server_name}}}\n",
                front.nginx.addr.port(),
                front.pki.ca_pem.display()
            )
        };
        let agent = Agent::start(&config(
            front.dns.addr,
            PROBE_TIMEOUT,
            &(target("ex", &format!(", server_name: {MAIL_HOST}")) + &target("by-address", "")),
        ))
        .await;
        let (ews, by_address) = (check("ex", "ews"), check("by-address", "ews"));
        let m = probed(&agent, &[&ews, &by_address], 1.0).await;
        assert_up(&m, &ews);
        assert_failed(&m, &by_address, "tls", "cert_name_mismatch", "server_tls");
        agent.stop().await.expect("clean stop");
    })
    .await;
}

// ---- ActiveSync -----------------------------------------------------------------

#[tokio::test]
async fn activesync_options_with_protocol_versions_is_up() {
    within(
        TEST_LIMIT,
        check_is_up("activesync", &location(ACTIVESYNC, ACTIVESYNC_OK), 200.0),
    )
    .await;
}

#[tokio::test]
async fn activesync_answering_401_with_a_challenge_is_up() {
    let options = format!("if ($request_method = OPTIONS) {{\n{CHALLENGE_401}\n}}\nreturn 405;");
    within(
        TEST_LIMIT,
        check_is_up("activesync", &location(ACTIVESYNC, &options), 401.0),
    )
    .await;
}

#[tokio::test]
async fn activesync_200_without_protocol_versions_fails_in_request_with_protocol_error() {
    let options = "if ($request_method = OPTIONS) { return 200; }\nreturn 405;";
    let protocol_error = ("request", "protocol_error", "server_service");
    let locations = location(ACTIVESYNC, options);
    within(
        TEST_LIMIT,
        check_fails("activesync", &locations, protocol_error, Some(200.0)),
    )
    .await;
}

#[tokio::test]
async fn activesync_answering_503_fails_in_request_with_http_status() {
    within(
        TEST_LIMIT,
        check_fails(
            "activesync",
            &location(ACTIVESYNC, "return 503;"),
            BAD_STATUS,
            Some(503.0),
        ),
    )
    .await;
}

// ---- MAPI and the other virtual directories --------------------------------------

#[tokio::test]
async fn mapi_healthcheck_answering_200_is_up() {
    within(
        TEST_LIMIT,
        check_is_up("mapi", &location("/mapi/healthcheck.htm", HEALTHY), 200.0),
    )
    .await;
}

#[tokio::test]
async fn mapi_healthcheck_answering_503_fails_in_request_with_http_status() {
    within(
        TEST_LIMIT,
        check_fails(
            "mapi",
            &location("/mapi/healthcheck.htm", "return 503;"),
            BAD_STATUS,
            Some(503.0),
        ),
    )
    .await;
}

#[tokio::test]
async fn each_virtual_directory_is_its_own_series_and_a_missing_healthcheck_fails() {
    within(TEST_LIMIT, async {
        // ecp and oab are healthy; rpc has no healthcheck page (404).
        let locations =
            location("/ecp/healthcheck.htm", HEALTHY) + &location("/oab/healthcheck.htm", HEALTHY);
        let front = Front::new(&locations);
        let agent = front.agent("ecp, oab, rpc").await;
        let (ecp, oab, rpc) = (check("ex", "ecp"), check("ex", "oab"), check("ex", "rpc"));
        let m = probed(&agent, &[&ecp, &oab, &rpc], 1.0).await;
        assert_up(&m, &ecp);
        assert_up(&m, &oab);
        assert_failed(&m, &rpc, "request", "http_status", "server_service");
        assert_status(&m, "rpc", 404.0);
        assert_status(&m, "ecp", 200.0);
        // Checks that were not asked for have no series.
        for absent in ["autodiscover", "ews", "activesync", "mapi", "owa"] {
            assert_eq!(
                m.all("mailprobe_up", &check("ex", absent)),
                vec![],
                "{absent}"
            );
        }
        agent.stop().await.expect("clean stop");
    })
    .await;
}

// ---- OWA --------------------------------------------------------------------------

#[tokio::test]
async fn owa_answering_200_is_up() {
    within(
        TEST_LIMIT,
        check_is_up("owa", &location("/owa/", "return 200 'Outlook';"), 200.0),
    )
    .await;
}

#[tokio::test]
async fn owa_redirecting_to_the_logon_page_is_up_without_following_it() {
    within(TEST_LIMIT, async {
        // The logon page itself is broken: following the redirect would fail.
        let locations = location(
            "/owa/",
            "return 302 \"https://$host:$server_port/owa/auth/logon.aspx?\
             url=https%3a%2f%2fmail.example.test%2fowa%2f&reason=0\";",
        ) + "location /owa/auth/ { return 503; }\n";
        let m = check_is_up("owa", &locations, 302.0).await;
        assert_eq!(
            m.value("mailprobe_http_redirects", &check("ex", "owa")),
            0.0
        );
    })
    .await;
}

#[tokio::test]
async fn owa_redirecting_to_a_broken_page_fails_in_request_with_http_status() {
    // Not a logon page: whether or not it is followed, OWA is not alive here.
    let locations =
        location("/owa/", "return 301 /maintenance/;") + &location("/maintenance/", "return 503;");
    within(TEST_LIMIT, check_fails("owa", &locations, BAD_STATUS, None)).await;
}

#[tokio::test]
async fn owa_answering_401_with_a_challenge_is_up() {
    within(
        TEST_LIMIT,
        check_is_up("owa", &location("/owa/", CHALLENGE_401), 401.0),
    )
    .await;
}

#[tokio::test]
async fn owa_answering_503_fails_in_request_with_http_status() {
    within(
        TEST_LIMIT,
        check_fails(
            "owa",
            &location("/owa/", "return 503;"),
            BAD_STATUS,
            Some(503.0),
        ),
    )
    .await;
}

// ---- The default checks -----------------------------------------------------------

#[tokio::test]
async fn the_default_checks_are_autodiscover_ews_activesync_mapi_and_owa_on_port_443() {
    within(TEST_LIMIT, async {
        // autodiscover.D answers; D itself has no address. mail.D is the front end,
        // on port 443 because the target names no port.
        let s = Scenario::new(&[Autodiscover, Mail]);
        let front_end = location(EWS, CHALLENGE_401)
            + &location(ACTIVESYNC, ACTIVESYNC_OK)
            + &location("/mapi/healthcheck.htm", HEALTHY)
            + &location(
                "/owa/",
                "return 302 https://$host/owa/auth/logon.aspx?replaceCurrent=1;",
            );
        let checks = ["autodiscover", "ews", "activesync", "mapi", "owa"];
        let series: Vec<_> = checks.iter().map(|c| check("ex", c)).collect();
        let wanted: Vec<&[(&str, &str)]> = series.iter().map(|s| &s[..]).collect();
        let m = s
            .answering(Autodiscover, "ad", "mbx1.example.test", &ews_url(MAIL_HOST))
            .https(Mail, front_end)
            .keys(format!("host: {MAIL_HOST}, email: {EMAIL}"))
            .probe_once(&wanted)
            .await;
        for s in &series {
            assert_up(&m, s);
        }
        assert_eq!(
            m.value(
                "mailprobe_autodiscover_info",
                &[
                    ("target", "ex"),
                    ("protocol", "exchange"),
                    ("check", "autodiscover"),
                    ("method", "pox_autodiscover_host"),
                    ("ews_url", &ews_url(MAIL_HOST)),
                    ("server", "mbx1.example.test"),
                ]
            ),
            1.0
        );
        // Exactly these checks, each labelled, and nothing of the target unlabelled.
        let mut up: Vec<String> = m
            .all("mailprobe_up", &[("target", "ex")])
            .into_iter()
            .map(|(labels, _)| {
                assert_eq!(
                    labels.keys().map(String::as_str).collect::<Vec<_>>(),
                    ["check", "protocol", "target"]
                );
                labels["check"].clone()
            })
            .collect();
        up.sort();
        assert_eq!(up, sorted(&checks));
        let unlabelled = m
            .samples
            .keys()
            .filter(|s| s.labels.get("target").map(String::as_str) == Some("ex"))
            .filter(|s| !s.labels.contains_key("check"))
            .count();
        assert_eq!(
            unlabelled, 0,
            "every series of an exchange target has `check`"
        );
    })
    .await;
}
