//! A small internet in network namespaces, so that tests can break one piece
//! of it (the site's link, its resolver, the uplink, the provider's host, its
//! DNS, its service, its certificate) and check which fault domain the agent
//! blames. Needs root, `ip` (iproute2) and `nft`, plus the daemons the other
//! support modules run (dnsmasq, unbound, nginx, Dovecot, Exim); no `dig`,
//! `ping` or `curl`.
//!
//! # Layout
//!
//! Every [`TestBed`] gets four namespaces, `mp<pid>-<n>-site`, `-router`,
//! `-inet` and `-prov` (`<n>` counts beds within the test process), and the
//! address block `10.213.4k.0/22` with `k = n % 64`:
//!
//! ```text
//! subnet A  10.213.4k.0/24    site LAN
//!   router .1 (site0)         the site's default gateway
//!   site   .2 (eth0)          the agent's host
//!   site   .53 (eth0)         site resolver: dnsmasq, forwards example.test to C.53, REFUSES the rest
//! subnet B  10.213.4k+1.0/24  "internet"
//!   router .1 (inet0)
//!   inet   .10:443            canary: nginx, plain HTTP, `GET /` → 200 `canary`
//!   inet   .53                reference resolver: unbound, forwards example.test to C.53, REFUSES the rest
//! subnet C  10.213.4k+2.0/24  the mail provider
//!   router .1 (prov0)
//!   prov   .25                mail.example.test = mx.example.test: Dovecot IMAP 143, IMAPS 993,
//!                             POP3 110, POP3S 995; Exim SMTP 25, SMTPS 465; nginx HTTPS 443
//!   prov   .53                authoritative DNS of example.test (dnsmasq): MX 10 mx.example.test,
//!                             A mail/mx → C.25, SRV _imaps._tcp → mail:993, _submissions._tcp → mail:465
//! subnet D  10.213.4k+3.0/24  reserved, unused
//! ```
//!
//! `site`, `inet` and `prov` have a default route via the router's `.1`; the
//! router forwards between its three links and has no default route and no NAT,
//! so nothing can leave the bed: a packet for any other address dies in the
//! router ("network unreachable"). Every bed namespace is IPv4-only. While any
//! bed exists, the host namespace has a `prohibit 10.213.0.0/16` route, so that
//! a test that forgets to enter a namespace fails at once (EACCES) instead of
//! sending bed traffic out of the machine.
//!
//! Address blocks are unique among the beds of one process (up to 64 alive at
//! once); two processes may reuse a block, which is harmless because beds share
//! no link with each other or with the host.
//!
//! # Reaching the bed
//!
//! [`TestBed::in_site`] runs a closure on a thread that joined the site
//! namespace; sockets made there stay in it and may be used from any thread
//! (also handed to tokio with `from_std`). [`TestBed::command_in_site`] spawns
//! the agent there; processes started that way see `/etc/netns/<site>/resolv.conf`
//! (naming the site resolver) as `/etc/resolv.conf`. [`TestBed::http_get_in_site`]
//! scrapes it.
//!
//! # Faults (measured from the site namespace; each has an inverse)
//!
//! | fault | effect |
//! |---|---|
//! | [`site_link_down`](TestBed::site_link_down) | no routes left: every connect and ping off the host fails at once with ENETUNREACH (101); the site resolver (same host) still answers, REFUSED for example.test (its forward fails) |
//! | [`stop_site_resolver`](TestBed::stop_site_resolver) | unconnected UDP query (as hickory sends): timeout; connected UDP: ECONNREFUSED; TCP 53: ECONNREFUSED; the reference resolver answers |
//! | [`site_resolver_serves_stale_mx`](TestBed::site_resolver_serves_stale_mx) | site MX `10 <old>` (AA), reference MX `10 mx.example.test`; other names still forwarded |
//! | [`drop_uplink`](TestBed::drop_uplink) | canary and provider connects time out; gateway still answers ping and RSTs TCP; both resolvers time out for example.test |
//! | [`provider_drops_packets`](TestBed::provider_drops_packets) | canary fine, DNS fine; connects and pings to the mail host time out |
//! | [`authoritative_drops_packets`](TestBed::authoritative_drops_packets) | both resolvers time out for example.test; the mail host is reachable. After the inverse, dnsmasq answers at once, unbound within ~1 s |
//! | [`stop_dovecot`](TestBed::stop_dovecot) | 143/993/110/995: ECONNREFUSED (111) at once |
//! | [`use_expired_certificate`](TestBed::use_expired_certificate) | TLS on 993/995/465/443 and STARTTLS: "certificate has expired" (X509 verify error 10) |
//!
//! # Traps
//!
//! - An agent run *in-process* on tokio threads that entered the site namespace
//!   still reads the HOST's `/proc/net/route` (`/proc/net` follows the process's
//!   main thread; `/proc/thread-self/net` would not) and `/etc/resolv.conf`, so
//!   `gateway: auto` and `resolvers: system` would see the host. Run the agent
//!   binary through [`TestBed::command_in_site`], or configure addresses explicitly.
//! - A connect from the host namespace to a bed address fails with EACCES (the
//!   guard route), not with a timeout.
//! - The site resolver runs on the agent's host, so a site link fault does not
//!   make it unreachable; its forwards fail instead.
//! - Daemons killed by a drop may stay zombies for a moment until PID 1 reaps
//!   them; they hold no sockets.
//! - Setup is blocking (~0.3 s; dropping ~0.05 s): from an async test, call
//!   [`TestBed::start`] before entering the runtime or in `spawn_blocking`.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::certs::{TestPki, Validity};
use super::dnsmasq::Dnsmasq;
use super::dovecot::Dovecot;
use super::exim::Exim;
use super::nginx::Nginx;
use super::process::READY_DEADLINE;
use super::unbound::Unbound;

