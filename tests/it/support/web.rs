//! The webmail stand-in: a real nginx with a certificate from a test CA for the
//! webmail names, a document root the test writes pages into, and a dnsmasq
//! resolving those names to 127.0.0.1.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::agent::{Agent, Metrics};
use super::exchange::{CERT_NAMES, OTHER_HOST, PROBE_TIMEOUT, WEBMAIL_HOST, config, probed};
use super::{Dnsmasq, Nginx, NginxBuilder, TestPki, Validity};

/// The login of the webmail tests.
pub const USER: &str = "probe@example.test";
/// What the probe looks for on the logon page.
pub const EXPECT_BODY: &str = "Sign in to Outlook";
/// A logon page containing [`EXPECT_BODY`].
pub const PAGE: &str = "<!DOCTYPE html><html><head><title>Outlook</title></head>\
                        <body><form>Sign in to Outlook</form></body></html>\n";
/// The series of the one target most tests configure, `webmail`.
pub const W: [(&str, &str); 2] = [("target", "webmail"), ("protocol", "https")];
/// The body limit of the HTTP engine: only this much of a body is read.
pub const MIB: usize = 1 << 20;

/// The target key asking for [`EXPECT_BODY`].
pub fn expect_body() -> String {
    format!("expect_body: \"{EXPECT_BODY}\"")
}

/// A test CA and a certificate for the webmail names, a document root, and a
/// dnsmasq resolving the webmail names to 127.0.0.1.
pub struct Web {
    /// Holds the PKI, the document root and password files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The test CA (`ca_file` of the targets).
    pub pki: TestPki,
    cert: PathBuf,
    key: PathBuf,
    /// Resolves the webmail names (the agent's site resolver).
    pub dns: Dnsmasq,
}

impl Web {
    /// A new CA, certificate, document root and dnsmasq.
    pub fn new() -> Web {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = pki.issue(WEBMAIL_HOST, &CERT_NAMES, Validity::Current);
        std::fs::create_dir(dir.path().join("www")).expect("mkdir www");
        let dns = Dnsmasq::builder()
            .a(WEBMAIL_HOST, Ipv4Addr::LOCALHOST)
            .a(OTHER_HOST, Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        Web {
            dir,
            pki,
            cert,
            key,
            dns,
        }
    }

    /// [`new`](Self::new), serving the logon [`PAGE`] as `index.html`.
    pub fn with_page() -> Web {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        web
    }

    /// The document root.
    pub fn www(&self) -> PathBuf {
        self.dir.path().join("www")
    }

    /// Writes `www/name`.
    pub fn file(&self, name: &str, contents: &[u8]) {
        let path = self.www().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// An htpasswd file allowing [`USER`] with `password` (nginx reads `{PLAIN}`).
    pub fn htpasswd(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join("htpasswd");
        std::fs::write(&path, format!("{USER}:{{PLAIN}}{password}\n")).unwrap();
        path
    }

    /// A password file holding `password`.
    pub fn password_file(&self, password: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{password}.pass"));
        std::fs::write(&path, format!("{password}\n")).unwrap();
        // As an administrator keeps it: readable by its owner only.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path
    }

    /// [`nginx`](Self::nginx) still to be started, e.g. to add a `server()`.
    pub fn nginx_builder(&self, directives: &str) -> NginxBuilder {
        Nginx::builder()
            .tls(&self.cert, &self.key)
            .server_block_extra(&format!("root {};\n{directives}", self.www().display()))
    }

    /// nginx with TLS on 127.0.0.1 and a free port, serving `www/` plus `directives`.
    pub fn nginx(&self, directives: &str) -> Nginx {
        self.nginx_builder(directives)
            .start()
            .expect("nginx starts")
    }

    /// A webmail target for `https://webmail.example.test:PORT{path}` with `extra` keys.
    pub fn target(&self, name: &str, nginx: &Nginx, path: &str, extra: &str) -> String {
        format!(
            "  - {{name: {name}, protocol: https, url: \"https://{WEBMAIL_HOST}:{}{path}\", \
             ca_file: \"{}\"{}{extra}}}\n",
            nginx.addr.port(),
            self.pki.ca_pem.display(),
            if extra.is_empty() { "" } else { ", " },
        )
    }

    /// An agent probing `targets`, each with `timeout`, once an hour.
    pub async fn agent(&self, timeout: &str, targets: &[String]) -> Agent {
        Agent::start(&config(self.dns.addr, timeout, &targets.concat())).await
    }

    /// Runs an [`agent`](Self::agent) until every series of `series` has been
    /// probed once, stops it (cleanly) and returns that scrape.
    pub async fn probe(
        &self,
        timeout: &str,
        targets: &[String],
        series: &[&[(&str, &str)]],
    ) -> Metrics {
        let agent = self.agent(timeout, targets).await;
        let m = probed(&agent, series, 1.0).await;
        agent.stop().await.expect("clean stop");
        m
    }

    /// [`probe`](Self::probe) of the one target `webmail` ([`W`]) on `nginx`,
    /// at `path` with `extra` keys, with [`PROBE_TIMEOUT`].
    pub async fn probe_webmail(&self, nginx: &Nginx, path: &str, extra: &str) -> Metrics {
        let target = self.target("webmail", nginx, path, extra);
        self.probe(PROBE_TIMEOUT, &[target], &[&W]).await
    }
}

impl Default for Web {
    fn default() -> Self {
        Self::new()
    }
}
