//! `example.test` published for a real Dovecot: the scene of the discovery tests
//! (the `domain:` shorthand and `mailprobe diagnose`).

use std::net::Ipv4Addr;

use super::{Dnsmasq, Dovecot, TestPki, Validity};

/// The domain published.
pub const DOMAIN: &str = "example.test";
/// The mail server's name: the MX and the SRV records' target.
pub const SERVER_NAME: &str = "mail.example.test";

/// A test CA, a Dovecot with a certificate of it for [`SERVER_NAME`], and a
/// dnsmasq publishing [`DOMAIN`]'s MX ([`SERVER_NAME`], preference 10), an SRV
/// record `_SERVICE._tcp.example.test` for each service asked for (`imaps`,
/// `pop3s`) on Dovecot's port for it, and [`SERVER_NAME`] at 127.0.0.1.
pub struct PublishedDomain {
    /// The Dovecot; `None` once the test stopped it (every process of it).
    pub dovecot: Option<Dovecot>,
    /// The zone (the site resolver).
    pub dns: Dnsmasq,
    /// The CA (`ca_file`).
    pub pki: TestPki,
    /// Holds the PKI; free for the test's own files.
    pub dir: tempfile::TempDir,
}

impl PublishedDomain {
    /// Starts Dovecot, then the zone publishing `services`.
    pub fn start(services: &[&str]) -> PublishedDomain {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let (cert, key) = pki.issue(SERVER_NAME, &[SERVER_NAME], Validity::Current);
        let dovecot = Dovecot::builder()
            .tls(&cert, &key)
            .start()
            .expect("dovecot starts");
        let mut zone = Dnsmasq::builder().mx(DOMAIN, SERVER_NAME, 10);
        for service in services {
            let port = match *service {
                "imaps" => dovecot.imaps.port(),
                "pop3s" => dovecot.pop3s.port(),
                other => panic!("Dovecot serves no {other}"),
            };
            let name = format!("_{service}._tcp.{DOMAIN}");
            zone = zone.srv(&name, SERVER_NAME, port, 0, 1);
        }
        let dns = zone
            .a(SERVER_NAME, Ipv4Addr::LOCALHOST)
            .start()
            .expect("dnsmasq starts");
        PublishedDomain {
            dovecot: Some(dovecot),
            dns,
            pki,
            dir,
        }
    }

    /// The running Dovecot.
    pub fn dovecot(&self) -> &Dovecot {
        self.dovecot.as_ref().expect("Dovecot runs")
    }
}
