//! Exchange Autodiscover: how an answer is found. Outlook's order — `https://D/…`,
//! `https://autodiscover.D/…`, the `http://autodiscover.D/…` redirect, the
//! `_autodiscover._tcp.D` SRV record — and the v2 JSON endpoint, against a real
//! nginx on ports 443 and 80 of loopback addresses of each test's own, with names,
//! CNAMEs and the SRV record served by a real dnsmasq. Each test asserts which
//! method answered, with which URLs, on the `check="autodiscover"` series.
//! Failures, changes between rounds and credentials are in `autodiscover_answers.rs`.

use std::net::Ipv4Addr;

use crate::support::DropRule;
use crate::support::agent::within;
use crate::support::autodiscover::Host::{Autodiscover, Domain, Mail, Provider};
use crate::support::autodiscover::{Scenario, assert_found, redirect_to};
use crate::support::exchange::{
    AD, AUTODISCOVER_HOST, AUTODISCOVER_JSON, AUTODISCOVER_XML, CHALLENGE_401, DOMAIN, MAIL_HOST,
    PROVIDER_DOMAIN, ServerBlock, TEST_LIMIT, ews_url, json_answer, phases, pox_answer,
    pox_answer_without_ews, pox_redirect_addr, pox_redirect_url, sorted,
};
use crate::support::free_port;

/// Serves the v2 JSON answer of document root `root`, and `more`.
fn json_service(s: &Scenario, root: &str, more: &str) -> String {
    format!(
        "root {};\nlocation = {AUTODISCOVER_JSON} {{ default_type application/json; }}{more}",
        s.bed.root(root).display()
    )
}

#[tokio::test]
async fn the_domain_itself_is_asked_first_and_answers_with_pox_domain() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        // Both would answer, differently: the first in Outlook's order wins.
        let m = Scenario::new(&[Domain, Autodiscover])
            .answering(Domain, "d", "mbx-domain.example.test", &ews)
            .answering(
                Autodiscover,
                "ad",
                "mbx-ad.example.test",
                &ews_url(AUTODISCOVER_HOST),
            )
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "pox_domain", &ews, "mbx-domain.example.test");
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 200.0);
        assert_eq!(
            phases(&m, &AD),
            sorted(&["resolve", "connect", "tls", "request", "response"])
        );
    })
    .await;
}

#[tokio::test]
async fn a_website_on_the_domain_is_not_an_answer_and_autodiscover_host_is_asked_next() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        // The company's web site answers every path, POST too, with a 200 page.
        let website = "location / {\n\
                       \x20 default_type text/html;\n\
                       \x20 return 200 '<html><body>Welcome to Example</body></html>';\n\
                       }";
        let m = Scenario::new(&[Domain, Autodiscover])
            .https(Domain, website)
            .answering(Autodiscover, "ad", "mbx2.example.test", &ews)
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "pox_autodiscover_host", &ews, "mbx2.example.test");
    })
    .await;
}

#[tokio::test]
async fn autodiscover_host_behind_a_cname_answers_with_pox_autodiscover_host() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        // D has an address where nothing listens (refused); autodiscover.D is an
        // alias of a hosted Autodiscover service, as with most providers.
        let s = Scenario::new(&[Domain]).dns(|zone, bed| {
            zone.cname(AUTODISCOVER_HOST, "autodiscover.provider.example.test")
                .a("autodiscover.provider.example.test", Autodiscover.ip(bed))
        });
        let mbx = "mbx7.provider.example.test";
        let m = s
            .answering(Autodiscover, "ad", mbx, &ews)
            .probe_once(&[&AD])
            .await;
        assert_found(
            &m,
            "pox_autodiscover_host",
            &ews,
            "mbx7.provider.example.test",
        );
    })
    .await;
}

#[tokio::test]
async fn the_plain_http_redirect_leads_to_the_answer_with_pox_http_redirect() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        // autodiscover.D listens on port 80 only, and redirects to mail.D.
        let m = Scenario::new(&[Domain, Autodiscover, Mail])
            .http(Autodiscover, redirect_to(&format!("https://{MAIL_HOST}")))
            .answering(Mail, "mail", "mbx3.example.test", &ews)
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "pox_http_redirect", &ews, "mbx3.example.test");
    })
    .await;
}

#[tokio::test]
async fn the_srv_record_leads_to_the_answer_with_pox_srv() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        // Neither D nor autodiscover.D exists; the SRV record names mail.D on a port
        // of its own (so this test needs no fixed port).
        let port = free_port(Ipv4Addr::LOCALHOST.into());
        let s = Scenario::new(&[]).dns(|zone, _| {
            zone.srv(
                &format!("_autodiscover._tcp.{DOMAIN}"),
                MAIL_HOST,
                port,
                0,
                0,
            )
            .a(MAIL_HOST, Ipv4Addr::LOCALHOST)
        });
        s.bed.answers("mail", "mbx4.example.test", &ews);
        let directives = s.bed.autodiscover_service("mail");
        let m = s
            .server(ServerBlock {
                listen: (Ipv4Addr::LOCALHOST, port).into(),
                tls: true,
                directives,
            })
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "pox_srv", &ews, "mbx4.example.test");
    })
    .await;
}

