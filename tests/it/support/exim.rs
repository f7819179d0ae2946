//! A real Exim SMTP server: a plain port with STARTTLS and an implicit-TLS port.
//!
//! Measured with Exim 4.96 (Debian exim4-daemon-light, GnuTLS) and this config:
//! - greeting: `220 mail.example.test ESMTP Exim 4.96 Tue, 24 Nov 2026 13:00:03 +0000`
//!   (same over TLS on `submissions`);
//! - `EHLO client.example.test` on the plain port: `250-mail.example.test Hello
//!   client.example.test [127.0.0.1]`, `250-SIZE 52428800`, `250-8BITMIME`,
//!   `250-PIPELINING`, `250-PIPECONNECT`, `250-AUTH PLAIN LOGIN` (when offered),
//!   `250-CHUNKING`, `250-STARTTLS`, `250-SMTPUTF8`, `250 HELP` (after TLS: no STARTTLS);
//! - `STARTTLS`: `220 TLS go ahead`; AUTH good: `235 Authentication succeeded`,
//!   bad: `535 Incorrect authentication data`; AUTH when not offered:
//!   `503 AUTH command used when not advertised`; `QUIT`: `221 mail.example.test closing connection`;
//! - every RCPT is refused (`550 Administrative prohibition`): nothing is ever queued —
//!   unless [`EximBuilder::deliver_to`] makes it a submission server that accepts mail
//!   from its authenticated users for `example.test` and delivers it over LMTP (to
//!   [`Dovecot`](super::Dovecot)'s): `250 OK id=1xXw16-0000Be-2V` after DATA, then
//!   `=> probe@example.test R=to_dovecot T=dovecot_lmtp … C="250 2.0.0 <…> … Saved"`
//!   in the main log. [`Exim::fault`] then injects, per message, what real servers do
//!   ([`MailFault`]): all are ACL conditions on a file, so a fault comes and goes
//!   without a restart.
//!
//! [`EximBuilder::listen`] and [`EximBuilder::in_netns`] run it on fixed ports of
//! an address inside a test bed namespace instead.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ports::free_port;
use super::process::{
    ChildGuard, ProcessGroup, StartError, chmod_755, command, daemon_dir, expect_greeting,
    fixed_or_free_port, spawn_group_ready, system_user, write_config,
};

/// Exim's Debian location; also its `exim_path` (it re-executes itself).
const EXIM: &str = "/usr/sbin/exim4";

/// The reply of [`EximBuilder::refuse_at_connect`]. Exim's own default for a
/// connect-ACL `deny` would be `550 Administrative prohibition`; RFC 5321 3.1
/// says 554 for a server that refuses service at connection time.
pub const REFUSE_REPLY: &str = "554 No SMTP service here";

/// A fault of a delivering Exim ([`EximBuilder::deliver_to`]), switched by a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailFault {
    /// `RCPT TO` refused: `550 5.7.1 Rejected by test policy`.
    Reject,
    /// `RCPT TO` deferred, as greylisting does: `451 4.7.1 Greylisted, try again later`.
    Greylist,
    /// Accepted and frozen (`control = freeze/no_tell`): never delivered until
    /// [`Exim::deliver_frozen`].
    Freeze,
    /// The answer to the end of DATA comes only after 20 s.
    SlowData,
}

impl MailFault {
    fn file(self) -> &'static str {
        match self {
            MailFault::Reject => "reject",
            MailFault::Greylist => "greylist",
            MailFault::Freeze => "freeze",
            MailFault::SlowData => "slow_data",
        }
    }
}

/// A running Exim; it and its per-connection processes are killed on drop.
/// Why: SMTP probes must meet a real server's greeting, EHLO, STARTTLS, AUTH,
/// slow banners and refusals.
pub struct Exim {
    /// SMTP with STARTTLS (25/587-style).
    pub smtp: SocketAddr,
    /// SMTP over implicit TLS (465-style, `tls_on_connect_ports`).
    pub submissions: SocketAddr,
    /// The network namespace it runs in ([`EximBuilder::in_netns`]).
    pub netns: Option<String>,
    group: ProcessGroup, // kills the daemon and its children, then `child` reaps it
    child: ChildGuard,
    dir: tempfile::TempDir,
}

