//! Helpers for the webmail and Exchange tests: loopback addresses of their own for
//! the fixed ports Autodiscover uses (443 and 80), the nginx snippets of an
//! Exchange stand-in, Autodiscover answers, and metric assertions that know
//! about the `check` label of exchange targets.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::agent::{Agent, Metrics, RESULT_DEADLINE};
use super::{Dnsmasq, DnsmasqBuilder};

/// The mailbox every Exchange test asks Autodiscover about.
pub const EMAIL: &str = "probe@example.test";
/// The mailbox's domain, `D` in Outlook's order of Autodiscover attempts.
pub const DOMAIN: &str = "example.test";
/// `autodiscover.D`.
pub const AUTODISCOVER_HOST: &str = "autodiscover.example.test";
/// The Exchange front end the answers point to.
pub const MAIL_HOST: &str = "mail.example.test";
/// Every name a test certificate must cover.
pub const CERT_NAMES: [&str; 6] = [
    DOMAIN,
    AUTODISCOVER_HOST,
    MAIL_HOST,
    WEBMAIL_HOST,
    OTHER_HOST,
    PROVIDER_AUTODISCOVER_HOST,
];
/// Another provider's domain, for answers that send the client to another address.
pub const PROVIDER_DOMAIN: &str = "provider.test";
/// `autodiscover.` of [`PROVIDER_DOMAIN`].
pub const PROVIDER_AUTODISCOVER_HOST: &str = "autodiscover.provider.test";
/// The webmail page's host.
pub const WEBMAIL_HOST: &str = "webmail.example.test";
/// Another origin, for redirects that leave the webmail host.
pub const OTHER_HOST: &str = "other.example.test";

/// `WWW-Authenticate: Negotiate` and `NTLM` on a 401, as Exchange answers
/// anonymous requests to EWS, ActiveSync and Autodiscover. `always` because
/// nginx adds headers to 2xx/3xx only by default.
pub const CHALLENGE_401: &str = "add_header WWW-Authenticate Negotiate always;\n\
                                 add_header WWW-Authenticate NTLM always;\n\
                                 return 401;";

/// Serves the file under `root` for POST too: nginx answers POST to a static file
/// with 405, and `error_page 405 =200 $uri` turns that into the file with 200.
pub fn post_serves_file(path: &str) -> String {
    format!("location = {path} {{\n  default_type text/xml;\n  error_page 405 =200 $uri;\n}}")
}

/// The `Response` element's namespace in answers of the Exchange 2007+
/// "outlook" response schema.
const OUTLOOK_SCHEMA: &str =
    " xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\"";

/// A POX Autodiscover document whose `Response` element (with attributes
/// `response_attrs`) holds `body` (whole lines).
fn pox_document(response_attrs: &str, body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response{response_attrs}>
{body}  </Response>
</Autodiscover>
"#
    )
}

/// A POX Autodiscover answer (Exchange 2007+ "outlook" response schema) with
/// one EXCH and one EXPR protocol section.
pub fn pox_answer(server: &str, ews_url: &str) -> String {
    pox_document(
        OUTLOOK_SCHEMA,
        &format!(
            r#"    <User>
      <DisplayName>Probe</DisplayName>
      <EmailAddress>{EMAIL}</EmailAddress>
    </User>
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>EXCH</Type>
        <Server>{server}</Server>
        <ServerDN>/o=Example/ou=Exchange Administrative Group/cn=Configuration/cn=Servers/cn={server}</ServerDN>
        <ASUrl>{ews_url}</ASUrl>
        <EwsUrl>{ews_url}</EwsUrl>
        <OOFUrl>{ews_url}</OOFUrl>
      </Protocol>
      <Protocol>
        <Type>EXPR</Type>
        <Server>{MAIL_HOST}</Server>
        <SSL>On</SSL>
        <AuthPackage>Negotiate</AuthPackage>
        <EwsUrl>{ews_url}</EwsUrl>
      </Protocol>
    </Account>
"#
        ),
    )
}

