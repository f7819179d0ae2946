//! A real dnsmasq serving fixed records on a loopback port.
//!
//! Measured with dnsmasq 2.90 (`--no-resolv`, no upstream servers):
//! - a name with a record of the asked type: NOERROR with answers (AA set);
//! - plain dnsmasq answers REFUSED (log: "config error is REFUSED (EDE: not
//!   ready)") for a name it HAS records for but not of the asked type, e.g.
//!   AAAA for an A-only host, which breaks A+AAAA lookups. So the builder adds
//!   `local=/<owner>/` for every record owner; with it, the answers are:
//!   - owner name, type it has no record of: NOERROR, no answers (NODATA, AA clear);
//!   - unknown name below an owner (`x.example.test` when `example.test`
//!     has an MX): NXDOMAIN;
//!   - a name under no owner and no [`DnsmasqBuilder::local_domain`]: REFUSED.
//! - it never answers SERVFAIL quickly: use [`Unbound`](super::unbound::Unbound) for that.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;

use super::process::{
    ChildGuard, StartError, command, daemon_dir, fixed_or_free_port, spawn_ready, write_config,
};

/// A running dnsmasq listening on `addr` (UDP and TCP); killed on drop.
/// Why: tests of MX/SRV/autodiscover lookups need a real DNS server whose
/// answers the test controls, without touching the machine's resolver.
pub struct Dnsmasq {
    /// Where to send DNS queries (127.0.0.1 and a free port unless
    /// [`DnsmasqBuilder::listen`] chose it; UDP and TCP).
    pub addr: SocketAddr,
    /// The network namespace it runs in ([`DnsmasqBuilder::in_netns`]).
    pub netns: Option<String>,
    child: ChildGuard, // dropped (killed) before `dir` is removed
    dir: tempfile::TempDir,
}

/// Collects records for [`Dnsmasq`]; call [`start`](Self::start) to run it.
/// Records go to a generated dnsmasq.conf (not the command line), because only
/// there does dnsmasq honour quoting (TXT strings with commas).
#[derive(Default)]
pub struct DnsmasqBuilder {
    lines: Vec<String>,
    owners: BTreeSet<String>,
    listen: Option<SocketAddr>,
    netns: Option<String>,
}

impl Dnsmasq {
    /// Starts describing a dnsmasq with no records (it REFUSES every query).
    pub fn builder() -> DnsmasqBuilder {
        DnsmasqBuilder::default()
    }

    /// The daemon's log so far (queries are logged), for assertion messages.
    pub fn log(&self) -> String {
        self.child.log_contents()
    }

    /// The temp dir holding dnsmasq.conf, the log and the pid file; removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl DnsmasqBuilder {
    fn record(mut self, owner: &str, line: String) -> Self {
        self.owners.insert(owner.trim_end_matches('.').to_string());
        self.lines.push(line);
        self
    }

    /// MX record `domain MX pref target`.
    pub fn mx(self, domain: &str, target: &str, pref: u16) -> Self {
        self.record(domain, format!("mx-host={domain},{target},{pref}"))
    }

    /// A record; repeat for several addresses.
    pub fn a(self, name: &str, ip: Ipv4Addr) -> Self {
        self.record(name, format!("host-record={name},{ip}"))
    }

    /// AAAA record; repeat for several addresses.
    pub fn aaaa(self, name: &str, ip: Ipv6Addr) -> Self {
        self.record(name, format!("host-record={name},{ip}"))
    }

    /// A or AAAA record depending on the address family.
    pub fn host(self, name: &str, ip: IpAddr) -> Self {
        self.record(name, format!("host-record={name},{ip}"))
    }

    /// SRV record, e.g. `srv("_imaps._tcp.example.test", "imap.example.test", 993, 0, 5)`.
    pub fn srv(self, name: &str, target: &str, port: u16, priority: u16, weight: u16) -> Self {
        self.record(
            name,
            format!("srv-host={name},{target},{port},{priority},{weight}"),
        )
    }

    /// CNAME `alias -> target`. When `target` has local records they follow the
    /// CNAME in the answer; when it has none (measured) the answer is the CNAME
    /// alone (a dangling alias), NOERROR.
    pub fn cname(self, alias: &str, target: &str) -> Self {
        self.record(alias, format!("cname={alias},{target}"))
    }

    /// TXT record with one character-string; commas and quotes in `text` are kept.
    pub fn txt(self, name: &str, text: &str) -> Self {
        let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
        self.record(name, format!("txt-record={name},\"{quoted}\""))
    }

    /// Makes unknown names under `domain` answer NXDOMAIN instead of REFUSED.
    pub fn local_domain(mut self, domain: &str) -> Self {
        self.lines.push(format!("local=/{domain}/"));
        self
    }

    /// Any other dnsmasq option, e.g. `"--address=/blocked.test/"` (escape hatch).
    pub fn arg(mut self, option: &str) -> Self {
        self.lines.push(option.trim_start_matches("--").to_string());
        self
    }

    /// Listens on exactly `addr` (UDP and TCP) instead of 127.0.0.1 and a free
    /// port, e.g. `10.213.0.53:53` inside a test bed namespace. No retry on
    /// "address in use": a fixed address is the caller's to keep free.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Runs dnsmasq inside network namespace `netns` (`ip netns exec`), and
    /// polls readiness from inside it. Needs [`listen`](Self::listen): a free
    /// port cannot be picked from the host for an address of another namespace.
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    /// Runs dnsmasq on 127.0.0.1 and a free port (or on [`listen`](Self::listen)'s
    /// address); returns once its TCP port accepts.
    pub fn start(self) -> Result<Dnsmasq, StartError> {
        fixed_or_free_port(
            "dnsmasq",
            self.listen,
            self.netns.is_some(),
            |addr| self.start_on(addr),
            |ip, port| self.start_on(SocketAddr::new(ip, port)),
        )
    }

    fn start_on(&self, addr: SocketAddr) -> Result<Dnsmasq, StartError> {
        let dir = daemon_dir("dnsmasq")?;
        let mut conf = String::new();
        for line in &self.lines {
            conf.push_str(line);
            conf.push('\n');
        }
        for owner in &self.owners {
            conf.push_str(&format!("local=/{owner}/\n"));
        }
        let conf_path = dir.path().join("dnsmasq.conf");
        write_config("dnsmasq", &conf_path, conf)?;
        let netns = self.netns.as_deref();
        let mut cmd: Command = command("dnsmasq", netns);
        cmd.arg("--keep-in-foreground")
            .arg("--log-facility=-") // stderr, which goes to the log file
            .arg("--log-queries")
            .arg(format!("--conf-file={}", conf_path.display())) // not /etc/dnsmasq.conf
            .arg("--no-resolv") // no upstreams: names it does not know are REFUSED
            .arg("--no-hosts") // ignore /etc/hosts
            .arg("--bind-interfaces")
            .arg(format!("--listen-address={}", addr.ip()))
            .arg(format!("--port={}", addr.port()))
            .arg("--user=root")
            .arg(format!(
                "--pid-file={}",
                dir.path().join("dnsmasq.pid").display()
            ));
        let log = dir.path().join("dnsmasq.log");
        let child = spawn_ready("dnsmasq", cmd, &log, netns, &[addr], &conf_path)?;
        Ok(Dnsmasq {
            addr,
            netns: self.netns.clone(),
            child,
            dir,
        })
    }
}
