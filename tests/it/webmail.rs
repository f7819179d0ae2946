//! Webmail (`protocol: https`) against a real nginx with a certificate from a test
//! CA, its name resolved by a real dnsmasq. One test per outcome, each asserting the
//! failing phase and reason (or success) and the HTTP facts on `/metrics`. Logins
//! are in `webmail_login.rs`.

use crate::support::agent::{Agent, Metrics, http, within};
use crate::support::exchange::{
    PROBE_TIMEOUT, TEST_LIMIT, WEBMAIL_HOST, assert_failed, assert_up, config_every, phases,
    probed, sorted, wait_until, with,
};
use crate::support::web::{EXPECT_BODY, MIB, PAGE, W, Web, expect_body};

/// No series of `target` has a `check` label: that label is for exchange targets.
fn assert_no_check_label(m: &Metrics, target: &str) {
    let labelled: Vec<_> = m
        .samples
        .keys()
        .filter(|s| s.labels.get("target").map(String::as_str) == Some(target))
        .filter(|s| s.labels.contains_key("check"))
        .collect();
    assert_eq!(labelled, Vec::<&crate::support::agent::Series>::new());
}

/// `count` locations `/r1` … `/rN` answering redirects of every kind in turn, the
/// last to `/final`, which serves the logon page.
fn redirect_chain(count: usize) -> String {
    let codes = [301, 302, 303, 307, 308];
    let mut directives = String::new();
    for hop in 1..=count {
        let next = if hop == count {
            "/final".to_owned()
        } else {
            format!("/r{}", hop + 1)
        };
        // Absolute and relative Location headers both occur in the wild. nginx makes
        // a relative one absolute unless told not to.
        let (location, absolute) = if hop % 2 == 0 {
            (format!("https://$host:$server_port{next}"), "on")
        } else {
            (next, "off")
        };
        directives.push_str(&format!(
            "location = /r{hop} {{ absolute_redirect {absolute}; return {} {location}; }}\n",
            codes[hop % codes.len()]
        ));
    }
    directives.push_str("location = /final { try_files /index.html =404; }\n");
    directives
}

#[tokio::test]
async fn a_page_with_the_expected_status_and_body_is_up() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx("");
        let keys = format!("expect_status: [200], {}", expect_body());
        let m = web.probe_webmail(&nginx, "/", &keys).await;
        assert_up(&m, &W);
        assert_eq!(
            phases(&m, &W),
            sorted(&["resolve", "connect", "tls", "request", "response"])
        );
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 0.0);
        assert!(m.value("mailprobe_tls_cert_not_after_timestamp_seconds", &W) > 1.7e9);
        assert_eq!(
            m.value(
                "mailprobe_tls_info",
                &with(&W, ("issuer", "mailprobe test CA"))
            ),
            1.0
        );
        assert_no_check_label(&m, "webmail");
    })
    .await;
}

#[tokio::test]
async fn a_status_outside_expect_status_fails_in_request_with_http_status() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx(
            "location = /down { return 503; }\n\
             location = /moved-away { return 404; }",
        );
        let targets = [
            // 503 is not in the list.
            web.target("webmail", &nginx, "/down", "expect_status: [200]"),
            // No list: any 2xx will do, and 404 is not one.
            web.target("default", &nginx, "/moved-away", ""),
            // The list decides, even for a status that is not 2xx.
            web.target("listed", &nginx, "/down", "expect_status: [200, 503]"),
        ];
        let default = [("target", "default"), ("protocol", "https")];
        let listed = [("target", "listed"), ("protocol", "https")];
        let m = web
            .probe(PROBE_TIMEOUT, &targets, &[&W, &default, &listed])
            .await;
        assert_failed(&m, &W, "request", "http_status", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 503.0);
        assert!(phases(&m, &W).contains(&"request".to_owned()));
        assert_failed(&m, &default, "request", "http_status", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &default), 404.0);
        assert_up(&m, &listed);
        assert_eq!(m.value("mailprobe_http_status_code", &listed), 503.0);
    })
    .await;
}

