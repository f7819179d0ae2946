//! Where Autodiscover requests go and what they carry: the POX request body, the URLs
//! a method builds, the SRV lookup, and each method's share of the time.

use std::cmp::Reverse;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::time::Instant;
use url::Url;

use super::RESPONSE_SCHEMA;
use crate::probe::dial::dns_error;
use crate::probe::http;
use crate::probe::{ErrorKind, ProbeError};

/// The POX request body for `email`.
pub(super) fn pox_request(email: &str) -> Bytes {
    let email = email
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    Bytes::from(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\n\
         <Request><EMailAddress>{email}</EMailAddress>\
         <AcceptableResponseSchema>{RESPONSE_SCHEMA}</AcceptableResponseSchema></Request>\n\
         </Autodiscover>\n"
    ))
}

/// [`http::https_url`] for a name from the configuration or DNS; a name no URL can
/// hold becomes `invalid.invalid` (RFC 6761: never resolves), so that method fails in
/// `resolve` like any other name that leads nowhere.
pub(super) fn https_url(host: &str, port: u16, path: &str) -> Url {
    http::https_url(host, port, path)
        .or_else(|| http::https_url("invalid.invalid", 443, path))
        .expect("a fixed URL parses")
}

/// `path` on the same scheme, host and port as `url`.
pub(super) fn same_host(url: &Url, path: &str) -> Url {
    let mut url = url.clone();
    url.set_path(path);
    url.set_query(None);
    url
}

pub(super) fn host_of(url: &str) -> Option<String> {
    Url::parse(url).ok().map(|u| crate::config::url_host(&u))
}

/// A deadline giving the current step `1/parts` of the time left.
pub(super) fn share_of(deadline: Instant, parts: usize) -> Instant {
    let now = Instant::now();
    let left = deadline.saturating_duration_since(now);
    now + left / u32::try_from(parts.max(1)).unwrap_or(1)
}

/// The SRV record's target with the lowest priority (highest weight among equals).
pub(super) async fn srv_target(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(String, u16), ProbeError> {
    let question = format!("{} SRV", name.trim_end_matches('.'));
    let lookup = resolver
        .lookup(name, RecordType::SRV)
        .await
        .map_err(|error| dns_error(&error, &question, None))?;
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(srv),
            _ => None,
        })
        .filter(|srv| !srv.target.is_root())
        .min_by_key(|srv| (srv.priority, Reverse(srv.weight)))
        .map(|srv| {
            (
                srv.target.to_ascii().trim_end_matches('.').to_owned(),
                srv.port,
            )
        })
        .ok_or_else(|| ProbeError::new(ErrorKind::DnsNodata, format!("{question} has no target")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::autodiscover::{JSON_PATH, Method, POX_PATH};
    use std::time::Duration;

    #[test]
    fn the_pox_request_escapes_the_address() {
        let body = pox_request("a&b<c>@example.com");
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("<EMailAddress>a&amp;b&lt;c&gt;@example.com</EMailAddress>"));
        assert!(text.contains(RESPONSE_SCHEMA));
    }

    #[test]
    fn urls_leave_out_the_default_port() {
        assert_eq!(
            https_url("autodiscover.example.com", 443, POX_PATH).as_str(),
            "https://autodiscover.example.com/autodiscover/autodiscover.xml"
        );
        assert_eq!(
            https_url("mail.example.com", 8443, POX_PATH).as_str(),
            "https://mail.example.com:8443/autodiscover/autodiscover.xml"
        );
        let json = same_host(
            &Url::parse("https://mail.example.com:8443/autodiscover/autodiscover.xml?x=1").unwrap(),
            JSON_PATH,
        );
        assert_eq!(
            json.as_str(),
            "https://mail.example.com:8443/autodiscover/autodiscover.json"
        );
    }

    #[test]
    fn method_labels_are_stable() {
        let labels: Vec<&str> = Method::POX.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            labels,
            [
                "pox_domain",
                "pox_autodiscover_host",
                "pox_http_redirect",
                "pox_srv"
            ]
        );
        assert_eq!(Method::Json.as_str(), "json");
    }

    #[test]
    fn a_share_never_exceeds_the_time_left() {
        let deadline = Instant::now() + Duration::from_secs(10);
        assert!(share_of(deadline, 5) <= Instant::now() + Duration::from_secs(2));
        assert!(share_of(deadline, 0) <= deadline);
    }
}