/// A POX Autodiscover answer naming the mailbox server but no EWS URL, as older
/// or trimmed-down configurations send (Outlook Anywhere only).
pub fn pox_answer_without_ews(server: &str) -> String {
    pox_document(
        OUTLOOK_SCHEMA,
        &format!(
            r#"    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
      <Protocol>
        <Type>EXCH</Type>
        <Server>{server}</Server>
      </Protocol>
    </Account>
"#
        ),
    )
}

/// A POX Autodiscover error answer, as Exchange sends for an unknown mailbox.
pub fn pox_error(code: u16, message: &str) -> String {
    pox_document(
        "",
        &format!(
            r#"    <Error Time="15:02:11.1234567" Id="2716480123">
      <ErrorCode>{code}</ErrorCode>
      <Message>{message}</Message>
      <DebugData />
    </Error>
"#
        ),
    )
}

/// A POX Autodiscover answer sending the client on with `action`
/// (`redirectAddr`, `redirectUrl`) to `target`.
fn pox_redirect(action: &str, target: &str) -> String {
    let element = format!("R{}", &action[1..]);
    pox_document(
        OUTLOOK_SCHEMA,
        &format!(
            "    <Account>\n      <Action>{action}</Action>\n      \
             <{element}>{target}</{element}>\n    </Account>\n"
        ),
    )
}

/// A POX Autodiscover answer sending the client on to another mail address
/// (`redirectAddr`), as after a migration to another provider.
pub fn pox_redirect_addr(address: &str) -> String {
    pox_redirect("redirectAddr", address)
}

/// A POX Autodiscover answer sending the client on to another Autodiscover URL
/// (`redirectUrl`), as a hosted front end does for a mailbox it does not hold.
pub fn pox_redirect_url(url: &str) -> String {
    pox_redirect("redirectUrl", url)
}

/// The v2 JSON Autodiscover answer for `Protocol=EWS`.
pub fn json_answer(ews_url: &str) -> String {
    format!(r#"{{"Protocol":"EWS","Url":"{ews_url}"}}"#)
}

/// `https://HOST/EWS/Exchange.asmx`.
pub fn ews_url(host: &str) -> String {
    format!("https://{host}/EWS/Exchange.asmx")
}

/// A /24 of loopback addresses no other test of this run uses, with ports 80
/// and 443 free on its first addresses.
/// Why: Autodiscover is tried on fixed ports (443, and 80 for the redirect), so
/// parallel tests — of this binary, or of another test run on the machine —
/// cannot share an address; all of 127.0.0.0/8 is local on Linux, so each test
/// takes addresses of its own instead of ports of its own.
pub struct LoopbackBlock {
    prefix: [u8; 3],
}

/// How many addresses of a block a test may use (`.1` to `.HOSTS`).
const HOSTS: u8 = 8;

impl LoopbackBlock {
    /// Picks a `127.X.Y.0/24` no earlier call of this process picked (so tests
    /// of one binary never meet), skipping a block where 80 or 443 is taken on
    /// any of its hosts.
    pub fn new() -> LoopbackBlock {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        // 127.160.0.0 – 127.223.255.255: clear of 127.0.0.x, which other tests use.
        // The process id picks where this process starts counting among the
        // 64 × 254 blocks, so processes running at once (two suites, or one
        // process per test) rarely meet; ports_free() settles the rest.
        const BLOCKS: u32 = 64 * 254;
        let start = std::process::id() % BLOCKS;
        loop {
            let n = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
            assert!(n < BLOCKS, "out of loopback blocks");
            let index = (start + n) % BLOCKS;
            let block = LoopbackBlock {
                prefix: [127, 160 + (index / 254) as u8, 1 + (index % 254) as u8],
            };
            if block.ports_free() {
                return block;
            }
        }
    }

    /// The block's `n`th address, `1..=8`.
    pub fn ip(&self, n: u8) -> Ipv4Addr {
        assert!((1..=HOSTS).contains(&n), "host {n} outside the block");
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, n)
    }

    /// `ip(n):port`.
    pub fn addr(&self, n: u8, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(n).into(), port)
    }

    fn ports_free(&self) -> bool {
        (1..=HOSTS).all(|n| {
            [80, 443]
                .iter()
                .all(|&port| TcpListener::bind(self.addr(n, port)).is_ok())
        })
    }
}

