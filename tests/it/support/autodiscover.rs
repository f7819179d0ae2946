//! The Autodiscover scenario builder: an [`ExchangeBed`], a dnsmasq giving the
//! names of the bed's address plan the addresses of its loopback block, one nginx
//! holding the server blocks the test chooses (Autodiscover services, redirects,
//! an Exchange front end), and an agent probing target `ex` for [`EMAIL`]. Used
//! by the autodiscover, autodiscover_answers and exchange tests.

use std::net::Ipv4Addr;
use std::path::Path;

use super::agent::{Agent, Metrics};
use super::exchange::{
    AD, AUTODISCOVER_HOST, AUTODISCOVER_XML, DOMAIN, EMAIL, ExchangeBed, MAIL_HOST, PROBE_TIMEOUT,
    PROVIDER_AUTODISCOVER_HOST, ServerBlock, answer, answers, assert_failed, assert_up,
    config_every, probed, zone,
};
use super::{Dnsmasq, DnsmasqBuilder, Nginx};

/// A name of the bed's address plan (see [`ExchangeBed`]).
#[derive(Clone, Copy, Debug)]
pub enum Host {
    /// `D`, the mail domain, on `.1`.
    Domain,
    /// `autodiscover.D`, on `.2`.
    Autodiscover,
    /// `mail.D`, the Exchange front end and redirect target, on `.3`.
    Mail,
    /// `autodiscover.` of another provider's domain, on `.4`.
    Provider,
}

impl Host {
    /// The DNS name.
    pub fn name(self) -> &'static str {
        match self {
            Host::Domain => DOMAIN,
            Host::Autodiscover => AUTODISCOVER_HOST,
            Host::Mail => MAIL_HOST,
            Host::Provider => PROVIDER_AUTODISCOVER_HOST,
        }
    }

    /// Its address in `bed`'s block.
    pub fn ip(self, bed: &ExchangeBed) -> Ipv4Addr {
        bed.block.ip(self.n())
    }

    /// Its host number in the bed's block: `.1` to `.4`.
    pub fn n(self) -> u8 {
        match self {
            Host::Domain => 1,
            Host::Autodiscover => 2,
            Host::Mail => 3,
            Host::Provider => 4,
        }
    }
}

/// Describes an Autodiscover scenario; [`serve`](Self::serve) starts its
/// servers, [`probe_once`](Self::probe_once) also the agent.
pub struct Scenario {
    /// The bed: write Autodiscover answers into its document roots before or
    /// while the scenario runs.
    pub bed: ExchangeBed,
    dns: DnsmasqBuilder,
    blocks: Vec<ServerBlock>,
    interval: String,
    timeout: String,
    keys: String,
}

impl Scenario {
    /// A new bed whose zone gives `hosts` their addresses; every other name
    /// under `D` is NXDOMAIN ([`zone`]). No server listens yet. The agent probes
    /// once an hour with [`PROBE_TIMEOUT`], autodiscover only, for [`EMAIL`].
    pub fn new(hosts: &[Host]) -> Scenario {
        let bed = ExchangeBed::new();
        let mut dns = zone();
        for host in hosts {
            dns = dns.a(host.name(), host.ip(&bed));
        }
        Scenario {
            bed,
            dns,
            blocks: Vec::new(),
            interval: "1h".to_owned(),
            timeout: PROBE_TIMEOUT.to_owned(),
            keys: format!("email: {EMAIL}, checks: [autodiscover]"),
        }
    }

    /// More records (CNAMEs, SRV, other domains), given the bed.
    pub fn dns(
        mut self,
        more: impl FnOnce(DnsmasqBuilder, &ExchangeBed) -> DnsmasqBuilder,
    ) -> Self {
        self.dns = more(self.dns, &self.bed);
        self
    }

    /// `host` serves `directives` over HTTPS on port 443.
    pub fn https(self, host: Host, directives: impl Into<String>) -> Self {
        let listen = self.bed.block.addr(host.n(), 443);
        self.server(ServerBlock {
            listen,
            tls: true,
            directives: directives.into(),
        })
    }

    /// `host` serves `directives` over plain HTTP on port 80.
    pub fn http(self, host: Host, directives: impl Into<String>) -> Self {
        let listen = self.bed.block.addr(host.n(), 80);
        self.server(ServerBlock {
            listen,
            tls: false,
            directives: directives.into(),
        })
    }

