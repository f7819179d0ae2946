//! Render tests: the page and the JSON from one made-up state, escaping included.

use std::sync::Arc;

use super::*;
use crate::export::status::fixtures::{at, judged, tcp_target};
use crate::judge::Fault;

/// A target name and a server message that would run a script if not escaped.
const HOSTILE_NAME: &str = "<script>alert('name')</script>\"x";
const HOSTILE_MESSAGE: &str = "550 <img src=x onerror=alert(1)> & \"quoted\" 'single'";

fn state() -> Status {
    let status = Status::default();
    let good = tcp_target("imap", "mail.example.com", 993);
    let bad = tcp_target(HOSTILE_NAME, "smtp.example.com", 25);
    let pending = tcp_target("pending", "pop.example.com", 995);
    for target in [&good, &bad, &pending] {
        status.register(target);
    }
    for step in 0..40 {
        status.record(&judged(&good, step * 30, 10 + step, Fault::None, ""));
        let fault = if step < 35 {
            Fault::None
        } else {
            Fault::ServerService
        };
        status.record(&judged(&bad, step * 30, 5, fault, HOSTILE_MESSAGE));
    }
    status
}

fn page(refresh: Option<u32>) -> String {
    render_html(&state(), at(40 * 30), refresh).expect("renders")
}

#[test]
fn every_value_from_config_or_servers_is_escaped() {
    let html = page(Some(DEFAULT_REFRESH));
    assert!(!html.contains("<script"), "a script element in {html}");
    assert!(!html.contains("<img"), "an img element in {html}");
    assert!(
        html.contains("<b>&#60;script&#62;alert(&#39;name&#39;)&#60;/script&#62;&#34;x</b>"),
        "the escaped name in {html}"
    );
    assert!(
        html.contains(
            "550 &#60;img src=x onerror=alert(1)&#62; &#38; &#34;quoted&#34; &#39;single&#39;"
        ),
        "{html}"
    );
    // The /debug link's query is URL-encoded, then escaped as an attribute.
    assert!(
        html.contains(
            "href=\"/debug?target=%3Cscript%3Ealert%28%27name%27%29%3C%2Fscript%3E%22x\""
        ),
        "{html}"
    );
}

#[test]
fn the_page_names_every_target_and_says_whose_fault_in_words() {
    let html = page(Some(DEFAULT_REFRESH));
    for name in ["<b>imap</b>", "<b>pending</b>", "<b>&#60;script&#62;"] {
        assert!(html.contains(name), "{name} in {html}");
    }
    assert!(
        html.contains("smtp.example.com refused the connection on port 25: the mail service is down (server side)."),
        "{html}"
    );
    assert!(html.contains("the provider:"), "{html}");
    assert!(html.contains("1 of 3 probes failing."), "{html}");
    assert!(html.contains("Not probed yet."), "{html}");
    // The coloured bar: the failing target's last five results are on the provider's side.
    assert!(
        html.contains("<path class=\"server\" d=\"M100 7h20\"/>"),
        "{html}"
    );
    assert!(
        html.contains("<path class=\"ok\" d=\"M0 7h100\"/>"),
        "{html}"
    );
    assert!(html.contains("<polyline points=\"2,"), "{html}");
    assert!(html.contains("went down</b> (server_service)"), "{html}");
    // The healthy imap target: 40 probes in the hour, all fine.
    assert!(html.contains("100.0 % / 100.0 %"), "{html}");
}

#[test]
fn refresh_is_a_meta_tag_unless_turned_off() {
    assert!(page(Some(30)).contains("<meta http-equiv=\"refresh\" content=\"30\">"));
    let off = page(None);
    assert!(!off.contains("http-equiv"), "{off}");
    assert!(off.contains("Automatic reload is off"), "{off}");
    assert_eq!(refresh_period(None), Ok(Some(DEFAULT_REFRESH)));
    assert_eq!(refresh_period(Some("0")), Ok(None));
    assert_eq!(refresh_period(Some("off")), Ok(None));
    assert_eq!(refresh_period(Some("60")), Ok(Some(60)));
    assert_eq!(refresh_period(Some("1")), Err(BadRefresh));
    assert_eq!(refresh_period(Some("soon")), Err(BadRefresh));
}

#[test]
fn nothing_is_loaded_from_elsewhere() {
    let html = page(Some(DEFAULT_REFRESH));
    for external in ["<link", "<script", "src=\"", "http://", "https://", "url("] {
        assert!(!html.contains(external), "{external} in {html}");
    }
}

#[test]
fn the_json_carries_the_same_data_with_names_intact() {
    let json = render_json(&state(), at(40 * 30)).expect("serialises");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let targets = value["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 3);
    let bad = &targets[0];
    assert_eq!(bad["target"], HOSTILE_NAME);
    assert_eq!(bad["state"], "down");
    assert_eq!(bad["last"]["failure"]["message"], HOSTILE_MESSAGE);
    assert_eq!(bad["last"]["fault"], "server_service");
    assert_eq!(bad["last"]["side"], "the provider");
    assert_eq!(bad["recent"].as_array().map(Vec::len), Some(30));
    assert_eq!(bad["since"], "2023-11-14T22:30:50.000Z");
    assert_eq!(bad["uptime_1h"]["probes"], 40);
    assert_eq!(targets[1]["state"], "pending");
    assert_eq!(targets[1]["last"], serde_json::Value::Null);
    assert_eq!(value["summary"]["down"], 1);
    assert_eq!(value["changes"][0]["change"], "down");
    assert_eq!(value["site"], serde_json::Value::Null);
    assert_eq!(value["agent"]["version"], view::VERSION);
}

#[test]
fn a_site_snapshot_and_a_failed_reload_reach_the_header() {
    use crate::probe::ErrorKind;
    use crate::probe::env::ResolverRole;
    use crate::site::{CanaryHealth, GatewayState, ResolverHealth, SiteContext};

    let status = state();
    status.record_config("/etc/mailprobe/<site>.yaml".into());
    status.record_reload(Some("line 3: unknown key `<x>`".into()));
    status.record_site(Arc::new(SiteContext {
        measured_at: at(1190),
        gateway: GatewayState::NotChecked,
        resolvers: vec![ResolverHealth {
            resolver: "10.0.0.53:53".into(),
            role: ResolverRole::Site,
            up: false,
            duration: std::time::Duration::from_millis(2000),
            error: Some(ErrorKind::DnsTimeout),
        }],
        canaries: vec![CanaryHealth {
            canary: "192.0.2.9:443".into(),
            up: true,
        }],
    }));
    let html = render_html(&status, at(1200), None).expect("renders");
    assert!(
        html.contains("No site resolver answers: the site&#39;s DNS is down."),
        "{html}"
    );
    assert!(html.contains("site resolver 10.0.0.53:53: DOWN"), "{html}");
    assert!(html.contains("canary 192.0.2.9:443: reachable"), "{html}");
    assert!(
        html.contains("/etc/mailprobe/&#60;site&#62;.yaml"),
        "{html}"
    );
    assert!(html.contains("Last reload FAILED"), "{html}");
    assert!(html.contains("unknown key `&#60;x&#62;`"), "{html}");
    let json = render_json(&status, at(1200)).expect("serialises");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["site"]["fault"], "local_dns");
    assert_eq!(value["site"]["resolvers"][0]["reason"], "dns_timeout");
    assert_eq!(value["agent"]["last_reload"]["successful"], false);
}
