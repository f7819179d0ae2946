//! What Autodiscover servers answer, parsed: the POX XML of MS-OXDSCLI and the v2
//! JSON endpoint. Pure functions over bounded bodies (the HTTP client reads at most
//! 1 MiB), fuzzed in `fuzz/`. Namespaces are not checked: element local names are,
//! which every real server and stand-in gets right.

use roxmltree::{Document, Node, ParsingOptions};

/// The most XML nodes parsed: a real answer has under a hundred.
const MAX_XML_NODES: u32 = 10_000;
/// The longest value kept from an answer (a URL or server name).
const MAX_VALUE_LEN: usize = 512;

/// A POX (plain old XML) Autodiscover answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoxAnswer {
    /// The mailbox's settings.
    Settings(PoxSettings),
    /// Ask again with this address (`<Action>redirectAddr</Action>`).
    RedirectAddr(String),
    /// Ask again at this URL (`<Action>redirectUrl</Action>`).
    RedirectUrl(String),
    /// The server refused (`<Error>` with a code, e.g. 500 for an unknown mailbox).
    Error {
        /// `ErrorCode`.
        code: String,
        /// `Message`.
        message: String,
    },
}

/// The settings an Outlook client uses from a POX answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoxSettings {
    /// `<Server>` of the EXCH protocol (else EXPR): the mailbox server.
    pub server: Option<String>,
    /// `<EwsUrl>` of the EXCH protocol (else EXPR, else any).
    pub ews_url: Option<String>,
    /// The `<Type>`s of the `<Protocol>` sections (`EXCH`, `EXPR`, `WEB`, `EXHTTP`).
    pub protocols: Vec<String>,
}

/// A v2 JSON Autodiscover answer (`/autodiscover/autodiscover.json?Email=…&Protocol=EWS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonAnswer {
    /// `{"Protocol": "EWS", "Url": "https://…/EWS/Exchange.asmx"}`.
    Url {
        /// The protocol asked about.
        protocol: String,
        /// Where it is served.
        url: String,
    },
    /// `{"ErrorCode": "…", "ErrorMessage": "…"}`.
    Error {
        /// `ErrorCode`.
        code: String,
        /// `ErrorMessage`.
        message: String,
    },
}

/// Parses a POX answer.
///
/// # Errors
///
/// A description when the body is not an Autodiscover answer (HTML from a web site,
/// malformed XML, a DTD).
pub fn parse_pox(body: &[u8]) -> Result<PoxAnswer, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8 text".to_owned())?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_XML_NODES,
        ..ParsingOptions::default()
    };
    let document = Document::parse_with_options(text.trim_start_matches('\u{feff}'), options)
        // roxmltree quotes the offending character, which can be a control character
        // from the body: sanitised, as all server text in a message.
        .map_err(|error| {
            format!(
                "the answer is not XML: {}",
                crate::probe::lines::sanitise(&error.to_string(), MAX_VALUE_LEN)
            )
        })?;
    let root = document.root_element();
    if root.tag_name().name() != "Autodiscover" {
        return Err(format!(
            "the XML is not an Autodiscover answer (its root is <{}>)",
            clip(root.tag_name().name())
        ));
    }
    let response = child(root, "Response")
        .ok_or_else(|| "the Autodiscover answer has no <Response>".to_owned())?;
    if let Some(error) = child(response, "Error") {
        return Ok(error_answer(error));
    }
    let account =
        child(response, "Account").ok_or_else(|| "the answer has no <Account>".to_owned())?;
    if let Some(error) = child(account, "Error") {
        return Ok(error_answer(error));
    }
    match child_text(account, "Action").as_deref() {
        Some("redirectAddr") => {
            return child_text(account, "RedirectAddr")
                .map(PoxAnswer::RedirectAddr)
                .ok_or_else(|| "redirectAddr without <RedirectAddr>".to_owned());
        }
        Some("redirectUrl") => {
            return child_text(account, "RedirectUrl")
                .map(PoxAnswer::RedirectUrl)
                .ok_or_else(|| "redirectUrl without <RedirectUrl>".to_owned());
        }
        _ => {}
    }
    let protocols: Vec<(String, Node<'_, '_>)> = account
        .children()
        .filter(|n| n.tag_name().name() == "Protocol")
        .map(|n| (child_text(n, "Type").unwrap_or_default(), n))
        .collect();
    if protocols.is_empty() {
        return Err("the <Account> lists no <Protocol>".to_owned());
    }
    let preferred = |field: &str| {
        ["EXCH", "EXPR"]
            .iter()
            .find_map(|kind| {
                protocols
                    .iter()
                    .filter(|(t, _)| t == kind)
                    .find_map(|(_, n)| child_text(*n, field))
            })
            .or_else(|| protocols.iter().find_map(|(_, n)| child_text(*n, field)))
    };
    Ok(PoxAnswer::Settings(PoxSettings {
        server: preferred("Server"),
        ews_url: preferred("EwsUrl"),
        protocols: protocols
            .iter()
            .map(|(t, _)| t.clone())
            .filter(|t| !t.is_empty())
            .collect(),
    }))
}

