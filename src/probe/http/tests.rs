//! The HTTP client's own rules: challenge parsing, where credentials go, URLs,
//! refused redirects, the endpoint of each hop.

use super::*;

#[test]
fn challenge_schemes_are_read_from_lists_and_parameters() {
    assert_eq!(challenge_schemes("Negotiate"), ["Negotiate"]);
    assert_eq!(challenge_schemes("Negotiate, NTLM"), ["Negotiate", "NTLM"]);
    assert_eq!(
        challenge_schemes("Basic realm=\"mail\", charset=\"UTF-8\""),
        ["Basic"]
    );
    assert_eq!(
        challenge_schemes("Bearer authorization_uri=\"https://login\", Basic realm=\"x\""),
        ["Bearer", "Basic"]
    );
    assert!(challenge_schemes("").is_empty());
    assert!(challenge_schemes("realm=\"x\"").is_empty());
}

#[test]
fn credentials_go_only_to_the_configured_https_origin() {
    let endpoint = Endpoint {
        host: "mail.example.com".into(),
        port: 443,
        tls: TlsMode::Implicit,
        server_name: "mail.example.com".into(),
        extra_roots: Vec::new().into(),
        auth: None,
    };
    let url = |text| Url::parse(text).unwrap();
    assert!(same_origin(&url("https://MAIL.example.com/owa"), &endpoint));
    assert!(same_origin(
        &url("https://mail.example.com:443/"),
        &endpoint
    ));
    assert!(!same_origin(&url("http://mail.example.com/"), &endpoint));
    assert!(!same_origin(
        &url("https://mail.example.com:8443/"),
        &endpoint
    ));
    assert!(!same_origin(&url("https://login.example.net/"), &endpoint));
}

#[test]
fn https_urls_bracket_ipv6_and_leave_out_port_443() {
    let url = |host, port| https_url(host, port, "/owa/").map(|u| u.to_string());
    assert_eq!(
        url("mail.example.com", 443).as_deref(),
        Some("https://mail.example.com/owa/")
    );
    assert_eq!(
        url("2001:db8::1", 8443).as_deref(),
        Some("https://[2001:db8::1]:8443/owa/")
    );
    assert_eq!(url("bad host", 443), None);
}

/// Issue 16: a redirect into the agent's own host or a metadata address is
/// refused, unless the first hop was there too.
#[test]
fn issue_16_redirects_to_loopback_and_link_local_are_refused() {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let public = Some(ip("192.0.2.10"));
    for refused in [
        "127.0.0.1",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
    ] {
        assert!(forbidden_kind(ip(refused), public).is_some(), "{refused}");
    }
    assert_eq!(forbidden_kind(ip("198.51.100.7"), public), None);
    assert_eq!(forbidden_kind(ip("127.0.0.2"), Some(ip("127.0.0.1"))), None);
    assert!(forbidden_kind(ip("169.254.169.254"), Some(ip("127.0.0.1"))).is_some());
}

#[test]
fn a_hop_to_another_host_verifies_that_host() {
    let endpoint = Endpoint {
        host: "192.0.2.1".into(),
        port: 8443,
        tls: TlsMode::Implicit,
        server_name: "mail.example.com".into(),
        extra_roots: Vec::new().into(),
        auth: None,
    };
    let same = hop_endpoint(&Url::parse("https://192.0.2.1:8443/x").unwrap(), &endpoint);
    assert_eq!(
        (same.server_name.as_str(), same.port),
        ("mail.example.com", 8443)
    );
    let other = hop_endpoint(&Url::parse("http://other.example.com/").unwrap(), &endpoint);
    assert_eq!(
        (other.server_name.as_str(), other.port, other.tls),
        ("other.example.com", 80, TlsMode::None)
    );
}
