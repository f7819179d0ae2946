//! Exchange Autodiscover in Outlook's order — `https://D/…`, `https://autodiscover.D/…`,
//! the `http://autodiscover.D/…` redirect, the `_autodiscover._tcp.D` SRV record —
//! and the v2 JSON endpoint, against a real nginx on ports 443 and 80 of loopback
//! addresses of each test's own, with names, CNAMEs and the SRV record served by a
//! real dnsmasq. Each test asserts which method answered (or the failing phase and
//! reason) on the `check="autodiscover"` series.

mod support;

use std::net::Ipv4Addr;

use support::agent::{Agent, Metrics, within};
use support::exchange::{
    AUTODISCOVER_HOST, AUTODISCOVER_JSON, AUTODISCOVER_XML, CHALLENGE_401, DOMAIN, EMAIL,
    ExchangeBed, MAIL_HOST, PROBE_TIMEOUT, Site, TEST_LIMIT, assert_failed, assert_up, config,
    config_every, ews_url, json_answer, phases, pox_answer, pox_answer_without_ews, pox_error,
    pox_redirect_url, probed, probes, sorted, wait_until, with,
};
use support::{Dnsmasq, DnsmasqBuilder, DropRule, free_port};

/// The series of the autodiscover check of target `ex`.
const AD: [(&str, &str); 3] = [
    ("target", "ex"),
    ("protocol", "exchange"),
    ("check", "autodiscover"),
];

/// dnsmasq for `D` where every name the test does not give is NXDOMAIN.
fn zone() -> DnsmasqBuilder {
    Dnsmasq::builder().local_domain(DOMAIN)
}

/// An agent probing `ex`, autodiscover only, for [`EMAIL`].
async fn agent(bed: &ExchangeBed, dns: &Dnsmasq) -> Agent {
    Agent::start(&config(
        dns.addr,
        PROBE_TIMEOUT,
        &bed.target("ex", &format!("email: {EMAIL}, checks: [autodiscover]")),
    ))
    .await
}

/// The autodiscover info series: `(method, ews_url, server)` of each.
fn answers(m: &Metrics) -> Vec<(String, String, String)> {
    m.all("mailprobe_autodiscover_info", &AD)
        .into_iter()
        .map(|(l, v)| {
            assert_eq!(v, 1.0, "an _info gauge is 1: {l:?}");
            (
                l["method"].clone(),
                l["ews_url"].clone(),
                l["server"].clone(),
            )
        })
        .collect()
}

fn answer(method: &str, ews_url: &str, server: &str) -> Vec<(String, String, String)> {
    vec![(method.to_owned(), ews_url.to_owned(), server.to_owned())]
}