mod clients;
mod faults;
mod host;

use clients::http_get;
pub use clients::{DnsReply, dns_query, ping};
use host::*;
pub use host::{enter, in_bed_range, remove_stale_namespaces, run_in};

/// The range every bed's addresses come from: `10.213.0.0/16`. Nothing else on
/// the test machines uses it (checked with `ip route` / `ip addr`).
pub const BED_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);
/// The provider's domain, served by the bed's authoritative DNS.
pub const DOMAIN: &str = "example.test";
/// The provider's mail host (A record → [`TestBed::provider_ip`]); the name in
/// its certificate.
pub const MAIL_HOST: &str = "mail.example.test";
/// The MX target of [`DOMAIN`] (A record → [`TestBed::provider_ip`]; also in the certificate).
pub const MX_HOST: &str = "mx.example.test";
/// DNS type codes for [`dns_query`].
pub const QTYPE_A: u16 = 1;
/// See [`QTYPE_A`].
pub const QTYPE_MX: u16 = 15;
/// See [`QTYPE_A`].
pub const QTYPE_SRV: u16 = 33;

/// Where `ip netns add` keeps its namespace handles.
const NETNS_DIR: &str = "/run/netns";
/// Serialises the host-wide steps (stale cleanup, guard route, namespace
/// creation and deletion) between threads AND between test processes.
const LOCK_FILE: &str = "/run/mailprobe-netns.lock";
/// Beds alive at once in one process before address blocks repeat.
const BLOCKS: usize = 64;
/// The port each daemon uses inside the bed: the real ones, since every
/// namespace is empty and the agent's defaults then just work.
const PORTS: Ports = Ports {
    dns: 53,
    imap: 143,
    imaps: 993,
    pop3: 110,
    pop3s: 995,
    smtp: 25,
    submissions: 465,
    https: 443,
};

struct Ports {
    dns: u16,
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
    smtp: u16,
    submissions: u16,
    https: u16,
}

static NEXT_BED: AtomicUsize = AtomicUsize::new(0);

/// What the site resolver serves; kept so that a restart keeps the mode.
enum SiteDns {
    /// Forwards `example.test` to the authoritative server.
    Forwarding,
    /// Answers `example.test MX` itself with this stale target; forwards the rest.
    StaleMx(String),
}