impl Default for LoopbackBlock {
    fn default() -> Self {
        Self::new()
    }
}

/// A configuration probing `targets` once an hour (so each test sees the first
/// round) with `timeout`, resolving names through `resolver` only.
pub fn config(resolver: SocketAddr, timeout: &str, targets: &str) -> String {
    config_every(resolver, "1h", timeout, targets)
}

/// [`config`] with a chosen interval.
pub fn config_every(resolver: SocketAddr, interval: &str, timeout: &str, targets: &str) -> String {
    super::agent::config_with(resolver, interval, timeout, targets)
}

/// Waits until a scrape of `agent` satisfies `done`, scraping after every probe
/// result (of any target or check), and returns that scrape. Why: the results of
/// an exchange target's checks arrive in no fixed order, and waiting on the
/// metrics themselves needs no knowledge of how a check's result is named.
pub async fn wait_until(agent: &Agent, what: &str, done: impl Fn(&Metrics) -> bool) -> Metrics {
    // Subscribe before the first scrape, so no result between the two is missed
    // (the agent records metrics before it announces a result).
    let mut results = agent.control.subscribe();
    let wait = async {
        loop {
            let m = agent.metrics().await;
            if done(&m) {
                return m;
            }
            match results.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("the agent stopped while waiting for {what}"),
            }
        }
    };
    match tokio::time::timeout(RESULT_DEADLINE, wait).await {
        Ok(m) => m,
        Err(_) => {
            let m = agent.metrics().await;
            panic!(
                "not within {RESULT_DEADLINE:?}: {what}\n{}",
                relevant(&m.text)
            )
        }
    }
}

/// Waits until every series in `labels` has been probed at least `rounds` times.
pub async fn probed(agent: &Agent, labels: &[&[(&str, &str)]], rounds: f64) -> Metrics {
    wait_until(
        agent,
        &format!("{rounds} probes of each of {labels:?}"),
        |m| labels.iter().all(|l| probes(m, l) >= rounds),
    )
    .await
}

/// Probes counted for the series `labels` (success and failure).
pub fn probes(m: &Metrics, labels: &[(&str, &str)]) -> f64 {
    m.all("mailprobe_probes_total", labels)
        .iter()
        .map(|(_, v)| v)
        .sum()
}