#[tokio::test]
async fn a_pox_challenge_takes_the_urls_from_the_json_endpoint() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Domain, Autodiscover]);
        // POX wants credentials (alive); the anonymous v2 endpoint names EWS.
        s.bed.answers("ad", "unused.example.test", &ews);
        let challenge = format!("\nlocation = {AUTODISCOVER_XML} {{\n{CHALLENGE_401}\n}}");
        let directives = json_service(&s, "ad", &challenge);
        let m = s.https(Autodiscover, directives).probe_once(&[&AD]).await;
        // No POX <Server>: the server is the EWS URL's host.
        assert_found(&m, "json", &ews, MAIL_HOST);
    })
    .await;
}

#[tokio::test]
async fn only_the_json_endpoint_answering_is_enough() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Domain, Autodiscover]);
        // No POX service anywhere (404), but the v2 endpoint at autodiscover.D answers.
        s.bed.write("ad", AUTODISCOVER_JSON, &json_answer(&ews));
        let directives = json_service(&s, "ad", "");
        let m = s.https(Autodiscover, directives).probe_once(&[&AD]).await;
        assert_found(&m, "json", &ews, MAIL_HOST);
    })
    .await;
}

#[tokio::test]
async fn pox_settings_without_an_ews_url_take_it_from_json_and_keep_the_pox_server() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Autodiscover]);
        s.bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_answer_without_ews("mbx12.example.test"),
        );
        s.bed.write("ad", AUTODISCOVER_JSON, &json_answer(&ews));
        let m = s.service(Autodiscover, "ad").probe_once(&[&AD]).await;
        // The URL came from JSON; the server is still the one POX named.
        assert_found(&m, "json", &ews, "mbx12.example.test");
    })
    .await;
}

#[tokio::test]
async fn a_redirect_url_answer_is_followed_to_the_settings() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Domain, Autodiscover, Mail]);
        s.bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_redirect_url(&format!("https://{MAIL_HOST}{AUTODISCOVER_XML}")),
        );
        let m = s
            .service(Autodiscover, "ad")
            .answering(Mail, "mail", "mbx6.example.test", &ews)
            .probe_once(&[&AD])
            .await;
        // Found through autodiscover.D, settings from where it pointed.
        assert_found(&m, "pox_autodiscover_host", &ews, "mbx6.example.test");
    })
    .await;
}

#[tokio::test]
async fn a_redirect_addr_answer_starts_again_for_the_new_address() {
    within(TEST_LIMIT, async {
        let s = Scenario::new(&[Autodiscover, Provider])
            .dns(|zone, _| zone.local_domain(PROVIDER_DOMAIN));
        // The old domain's service knows the mailbox moved to another address.
        s.bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_redirect_addr(&format!("probe@{PROVIDER_DOMAIN}")),
        );
        let provider_ews = ews_url("outlook.provider.test");
        let m = s
            .service(Autodiscover, "ad")
            .answering(Provider, "provider", "mbx13.provider.test", &provider_ews)
            .probe_once(&[&AD])
            .await;
        assert_found(
            &m,
            "pox_autodiscover_host",
            &provider_ews,
            "mbx13.provider.test",
        );
    })
    .await;
}

#[tokio::test]
async fn an_answer_with_a_byte_order_mark_is_read() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Autodiscover]);
        // .NET writers often start UTF-8 XML with a byte order mark.
        s.bed.write(
            "ad",
            AUTODISCOVER_XML,
            &format!("\u{feff}{}", pox_answer("mbx10.example.test", &ews)),
        );
        let m = s.service(Autodiscover, "ad").probe_once(&[&AD]).await;
        assert_found(&m, "pox_autodiscover_host", &ews, "mbx10.example.test");
    })
    .await;
}

#[tokio::test]
async fn a_blackholed_domain_does_not_starve_the_autodiscover_host() {
    within(TEST_LIMIT, async {
        let ews = ews_url(MAIL_HOST);
        let s = Scenario::new(&[Domain, Autodiscover]).timeout("6s");
        // https://D/ is tried first and its packets vanish: connect would hang
        // for the whole probe timeout if the first method could take it all.
        let _drop = DropRule::drop_tcp(s.bed.block.addr(Domain.n(), 443));
        let m = s
            .answering(Autodiscover, "ad", "mbx8.example.test", &ews)
            .probe_once(&[&AD])
            .await;
        assert_found(&m, "pox_autodiscover_host", &ews, "mbx8.example.test");
        let took = m.value("mailprobe_probe_duration_seconds", &AD);
        assert!(took < 6.0, "within the timeout: {took}");
    })
    .await;
}
