//! A real unbound that gives SERVFAIL / REFUSED / NXDOMAIN / NODATA on demand.
//!
//! Measured with unbound 1.17 and this config:
//! - [`UnboundBuilder::servfail_zone`] (forwarded to a server that REFUSES):
//!   SERVFAIL, first query ~35 ms, later ones ~1 ms;
//! - [`UnboundBuilder::refuse_zone`] (`always_refuse`): REFUSED;
//! - [`UnboundBuilder::nxdomain_zone`] (`always_nxdomain`): NXDOMAIN;
//! - `local_data` in a `static` zone: NOERROR with answer (AA set); another
//!   type at that name: NOERROR/NODATA; another name in the zone: NXDOMAIN;
//! - any name outside the configured zones: REFUSED (a `local-zone: "." refuse`
//!   catch-all), so unbound never tries to reach root servers. As a second
//!   guard, `outgoing-interface: 127.0.0.1` makes any upstream query to a
//!   non-loopback address fail inside the kernel instead of leaving the machine.
//!
//! Inside a test bed namespace ([`UnboundBuilder::in_netns`]) the guards are the
//! namespace's: it may forward to addresses of the bed's range
//! ([`netns::BED_NET`](super::netns::BED_NET)) only, sends from its listen address,
//! and answers any client (the namespace has no link to anything else).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;

use super::netns::in_bed_range;
use super::process::{
    ChildGuard, StartError, command, daemon_dir, fixed_or_free_port, spawn_ready, write_config,
};

/// A running unbound listening on `addr` (UDP and TCP); killed on drop.
/// Why: dnsmasq cannot produce a quick SERVFAIL; unbound can, plus REFUSED
/// and NXDOMAIN zones, so resolver error classification can be tested for real.
pub struct Unbound {
    /// Where to send DNS queries (127.0.0.1 and a free port unless
    /// [`UnboundBuilder::listen`] chose it; UDP and TCP).
    pub addr: SocketAddr,
    /// The network namespace it runs in ([`UnboundBuilder::in_netns`]).
    pub netns: Option<String>,
    child: ChildGuard, // dropped (killed) before `dir` is removed
    dir: tempfile::TempDir,
}

/// Collects zones and data for [`Unbound`]; call [`start`](Self::start) to run it.
#[derive(Default)]
pub struct UnboundBuilder {
    server: String,
    forwards: String,
    upstreams: Vec<SocketAddr>,
    listen: Option<SocketAddr>,
    netns: Option<String>,
}

impl Unbound {
    /// Starts describing an unbound that REFUSES everything until zones are added.
    pub fn builder() -> UnboundBuilder {
        UnboundBuilder::default()
    }

    /// The daemon's log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.child.log_contents()
    }

    /// The temp dir holding unbound.conf, the log and the pid file; removed on drop.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