#[tokio::test]
async fn a_body_without_the_expected_text_fails_in_response_with_body_mismatch() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file(
            "index.html",
            b"<html><body>This site is under maintenance</body></html>\n",
        );
        let nginx = web.nginx("");
        let m = web.probe_webmail(&nginx, "/", &expect_body()).await;
        assert_failed(&m, &W, "response", "body_mismatch", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        assert_eq!(
            phases(&m, &W),
            sorted(&["resolve", "connect", "tls", "request", "response"])
        );
    })
    .await;
}

#[tokio::test]
async fn a_body_slower_than_the_timeout_fails_in_response_with_timeout() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        // 256 KiB at 1 KiB/s: the headers come at once, the body takes minutes.
        web.file("slow.html", &vec![b'x'; 256 * 1024]);
        let nginx = web.nginx("location = /slow.html { limit_rate 1k; }");
        let target = web.target("webmail", &nginx, "/slow.html", "expect_body: \"never\"");
        let m = web.probe("2s", &[target], &[&W]).await;
        assert_failed(&m, &W, "response", "timeout", "server_service");
        // The status line came in time: the request phase succeeded with a 200.
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        let probe = m.value("mailprobe_probe_duration_seconds", &W);
        assert!(
            (1.5..4.0).contains(&probe),
            "the probe ends at its 2 s timeout, not when the body ends: {probe}"
        );
    })
    .await;
}

/// 3 MiB of filler lines, with `head` at the start and `tail` past the first 2 MiB.
fn big_body(head: &str, tail: &str) -> Vec<u8> {
    let line = "filler filler filler filler filler filler filler filler filler\n";
    let mut body = head.as_bytes().to_vec();
    while body.len() < 2 * MIB {
        body.extend_from_slice(line.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    while body.len() < 3 * MIB {
        body.extend_from_slice(line.as_bytes());
    }
    body
}

#[tokio::test]
async fn a_body_over_one_mib_is_up_when_the_text_is_in_its_first_mib() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("big.html", &big_body(PAGE, "END-OF-PAGE\n"));
        // Slow after the first 1.5 MiB: a probe that read the whole 3 MiB would
        // need over 25 s and hit its timeout; one that stops at 1 MiB is quick.
        let nginx = web.nginx("location = /big.html { limit_rate_after 1536k; limit_rate 64k; }");
        let targets = [
            web.target("webmail", &nginx, "/big.html", &expect_body()),
            web.target("no-expect", &nginx, "/big.html", ""),
        ];
        let no_expect = [("target", "no-expect"), ("protocol", "https")];
        let m = web.probe(PROBE_TIMEOUT, &targets, &[&W, &no_expect]).await;
        assert_up(&m, &W);
        assert_up(&m, &no_expect);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
    })
    .await;
}

/// Filler, then `text` starting at byte `start`, then filler to 2 MiB.
fn text_from(start: usize, text: &str) -> Vec<u8> {
    let mut body = vec![b'.'; start];
    body.extend_from_slice(text.as_bytes());
    body.resize(2 * MIB, b'.');
    body
}

#[tokio::test]
async fn the_body_limit_is_exactly_one_mib() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        let len = EXPECT_BODY.len();
        // The text's last byte is the 1 MiB-th byte: inside the limit.
        web.file("ends-at-limit.html", &text_from(MIB - len, EXPECT_BODY));
        // One byte later: its last byte is cut off.
        web.file("crosses-limit.html", &text_from(MIB - len + 1, EXPECT_BODY));
        let nginx = web.nginx("");
        let expect = expect_body();
        let targets = [
            web.target("webmail", &nginx, "/ends-at-limit.html", &expect),
            web.target("crosses", &nginx, "/crosses-limit.html", &expect),
        ];
        let crosses = [("target", "crosses"), ("protocol", "https")];
        let m = web.probe(PROBE_TIMEOUT, &targets, &[&W, &crosses]).await;
        assert_up(&m, &W);
        assert_failed(&m, &crosses, "response", "body_mismatch", "server_service");
    })
    .await;
}

