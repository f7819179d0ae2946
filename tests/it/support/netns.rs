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

/// Whether `ip` is inside [`BED_NET`].
pub fn in_bed_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let (net, len) = BED_NET;
            let mask = u32::MAX << (32 - len);
            u32::from(v4) & mask == u32::from(net)
        }
        IpAddr::V6(_) => false,
    }
}

/// Moves the CALLING THREAD into network namespace `netns` (by name, as made
/// by `ip netns add`). Only that thread's new sockets and `/proc/thread-self/net`
/// are affected. Usable as a tokio `on_thread_start` hook; prefer [`run_in`].
pub fn enter(netns: &str) -> io::Result<()> {
    let handle = File::open(Path::new(NETNS_DIR).join(netns))?;
    // SAFETY: setns(2) on a valid fd only changes this thread's namespace.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a fresh thread inside network namespace `netns` and returns its
/// result; the caller's thread never changes namespace. Why a thread: `setns`
/// is per thread and has no undo that is safe if `f` panics, so the thread
/// is thrown away instead. A panic in `f` is re-raised here.
pub fn run_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let joined = s
            .spawn(|| {
                enter(netns)?;
                Ok(f())
            })
            .join();
        joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs a command, returning its stdout, or its stderr as the error.
fn run(mut cmd: Command, stdin: &str) -> Result<String, String> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .map_err(|e| format!("{what}: stdin: {e}"))?;
    drop(input);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{what}: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// `ip ARGS`: its stdout, or its error message.
fn try_ip(args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    run(cmd, "")
}

/// `ip ARGS`, panicking with ip's message on failure.
fn ip(args: &[&str]) {
    try_ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Applies an nft script inside `netns`; `nft -f` applies it atomically.
fn nft_in(netns: &str, script: &str) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "nft", "-f", "-"]);
    run(cmd, script).unwrap_or_else(|e| panic!("{e}\n{script}"));
}

/// Writes one sysctl of `netns` (`key` as a path under /proc/sys).
fn sysctl_in(netns: &str, key: &str, value: &str) {
    // /proc/sys/net is resolved against the opening THREAD's namespace.
    let path = Path::new("/proc/sys").join(key);
    run_in(netns, || fs::write(&path, value))
        .and_then(|r| r)
        .unwrap_or_else(|e| panic!("sysctl {key}={value} in {netns}: {e}"));
}

/// An exclusive `flock` on [`LOCK_FILE`], released when dropped.
struct HostLock(File);

impl HostLock {
    /// Blocks until granted. Trap: flock locks belong to the open file, so a
    /// second `take()` in the same thread while one is held deadlocks.
    fn take() -> io::Result<HostLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)?;
        // SAFETY: flock(2) on a valid fd.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(HostLock(file))
    }
}

/// The pid in a bed namespace name `mp<pid>-...`, if it is one.
fn bed_owner(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("mp")?.split_once('-')?.0;
    digits.parse().ok()
}