/// The per-target lines of a scrape, for assertion messages.
fn relevant(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains("target=") && !l.contains("_bucket"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `labels` plus one more pair.
pub fn with<'a>(
    labels: &[(&'a str, &'a str)],
    more: (&'a str, &'a str),
) -> Vec<(&'a str, &'a str)> {
    let mut all = labels.to_vec();
    all.push(more);
    all
}

/// The series `labels` (e.g. target and check) failed, every time, in `phase`
/// with `reason` and fault domain `domain`: exactly one failure series counting
/// every failed probe, `mailprobe_up` 0, `mailprobe_last_failure_info` and
/// `mailprobe_fault` naming them. The check-aware form of
/// [`Metrics::assert_only_failure`].
pub fn assert_failed(
    m: &Metrics,
    labels: &[(&str, &str)],
    phase: &str,
    reason: &str,
    domain: &str,
) {
    let failures = m.all("mailprobe_failures_total", labels);
    assert_eq!(
        failures.len(),
        1,
        "{labels:?}: one failure series: {failures:?}\n{}",
        relevant(&m.text)
    );
    let (series, count) = &failures[0];
    assert_eq!(
        (series["phase"].as_str(), series["reason"].as_str()),
        (phase, reason),
        "{labels:?}: {:?}",
        m.all("mailprobe_last_failure_info", labels)
    );
    assert!(*count >= 1.0, "{labels:?}");
    assert_eq!(
        m.value(
            "mailprobe_probes_total",
            &with(labels, ("result", "failure"))
        ),
        *count,
        "{labels:?}: every failed probe is counted under this phase and reason"
    );
    assert_eq!(m.value("mailprobe_up", labels), 0.0, "{labels:?}");
    let info = m.all("mailprobe_last_failure_info", labels);
    assert_eq!(info.len(), 1, "{labels:?}: {info:?}");
    assert_eq!(
        (
            info[0].0["phase"].as_str(),
            info[0].0["reason"].as_str(),
            info[0].0["domain"].as_str(),
            info[0].1
        ),
        (phase, reason, domain, 1.0),
        "{labels:?}"
    );
    assert_eq!(
        m.value("mailprobe_fault", &with(labels, ("domain", domain))),
        1.0,
        "{labels:?}"
    );
    assert_eq!(
        m.all("mailprobe_fault", labels).len(),
        1,
        "one mailprobe_fault series, at the current domain: {labels:?}"
    );
}

/// The series `labels` succeeded every time: up 1, no failure series, fault
/// domain `none`, no last-failure info.
pub fn assert_up(m: &Metrics, labels: &[(&str, &str)]) {
    assert_eq!(
        m.value("mailprobe_up", labels),
        1.0,
        "{labels:?}: {:?}\n{}",
        m.all("mailprobe_last_failure_info", labels),
        relevant(&m.text)
    );
    assert_eq!(
        m.all("mailprobe_failures_total", labels),
        vec![],
        "{labels:?}"
    );
    assert_eq!(
        m.all("mailprobe_last_failure_info", labels),
        vec![],
        "{labels:?}"
    );
    assert_eq!(
        m.value("mailprobe_fault", &with(labels, ("domain", "none"))),
        1.0,
        "{labels:?}"
    );
    assert!(
        m.value(
            "mailprobe_probes_total",
            &with(labels, ("result", "success"))
        ) >= 1.0,
        "{labels:?}"
    );
}

/// The phases of the last probe of the series `labels`, sorted.
pub fn phases(m: &Metrics, labels: &[(&str, &str)]) -> Vec<String> {
    let mut phases: Vec<String> = m
        .all("mailprobe_phase_duration_seconds", labels)
        .into_iter()
        .map(|(labels, _)| labels["phase"].clone())
        .collect();
    phases.sort();
    phases
}

/// `items` as sorted owned strings, to compare with [`phases`].
pub fn sorted(items: &[&str]) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
    items.sort();
    items
}

/// Generous per-probe timeout for checks that must not time out: the machine
/// is shared, and a slow TLS handshake must not turn a pass into a flake.
pub const PROBE_TIMEOUT: &str = "5s";

/// Limit on a whole test.
pub const TEST_LIMIT: Duration = Duration::from_secs(90);

/// A test CA with one certificate for every Exchange name, document roots the
/// test writes Autodiscover answers into, and a loopback block of its own.
/// Address plan: `.1` is the mail domain `D`, `.2` is `autodiscover.D`, `.3` is
/// `mail.D` (the Exchange front end and redirect target), `.4` is another
/// provider's Autodiscover; which of them has a DNS record and a listener is each
/// test's choice.
pub struct ExchangeBed {
    /// Holds the PKI and the document roots; removed on drop.
    pub dir: tempfile::TempDir,
    /// The test CA (`ca_file` of the targets).
    pub pki: super::TestPki,
    /// The certificate for every name in [`CERT_NAMES`] and its key.
    pub cert: (std::path::PathBuf, std::path::PathBuf),
    /// This test's loopback addresses.
    pub block: LoopbackBlock,
}

/// One `server { }` of an [`ExchangeBed`]'s nginx.
pub struct ServerBlock {
    /// Where it listens.
    pub listen: SocketAddr,
    /// TLS (the bed's certificate) or plain HTTP.
    pub tls: bool,
    /// Its directives.
    pub directives: String,
}

impl ExchangeBed {
    /// A new CA, certificate and loopback block.
    pub fn new() -> ExchangeBed {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = super::TestPki::new(dir.path().join("pki"));
        let cert = pki.issue(MAIL_HOST, &CERT_NAMES, super::Validity::Current);
        ExchangeBed {
            dir,
            pki,
            cert,
            block: LoopbackBlock::new(),
        }
    }