#[tokio::test]
async fn text_only_beyond_the_first_mib_is_a_body_mismatch() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("big.html", &big_body("<html><body>\n", EXPECT_BODY));
        let nginx = web.nginx("location = /big.html { limit_rate_after 1536k; limit_rate 64k; }");
        let m = web.probe_webmail(&nginx, "/big.html", &expect_body()).await;
        // Not a timeout: the probe stops reading at 1 MiB and judges what it has.
        assert_failed(&m, &W, "response", "body_mismatch", "server_service");
    })
    .await;
}

/// Filler up to `offset`, then `text` (so it straddles `offset - 3`), then filler.
fn text_at(offset: usize, text: &str) -> Vec<u8> {
    let mut body = vec![b'.'; offset - 3];
    body.extend_from_slice(text.as_bytes());
    body.extend(std::iter::repeat_n(b'.', 4096));
    body
}

#[tokio::test]
async fn text_across_read_and_chunk_boundaries_is_found() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        // Around the sizes a reader or a TLS record (16 KiB) splits a body at.
        let offsets = [4096, 8192, 16384, 32768, 65536];
        for offset in offsets {
            web.file(&format!("at-{offset}.html"), &text_at(offset, EXPECT_BODY));
        }
        // sub_filter drops Content-Length: nginx sends these chunked.
        let nginx = web.nginx(
            "location /chunked/ {\n\
             \x20 alias ROOT/;\n\
             \x20 sub_filter_types *;\n\
             \x20 sub_filter 'no-such-text' 'x';\n\
             }"
            .replace("ROOT", &web.www().display().to_string())
            .as_str(),
        );
        let mut targets = Vec::new();
        let mut names = Vec::new();
        for offset in offsets {
            for (kind, prefix) in [("plain", ""), ("chunked", "/chunked")] {
                let name = format!("{kind}-{offset}");
                let path = format!("{prefix}/at-{offset}.html");
                targets.push(web.target(&name, &nginx, &path, &expect_body()));
                names.push(name);
            }
        }
        let series: Vec<[(&str, &str); 2]> = names
            .iter()
            .map(|n| [("target", n.as_str()), ("protocol", "https")])
            .collect();
        let wanted: Vec<&[(&str, &str)]> = series.iter().map(|s| &s[..]).collect();
        let m = web.probe(PROBE_TIMEOUT, &targets, &wanted).await;
        for s in &series {
            assert_up(&m, s);
        }
    })
    .await;
}

#[tokio::test]
async fn a_page_that_is_not_utf8_or_is_cut_inside_a_character_still_matches() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        // An ISO-8859-1 page ("Été" in Latin-1 bytes), as old webmail front ends send.
        let mut latin1 = b"<html><head><title>\xc9t\xe9</title></head><body>".to_vec();
        latin1.extend_from_slice(EXPECT_BODY.as_bytes());
        latin1.extend_from_slice(b"</body></html>\n");
        web.file("latin1.html", &latin1);
        // A UTF-8 page whose 1 MiB cut falls inside a two-byte character.
        let mut cut = format!("<html><body>{EXPECT_BODY}").into_bytes();
        cut.resize(MIB - 1, b' ');
        while cut.len() < MIB + 4096 {
            cut.extend_from_slice("é".as_bytes());
        }
        web.file("cut.html", &cut);
        let nginx = web.nginx("");
        let expect = expect_body();
        let targets = [
            web.target("webmail", &nginx, "/latin1.html", &expect),
            web.target("cut", &nginx, "/cut.html", &expect),
        ];
        let cut_series = [("target", "cut"), ("protocol", "https")];
        let m = web.probe(PROBE_TIMEOUT, &targets, &[&W, &cut_series]).await;
        assert_up(&m, &W);
        assert_up(&m, &cut_series);
    })
    .await;
}

