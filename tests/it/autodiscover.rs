//! Exchange Autodiscover: how an answer is found. Outlook's order — `https://D/…`,
//! `https://autodiscover.D/…`, the `http://autodiscover.D/…` redirect, the
//! `_autodiscover._tcp.D` SRV record — and the v2 JSON endpoint, against a real
//! nginx on ports 443 and 80 of loopback addresses of each test's own, with names,
//! CNAMEs and the SRV record served by a real dnsmasq. Each test asserts which
//! method answered, with which URLs, on the `check="autodiscover"` series.
//! Failures, changes between rounds and credentials are in `autodiscover_answers.rs`.

use std::net::Ipv4Addr;

use crate::support::agent::{Agent, within};
use crate::support::exchange::{
    AD, AUTODISCOVER_HOST, AUTODISCOVER_JSON, AUTODISCOVER_XML, CHALLENGE_401, DOMAIN, EMAIL,
    ExchangeBed, MAIL_HOST, PROVIDER_AUTODISCOVER_HOST, PROVIDER_DOMAIN, ServerBlock, TEST_LIMIT,
    answer, answers, assert_up, autodiscover_agent, config, ews_url, json_answer, phases,
    pox_answer, pox_answer_without_ews, pox_redirect_addr, pox_redirect_url, probed, sorted, zone,
};
use crate::support::{DropRule, free_port};

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
            ServerBlock {
                listen: bed.block.addr(1, 443),
                tls: true,
                directives: bed.autodiscover_service("d"),
            },
            ServerBlock {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_service("ad"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
            ServerBlock {
                listen: bed.block.addr(1, 443),
                tls: true,
                directives: website.to_owned(),
            },
            ServerBlock {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_service("ad"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
            ServerBlock {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            ServerBlock {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: bed.autodiscover_service("mail"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: (Ipv4Addr::LOCALHOST, port).into(),
            tls: true,
            directives: bed.autodiscover_service("mail"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives,
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        // No POX <Server>: the server is the EWS URL's host.
        assert_eq!(answers(&m), answer("json", &ews_url(MAIL_HOST), MAIL_HOST));
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: format!(
                "root {};\nlocation = {AUTODISCOVER_JSON} {{ default_type application/json; }}",
                bed.root("ad").display()
            ),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(answers(&m), answer("json", &ews_url(MAIL_HOST), MAIL_HOST));
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
            ServerBlock {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_service("ad"),
            },
            ServerBlock {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: bed.autodiscover_service("mail"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
async fn a_redirect_addr_answer_starts_again_for_the_new_address() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .local_domain(PROVIDER_DOMAIN)
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(PROVIDER_AUTODISCOVER_HOST, bed.provider_ip())
            .start()
            .expect("dnsmasq starts");
        // The old domain's service knows the mailbox moved to another address.
        bed.write(
            "ad",
            AUTODISCOVER_XML,
            &pox_redirect_addr(&format!("probe@{PROVIDER_DOMAIN}")),
        );
        let provider_ews = ews_url("outlook.provider.test");
        bed.answers("provider", "mbx13.provider.test", &provider_ews);
        let _nginx = bed.nginx(vec![
            ServerBlock {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: bed.autodiscover_service("ad"),
            },
            ServerBlock {
                listen: bed.block.addr(4, 443),
                tls: true,
                directives: bed.autodiscover_service("provider"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_up(&m, &AD);
        assert_eq!(
            answers(&m),
            answer(
                "pox_autodiscover_host",
                &provider_ews,
                "mbx13.provider.test"
            )
        );
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
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