/// One isolated network with a site, a router, an "internet" and a mail
/// provider; see the [module docs](self) for the layout. Dropping it (also
/// while a test unwinds) kills every daemon, deletes the namespaces and, with
/// the last bed, the host's guard route.
pub struct TestBed {
    /// The site namespace, where the agent runs.
    pub site_ns: String,
    /// The router namespace (forwarding, no default route).
    pub router_ns: String,
    /// The "internet" namespace (canary, reference resolver).
    pub inet_ns: String,
    /// The provider namespace (mail services, authoritative DNS).
    pub prov_ns: String,
    /// The agent's address on the site LAN (`.2`).
    pub agent_ip: IpAddr,
    /// The site's default gateway, the router (`.1`): answers ICMP echo, and a
    /// RST to TCP on every port.
    pub gateway: IpAddr,
    /// The site resolver (dnsmasq in the site namespace on the LAN, `.53:53`).
    pub site_resolver: SocketAddr,
    /// The reference resolver "on the internet" (unbound, `.53:53`).
    pub reference_resolver: SocketAddr,
    /// A canary "on the internet" (`.10:443`): accepts TCP (plain HTTP, `GET /` → 200).
    pub canary: SocketAddr,
    /// The provider's mail host, `mail.example.test` = `mx.example.test` (`.25`).
    pub provider_ip: IpAddr,
    /// The authoritative DNS server of `example.test` (dnsmasq, `.53:53`).
    pub authoritative: SocketAddr,
    /// The CA certificate that signed every server certificate; trust it.
    pub ca_pem: PathBuf,
    /// IMAP with STARTTLS (`:143`); plaintext LOGIN is refused before TLS.
    pub imap: SocketAddr,
    /// IMAP over TLS (`:993`).
    pub imaps: SocketAddr,
    /// POP3 with STLS (`:110`); USER is refused before TLS.
    pub pop3: SocketAddr,
    /// POP3 over TLS (`:995`).
    pub pop3s: SocketAddr,
    /// SMTP with STARTTLS (`:25`); AUTH is offered only after STARTTLS.
    pub smtp: SocketAddr,
    /// SMTP over TLS (`:465`).
    pub submissions: SocketAddr,
    /// HTTPS (`:443`): `GET /` → 200 `ok`, `/owa/healthcheck.htm` → 200 `200 OK`;
    /// `/redirect/loopback`, `/redirect/link-local` and `/redirect/plain-http` redirect
    /// where a probe must not follow.
    pub https: SocketAddr,
    /// A mailbox (IMAP, POP3) and SMTP AUTH user.
    pub user: &'static str,
    /// [`user`](Self::user)'s password.
    pub password: &'static str,
    // Daemons first: fields drop in order, and every daemon must be dead before
    // its namespace is deleted and its certificate files are removed.
    site_dns: Option<Dnsmasq>,
    site_dns_mode: SiteDns,
    reference_dns: Unbound,
    canary_web: Nginx,
    authoritative_dns: Dnsmasq,
    dovecot: Option<Dovecot>,
    exim: Option<Exim>,
    web: Option<Nginx>,
    cert_valid: (PathBuf, PathBuf),
    cert_expired: Option<(PathBuf, PathBuf)>,
    cert_in_use: Validity,
    pki: TestPki,
    _pki_dir: tempfile::TempDir,
    ns: Namespaces,
}

/// One readiness check of [`TestBed::wait_reachable_from_site`].
type Check<'a> = dyn Fn() -> Result<(), String> + 'a;

/// The three /24s of a bed: site LAN, internet, provider.
fn subnets(block: usize) -> [[u8; 3]; 3] {
    let t = u8::try_from(block * 4).expect("block < 64");
    [[10, 213, t], [10, 213, t + 1], [10, 213, t + 2]]
}

fn host(net: [u8; 3], last: u8) -> Ipv4Addr {
    Ipv4Addr::new(net[0], net[1], net[2], last)
}