#[tokio::test]
async fn the_domain_itself_is_asked_first_and_answers_with_pox_domain() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        // Both would answer, differently: the first in Outlook's order wins.
        bed.answers("d", "mbx-domain.example.test", &ews_url(MAIL_HOST));
        bed.answers("ad", "mbx-ad.example.test", &ews_url(AUTODISCOVER_HOST));
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(1, 443),
                tls: true,
                directives: bed.autodiscover_site("d"),
            },
            Site {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_site("ad"),
            },
        ]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer("pox_domain", &ews_url(MAIL_HOST), "mbx-domain.example.test")
        );
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 200.0);
        assert_eq!(
            phases(&m, &AD),
            sorted(&["resolve", "connect", "tls", "request", "response"])
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn autodiscover_host_behind_a_cname_answers_with_pox_autodiscover_host() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        // D has an address where nothing listens (refused); autodiscover.D is an
        // alias of a hosted Autodiscover service, as with most providers.
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .cname(AUTODISCOVER_HOST, "autodiscover.provider.example.test")
            .a("autodiscover.provider.example.test", bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx7.provider.example.test", &ews_url(MAIL_HOST));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx7.provider.example.test"
            )
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_website_on_the_domain_is_not_an_answer_and_autodiscover_host_is_asked_next() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx2.example.test", &ews_url(MAIL_HOST));
        // The company's web site answers every path, POST too, with a 200 page.
        let website = "location / {\n\
                       \x20 default_type text/html;\n\
                       \x20 return 200 '<html><body>Welcome to Example</body></html>';\n\
                       }";
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(1, 443),
                tls: true,
                directives: website.to_owned(),
            },
            Site {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_site("ad"),
            },
        ]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx2.example.test"
            )
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn the_plain_http_redirect_leads_to_the_answer_with_pox_http_redirect() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(MAIL_HOST, bed.mail_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("mail", "mbx3.example.test", &ews_url(MAIL_HOST));
        // autodiscover.D listens on port 80 only, and redirects to mail.D.
        let redirect = format!(
            "location = {AUTODISCOVER_XML} {{ return 302 https://{MAIL_HOST}{AUTODISCOVER_XML}; }}"
        );
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            Site {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: bed.autodiscover_site("mail"),
            },
        ]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_http_redirect",
                &ews_url(MAIL_HOST),
                "mbx3.example.test"
            )
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn the_srv_record_leads_to_the_answer_with_pox_srv() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        // Neither D nor autodiscover.D exists; the SRV record names mail.D on a port
        // of its own (so this test needs no fixed port).
        let port = free_port(Ipv4Addr::LOCALHOST.into());
        let dns = zone()
            .srv(
                &format!("_autodiscover._tcp.{DOMAIN}"),
                MAIL_HOST,
                port,
                0,
                0,
            )
            .a(MAIL_HOST, Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        bed.answers("mail", "mbx4.example.test", &ews_url(MAIL_HOST));
        let _nginx = bed.nginx(vec![Site {
            listen: (Ipv4Addr::LOCALHOST, port).into(),
            tls: true,
            directives: bed.autodiscover_site("mail"),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer("pox_srv", &ews_url(MAIL_HOST), "mbx4.example.test")
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_pox_challenge_takes_the_urls_from_the_json_endpoint() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        // POX wants credentials (alive); the anonymous v2 endpoint names EWS.
        bed.answers("ad", "unused.example.test", &ews_url(MAIL_HOST));
        let directives = format!(
            "root {};\n\
             location = {AUTODISCOVER_JSON} {{ default_type application/json; }}\n\
             location = {AUTODISCOVER_XML} {{\n{CHALLENGE_401}\n}}",
            bed.root("ad").display()
        );
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives,
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        // No POX <Server>: the server is the EWS URL's host.
        assert_eq!(answers(&m), answer("json", &ews_url(MAIL_HOST), MAIL_HOST));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn an_autodiscover_error_answer_fails_in_response_with_protocol_error() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_error(500, "The email address can't be found."),
        );
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_failed(&m, &AD, "response", "protocol_error", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 200.0);
        assert_eq!(answers(&m), vec![]);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn nothing_answering_fails_with_the_autodiscover_hosts_connect_refused() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        // Every name exists; nothing listens on 443 or 80 at either address.
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_failed(&m, &AD, "connect", "connect_refused", "server_service");
        assert_eq!(answers(&m), vec![]);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn no_autodiscover_records_fail_in_resolve_with_dns_nxdomain() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        // D exists (it has mail) but has no address, no autodiscover name, no SRV.
        let dns = zone()
            .mx(DOMAIN, MAIL_HOST, 10)
            .start()
            .expect("dnsmasq starts");
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_failed(&m, &AD, "resolve", "dns_nxdomain", "remote_dns");
        assert_eq!(phases(&m, &AD), sorted(&["resolve"]));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_changed_answer_is_counted_once_as_a_change() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx1.example.test", &ews_url(MAIL_HOST));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = Agent::start(&config_every(
            dns.addr,
            "2s",
            "2s",
            &bed.target("ex", &format!("email: {EMAIL}, checks: [autodiscover]")),
        ))
        .await;
        // The same answer twice: no change.
        let m = probed(&agent, &[&AD], 2.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx1.example.test"
            )
        );
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);

        // The mailbox moves to a new server with a new EWS URL.
        let new_ews = "https://outlook.new-provider.example.test/EWS/Exchange.asmx";
        bed.answers("ad", "mbx9.new-provider.example.test", new_ews);
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
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(MAIL_HOST, bed.mail_ip())
            .start()
            .expect("dnsmasq starts");
        // The redirect points to plain HTTP, where an answer waits: a client that
        // followed it would send the mailbox's request unencrypted.
        bed.answers("mail", "mbx5.example.test", &ews_url(MAIL_HOST));
        let redirect = format!(
            "location = {AUTODISCOVER_XML} {{ return 302 http://{MAIL_HOST}{AUTODISCOVER_XML}; }}"
        );
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            Site {
                listen: bed.block.addr(3, 80),
                tls: false,
                directives: bed.autodiscover_site("mail"),
            },
        ]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        // Nothing answered: the failure is that of https://autodiscover.D.
        assert_failed(&m, &AD, "connect", "connect_refused", "server_service");
        assert_eq!(answers(&m), vec![]);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_redirect_url_answer_is_followed_to_the_settings() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(MAIL_HOST, bed.mail_ip())
            .start()
            .expect("dnsmasq starts");
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_redirect_url(&format!("https://{MAIL_HOST}{AUTODISCOVER_XML}")),
        );
        bed.answers("mail", "mbx6.example.test", &ews_url(MAIL_HOST));
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_site("ad"),
            },
            Site {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: bed.autodiscover_site("mail"),
            },
        ]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        // Found through autodiscover.D, settings from where it pointed.
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx6.example.test"
            )
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_blackholed_domain_does_not_starve_the_autodiscover_host() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx8.example.test", &ews_url(MAIL_HOST));
        // https://D/ is tried first and its packets vanish: connect would hang
        // for the whole probe timeout if the first method could take it all.
        let _drop = DropRule::drop_tcp(bed.block.addr(1, 443));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = Agent::start(&config(
            dns.addr,
            "6s",
            &bed.target("ex", &format!("email: {EMAIL}, checks: [autodiscover]")),
        ))
        .await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx8.example.test"
            )
        );
        let took = m.value("mailprobe_probe_duration_seconds", &AD);
        assert!(took < 6.0, "within the timeout: {took}");
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn an_answer_with_a_byte_order_mark_is_read() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        // .NET writers often start UTF-8 XML with a byte order mark.
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &format!(
                "\u{feff}{}",
                pox_answer("mbx10.example.test", &ews_url(MAIL_HOST))
            ),
        );
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &ews_url(MAIL_HOST),
                "mbx10.example.test"
            )
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn the_answer_is_kept_through_a_failed_round_and_its_return_is_no_change() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx1.example.test", &ews_url(MAIL_HOST));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = Agent::start(&config_every(
            dns.addr,
            "2s",
            "2s",
            &bed.target("ex", &format!("email: {EMAIL}, checks: [autodiscover]")),
        ))
        .await;
        let first = answer(
            "pox_autodiscover_host",
            &ews_url(MAIL_HOST),
            "mbx1.example.test",
        );
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_eq!(answers(&m), first);

        // The mailbox is briefly unknown (an error answer): the round fails, the
        // last answer stays exported, and nothing has changed yet.
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_error(500, "The email address can't be found."),
        );
        let m = wait_until(&agent, "a failed round", |m| {
            m.get("mailprobe_up", &AD) == Some(0.0)
        })
        .await;
        assert_failed(&m, &AD, "response", "protocol_error", "server_service");
        assert_eq!(answers(&m), first);
        assert_eq!(m.value("mailprobe_autodiscover_changes_total", &AD), 0.0);

        // The same answer returns: not a change.
        bed.answers("ad", "mbx1.example.test", &ews_url(MAIL_HOST));
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
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(MAIL_HOST, bed.mail_ip())
            .start()
            .expect("dnsmasq starts");
        // The redirect comes over plain HTTP, which anyone on the path can forge
        // (Outlook asks the user before following it): the host it names must not
        // receive the mailbox password, not even when it asks for it. It asks for
        // Basic (401) and refuses (403) a request that carries a password.
        let redirect = format!(
            "location = {AUTODISCOVER_XML} {{ return 302 https://{MAIL_HOST}{AUTODISCOVER_XML}; }}"
        );
        let guarded = format!(
            "root {};\n\
             location = {AUTODISCOVER_XML} {{\n\
             \x20 if ($http_authorization) {{ return 403; }}\n\
             \x20 add_header WWW-Authenticate 'Basic realm=\"Autodiscover\"' always;\n\
             \x20 return 401;\n\
             }}",
            bed.root("mail").display()
        );
        let _nginx = bed.nginx(vec![
            Site {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            Site {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: guarded,
            },
        ]);
        let password_file = bed.dir.path().join("ex.pass");
        std::fs::write(&password_file, "Aut0discover-Pebble-77a1c3\n").unwrap();
        let agent = Agent::start(&config(
            dns.addr,
            PROBE_TIMEOUT,
            &bed.target(
                "ex",
                &format!(
                    "email: {EMAIL}, checks: [autodiscover], \
                     auth: {{username: {EMAIL}, password_file: \"{}\"}}",
                    password_file.display()
                ),
            ),
        ))
        .await;
        let m = probed(&agent, &[&AD], 1.0).await;
        // 403 is what the guarded host answers a request carrying a password.
        assert_ne!(
            m.get("mailprobe_http_status_code", &AD),
            Some(403.0),
            "the host named by the plain-HTTP redirect received the password"
        );
        // A service asking for credentials is alive; without a JSON endpoint there
        // are no URLs.
        assert_up(&m, &AD);
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 401.0);
        assert_eq!(answers(&m), answer("pox_http_redirect", "", ""));
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn pox_settings_without_an_ews_url_take_it_from_json_and_keep_the_pox_server() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_answer_without_ews("mbx12.example.test"),
        );
        bed.write("ad", AUTODISCOVER_JSON, &json_answer(&ews_url(MAIL_HOST)));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_site("ad"),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        // The URL came from JSON; the server is still the one POX named.
        assert_eq!(
            answers(&m),
            answer("json", &ews_url(MAIL_HOST), "mbx12.example.test")
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn only_the_json_endpoint_answering_is_enough() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(DOMAIN, bed.domain_ip())
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        // No POX service anywhere (404), but the v2 endpoint at autodiscover.D answers.
        bed.write("ad", AUTODISCOVER_JSON, &json_answer(&ews_url(MAIL_HOST)));
        let _nginx = bed.nginx(vec![Site {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: format!(
                "root {};\nlocation = {AUTODISCOVER_JSON} {{ default_type application/json; }}",
                bed.root("ad").display()
            ),
        }]);
        let agent = agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(answers(&m), answer("json", &ews_url(MAIL_HOST), MAIL_HOST));
        agent.stop().await.expect("clean stop");
    })
    .await;
}