#[tokio::test]
async fn ten_redirects_of_every_kind_are_followed() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx(&redirect_chain(10));
        let keys = format!("expect_status: [200], {}", expect_body());
        let agent = web
            .agent(
                PROBE_TIMEOUT,
                &[web.target("webmail", &nginx, "/r1", &keys)],
            )
            .await;
        let m = probed(&agent, &[&W], 1.0).await;
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 10.0);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        assert_eq!(
            phases(&m, &W),
            sorted(&["resolve", "connect", "tls", "request", "response"])
        );
        let (status, debug) = http(agent.addr, "GET", "/debug?target=webmail", &[]).await;
        assert_eq!(status, 200, "{debug}");
        // Every hop's phases add up: /debug lists each hop's phase times, the
        // metric is their sum (eleven requests, eleven TLS handshakes).
        for phase in ["resolve", "connect", "tls", "request"] {
            let hops = hop_times_ms(&debug, phase);
            assert_eq!(hops.len(), 11, "{phase}: one per request:\n{debug}");
            let metric = m.value(
                "mailprobe_phase_duration_seconds",
                &with(&W, ("phase", phase)),
            );
            let sum: f64 = hops.iter().sum();
            assert!(
                (metric * 1000.0 - sum).abs() < 0.1,
                "{phase}: metric {metric} s, hops {hops:?} ms"
            );
        }
        // Each hop is kept in the probe's log at /debug.
        for hop in ["/r1", "/r5", "/r10", "/final"] {
            assert!(debug.contains(hop), "{hop} missing from /debug:\n{debug}");
        }
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn eleven_redirects_fail_in_request_with_http_status() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx(&redirect_chain(11));
        let m = web.probe_webmail(&nginx, "/r1", "").await;
        assert_failed(&m, &W, "request", "http_status", "server_service");
        assert_eq!(m.value("mailprobe_http_redirects", &W), 10.0);
        let status = m.value("mailprobe_http_status_code", &W);
        assert!((300.0..400.0).contains(&status), "{status}");
    })
    .await;
}

/// The times in milliseconds of every `phase NAME  1.234 ms` line of a `/debug` page.
fn hop_times_ms(debug: &str, phase: &str) -> Vec<f64> {
    debug
        .lines()
        .filter_map(|line| line.trim().strip_prefix("phase "))
        .filter_map(|rest| rest.strip_prefix(phase))
        .filter_map(|rest| rest.trim().strip_suffix(" ms"))
        .map(|ms| ms.trim().parse().expect("a time in ms"))
        .collect()
}

#[tokio::test]
async fn server_name_verifies_a_url_that_names_an_address() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx("");
        let target = |name: &str, server_name: &str| {
            format!(
                "  - {{name: {name}, protocol: https, url: \"https://127.0.0.1:{}/\", \
                 ca_file: \"{}\"{server_name}}}\n",
                nginx.addr.port(),
                web.pki.ca_pem.display()
            )
        };
        let targets = [
            target("webmail", &format!(", server_name: {WEBMAIL_HOST}")),
            // Without it the certificate is checked against 127.0.0.1.
            target("by-address", ""),
        ];
        let by_address = [("target", "by-address"), ("protocol", "https")];
        let m = web.probe(PROBE_TIMEOUT, &targets, &[&W, &by_address]).await;
        assert_up(&m, &W);
        // An address needs no lookup: no resolve phase.
        assert_eq!(
            phases(&m, &W),
            sorted(&["connect", "tls", "request", "response"])
        );
        assert_failed(&m, &by_address, "tls", "cert_name_mismatch", "server_tls");
    })
    .await;
}

#[tokio::test]
async fn the_status_of_an_earlier_round_is_not_kept_when_the_server_goes_away() {
    within(TEST_LIMIT, async {
        let web = Web::with_page();
        let nginx = web.nginx("");
        let target = web.target("webmail", &nginx, "/", "");
        let agent = Agent::start(&config_every(web.dns.addr, "2s", "2s", &target)).await;
        let m = probed(&agent, &[&W], 1.0).await;
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);

        // The server goes away: the next round has no HTTP status at all.
        drop(nginx);
        let m = wait_until(&agent, "a failed round", |m| {
            m.get("mailprobe_up", &W) == Some(0.0)
        })
        .await;
        assert_failed(&m, &W, "connect", "connect_refused", "server_service");
        assert_ne!(
            m.get("mailprobe_http_status_code", &W),
            Some(200.0),
            "the last probe got no status: 200 is the previous round's"
        );
        agent.stop().await.expect("clean stop");
    })
    .await;
}