    /// `host` serves the Autodiscover answers of document root `root` over
    /// HTTPS on port 443 ([`ExchangeBed::autodiscover_service`]).
    pub fn service(self, host: Host, root: &str) -> Self {
        let directives = self.bed.autodiscover_service(root);
        self.https(host, directives)
    }

    /// [`service`](Self::service), with the POX and JSON answers of `root`
    /// written first: mailbox server `server`, EWS at `ews_url`.
    pub fn answering(self, host: Host, root: &str, server: &str, ews_url: &str) -> Self {
        self.bed.answers(root, server, ews_url);
        self.service(host, root)
    }

    /// A server block anywhere, e.g. on the port an SRV record names.
    pub fn server(mut self, block: ServerBlock) -> Self {
        self.blocks.push(block);
        self
    }

    /// The probe timeout instead of [`PROBE_TIMEOUT`].
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = timeout.to_owned();
        self
    }

    /// The probe interval instead of an hour, to see several rounds.
    pub fn every(mut self, interval: &str) -> Self {
        self.interval = interval.to_owned();
        self
    }

    /// The keys of target `ex` (`email`, `checks`, `host`, `auth` …) instead of
    /// autodiscover only for [`EMAIL`].
    pub fn keys(mut self, keys: impl Into<String>) -> Self {
        self.keys = keys.into();
        self
    }

    /// Starts dnsmasq and the one nginx holding every server block (none: no
    /// nginx, nothing listens).
    pub fn serve(self) -> Site {
        let dns = self.dns.start().expect("dnsmasq starts");
        let nginx = self.bed.nginx(self.blocks);
        Site {
            bed: self.bed,
            dns,
            nginx,
            interval: self.interval,
            timeout: self.timeout,
            keys: self.keys,
        }
    }

    /// Serves, starts the agent, waits until every series of `series` has been
    /// probed once, stops the agent (cleanly) and returns that scrape.
    pub async fn probe_once(self, series: &[&[(&str, &str)]]) -> Metrics {
        let site = self.serve();
        let agent = site.agent().await;
        let m = probed(&agent, series, 1.0).await;
        agent.stop().await.expect("clean stop");
        m
    }
}

/// A running scenario's servers.
pub struct Site {
    /// The bed: its document roots are served as they are rewritten.
    pub bed: ExchangeBed,
    /// The zone (the agent's site resolver).
    pub dns: Dnsmasq,
    /// The nginx of every server block, if there is one.
    pub nginx: Option<Nginx>,
    interval: String,
    timeout: String,
    keys: String,
}

impl Site {
    /// A configuration probing `targets` with the scenario's interval and
    /// timeout, resolving through the zone only.
    pub fn config(&self, targets: &str) -> String {
        config_every(self.dns.addr, &self.interval, &self.timeout, targets)
    }

    /// An agent probing target `ex` with the scenario's keys.
    pub async fn agent(&self) -> Agent {
        Agent::start(&self.config(&self.bed.target("ex", &self.keys))).await
    }
}

/// The autodiscover check of `ex` found an answer: it is up, and the one
/// answer exported is `(method, ews_url, server)`.
pub fn assert_found(m: &Metrics, method: &str, ews_url: &str, server: &str) {
    assert_up(m, &AD);
    assert_eq!(answers(m), answer(method, ews_url, server));
}

/// The autodiscover check of `ex` found nothing: it failed, every time, in
/// `phase` with `reason` and fault domain `domain`, and no answer is exported.
pub fn assert_not_found(m: &Metrics, phase: &str, reason: &str, domain: &str) {
    assert_failed(m, &AD, phase, reason, domain);
    assert_eq!(answers(m), vec![]);
}

/// Directives answering POX Autodiscover with a redirect to the same path at
/// `origin` (`https://HOST`, `http://HOST`).
pub fn redirect_to(origin: &str) -> String {
    format!("location = {AUTODISCOVER_XML} {{ return 302 {origin}{AUTODISCOVER_XML}; }}")
}

/// Keys of an autodiscover-only target for [`EMAIL`] that logs in as [`EMAIL`]
/// with the password in `password_file`.
pub fn login_keys(password_file: &Path) -> String {
    format!(
        "email: {EMAIL}, checks: [autodiscover], \
         auth: {{username: {EMAIL}, password_file: \"{}\"}}",
        password_file.display()
    )
}