/// Bed namespaces that exist now, with their owner pid.
fn bed_namespaces() -> Vec<(String, u32)> {
    let Ok(dir) = fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid = bed_owner(&name)?;
            Some((name, pid))
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Deletes one bed namespace: SIGKILLs what still runs in it (a daemon a
/// crashed run left, or a straggler of ours), then removes the name and its
/// `/etc/netns` files. Errors are reported, not raised (runs in Drop).
fn delete_namespace(name: &str) {
    if let Ok(pids) = try_ip(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill(2) only sends a signal to that one pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if let Err(e) = try_ip(&["netns", "del", name])
        && Path::new(NETNS_DIR).join(name).exists()
    {
        eprintln!("warning: {e}");
    }
    let _ = fs::remove_dir_all(Path::new("/etc/netns").join(name));
    // Only succeeds once empty: /etc/netns was not there before the beds.
    let _ = fs::remove_dir("/etc/netns");
}

/// Removes namespaces `mp<pid>-*` (and what runs in them) whose test process
/// `pid` no longer exists, e.g. after a test run was SIGKILLed. Returns their
/// names. [`TestBed::start`] calls it; safe while other processes have beds.
pub fn remove_stale_namespaces() -> Vec<String> {
    let _lock = HostLock::take().unwrap_or_else(|e| panic!("lock {LOCK_FILE}: {e}"));
    remove_stale_locked()
}

fn remove_stale_locked() -> Vec<String> {
    let me = std::process::id();
    let stale: Vec<String> = bed_namespaces()
        .into_iter()
        .filter(|(_, pid)| *pid != me && !alive(*pid))
        .map(|(name, _)| name)
        .collect();
    for name in &stale {
        delete_namespace(name);
    }
    stale
}

fn guard_route() -> String {
    format!("{}/{}", BED_NET.0, BED_NET.1)
}

/// The four namespaces of one bed. Deleting them (on drop) also deletes their
/// links, addresses, routes and nft tables; the host's guard route goes when no
/// bed of any live process is left (the namespaces themselves are the
/// reference count, so it works across threads and processes).
struct Namespaces {
    names: [String; 4],
}

impl Namespaces {
    fn create(prefix: &str) -> Namespaces {
        let names = ["site", "router", "inet", "prov"].map(|role| format!("{prefix}-{role}"));
        // Host-wide steps under the lock; any panic only after it is released,
        // since the cleanup in Drop takes it again.
        let failed = {
            let _lock = HostLock::take().unwrap_or_else(|e| panic!("lock {LOCK_FILE}: {e}"));
            for name in remove_stale_locked() {
                eprintln!("removed stale test bed namespace {name}");
            }
            match try_ip(&["route", "add", "prohibit", &guard_route()]) {
                Err(e) if !e.contains("File exists") => Some(format!("guard route: {e}")),
                _ => names.iter().find_map(|name| {
                    // Same name = debris of an earlier process that had our pid.
                    if Path::new(NETNS_DIR).join(name).exists() {
                        delete_namespace(name);
                    }
                    try_ip(&["netns", "add", name]).err()
                }),
            }
        };
        // Drop cleans up whatever was made (and the route, if no bed is left).
        let ns = Namespaces { names };
        if let Some(e) = failed {
            panic!("test bed namespaces: {e}");
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Best effort without the lock rather than a panic inside Drop.
        let _lock = HostLock::take()
            .map_err(|e| eprintln!("warning: lock {LOCK_FILE}: {e}"))
            .ok();
        for name in &self.names {
            delete_namespace(name);
        }
        // Only beds of live processes keep the route; those of dead ones are
        // debris that the next start() removes.
        let live = bed_namespaces().iter().any(|(_, pid)| alive(*pid));
        if !live
            && let Err(e) = try_ip(&["route", "del", "prohibit", &guard_route()])
            && !e.contains("No such process")
        {
            eprintln!("warning: {e}");
        }
    }
}

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

    // ----- faults, each with its inverse -----

    /// Takes the site host's only interface down: its connected and default
    /// routes vanish, so every connect off the host fails at once with
    /// ENETUNREACH and the agent finds no default gateway. The site resolver,
    /// being on this host, stays reachable (its forwards fail).
    pub fn site_link_down(&self) {
        ip(&["-n", &self.site_ns, "link", "set", "eth0", "down"]);
    }

    /// Undoes [`site_link_down`](Self::site_link_down), restoring the default
    /// route the kernel dropped with the link.
    pub fn site_link_up(&self) {
        ip(&["-n", &self.site_ns, "link", "set", "eth0", "up"]);
        let gw = self.gateway.to_string();
        ip(&[
            "-n",
            &self.site_ns,
            "route",
            "replace",
            "default",
            "via",
            &gw,
            "dev",
            "eth0",
        ]);
    }

    /// Kills the site resolver. Its address stays, so a query to it draws an
    /// ICMP port-unreachable: a connected UDP socket sees ECONNREFUSED at once,
    /// an unconnected one (as resolver libraries use) times out; TCP is refused.
    pub fn stop_site_resolver(&mut self) {
        self.site_dns = None;
    }

    /// Starts the site resolver again, in its last mode (forwarding or stale MX).
    pub fn start_site_resolver(&mut self) {
        self.site_dns = None; // a running one must free the port first
        let upstream = format!("server=/{DOMAIN}/{}", self.authoritative.ip());
        let mut builder = Dnsmasq::builder().arg(&upstream);
        if let SiteDns::StaleMx(old_mx) = &self.site_dns_mode {
            // Not DnsmasqBuilder::mx: that adds `local=/example.test/`, which would
            // stop the forwarding of every other name in the zone.
            builder = builder.arg(&format!("mx-host={DOMAIN},{old_mx},10"));
        }
        let dns = builder
            .listen(self.site_resolver)
            .in_netns(&self.site_ns)
            .start()
            .expect("site dnsmasq");
        self.site_dns = Some(dns);
    }

    /// Restarts the site resolver so that it answers `example.test MX` with
    /// `10 old_mx` from its own (stale, internal) data, while other names are
    /// still forwarded: the site's answer then differs from the reference's.
    pub fn site_resolver_serves_stale_mx(&mut self, old_mx: &str) {
        self.site_dns_mode = SiteDns::StaleMx(old_mx.to_string());
        self.start_site_resolver();
    }

    /// Restarts the site resolver as a plain forwarder again.
    pub fn site_resolver_forwards(&mut self) {
        self.site_dns_mode = SiteDns::Forwarding;
        self.start_site_resolver();
    }

    /// The router silently drops everything it would forward from or to the
    /// site LAN; it still answers the site itself (ping, TCP RST). Canaries,
    /// the reference resolver and the provider all time out; the site resolver
    /// answers only what it needs no forward for.
    pub fn drop_uplink(&self) {
        let lan = self.lan_cidr();
        let rules = format!("ip saddr {lan} drop\n    ip daddr {lan} drop");
        nft_in(&self.router_ns, &table("uplink", "forward", &rules));
    }

    /// Undoes [`drop_uplink`](Self::drop_uplink).
    pub fn restore_uplink(&self) {
        nft_in(&self.router_ns, &no_table("uplink"));
    }

    /// The provider's mail host (`.25`, every port, ICMP too) silently drops
    /// every packet from outside its own subnet: connects time out, the canary
    /// and DNS (the authoritative server is another address) are unaffected.
    pub fn provider_drops_packets(&self) {
        let rules = format!(
            "ip daddr {} ip saddr != {} drop",
            self.provider_ip,
            self.prov_cidr()
        );
        nft_in(&self.prov_ns, &table("provider", "input", &rules));
    }

    /// Undoes [`provider_drops_packets`](Self::provider_drops_packets).
    pub fn provider_accepts(&self) {
        nft_in(&self.prov_ns, &no_table("provider"));
    }

    /// The domain's authoritative DNS server silently drops every query from
    /// outside its subnet: both resolvers fail to resolve `example.test` names
    /// (the "remote DNS" fault) while the mail host itself stays reachable.
    /// Trap: unbound then answers nothing (no SERVFAIL) for 30 s and more.
    pub fn authoritative_drops_packets(&self) {
        let rules = format!(
            "ip daddr {} ip saddr != {} drop",
            self.authoritative.ip(),
            self.prov_cidr()
        );
        nft_in(&self.prov_ns, &table("authoritative", "input", &rules));
    }

    /// Undoes [`authoritative_drops_packets`](Self::authoritative_drops_packets).
    pub fn authoritative_accepts(&self) {
        nft_in(&self.prov_ns, &no_table("authoritative"));
    }

    /// Kills Dovecot: IMAP and POP3 connects are refused (RST) at once.
    pub fn stop_dovecot(&mut self) {
        self.dovecot = None;
    }

    /// Starts Dovecot again with the certificate in use.
    pub fn start_dovecot(&mut self) {
        self.dovecot = None;
        let (cert, key) = self.cert_files();
        let dovecot = Dovecot::builder()
            .user(self.user, self.password)
            .tls(&cert, &key)
            .plaintext_auth(false)
            .listen(
                self.provider_ip,
                [PORTS.imap, PORTS.imaps, PORTS.pop3, PORTS.pop3s],
            )
            .in_netns(&self.prov_ns)
            .start()
            .expect("dovecot");
        self.dovecot = Some(dovecot);
    }

    /// Restarts Dovecot, Exim and nginx with an expired certificate for
    /// `mail.example.test` from the same CA (not_after two days ago).
    pub fn use_expired_certificate(&mut self) {
        self.cert_in_use = Validity::Expired;
        self.start_mail_services();
    }

    /// Restarts Dovecot, Exim and nginx with the valid certificate again.
    pub fn use_valid_certificate(&mut self) {
        self.cert_in_use = Validity::Current;
        self.start_mail_services();
    }

    /// Dovecot's log, for assertion messages ("" while it is stopped).
    pub fn dovecot_log(&self) -> String {
        self.dovecot.as_ref().map(Dovecot::log).unwrap_or_default()
    }

    /// The site resolver's log (queries included; "" while it is stopped).
    pub fn site_resolver_log(&self) -> String {
        self.site_dns.as_ref().map(Dnsmasq::log).unwrap_or_default()
    }

    /// The logs of the reference resolver, the authoritative DNS server and
    /// Exim, for assertion messages.
    pub fn other_logs(&self) -> String {
        format!(
            "--- unbound ---\n{}\n--- authoritative ---\n{}\n--- exim ---\n{}\n--- canary ---\n{}",
            self.reference_dns.log(),
            self.authoritative_dns.log(),
            self.exim.as_ref().map(Exim::log).unwrap_or_default(),
            self.canary_web.log(),
        )
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

/// An nft script that (re)creates table `inet <name>` with one filter chain.
/// `add` + `delete` first, so that re-applying a fault replaces it.
fn table(name: &str, hook: &str, rules: &str) -> String {
    format!(
        "add table inet {name}\ndelete table inet {name}\n\
         table inet {name} {{\n  chain {hook} {{\n    \
         type filter hook {hook} priority 0; policy accept;\n    {rules}\n  }}\n}}\n"
    )
}

/// An nft script that removes table `inet <name>` whether or not it exists.
fn no_table(name: &str) -> String {
    format!("add table inet {name}\ndelete table inet {name}\n")
}

/// Links, addresses, routes and sysctls of a bed's namespaces
/// `[site, router, inet, prov]` on subnets `[lan, inet, prov]`.
fn wire(names: &[String; 4], [lan, inet, prov]: [[u8; 3]; 3]) {
    let [site, router, inet_ns, prov_ns] = names.each_ref().map(String::as_str);
    for ns in names {
        // Before any link exists, so that no link ever gets an IPv6 address:
        // the bed is IPv4-only, with no IPv6 chatter or fallbacks to reason about.
        sysctl_in(ns, "net/ipv6/conf/all/disable_ipv6", "1");
        sysctl_in(ns, "net/ipv6/conf/default/disable_ipv6", "1");
        ip(&["-n", ns, "link", "set", "lo", "up"]);
    }
    sysctl_in(router, "net/ipv4/ip_forward", "1");
    // Exim drops root before binding; ports 25 and 465 need this (per namespace).
    sysctl_in(prov_ns, "net/ipv4/ip_unprivileged_port_start", "0");
    // Created inside the router namespace, with the peer moved straight into the
    // leaf: no interface ever appears in the host namespace, so names are free.
    for (router_if, leaf, net, leaf_ips) in [
        ("site0", site, lan, &[2, 53][..]),
        ("inet0", inet_ns, inet, &[10, 53][..]),
        ("prov0", prov_ns, prov, &[25, 53][..]),
    ] {
        // `name` spelled out: `ip link add a ...` would parse "a" as "address".
        ip(&[
            "-n", router, "link", "add", "name", router_if, "type", "veth", "peer", "name", "eth0",
            "netns", leaf,
        ]);
        let gw = host(net, 1).to_string();
        ip(&[
            "-n",
            router,
            "addr",
            "add",
            &format!("{gw}/24"),
            "dev",
            router_if,
        ]);
        ip(&["-n", router, "link", "set", router_if, "up"]);
        for last in leaf_ips {
            let addr = format!("{}/24", host(net, *last));
            ip(&["-n", leaf, "addr", "add", &addr, "dev", "eth0"]);
        }
        ip(&["-n", leaf, "link", "set", "eth0", "up"]);
        ip(&[
            "-n", leaf, "route", "add", "default", "via", &gw, "dev", "eth0",
        ]);
    }
}

/// A DNS reply as [`dns_query`] decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReply {
    /// RCODE: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED.
    pub rcode: u8,
    /// Whether the AA flag was set.
    pub authoritative: bool,
    /// Answer records as text: `A` → `"10.213.2.25"`, `MX` → `"10 mx.example.test"`,
    /// `SRV` → `"0 1 993 mail.example.test"`, other types `"TYPE<n>"`.
    pub answers: Vec<String>,
}

/// One DNS query over UDP from the calling thread's namespace (wrap it in
/// [`run_in`] / [`TestBed::dns_query_from_site`]). The socket is unconnected, as in
/// resolver libraries (hickory), so an ICMP port-unreachable is NOT reported:
/// a dead server gives `ErrorKind::TimedOut` after `timeout`; a missing route
/// fails at once (e.g. ENETUNREACH). Why our own client: the bed must not need `dig`.
pub fn dns_query(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> io::Result<DnsReply> {
    let socket = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))?;
    let id = u16::try_from(std::process::id() & 0xffff).unwrap_or(0) ^ qtype;
    let mut query = Vec::with_capacity(64);
    query.extend_from_slice(&id.to_be_bytes());
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, 1 question
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len()).expect("label under 64 bytes"));
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend_from_slice(&qtype.to_be_bytes());
    query.extend_from_slice(&1u16.to_be_bytes()); // IN
    socket.send_to(&query, server)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no DNS answer"));
        }
        socket.set_read_timeout(Some(left))?;
        let (len, from) = match socket.recv_from(&mut buf) {
            // A read timeout surfaces as EAGAIN; say what it means.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => other?,
        };
        if from == server && len >= 12 && buf[..2] == id.to_be_bytes() {
            return parse_reply(&buf[..len])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad DNS reply"));
        }
    }
}