/// Describes an [`Exim`]; call [`start`](Self::start) to run it.
pub struct EximBuilder {
    tls: Option<(PathBuf, PathBuf)>,
    users: Vec<(String, String)>,
    auth_only_after_tls: bool,
    banner_delay: Duration,
    refuse_at_connect: bool,
    starttls: bool,
    listen: Option<(IpAddr, [u16; 2])>,
    netns: Option<String>,
    deliver_to: Option<SocketAddr>,
}

impl Exim {
    /// Starts describing an Exim with STARTTLS offered, no users (so no AUTH
    /// offered), no delay. [`EximBuilder::tls`] is required.
    pub fn builder() -> EximBuilder {
        EximBuilder {
            tls: None,
            users: Vec::new(),
            auth_only_after_tls: false,
            banner_delay: Duration::ZERO,
            refuse_at_connect: false,
            starttls: true,
            listen: None,
            netns: None,
            deliver_to: None,
        }
    }

    /// Switches `fault` on or off for the messages that come next.
    pub fn fault(&self, fault: MailFault, on: bool) {
        let path = self.dir.path().join("faults").join(fault.file());
        if on {
            std::fs::write(&path, "").expect("create the fault file");
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }

    /// Delivers every queued message now, frozen ones included (`exim -qff`), and
    /// returns once the queue run is over.
    pub fn deliver_frozen(&self) {
        let output = std::process::Command::new(EXIM)
            .arg("-C")
            .arg(self.dir.path().join("exim.conf"))
            .arg("-qff")
            .output()
            .expect("run exim -qff");
        assert!(
            output.status.success(),
            "exim -qff failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }

    /// Exim's main log and stderr so far, for assertion messages.
    pub fn log(&self) -> String {
        self.child.log_contents()
    }

    /// The temp dir holding exim.conf, the spool, logs and the TLS files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Escapes `s` as a literal inside an Exim expansion.
fn literal(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if matches!(c, '\\' | '$' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

impl EximBuilder {
    /// Serve TLS with this certificate (full-chain PEM) and key; copied into the
    /// temp dir because Exim runs as `Debian-exim` and must be able to read them.
    /// Required (the `submissions` port needs it).
    pub fn tls(mut self, cert_pem: impl AsRef<Path>, key_pem: impl AsRef<Path>) -> Self {
        self.tls = Some((cert_pem.as_ref().into(), key_pem.as_ref().into()));
        self
    }

    /// Offers AUTH PLAIN and LOGIN, accepting this user and password (repeatable).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        assert!(
            !format!("{name}{password}").contains(['\n', '\r']),
            "line break in credentials"
        );
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// `true`: AUTH is offered only after STARTTLS (or on `submissions`), like
    /// real submission servers.
    pub fn auth_only_after_tls(mut self, yes: bool) -> Self {
        self.auth_only_after_tls = yes;
        self
    }

    /// Sends the greeting only after `delay`. Whole seconds use Exim's `delay`
    /// modifier; Exim accepts no fraction of a second there (`200ms` and `0.2s`
    /// make it answer every connection with `451 Temporary local problem`), so
    /// other delays run `/bin/sleep` from the connect ACL. Readiness then only
    /// waits for the ports to accept.
    pub fn banner_delay(mut self, delay: Duration) -> Self {
        self.banner_delay = delay;
        self
    }

    /// Answers every connection with [`REFUSE_REPLY`] instead of a greeting, then closes.
    pub fn refuse_at_connect(mut self) -> Self {
        self.refuse_at_connect = true;
        self
    }

    /// Does not offer STARTTLS (`tls_advertise_hosts` empty); `submissions` still does TLS.
    pub fn no_starttls(mut self) -> Self {
        self.starttls = false;
        self
    }

    /// Listens on `ip` with ports `[smtp, submissions]` instead of two free ports
    /// of 127.0.0.1. No retry on "in use". Trap: Exim gives up root for a `-C`
    /// config before it binds, so ports below 1024 (25, 465) need
    /// `net.ipv4.ip_unprivileged_port_start` lowered in its network namespace
    /// (the test bed does that in its provider namespace).
    pub fn listen(mut self, ip: IpAddr, ports: [u16; 2]) -> Self {
        self.listen = Some((ip, ports));
        self
    }

    /// Accepts mail for `example.test` from authenticated users and delivers it over
    /// LMTP to `lmtp` (Dovecot's, [`DovecotBuilder::delivery`](super::DovecotBuilder::delivery)).
    pub fn deliver_to(mut self, lmtp: SocketAddr) -> Self {
        self.deliver_to = Some(lmtp);
        self
    }

    /// Runs Exim inside network namespace `netns` (`ip netns exec`), polling
    /// readiness and the greeting from inside it. Needs [`listen`](Self::listen).
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    /// Runs Exim on two free ports of 127.0.0.1 (or [`listen`](Self::listen)'s);
    /// returns once both accept and (without a banner delay) the plain port has
    /// sent its 220 or 554.
    pub fn start(self) -> Result<Exim, StartError> {
        fixed_or_free_port(
            "exim",
            self.listen,
            self.netns.is_some(),
            |(ip, [smtp, submissions])| self.start_on(ip, smtp, Some(submissions)),
            |ip, port| self.start_on(ip, port, None),
        )
    }

    fn connect_acl(&self) -> String {
        let verb = match self.refuse_at_connect {
            true => format!("deny message = {REFUSE_REPLY}"),
            false => "accept".to_string(),
        };
        let (secs, millis) = (
            self.banner_delay.as_secs(),
            self.banner_delay.subsec_millis(),
        );
        let delay = match (secs, millis) {
            (0, 0) => String::new(),
            (s, 0) => format!("\n    delay = {s}s"),
            (s, ms) => {
                format!("\n    condition = ${{run{{/bin/sleep {s}.{ms:03}}}{{yes}}{{yes}}}}")
            }
        };
        format!("acl_connect:\n  {verb}{delay}\n")
    }

    /// The RCPT and DATA ACLs, and the routers and transports: refuse everything, or
    /// (with `deliver_to`) accept and deliver over LMTP, with the fault files in
    /// `faults`.
    fn delivery(&self, faults: &Path) -> (String, String) {
        let Some(lmtp) = self.deliver_to else {
            return (
                "acl_rcpt:\n  deny\nacl_data:\n  accept\n".to_string(),
                String::new(),
            );
        };
        let f = |fault: MailFault| faults.join(fault.file()).display().to_string();
        let acl = format!(
            "acl_rcpt:
  deny condition = ${{if exists{{{reject}}}}}
       message = 550 5.7.1 Rejected by test policy
  defer condition = ${{if exists{{{greylist}}}}}
       message = 451 4.7.1 Greylisted, try again later
  accept authenticated = *
         domains = example.test
         condition = ${{if exists{{{freeze}}}}}
         control = freeze/no_tell
  accept authenticated = *
         domains = example.test
  deny
acl_data:
  accept condition = ${{if exists{{{slow}}}}}
         delay = 20s
  accept
",
            reject = f(MailFault::Reject),
            greylist = f(MailFault::Greylist),
            freeze = f(MailFault::Freeze),
            slow = f(MailFault::SlowData),
        );
        let routing = format!(
            "
begin routers
to_dovecot:
  driver = manualroute
  domains = example.test
  route_list = * {ip}
  transport = dovecot_lmtp
  self = send

begin transports
dovecot_lmtp:
  driver = smtp
  protocol = lmtp
  port = {port}
  hosts_try_auth =
  allow_localhost
",
            ip = lmtp.ip(),
            port = lmtp.port()
        );
        (acl, routing)
    }

    fn authenticators(&self) -> String {
        if self.users.is_empty() {
            return String::new();
        }
        // ${if or{ {and{{eq{$auth2}{user}}{eq{$auth3}{password}}}} ... }}
        let check = |u: &str, p: &str| {
            let any: String = (self.users.iter())
                .map(|(n, w)| {
                    [
                        "{and{{eq{",
                        u,
                        "}{",
                        &literal(n),
                        "}}{eq{",
                        p,
                        "}{",
                        &literal(w),
                        "}}}}",
                    ]
                    .concat()
                })
                .collect();
            ["${if or{", &any, "}}"].concat()
        };
        let advertise = match self.auth_only_after_tls {
            true => "\n  server_advertise_condition = ${if def:tls_in_cipher}",
            false => "",
        };
        format!(
            "plain:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = {plain}
  server_set_id = $auth2{advertise}
login:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_condition = {login}
  server_set_id = $auth1{advertise}
",
            plain = check("$auth2", "$auth3"),
            login = check("$auth1", "$auth2"),
        )
    }

    /// `submissions_port`: `None` picks a free port of `ip`.
    fn start_on(
        &self,
        ip: IpAddr,
        smtp_port: u16,
        submissions_port: Option<u16>,
    ) -> Result<Exim, StartError> {
        let err = |what: &str, e: &dyn std::fmt::Display| StartError(format!("exim: {what}: {e}"));
        let (cert, key) = self.tls.as_ref().ok_or_else(|| {
            StartError("exim: .tls(cert, key) is required (submissions needs it)".into())
        })?;
        let dir = daemon_dir("exim")?;
        let d = dir.path();
        // Exim gives up root for a -C config and runs as Debian-exim: everything it
        // reads must be readable, and the spool and logs writable, by that user.
        let (uid, gid) = system_user("Debian-exim")?;
        chmod_755(d).map_err(|e| err("chmod", &e))?;
        for sub in ["spool", "log"] {
            let sub = d.join(sub);
            std::fs::create_dir(&sub).map_err(|e| err("mkdir", &e))?;
            std::os::unix::fs::chown(&sub, Some(uid), Some(gid)).map_err(|e| err("chown", &e))?;
        }
        // The main log doubles as the ChildGuard log; created now so Exim can append to it.
        let log = d.join("log/mainlog");
        std::fs::write(&log, "").map_err(|e| err("create log", &e))?;
        std::fs::copy(cert, d.join("tls.crt")).map_err(|e| err("copy cert", &e))?;
        std::fs::copy(key, d.join("tls.key")).map_err(|e| err("copy key", &e))?;
        for f in ["log/mainlog", "tls.crt", "tls.key"] {
            std::os::unix::fs::chown(d.join(f), Some(uid), Some(gid))
                .map_err(|e| err("chown", &e))?;
        }
        let submissions_port = submissions_port.unwrap_or_else(|| free_port(ip));
        // Fault files: Exim (as Debian-exim) only needs to see whether they exist.
        let faults = d.join("faults");
        std::fs::create_dir(&faults).map_err(|e| err("mkdir faults", &e))?;
        chmod_755(&faults).map_err(|e| err("chmod faults", &e))?;
        let (rcpt_acl, routing) = self.delivery(&faults);
        let conf = format!(
            "primary_hostname = mail.example.test
exim_path = {EXIM}
keep_environment =
spool_directory = {d}/spool
log_file_path = {d}/log/%slog
pid_file_path = {d}/exim.pid
local_interfaces = {ip}
daemon_smtp_ports = {smtp_port} : {submissions_port}
tls_on_connect_ports = {submissions_port}
daemon_startup_retries = 0
tls_certificate = {d}/tls.crt
tls_privatekey = {d}/tls.key
tls_advertise_hosts = {advertise}
host_lookup =
rfc1413_hosts =
acl_smtp_connect = acl_connect
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl
{connect_acl}{rcpt_acl}
begin authenticators
{authenticators}{routing}",
            d = d.display(),
            advertise = if self.starttls { "*" } else { "" },
            connect_acl = self.connect_acl(),
            authenticators = self.authenticators(),
        );
        let conf_path = d.join("exim.conf");
        write_config("exim", &conf_path, conf)?;
        // -bdf: daemon in the foreground. daemon_startup_retries = 0: a busy port
        // fails at once ("... Address already in use: daemon abandoned") instead of
        // retrying 9 times 30 s apart. pid_file_path: else /run/exim4/exim.pid.
        let netns = self.netns.as_deref();
        let mut cmd = command(EXIM, netns);
        cmd.arg("-C").arg(&conf_path).arg("-bdf");
        let smtp = SocketAddr::new(ip, smtp_port);
        let submissions = SocketAddr::new(ip, submissions_port);
        let addrs = [smtp, submissions];
        let (group, child) = spawn_group_ready("exim", cmd, &log, netns, &addrs, &conf_path)?;
        if self.banner_delay.is_zero() {
            let want = if self.refuse_at_connect {
                "554 "
            } else {
                "220 "
            };
            expect_greeting(&child, netns, smtp, want, &conf_path)?;
        }
        Ok(Exim {
            smtp,
            submissions,
            netns: self.netns.clone(),
            group,
            child,
            dir,
        })
    }
}