/// Parses a v2 JSON answer.
///
/// # Errors
///
/// A description when the body is not such an answer.
pub fn parse_json(body: &[u8]) -> Result<JsonAnswer, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| format!("the answer is not JSON: {error}"))?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(clip)
            .filter(|text| !text.is_empty())
    };
    if let (Some(protocol), Some(url)) = (field("Protocol"), field("Url")) {
        return Ok(JsonAnswer::Url { protocol, url });
    }
    if let Some(code) = field("ErrorCode") {
        return Ok(JsonAnswer::Error {
            code,
            message: field("ErrorMessage").unwrap_or_default(),
        });
    }
    Err("the JSON has neither `Protocol` and `Url` nor `ErrorCode`".to_owned())
}

fn error_answer(error: Node<'_, '_>) -> PoxAnswer {
    PoxAnswer::Error {
        code: child_text(error, "ErrorCode").unwrap_or_else(|| "?".to_owned()),
        message: child_text(error, "Message").unwrap_or_default(),
    }
}

fn child<'a, 'input>(node: Node<'a, 'input>, name: &str) -> Option<Node<'a, 'input>> {
    node.children().find(|n| n.tag_name().name() == name)
}

/// The trimmed text of child `name`, when present and not empty.
fn child_text(node: Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|n| n.text())
        .map(|text| clip(text.trim()))
        .filter(|text| !text.is_empty())
}

/// At most [`MAX_VALUE_LEN`] characters, without control characters.
fn clip(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <User><DisplayName>Probe</DisplayName></User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol><Type>WEB</Type></Protocol>
      <Protocol>
        <Type>EXPR</Type>
        <Server>mail.example.com</Server>
        <EwsUrl>https://mail.example.com/EWS/Exchange.asmx</EwsUrl>
      </Protocol>
      <Protocol>
        <Type>EXCH</Type>
        <Server>ex01.corp.example.com</Server>
        <EwsUrl>https://ex01.corp.example.com/EWS/Exchange.asmx</EwsUrl>
      </Protocol>
    </Account>
  </Response>
</Autodiscover>"#;

    #[test]
    fn settings_prefer_the_exch_protocol() {
        let PoxAnswer::Settings(settings) = parse_pox(SETTINGS.as_bytes()).unwrap() else {
            panic!("settings expected");
        };
        assert_eq!(settings.server.as_deref(), Some("ex01.corp.example.com"));
        assert_eq!(
            settings.ews_url.as_deref(),
            Some("https://ex01.corp.example.com/EWS/Exchange.asmx")
        );
        assert_eq!(settings.protocols, ["WEB", "EXPR", "EXCH"]);
    }

    #[test]
    fn errors_and_redirects_are_answers() {
        let error = r#"<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"><Response><Error Time="1" Id="2"><ErrorCode>500</ErrorCode><Message>The e-mail address cannot be found.</Message></Error></Response></Autodiscover>"#;
        assert_eq!(
            parse_pox(error.as_bytes()),
            Ok(PoxAnswer::Error {
                code: "500".into(),
                message: "The e-mail address cannot be found.".into()
            })
        );
        let redirect = "<Autodiscover><Response><Account><Action>redirectAddr</Action><RedirectAddr>probe@example.net</RedirectAddr></Account></Response></Autodiscover>";
        assert_eq!(
            parse_pox(redirect.as_bytes()),
            Ok(PoxAnswer::RedirectAddr("probe@example.net".into()))
        );
    }

    #[test]
    fn web_pages_and_hostile_xml_are_not_answers() {
        assert!(parse_pox(b"<html><body>Welcome</body></html>").is_err());
        assert!(parse_pox(b"not xml at all").is_err());
        assert!(parse_pox(&[0xff, 0xfe, 0x00]).is_err());
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><Autodiscover>&lol2;</Autodiscover>"#;
        assert!(parse_pox(laughs.as_bytes()).is_err());
    }

    #[test]
    fn json_answers_give_the_url_or_the_error() {
        assert_eq!(
            parse_json(
                br#"{"Protocol":"EWS","Url":"https://outlook.office365.com/EWS/Exchange.asmx"}"#
            ),
            Ok(JsonAnswer::Url {
                protocol: "EWS".into(),
                url: "https://outlook.office365.com/EWS/Exchange.asmx".into()
            })
        );
        assert!(matches!(
            parse_json(br#"{"ErrorCode":"MailboxNotEnabledForRESTAPI","ErrorMessage":"no"}"#),
            Ok(JsonAnswer::Error { .. })
        ));
        assert!(parse_json(b"[1,2,3]").is_err());
        assert!(parse_json(b"<html/>").is_err());
    }

    /// Regression (found by the `autodiscover_pox` fuzz target): the XML error quoted
    /// a control character from the body into the probe's message (and so the log).
    #[test]
    fn parse_pox_never_quotes_a_control_character_from_the_body() {
        let body = b"<Autodiscover><Response><Account><Ac\x13\0tion>";
        let message = parse_pox(body).unwrap_err();
        assert!(message.starts_with("the answer is not XML: "), "{message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
}