fn parse_reply(msg: &[u8]) -> Option<DnsReply> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]));
    let qdcount = u16_at(4)?;
    let ancount = u16_at(6)?;
    let mut pos = 12;
    for _ in 0..qdcount {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut answers = Vec::new();
    for _ in 0..ancount {
        pos = read_name(msg, pos)?.1;
        let (rtype, rdlen) = (u16_at(pos)?, usize::from(u16_at(pos + 8)?));
        let rdata = pos + 10;
        let text = match rtype {
            QTYPE_A if rdlen == 4 => {
                Ipv4Addr::from(<[u8; 4]>::try_from(msg.get(rdata..rdata + 4)?).ok()?).to_string()
            }
            QTYPE_MX => format!("{} {}", u16_at(rdata)?, read_name(msg, rdata + 2)?.0),
            QTYPE_SRV => format!(
                "{} {} {} {}",
                u16_at(rdata)?,
                u16_at(rdata + 2)?,
                u16_at(rdata + 4)?,
                read_name(msg, rdata + 6)?.0
            ),
            other => format!("TYPE{other}"),
        };
        answers.push(text);
        pos = rdata + rdlen;
    }
    Some(DnsReply {
        rcode: msg[3] & 0x0f,
        authoritative: msg[2] & 0x04 != 0,
        answers,
    })
}