impl TestBed {
    /// Builds a bed and returns once every daemon answers from where its clients
    /// are: MX lookups through both resolvers, the canary, and the IMAP greeting
    /// of the provider all work from the site namespace. Panics (after cleaning
    /// up) if anything fails. Removes stale beds of dead processes first.
    pub fn start() -> TestBed {
        let n = NEXT_BED.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("mp{}-{n}", std::process::id());
        let [lan, inet, prov] = subnets(n % BLOCKS);
        let ns = Namespaces::create(&prefix);
        let [site_ns, router_ns, inet_ns, prov_ns] = ns.names.clone();
        wire(&ns.names, [lan, inet, prov]);

        let agent_ip = IpAddr::V4(host(lan, 2));
        let site_resolver = SocketAddr::new(host(lan, 53).into(), PORTS.dns);
        let reference_resolver = SocketAddr::new(host(inet, 53).into(), PORTS.dns);
        let canary = SocketAddr::new(host(inet, 10).into(), 443);
        let provider = IpAddr::V4(host(prov, 25));
        let authoritative = SocketAddr::new(host(prov, 53).into(), PORTS.dns);
        let at = |port| SocketAddr::new(provider, port);

        // Programs in these namespaces that use the libc resolver (Exim, the
        // agent with `resolvers: system`) must ask a bed resolver, never the
        // host's (which the router could not reach anyway).
        for (name, resolver) in [
            (&site_ns, site_resolver),
            (&inet_ns, reference_resolver),
            (&prov_ns, authoritative),
        ] {
            let dir = Path::new("/etc/netns").join(name);
            fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            let conf = format!("nameserver {}\n", resolver.ip());
            fs::write(dir.join("resolv.conf"), conf).expect("write resolv.conf");
        }

        let pki_dir = tempfile::Builder::new()
            .prefix("testbed-pki-")
            .tempdir()
            .expect("pki tempdir");
        let pki = TestPki::new(pki_dir.path());
        let cert_valid = pki.issue(MAIL_HOST, &[MAIL_HOST, MX_HOST], Validity::Current);

        let authoritative_dns = Dnsmasq::builder()
            .mx(DOMAIN, MX_HOST, 10)
            .host(MAIL_HOST, provider)
            .host(MX_HOST, provider)
            .srv(
                &format!("_imaps._tcp.{DOMAIN}"),
                MAIL_HOST,
                PORTS.imaps,
                0,
                1,
            )
            .srv(
                &format!("_submissions._tcp.{DOMAIN}"),
                MAIL_HOST,
                PORTS.submissions,
                0,
                1,
            )
            .local_domain(DOMAIN)
            .listen(authoritative)
            .in_netns(&prov_ns)
            .start()
            .expect("authoritative dnsmasq");
        let reference_dns = Unbound::builder()
            .forward_zone(DOMAIN, authoritative)
            .listen(reference_resolver)
            .in_netns(&inet_ns)
            .start()
            .expect("reference unbound");
        let canary_web = Nginx::builder()
            .server_block_extra("location / { return 200 'canary'; }")
            .listen(canary)
            .in_netns(&inet_ns)
            .start()
            .expect("canary nginx");

        let mut bed = TestBed {
            site_ns,
            router_ns,
            inet_ns,
            prov_ns,
            agent_ip,
            gateway: IpAddr::V4(host(lan, 1)),
            site_resolver,
            reference_resolver,
            canary,
            provider_ip: provider,
            authoritative,
            ca_pem: pki.ca_pem.clone(),
            imap: at(PORTS.imap),
            imaps: at(PORTS.imaps),
            pop3: at(PORTS.pop3),
            pop3s: at(PORTS.pop3s),
            smtp: at(PORTS.smtp),
            submissions: at(PORTS.submissions),
            https: at(PORTS.https),
            user: "probe@example.test",
            password: "probe-secret",
            site_dns: None,
            site_dns_mode: SiteDns::Forwarding,
            reference_dns,
            canary_web,
            authoritative_dns,
            dovecot: None,
            exim: None,
            web: None,
            cert_valid,
            cert_expired: None,
            cert_in_use: Validity::Current,
            pki,
            _pki_dir: pki_dir,
            ns,
        };
        bed.start_site_resolver();
        bed.start_mail_services();
        bed.wait_reachable_from_site();
        bed
    }