    /// The document root `name` (created on first use).
    pub fn root(&self, name: &str) -> std::path::PathBuf {
        let root = self.dir.path().join(format!("www-{name}"));
        std::fs::create_dir_all(root.join("autodiscover")).expect("mkdir document root");
        root
    }

    /// Writes `contents` to `path` under root `root`, atomically (a new file renamed
    /// over the old one), so nginx never serves half an answer.
    pub fn write(&self, root: &str, path: &str, contents: &str) {
        let file = self.root(root).join(path.trim_start_matches('/'));
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        std::fs::rename(&tmp, &file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    /// Writes the POX answer and the JSON answer of root `root`.
    pub fn answers(&self, root: &str, server: &str, ews_url: &str) {
        self.write(root, AUTODISCOVER_XML, &pox_answer(server, ews_url));
        self.write(root, AUTODISCOVER_JSON, &json_answer(ews_url));
    }

    /// A file `NAME.pass` in the bed's directory holding `password`.
    pub fn password_file(&self, name: &str, password: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("{name}.pass"));
        std::fs::write(&path, format!("{password}\n")).expect("write the password file");
        path
    }

    /// Directives serving root `root`'s Autodiscover answers: the POX file for POST
    /// (and GET), the JSON file for GET with any query string.
    pub fn autodiscover_service(&self, root: &str) -> String {
        format!(
            "root {};\n{}\nlocation = {AUTODISCOVER_JSON} {{ default_type application/json; }}",
            self.root(root).display(),
            post_serves_file(AUTODISCOVER_XML)
        )
    }

    /// One nginx holding every server block (none: no nginx, nothing listens).
    pub fn nginx(&self, mut blocks: Vec<ServerBlock>) -> Option<super::Nginx> {
        // The builder's first server is the one `listen()` sets, and it is TLS
        // whenever a certificate is given: put a TLS block first if there is one.
        blocks.sort_by_key(|block| !block.tls);
        let first = blocks.first()?;
        let mut builder = super::Nginx::builder()
            .listen(first.listen)
            .server_block_extra(&first.directives);
        if first.tls {
            builder = builder.tls(&self.cert.0, &self.cert.1);
        }
        for block in &blocks[1..] {
            builder = builder.server(block.listen, block.tls, &block.directives);
        }
        Some(builder.start().expect("nginx starts"))
    }

    /// An exchange target `name` with the given extra keys (`checks`, `email`,
    /// `host`, …), trusting the test CA.
    pub fn target(&self, name: &str, keys: &str) -> String {
        format!(
            "  - {{name: {name}, protocol: exchange, ca_file: \"{}\", {keys}}}\n",
            self.pki.ca_pem.display()
        )
    }
}

impl Default for ExchangeBed {
    fn default() -> Self {
        Self::new()
    }
}

/// Where POX Autodiscover is asked.
pub const AUTODISCOVER_XML: &str = "/autodiscover/autodiscover.xml";
/// Where v2 JSON Autodiscover is asked.
pub const AUTODISCOVER_JSON: &str = "/autodiscover/autodiscover.json";

/// The series of check `check` of exchange target `target`.
pub fn check<'a>(target: &'a str, check: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("target", target),
        ("protocol", "exchange"),
        ("check", check),
    ]
}

/// The series of the autodiscover check of target `ex`.
pub const AD: [(&str, &str); 3] = [
    ("target", "ex"),
    ("protocol", "exchange"),
    ("check", "autodiscover"),
];

/// dnsmasq for `D` where every name the test does not give is NXDOMAIN.
pub fn zone() -> DnsmasqBuilder {
    Dnsmasq::builder().local_domain(DOMAIN)
}

/// The autodiscover info series: `(method, ews_url, server)` of each.
pub fn answers(m: &Metrics) -> Vec<(String, String, String)> {
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

/// One answer, as [`answers`] lists it.
pub fn answer(method: &str, ews_url: &str, server: &str) -> Vec<(String, String, String)> {
    vec![(method.to_owned(), ews_url.to_owned(), server.to_owned())]
}
