//! Exchange Autodiscover: what is made of the answers. Error answers and nothing
//! answering (the failing phase and reason), changes between rounds
//! (`mailprobe_autodiscover_changes_total`), and where the mailbox password may
//! go — against a real nginx and dnsmasq as in `autodiscover.rs`.

use crate::support::agent::{http, within};
use crate::support::autodiscover::Host::{Autodiscover, Domain, Mail};
use crate::support::autodiscover::{
    Scenario, assert_found, assert_not_found, login_keys, redirect_to,
};
use crate::support::binary::{assert_never_shown, basic_forms, traced_run};
use crate::support::exchange::{
    AD, AUTODISCOVER_XML, DOMAIN, EMAIL, MAIL_HOST, TEST_LIMIT, answer, answers, assert_failed,
    assert_up, check, ews_url, phases, pox_error, probed, probes, sorted, wait_until, with,
};

/// Exchange's answer for a mailbox it does not know.
fn unknown_mailbox() -> String {
    pox_error(500, "The email address can't be found.")
}

/// POX Autodiscover asking for Basic (401), refusing (403) any request that
/// carries a password.
const GUARDED: &str = "location = /autodiscover/autodiscover.xml {\n\
                       \x20 if ($http_authorization) { return 403; }\n\
                       \x20 add_header WWW-Authenticate 'Basic realm=\"Autodiscover\"' always;\n\
                       \x20 return 401;\n\
                       }";

#[tokio::test]
async fn an_autodiscover_error_answer_fails_in_response_with_protocol_error() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Domain, Autodiscover]);
        s.bed.write("ad", AUTODISCOVER_XML, &unknown_mailbox());
        let m = s.service(Autodiscover, "ad").probe_once(&[&AD]).await;
        assert_not_found(&m, "response", "protocol_error", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 200.0);
    })
    .await;
}

#[tokio::test]
async fn nothing_answering_fails_with_the_autodiscover_hosts_connect_refused() {
    within(TEST_LIMIT, async {
        // Every name exists; nothing listens on 443 or 80 at either address.
        let m = Scenario::new(&[Domain, Autodiscover])
            .probe_once(&[&AD])
            .await;
        assert_not_found(&m, "connect", "connect_refused", "server_service");
    })
    .await;
}

#[tokio::test]
async fn a_failing_autodiscover_host_is_reported_with_its_own_status() {
    within(TEST_LIMIT, async {
        // The POX service is down (503); the JSON endpoint does not exist (404).
        let m = Scenario::new(&[Autodiscover])
            .https(
                Autodiscover,
                format!("location = {AUTODISCOVER_XML} {{ return 503; }}"),
            )
            .probe_once(&[&AD])
            .await;
        assert_failed(&m, &AD, "request", "http_status", "server_service");
        // The status of the failure reported (autodiscover.D's), not of a later
        // question that found nothing.
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 503.0);
    })
    .await;
}

#[tokio::test]
async fn no_autodiscover_records_fail_in_resolve_with_dns_nxdomain() {
    within(TEST_LIMIT, async {
        // D exists (it has mail) but has no address, no autodiscover name, no SRV.
        let m = Scenario::new(&[])
            .dns(|zone, _| zone.mx(DOMAIN, MAIL_HOST, 10))
            .probe_once(&[&AD])
            .await;
        assert_failed(&m, &AD, "resolve", "dns_nxdomain", "remote_dns");
        assert_eq!(phases(&m, &AD), sorted(&["resolve"]));
    })
    .await;
}

#[tokio::test]
async fn a_changed_answer_is_counted_once_as_a_change() {
    within(TEST_LIMIT, async {
        let site = Scenario::new(&[Autodiscover])
            .every("2s")
            .timeout("2s")
            .answering(Autodiscover, "ad", "mbx1.example.test", &ews_url(MAIL_HOST))
            .serve();
        let agent = site.agent().await;
        // The same answer twice: no change.
        let m = probed(&agent, &[&AD], 2.0).await;
        assert_found(
            &m,
            "pox_autodiscover_host",
            &ews_url(MAIL_HOST),
            "mbx1.example.test",
        );
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);

        // The mailbox moves to a new server with a new EWS URL.
        let new_ews = "https://outlook.new-provider.example.test/EWS/Exchange.asmx";
        site.bed
            .answers("ad", "mbx9.new-provider.example.test", new_ews);
        let m = wait_until(&agent, "the new answer", |m| {
            answers(m)
                .iter()
                .any(|a| a.2 == "mbx9.new-provider.example.test")
        })
        .await;
        // The old answer's series is gone: one answer at a time.
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                new_ews,
                "mbx9.new-provider.example.test"
            )
        );
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 1.0);

        // It stays: no further change.
        let seen = probes(&m, &AD);
        let m = probed(&agent, &[&AD], seen + 1.0).await;
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 1.0);
        assert_up(&m, &AD);
        assert_eq!(
            m.value("mailprobe_probes_total", &with(&AD, ("result", "success"))),
            probes(&m, &AD)
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_redirect_to_plain_http_is_not_followed() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Domain, Autodiscover, Mail]);
        // The redirect points to plain HTTP, where an answer waits: a client that
        // followed it would send the mailbox's request unencrypted.
        s.bed
            .answers("mail", "mbx5.example.test", &ews_url(MAIL_HOST));
        let service = s.bed.autodiscover_service("mail");
        let m = s
            .http(Autodiscover, redirect_to(&format!("http://{MAIL_HOST}")))
            .http(Mail, service)
            .probe_once(&[&AD])
            .await;
        // Nothing answered: the failure is that of https://autodiscover.D.
        assert_not_found(&m, "connect", "connect_refused", "server_service");
    })
    .await;
}