/// Decodes the (possibly compressed) name at `pos`: `(name, position after it)`.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos)?;
        match len {
            0 => {
                return Some((labels.join("."), end.unwrap_or(pos + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                end.get_or_insert(pos + 2);
                pos = usize::from(u16::from_be_bytes([l & 0x3f, *msg.get(pos + 1)?]));
            }
            l => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(l))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                pos += 1 + usize::from(l);
            }
        }
    }
    None // a compression loop
}

/// One ICMP echo to `ip` from the calling thread's namespace (wrap it in
/// [`run_in`] / [`TestBed::ping_from_site`]): the round-trip time, or the error
/// of `sendto` (e.g. ENETUNREACH without a route) or `TimedOut`. Uses a raw
/// socket (we are root), so it needs no `ping` binary and no `ping_group_range`.
pub fn ping(ip: Ipv4Addr, timeout: Duration) -> io::Result<Duration> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let ident = u16::try_from(std::process::id() & 0xffff).unwrap_or(1);
    let mut echo = [
        8u8, 0, 0, 0, 0, 0, 0, 1, b'm', b'p', b'r', b'o', b'b', b'e', 0, 0,
    ];
    echo[4..6].copy_from_slice(&ident.to_be_bytes());
    let sum = checksum(&echo);
    echo[2..4].copy_from_slice(&sum.to_be_bytes());
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let started = Instant::now();
    // SAFETY: buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            echo.as_ptr().cast(),
            echo.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = [0u8; 1500];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no echo reply"));
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else {
            return Err(io::Error::last_os_error());
        };
        // A raw socket sees every ICMP packet of the namespace, IP header included.
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        let icmp = &buf[ihl.min(n)..n];
        if from == ip && icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes() {
            return Ok(started.elapsed());
        }
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).expect("folded to 16 bits")
}

/// A minimal HTTP/1.1 GET with `Connection: close`: `(status, body)`.
fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` on a TcpStream sends each fragment as its own segment.
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split =
        (raw.windows(4).position(|w| w == b"\r\n\r\n")).ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head
        .lines()
        .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = match chunked {
        true => dechunk(body).ok_or_else(|| bad("bad chunked body"))?,
        false => body.to_vec(),
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Decodes a `Transfer-Encoding: chunked` body (axum streams some responses).
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let data = rest.get(line_end + 2..line_end + 2 + size)?;
        out.extend_from_slice(data);
        rest = rest.get(line_end + 4 + size..)?;
    }
}