fn zone(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl UnboundBuilder {
    /// `local-zone: "<zone>" <kind>`; use `"static"` so that names/types without
    /// `local_data` answer NXDOMAIN/NODATA instead of being resolved upstream.
    pub fn local_zone(mut self, name: &str, kind: &str) -> Self {
        let _ = writeln!(self.server, "  local-zone: \"{}\" {kind}", zone(name));
        self
    }

    /// `local-data: "<rr>"`, e.g. `"example.test. MX 10 old-mx.example.test."`.
    /// Needs an enclosing [`local_zone`](Self::local_zone).
    pub fn local_data(mut self, rr: &str) -> Self {
        let _ = writeln!(self.server, "  local-data: \"{rr}\"");
        self
    }

    /// Every name under `name` answers REFUSED (`always_refuse`).
    pub fn refuse_zone(self, name: &str) -> Self {
        self.local_zone(name, "always_refuse")
    }

    /// Every name under `name` answers NXDOMAIN (`always_nxdomain`).
    pub fn nxdomain_zone(self, name: &str) -> Self {
        self.local_zone(name, "always_nxdomain")
    }

    /// Forwards `name` to `upstream` (on loopback), which must ANSWER with
    /// REFUSED, e.g. `Dnsmasq::builder().start()` (no records): unbound then
    /// answers SERVFAIL in ~35 ms (first query), ~1 ms after. Trap (measured):
    /// with a closed port or a [`SilentDnsServer`](super::silent_udp::SilentDnsServer)
    /// upstream, unbound keeps retrying with backoff and sends no answer for over 30 s.
    pub fn servfail_zone(self, name: &str, upstream: SocketAddr) -> Self {
        self.forward_zone(name, upstream)
    }

    /// Forwards `name` to `upstream`, e.g. to chain to a dnsmasq. `upstream` must
    /// be loopback, or (with [`in_netns`](Self::in_netns)) in the test bed range;
    /// checked by [`start`](Self::start), which panics otherwise.
    pub fn forward_zone(mut self, name: &str, upstream: SocketAddr) -> Self {
        self.upstreams.push(upstream);
        let z = zone(name);
        // transparent: lets the query past the "." refuse catch-all to the forwarder.
        let _ = writeln!(self.server, "  local-zone: \"{z}\" transparent");
        let _ = write!(
            self.forwards,
            "forward-zone:\n  name: \"{z}\"\n  forward-addr: {}@{}\n",
            upstream.ip(),
            upstream.port()
        );
        self
    }

    /// Listens on exactly `addr` instead of 127.0.0.1 and a free port, e.g.
    /// `10.213.1.53:53` inside a test bed namespace (no retry on "in use").
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Runs unbound inside network namespace `netns` (`ip netns exec`), polling
    /// readiness from inside it. Needs [`listen`](Self::listen).
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    /// Runs unbound on 127.0.0.1 and a free port (or on [`listen`](Self::listen)'s
    /// address); returns once its TCP port accepts.
    pub fn start(self) -> Result<Unbound, StartError> {
        for upstream in &self.upstreams {
            let ok = match self.netns {
                None => upstream.ip().is_loopback(),
                Some(_) => upstream.ip().is_loopback() || in_bed_range(upstream.ip()),
            };
            assert!(
                ok,
                "unbound may not forward to {upstream}: not loopback/bed range"
            );
        }
        fixed_or_free_port(
            "unbound",
            self.listen,
            self.netns.is_some(),
            |addr| self.start_on(addr),
            |ip, port| self.start_on(SocketAddr::new(ip, port)),
        )
    }

    fn start_on(&self, addr: SocketAddr) -> Result<Unbound, StartError> {
        let dir = daemon_dir("unbound")?;
        let d = dir.path().display();
        // Loopback: send only from 127.0.0.1 (see the module docs). In a bed
        // namespace: send from the listen address, answer every client.
        let (outgoing, clients) = match self.netns {
            None => ("127.0.0.1".to_string(), "127.0.0.0/8"),
            Some(_) => (addr.ip().to_string(), "0.0.0.0/0"),
        };
        let conf = format!(
            "server:
  interface: {ip}@{port}
  port: {port}
  do-ip4: yes
  do-ip6: no
  do-udp: yes
  do-tcp: yes
  do-daemonize: no
  use-syslog: no
  logfile: \"\"
  verbosity: 1
  log-servfail: yes
  username: \"\"
  chroot: \"\"
  directory: \"{d}\"
  pidfile: \"{d}/unbound.pid\"
  num-threads: 1
  so-reuseport: no
  module-config: \"iterator\"
  outgoing-interface: {outgoing}
  do-not-query-localhost: no
  access-control: {clients} allow
  local-zone: \"test.\" nodefault
  local-zone: \".\" refuse
{server}{forwards}remote-control:
  control-enable: no
",
            ip = addr.ip(),
            port = addr.port(),
            server = self.server,
            forwards = self.forwards,
        );
        let conf_path = dir.path().join("unbound.conf");
        write_config("unbound", &conf_path, conf)?;
        // so-reuseport: no, or a second root process on the same port (a port
        // race) would silently share it and get half of the queries.
        let netns = self.netns.as_deref();
        let mut cmd: Command = command("unbound", netns);
        cmd.arg("-d").arg("-c").arg(&conf_path);
        let log = dir.path().join("unbound.log");
        let child = spawn_ready("unbound", cmd, &log, netns, &[addr], &conf_path)?;
        Ok(Unbound {
            addr,
            netns: self.netns.clone(),
            child,
            dir,
        })
    }
}
