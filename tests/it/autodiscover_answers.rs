//! Exchange Autodiscover: what is made of the answers. Error answers and nothing
//! answering (the failing phase and reason), changes between rounds
//! (`mailprobe_autodiscover_changes_total`), and where the mailbox password may
//! go — against a real nginx and dnsmasq as in `autodiscover.rs`.

use crate::support::agent::{Agent, Metrics, http, within};
use crate::support::binary::Binary;
use crate::support::exchange::{
    AD, AUTODISCOVER_HOST, AUTODISCOVER_XML, DOMAIN, EMAIL, ExchangeBed, MAIL_HOST, PROBE_TIMEOUT,
    ServerBlock, TEST_LIMIT, answer, answers, assert_failed, assert_up, autodiscover_agent, config,
    config_every, ews_url, phases, pox_error, probed, probes, sorted, wait_until, with, zone,
};

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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_failed(&m, &AD, "connect", "connect_refused", "server_service");
        assert_eq!(answers(&m), vec![]);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_failing_autodiscover_host_is_reported_with_its_own_status() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        // The POX service is down (503); the JSON endpoint does not exist (404).
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: format!("location = {AUTODISCOVER_XML} {{ return 503; }}"),
        }]);
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        assert_failed(&m, &AD, "request", "http_status", "server_service");
        // The status of the failure reported (autodiscover.D's), not of a later
        // question that found nothing.
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 503.0);
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
        let agent = autodiscover_agent(&bed, &dns).await;
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
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
            ServerBlock {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            ServerBlock {
                listen: bed.block.addr(3, 80),
                tls: false,
                directives: bed.autodiscover_service("mail"),
            },
        ]);
        let agent = autodiscover_agent(&bed, &dns).await;
        let m = probed(&agent, &[&AD], 1.0).await;
        // Nothing answered: the failure is that of https://autodiscover.D.
        assert_failed(&m, &AD, "connect", "connect_refused", "server_service");
        assert_eq!(answers(&m), vec![]);
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
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives: bed.autodiscover_service("ad"),
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
            ServerBlock {
                listen: bed.block.addr(2, 80),
                tls: false,
                directives: redirect,
            },
            ServerBlock {
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
async fn credentials_never_go_to_an_https_redirect_target_on_another_host() {
    within(TEST_LIMIT, async {
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .a(MAIL_HOST, bed.mail_ip())
            .start()
            .expect("dnsmasq starts");
        // autodiscover.D answers the POST with a 302 to another host (the README:
        // credentials never go to a redirect target on another host). That host
        // asks for Basic (401) and refuses (403) a request carrying a password.
        let redirect = format!(
            "location = {AUTODISCOVER_XML} {{ return 302 https://{MAIL_HOST}{AUTODISCOVER_XML}; }}"
        );
        let guarded = format!(
            "location = {AUTODISCOVER_XML} {{\n\
             \x20 if ($http_authorization) {{ return 403; }}\n\
             \x20 add_header WWW-Authenticate 'Basic realm=\"Autodiscover\"' always;\n\
             \x20 return 401;\n\
             }}"
        );
        let _nginx = bed.nginx(vec![
            ServerBlock {
                listen: bed.block.addr(2, 443),
                tls: true,
                directives: redirect,
            },
            ServerBlock {
                listen: bed.block.addr(3, 443),
                tls: true,
                directives: guarded,
            },
        ]);
        let password_file = bed.dir.path().join("ex.pass");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
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
        assert_ne!(
            m.get("mailprobe_http_status_code", &AD),
            Some(403.0),
            "the host autodiscover.D redirected to received the password"
        );
        // Found through autodiscover.D; the service it points to asks for credentials.
        let (_, debug) = http(agent.addr, "GET", "/debug?target=ex", &[]).await;
        assert_eq!(m.get("mailprobe_up", &AD), Some(1.0), "{debug}");
        assert_up(&m, &AD);
        assert_eq!(m.value("mailprobe_http_status_code", &AD), 401.0);
        assert_eq!(answers(&m), answer("pox_autodiscover_host", "", ""));
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
        let bed = ExchangeBed::new();
        let dns = zone()
            .a(AUTODISCOVER_HOST, bed.autodiscover_ip())
            .start()
            .expect("dnsmasq starts");
        bed.answers("ad", "mbx14.example.test", &ews_url(MAIL_HOST));
        let htpasswd = bed.dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{EMAIL}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        // auth_basic runs before the static handler, so POST needs the login too.
        let directives = format!(
            "auth_basic \"Autodiscover\";\nauth_basic_user_file {};\n{}",
            htpasswd.display(),
            bed.autodiscover_service("ad")
        );
        let _nginx = bed.nginx(vec![ServerBlock {
            listen: bed.block.addr(2, 443),
            tls: true,
            directives,
        }]);
        let mut targets = String::new();
        for (name, password) in [("ex-good", PASSWORD), ("ex-bad", WRONG_PASSWORD)] {
            let file = bed.dir.path().join(format!("{name}.pass"));
            std::fs::write(&file, format!("{password}\n")).unwrap();
            targets.push_str(&bed.target(
                name,
                &format!(
                    "email: {EMAIL}, checks: [autodiscover], \
                     auth: {{username: {EMAIL}, password_file: \"{}\"}}",
                    file.display()
                ),
            ));
        }
        let config_path = bed.dir.path().join("mailprobe.yaml");
        std::fs::write(&config_path, config(dns.addr, PROBE_TIMEOUT, &targets)).unwrap();

        // Everything the agent logs, at the most verbose level, libraries included.
        let (mut binary, addr) =
            tokio::task::block_in_place(|| Binary::start_with(&config_path, "trace"));
        for name in ["ex-good", "ex-bad"] {
            // An exchange check is logged as `TARGET/CHECK`.
            let needle = format!("\"target\":\"{name}/autodiscover\"");
            let is_result = |line: &str| {
                line.contains(&needle)
                    && (line.contains("probe succeeded") || line.contains("probe failed"))
            };
            if !binary.log.iter().any(|line| is_result(line)) {
                tokio::task::block_in_place(|| while !is_result(&binary.wait_line(&needle)) {});
            }
        }
        let (status, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        let m = Metrics::parse(&text);
        let good = [
            ("target", "ex-good"),
            ("protocol", "exchange"),
            ("check", "autodiscover"),
        ];
        let bad = [
            ("target", "ex-bad"),
            ("protocol", "exchange"),
            ("check", "autodiscover"),
        ];
        assert_up(&m, &good);
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
        assert_failed(&m, &bad, "auth", "auth_failed", "server_auth");

        let mut outputs = vec![("/metrics".to_owned(), text)];
        for name in ["ex-good", "ex-bad"] {
            let (status, body) = http(addr, "GET", &format!("/debug?target={name}"), &[]).await;
            assert_eq!(status, 200, "{body}");
            outputs.push((format!("/debug?target={name}"), body));
        }
        binary.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| binary.wait_exit());
        assert_eq!(status.code(), Some(0));
        outputs.push(("the log".to_owned(), binary.log.join("\n")));
        for password in [PASSWORD, WRONG_PASSWORD] {
            use base64::Engine as _;
            let header =
                base64::engine::general_purpose::STANDARD.encode(format!("{EMAIL}:{password}"));
            for form in [password.to_owned(), header] {
                for (place, text) in &outputs {
                    assert!(!text.contains(&form), "a password form appears in {place}");
                }
            }
        }
    })
    .await;
}