#[tokio::test]
async fn the_answer_is_kept_through_a_failed_round_and_its_return_is_no_change() {
    within(TEST_LIMIT, async {
        let site = Scenario::new(&[Autodiscover])
            .every("2s")
            .timeout("2s")
            .answering(Autodiscover, "ad", "mbx1.example.test", &ews_url(MAIL_HOST))
            .serve();
        let agent = site.agent().await;
        let first = answer(
            "pox_autodiscover_host",
            &ews_url(MAIL_HOST),
            "mbx1.example.test",
        );
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_eq!(answers(&m), first);

        // The mailbox is briefly unknown (an error answer): the round fails, the
        // last answer stays exported, and nothing has changed yet.
        site.bed.write("ad", AUTODISCOVER_XML, &unknown_mailbox());
        let m = wait_until(&agent, "a failed round", |m| {
            m.get("mailprobe_up", &AD) == Some(0.0)
        })
        .await;
        assert_failed(&m, &AD, "response", "protocol_error", "server_service");
        assert_eq!(answers(&m), first);
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);

        // The same answer returns: not a change.
        site.bed
            .answers("ad", "mbx1.example.test", &ews_url(MAIL_HOST));
        let m = wait_until(&agent, "the answer back", |m| {
            m.get("mailprobe_up", &AD) == Some(1.0)
        })
        .await;
        assert_eq!(answers(&m), first);
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_to_where_the_plain_http_redirect_points() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Domain, Autodiscover, Mail]);
        // The redirect comes over plain HTTP, which anyone on the path can forge
        // (Outlook asks the user before following it): the host it names must not
        // receive the mailbox password, not even when it asks for it. It asks for
        // Basic (401) and refuses (403) a request that carries a password.
        let guarded = format!("root {};\n{GUARDED}", s.bed.root("mail").display());
        let password_file = s.bed.password_file("ex", "Aut0discover-Pebble-77a1c3");
        let m = s
            .http(Autodiscover, redirect_to(&format!("https://{MAIL_HOST}")))
            .https(Mail, guarded)
            .keys(login_keys(&password_file))
            .probe_once(&[&AD])
            .await;
        // 403 is what the guarded host answers a request carrying a password.
        assert_ne!(
            m.get("mailprobe_http_status_code", &AD),
            Some(403.0),
            "the host named by the plain-HTTP redirect received the password"
        );
        // A service asking for credentials is alive; without a JSON endpoint there
        // are no URLs.
        assert_found(&m, "pox_http_redirect", "", "");
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 401.0);
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_to_an_https_redirect_target_on_another_host() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Autodiscover, Mail]);
        // autodiscover.D answers the POST with a 302 to another host (the README:
        // credentials never go to a redirect target on another host). That host
        // asks for Basic (401) and refuses (403) a request carrying a password.
        let password_file = s.bed.password_file("ex", PASSWORD);
        let site = s
            .https(Autodiscover, redirect_to(&format!("https://{MAIL_HOST}")))
            .https(Mail, GUARDED)
            .keys(login_keys(&password_file))
            .serve();
        let agent = site.agent().await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_ne!(
            m.get("mailprobe_http_status_code", &AD),
            Some(403.0),
            "the host autodiscover.D redirected to received the password"
        );
        // Found through autodiscover.D; the service it points to asks for credentials.
        let (_, debug) = http(agent.addr, "GET", "/debug?target=ex", &[]).await;
        assert_eq!(m.get("mailprobe_up", &AD), Some(1.0), "{debug}");
        assert_found(&m, "pox_autodiscover_host", "", "");
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 401.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// Distinctive, so a search for it in any output cannot match by accident.
const PASSWORD: &str = "Aut0d-Compass-5e91b4";
const WRONG_PASSWORD: &str = "Wr0ng-Anchor-8d26f1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_basic_login_to_autodiscover_is_accepted_or_rejected_and_never_shown() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Autodiscover]);
        s.bed
            .answers("ad", "mbx14.example.test", &ews_url(MAIL_HOST));
        let htpasswd = s.bed.dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{EMAIL}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        // auth_basic runs before the static handler, so POST needs the login too.
        let directives = format!(
            "auth_basic \"Autodiscover\";\nauth_basic_user_file {};\n{}",
            htpasswd.display(),
            s.bed.autodiscover_service("ad")
        );
        let site = s.https(Autodiscover, directives).serve();
        let mut targets = String::new();
        for (name, password) in [("ex-good", PASSWORD), ("ex-bad", WRONG_PASSWORD)] {
            let file = site.bed.password_file(name, password);
            targets.push_str(&site.bed.target(name, &login_keys(&file)));
        }
        let config_path = site.bed.dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, site.config(&targets)).unwrap();

        // An exchange check is logged as `TARGET/CHECK`.
        let logged = ["ex-good/autodiscover", "ex-bad/autodiscover"];
        let shown = traced_run(&config_path, &logged, &["ex-good", "ex-bad"]).await;
        let m = &shown.metrics;
        let (good, bad) = (
            check("ex-good", "autodiscover"),
            check("ex-bad", "autodiscover"),
        );
        assert_up(m, &good);
        assert_eq!(
            m.value(
                "mailprobe_autodiscover_info",
                &[
                    good[0],
                    good[2],
                    ("method", "pox_autodiscover_host"),
                    ("server", "mbx14.example.test"),
                ]
            ),
            1.0
        );
        assert_failed(m, &bad, "auth", "auth_failed", "server_auth");
        for password in [PASSWORD, WRONG_PASSWORD] {
            assert_never_shown(&shown.outputs, &basic_forms(EMAIL, password));
        }
    })
    .await;
}