    /// Polls, from the site namespace, everything a healthy bed answers, so that
    /// a test starts from a known-good state (the daemons' own readiness checks
    /// ran in their namespaces and did not cross the router).
    fn wait_reachable_from_site(&self) {
        let deadline = Instant::now() + READY_DEADLINE;
        let checks: [(&str, &Check); 4] = [
            ("site resolver", &|| self.expect_mx(self.site_resolver)),
            ("reference resolver", &|| {
                self.expect_mx(self.reference_resolver)
            }),
            ("canary", &|| self.tcp_from_site(self.canary)),
            ("IMAP greeting", &|| {
                let timeout = Duration::from_secs(1);
                let line = self
                    .in_site(|| super::process::first_line(self.imap, timeout))
                    .map_err(|e| e.to_string())?;
                match line.starts_with("* OK") {
                    true => Ok(()),
                    false => Err(line),
                }
            }),
        ];
        for (what, check) in checks {
            let mut backoff = Duration::from_millis(2);
            loop {
                match check() {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => {
                        panic!("test bed: {what} not reachable from the site: {e}")
                    }
                    Err(_) => {}
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
    }

    fn expect_mx(&self, server: SocketAddr) -> Result<(), String> {
        let reply = self
            .dns_query_from_site(server, DOMAIN, QTYPE_MX, Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
        match reply.rcode == 0 && !reply.answers.is_empty() {
            true => Ok(()),
            false => Err(format!("{reply:?}")),
        }
    }

    fn tcp_from_site(&self, addr: SocketAddr) -> Result<(), String> {
        self.connect_from_site(addr, Duration::from_secs(1))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// Runs `f` on a thread inside the site namespace (see [`run_in`]); panics
    /// if the namespace cannot be entered.
    pub fn in_site<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in(&self.site_ns, f).unwrap_or_else(|e| panic!("enter {}: {e}", self.site_ns))
    }

    /// A TCP connection made from the agent's host (the site namespace).
    pub fn connect_from_site(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        self.in_site(|| TcpStream::connect_timeout(&addr, timeout))
    }

    /// [`dns_query`] sent from the site namespace.
    pub fn dns_query_from_site(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: u16,
        timeout: Duration,
    ) -> io::Result<DnsReply> {
        self.in_site(|| dns_query(server, name, qtype, timeout))
    }

    /// [`ping`] sent from the site namespace.
    pub fn ping_from_site(&self, ip: Ipv4Addr, timeout: Duration) -> io::Result<Duration> {
        self.in_site(|| ping(ip, timeout))
    }

    /// An HTTP/1.1 `GET path` to `addr` from the site namespace (where the agent
    /// serves /metrics): `(status, body)`, de-chunked. An error (e.g. refused
    /// while the agent starts) is returned, not raised, so callers can poll.
    pub fn http_get_in_site(&self, addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
        self.in_site(|| http_get(addr, path, Duration::from_secs(5)))
    }

    /// `program` as a command that runs in the site namespace (`ip netns exec`),
    /// e.g. the agent binary for [`ChildGuard::spawn`](super::process::ChildGuard::spawn).
    pub fn command_in_site(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        super::process::command(program, Some(&self.site_ns))
    }

    /// Runs `args` in the site namespace and waits for it (stdin closed).
    pub fn exec_in_site(&self, args: &[&str]) -> Output {
        let (program, rest) = args.split_first().expect("a program to run");
        self.command_in_site(program)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", self.site_ns))
    }

    fn cert_files(&mut self) -> (PathBuf, PathBuf) {
        match self.cert_in_use {
            Validity::Expired => {
                let pki = &self.pki;
                self.cert_expired
                    .get_or_insert_with(|| {
                        pki.issue(MAIL_HOST, &[MAIL_HOST, MX_HOST], Validity::Expired)
                    })
                    .clone()
            }
            _ => self.cert_valid.clone(),
        }
    }

    /// (Re)starts Dovecot, Exim and the HTTPS nginx with the certificate in use.
    fn start_mail_services(&mut self) {
        self.start_dovecot();
        (self.exim, self.web) = (None, None);
        let (cert, key) = self.cert_files();
        let exim = Exim::builder()
            .user(self.user, self.password)
            .auth_only_after_tls(true)
            .tls(&cert, &key)
            .listen(self.provider_ip, [PORTS.smtp, PORTS.submissions])
            .in_netns(&self.prov_ns)
            .start()
            .expect("exim");
        let web = Nginx::builder()
            .tls(&cert, &key)
            .server_block_extra("location / { return 200 'ok'; }")
            .server_block_extra("location = /owa/healthcheck.htm { return 200 '200 OK'; }")
            // Redirects a probe must refuse: into the agent's own host, to a cloud
            // metadata address, and down to plain HTTP.
            .server_block_extra(
                "location = /redirect/loopback { return 302 https://127.0.0.1/latest/meta-data/; }",
            )
            .server_block_extra(
                "location = /redirect/link-local { return 302 https://169.254.169.254/latest/meta-data/; }",
            )
            .server_block_extra(
                "location = /redirect/plain-http { return 302 http://mail.example.test/; }",
            )
            .listen(self.https)
            .in_netns(&self.prov_ns)
            .start()
            .expect("https nginx");
        (self.exim, self.web) = (Some(exim), Some(web));
    }

    fn lan_cidr(&self) -> String {
        format!("{}/24", self.gateway)
    }

    fn prov_cidr(&self) -> String {
        format!("{}/24", self.provider_ip)
    }
}
