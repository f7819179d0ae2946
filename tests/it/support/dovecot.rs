//! A real Dovecot (IMAP and POP3, each with STARTTLS and implicit TLS) on loopback ports.
//!
//! Measured with Dovecot 2.3.19 and this config (user `probe@example.test`):
//! - IMAP greeting: `* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE
//!   LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.`; after STARTTLS (or on imaps)
//!   the capability list has no STARTTLS. `LOGIN` good: `a OK [CAPABILITY ...] Logged in`;
//!   bad: `a NO [AUTHENTICATIONFAILED] Authentication failed.`
//! - POP3 greeting `+OK Dovecot (Debian) ready.`; `CAPA` lists `STLS` and `USER`;
//!   `PASS` good: `+OK Logged in.`, bad: `-ERR [AUTH] Authentication failed.`
//! - With `plaintext_auth(false)`: greeting capabilities end `STARTTLS LOGINDISABLED]`,
//!   LOGIN before TLS gets `* BAD [ALERT] Plaintext authentication not allowed ...` then
//!   `a NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS)
//!   connections.`; POP3 CAPA shows no `USER` and `USER` gets
//!   `-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.`
//!
//! [`DovecotBuilder::listen`] and [`DovecotBuilder::in_netns`] run it on fixed
//! ports of an address inside a test bed namespace instead.
//!
//! [`DovecotBuilder::delivery`] also serves LMTP on a free port of the same address
//! (the way [`Exim`](super::Exim) delivers into the mailboxes), runs Sieve (Debian's
//! dovecot-sieve; a user's script is `~/.dovecot.sieve`, see [`Dovecot::sieve`]) and
//! marks the `Junk` folder `\Junk` (RFC 6154). Measured: `LIST (SPECIAL-USE) "" "*"`
//! answers `* LIST (\Junk) "." Junk` once the folder exists; Sieve's `fileinto :create
//! "Junk"` creates it. [`DovecotBuilder::imap_capability`] replaces the CAPABILITY list
//! before and after login (`imap_capability`): Dovecot then still understands IDLE
//! but a client only uses what is advertised.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::ports::free_port;
use super::process::{
    ChildGuard, ProcessGroup, StartError, chmod_755, command, daemon_dir, expect_greeting,
    fixed_or_free_port, spawn_group_ready, system_user, write_config,
};

/// A running Dovecot; every process of it is killed on drop.
/// Why: IMAP/POP3 probes must meet a real server's greetings, capabilities,
/// STARTTLS/STLS, implicit TLS and authentication replies.
pub struct Dovecot {
    /// IMAP with STARTTLS (143-style).
    pub imap: SocketAddr,
    /// IMAP over implicit TLS (993-style).
    pub imaps: SocketAddr,
    /// POP3 with STLS (110-style).
    pub pop3: SocketAddr,
    /// POP3 over implicit TLS (995-style).
    pub pop3s: SocketAddr,
    /// The network namespace it runs in ([`DovecotBuilder::in_netns`]).
    pub netns: Option<String>,
    /// LMTP, with [`DovecotBuilder::delivery`].
    pub lmtp: Option<SocketAddr>,
    users: Vec<String>,
    relays: Vec<ProxyRelay>, // stop accepting before the daemon goes
    group: ProcessGroup,     // kills every Dovecot process, then `child` reaps the master
    child: ChildGuard,
    dir: tempfile::TempDir,
}

/// Describes a [`Dovecot`]; call [`start`](Self::start) to run it.
pub struct DovecotBuilder {
    users: Vec<(String, String)>,
    tls: Option<(PathBuf, PathBuf)>,
    plaintext_auth: bool,
    auth_failure_delay: String,
    auth_penalty: bool,
    listen: Option<(IpAddr, [u16; 4])>,
    netns: Option<String>,
    delivery: bool,
    oauth2: Option<(String, PathBuf)>,
    imap_capability: Option<String>,
}

impl Dovecot {
    /// Starts describing a Dovecot with no users, plaintext auth allowed,
    /// `auth_failure_delay = 0` and no auth penalty. [`DovecotBuilder::tls`] is required.
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder {
            users: Vec::new(),
            tls: None,
            plaintext_auth: true,
            auth_failure_delay: "0".to_string(),
            auth_penalty: false,
            listen: None,
            netns: None,
            delivery: false,
            oauth2: None,
            imap_capability: None,
        }
    }

    /// The home directory of `user` (its Maildir is `Maildir/` in it).
    pub fn home(&self, user: &str) -> PathBuf {
        let index = self
            .users
            .iter()
            .position(|u| u == user)
            .unwrap_or_else(|| panic!("no Dovecot user {user}"));
        self.dir.path().join(format!("home/{index}"))
    }

    /// Makes `script` the Sieve script of `user` (`None`: no script), owned by the
    /// mail user so Dovecot can compile it.
    pub fn sieve(&self, user: &str, script: Option<&str>) {
        let path = self.home(user).join(".dovecot.sieve");
        match script {
            Some(script) => {
                std::fs::write(&path, script).expect("write the Sieve script");
                let (uid, gid) = system_user("dovecot").expect("the dovecot user");
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown the script");
            }
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Dovecot's log so far (logins and failures are logged), for assertion messages.
    pub fn log(&self) -> String {
        self.child.log_contents()
    }

    /// The temp dir holding dovecot.conf, the log, run/state dirs and mail homes.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl DovecotBuilder {
    /// Adds a user that can log in with `password` (any mechanism, PLAIN scheme).
    /// Panics on `:` or a line break, which the passwd-file format cannot hold.
    pub fn user(mut self, name: &str, password: &str) -> Self {
        for s in [name, password] {
            assert!(
                !s.contains([':', '\n', '\r']),
                "passwd-file cannot hold {s:?}"
            );
        }
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Serve TLS with this certificate (full-chain PEM) and key, e.g. from
    /// [`TestPki::issue`](super::certs::TestPki::issue). Required.
    pub fn tls(mut self, cert_pem: impl AsRef<Path>, key_pem: impl AsRef<Path>) -> Self {
        self.tls = Some((cert_pem.as_ref().into(), key_pem.as_ref().into()));
        self
    }

    /// `false` behaves like a real provider: LOGINDISABLED / no POP3 USER before TLS.
    /// Why the relay: Dovecot deems a connection secure when its remote IP equals its
    /// local IP, so on 127.0.0.1 `disable_plaintext_auth = yes` (even `ssl = required`)
    /// would change nothing. So `imap` and `pop3` then lead to an in-process relay
    /// that tells Dovecot (PROXY protocol v1) the client is 127.0.0.2; the bytes still
    /// only travel over 127.0.0.1, and Dovecot logs `rip=127.0.0.2`.
    pub fn plaintext_auth(mut self, allowed: bool) -> Self {
        self.plaintext_auth = allowed;
        self
    }

    /// Dovecot's `auth_failure_delay` value, e.g. `"2 secs"` (Dovecot's own default).
    /// The builder's default is `"0"` so bad-password tests answer quickly. Measured:
    /// even with 0 a failure is answered only after ~500 ms (Dovecot flushes
    /// failures on a 500 ms timer); with `"2 secs"`, after ~2 s.
    pub fn auth_failure_delay(mut self, value: &str) -> Self {
        self.auth_failure_delay = value.to_string();
        self
    }

    /// `true` keeps Dovecot's auth penalty (off by default). Measured with it:
    /// after one failure from an IP, every later authentication from that IP,
    /// good or bad, waits ~4 s more (~6 s with a 2 s failure delay), so a test
    /// doing a bad login and then a good one would look like a slow server.
    /// Off = anvil's `anvil-auth-penalty` socket disabled (`mode = 0`).
    pub fn auth_penalty(mut self, on: bool) -> Self {
        self.auth_penalty = on;
        self
    }

    /// Listens on `ip` with ports `[imap, imaps, pop3, pop3s]` instead of four
    /// free ports of 127.0.0.1, e.g. a test bed's provider address with 143, 993,
    /// 110, 995 (Dovecot's master runs as root, so low ports are fine). No retry
    /// on "in use". Off loopback, clients have another IP than the server, so
    /// `plaintext_auth(false)` works as on a real server and needs no relay.
    pub fn listen(mut self, ip: IpAddr, ports: [u16; 4]) -> Self {
        self.listen = Some((ip, ports));
        self
    }

    /// Also serves LMTP (for an MTA to deliver into the mailboxes), with Sieve, and
    /// marks `Junk` as the `\Junk` folder.
    pub fn delivery(mut self) -> Self {
        self.delivery = true;
        self
    }

    /// Also accepts XOAUTH2 and OAUTHBEARER logins, validating each token with its
    /// `oauth2` passdb by introspection (POST) at `introspection_url`, whose TLS it
    /// verifies with `ca_pem`. Measured (2.3.19): the introspection must answer 200
    /// JSON with the `username`, and `active: true` for a valid token; a refusal first
    /// gets a base64 JSON challenge (`{"status":"401","schemes":"bearer","scope":"mail"}`
    /// for XOAUTH2, `{"status":"invalid_token"}` for OAUTHBEARER), answered by the
    /// client, then `NO [AUTHENTICATIONFAILED]` / `-ERR [AUTH]`. The users of
    /// [`user`](Self::user) are the mailboxes (userdb); their passwords keep working.
    pub fn oauth2(mut self, introspection_url: &str, ca_pem: impl AsRef<Path>) -> Self {
        self.oauth2 = Some((introspection_url.to_owned(), ca_pem.as_ref().into()));
        self
    }

    /// Dovecot's `imap_capability`: replaces the capability list before login too,
    /// e.g. to leave out `SASL-IR` (the mechanisms are still added). Measured: with
    /// `IMAP4rev1 LITERAL+ ID ENABLE IDLE` the greeting lists exactly those, then
    /// STARTTLS and the AUTH= mechanisms.
    pub fn imap_capability(mut self, capabilities: &str) -> Self {
        self.imap_capability = Some(capabilities.to_owned());
        self
    }

    /// Runs Dovecot inside network namespace `netns` (`ip netns exec`), polling
    /// readiness and the greeting from inside it. Needs [`listen`](Self::listen).
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    /// Runs Dovecot on four free ports of 127.0.0.1 (or [`listen`](Self::listen)'s);
    /// returns once all accept and the IMAP port has sent its `* OK` greeting
    /// (sent only once auth is up).
    pub fn start(self) -> Result<Dovecot, StartError> {
        fixed_or_free_port(
            "dovecot",
            self.listen,
            self.netns.is_some(),
            |(ip, ports)| self.start_on(ip, ports),
            |ip, port| self.start_on(ip, [port, 0, 0, 0]),
        )
    }

    /// `ports`: fixed, except that 0 (after the first) means "a free port of `ip`".
    fn start_on(&self, ip: IpAddr, ports: [u16; 4]) -> Result<Dovecot, StartError> {
        let err =
            |what: &str, e: &dyn std::fmt::Display| StartError(format!("dovecot: {what}: {e}"));
        let (cert, key) = self.tls.as_ref().ok_or_else(|| {
            StartError("dovecot: .tls(cert, key) is required (imaps/pop3s need it)".into())
        })?;
        let dir = daemon_dir("dovecot")?;
        let d = dir.path();
        let (uid, gid) = system_user("dovecot")?;
        // 0755: login processes (dovenull) and mail processes (dovecot uid) must traverse it.
        chmod_755(d).map_err(|e| err("chmod", &e))?;
        let mut passwd = String::new();
        for (i, (name, password)) in self.users.iter().enumerate() {
            let home = d.join(format!("home/{i}"));
            std::fs::create_dir_all(&home).map_err(|e| err("mkdir home", &e))?;
            std::os::unix::fs::chown(&home, Some(uid), Some(gid))
                .map_err(|e| err("chown home", &e))?;
            passwd.push_str(&format!(
                "{name}:{{PLAIN}}{password}:{uid}:{gid}::{}::\n",
                home.display()
            ));
        }
        std::fs::write(d.join("passwd"), passwd).map_err(|e| err("write passwd", &e))?;
        let ports = ports.map(|p| if p == 0 { free_port(ip) } else { p });
        // The relay exists for loopback only (see `plaintext_auth`); inside a
        // namespace clients already come from another address.
        let relay = !self.plaintext_auth && self.netns.is_none();
        let haproxy = if !relay { "" } else { "\n    haproxy = yes" };
        let penalty = match self.auth_penalty {
            true => "",
            false => {
                "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}\n"
            }
        };
        let lmtp = self.delivery.then(|| SocketAddr::new(ip, free_port(ip)));
        let delivery = match lmtp {
            None => String::new(),
            Some(lmtp) => format!(
                "service lmtp {{
  inet_listener lmtp {{
    address = {ip}
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
namespace inbox {{
  inbox = yes
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
}}
",
                port = lmtp.port()
            ),
        };
        let (mechanisms, oauth2_passdb, passwd_mechanisms) = match &self.oauth2 {
            None => ("plain", String::new(), ""),
            Some((url, ca)) => {
                let ext = d.join("dovecot-oauth2.conf.ext");
                let text = format!(
                    "introspection_mode = post\nintrospection_url = {url}\n\
                     username_attribute = username\nactive_attribute = active\n\
                     active_value = true\nforce_introspection = yes\n\
                     tls_ca_cert_file = {}\n",
                    ca.display()
                );
                std::fs::write(&ext, text).map_err(|e| err("write oauth2 conf", &e))?;
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                         args = {}\n}}\n",
                        ext.display()
                    ),
                    "\n  mechanisms = plain login",
                )
            }
        };
        let conf = format!(
            "protocols = imap pop3{lmtp_protocol}
listen = {ip}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = {disable}
haproxy_trusted_networks = {ip}
auth_failure_delay = {delay}
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
auth_mechanisms = {mechanisms}
{capability}{oauth2_passdb}passdb {{
  driver = passwd-file
  args = {d}/passwd{passwd_mechanisms}
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
{imap}{pop3}{penalty}{delivery}",
            lmtp_protocol = if lmtp.is_some() { " lmtp" } else { "" },
            d = d.display(),
            cert = cert.display(),
            key = key.display(),
            disable = if self.plaintext_auth { "no" } else { "yes" },
            delay = self.auth_failure_delay,
            capability = self
                .imap_capability
                .as_ref()
                .map_or_else(String::new, |c| format!("imap_capability = {c}\n")),
            imap = login_service("imap", ip, ports[0], ports[1], haproxy),
            pop3 = login_service("pop3", ip, ports[2], ports[3], haproxy),
        );
        let conf_path = d.join("dovecot.conf");
        write_config("dovecot", &conf_path, conf)?;
        let netns = self.netns.as_deref();
        let mut cmd = command("dovecot", netns);
        cmd.arg("-F").arg("-c").arg(&conf_path);
        let addrs = ports.map(|p| SocketAddr::new(ip, p));
        let waited: Vec<SocketAddr> = addrs.iter().copied().chain(lmtp).collect();
        // Same file as log_path: startup errors and the daemon's log in one place.
        let log = d.join("dovecot.log");
        let (group, child) = spawn_group_ready("dovecot", cmd, &log, netns, &waited, &conf_path)?;
        let mut relays = Vec::new();
        let [mut imap, imaps, mut pop3, pop3s] = addrs;
        if relay {
            relays.push(ProxyRelay::start(imap).map_err(|e| err("relay", &e))?);
            relays.push(ProxyRelay::start(pop3).map_err(|e| err("relay", &e))?);
            (imap, pop3) = (relays[0].addr, relays[1].addr);
        }
        expect_greeting(&child, netns, imap, "* OK", &conf_path)?;
        Ok(Dovecot {
            imap,
            imaps,
            pop3,
            pop3s,
            netns: self.netns.clone(),
            lmtp,
            users: self.users.iter().map(|(name, _)| name.clone()).collect(),
            relays,
            group,
            child,
            dir,
        })
    }
}

/// `service PROTOCOL-login` with a plain listener on `plain` (`haproxy`: behind
/// the relay) and an implicit-TLS one, `PROTOCOLs`, on `tls`.
fn login_service(protocol: &str, ip: IpAddr, plain: u16, tls: u16, haproxy: &str) -> String {
    format!(
        "service {protocol}-login {{
  inet_listener {protocol} {{
    address = {ip}
    port = {plain}{haproxy}
  }}
  inet_listener {protocol}s {{
    address = {ip}
    port = {tls}
    ssl = yes
  }}
}}
"
    )
}

/// A relay on 127.0.0.1 that prefixes each connection to `upstream` with a
/// PROXY v1 header claiming the client is 127.0.0.2 (see `plaintext_auth`).
struct ProxyRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl ProxyRelay {
    fn start(upstream: SocketAddr) -> std::io::Result<ProxyRelay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    std::thread::spawn(move || {
                        let _ = relay(client, upstream);
                    });
                }
            }
        });
        Ok(ProxyRelay {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for ProxyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the blocked accept()
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until either side closes; connections end when Dovecot dies.
fn relay(client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream)?;
    let client_port = client.peer_addr()?.port();
    let (ip, port) = (upstream.ip(), upstream.port());
    write!(up, "PROXY TCP4 127.0.0.2 {ip} {client_port} {port}\r\n")?;
    let (mut up_w, mut client_r, mut client_w) = (up.try_clone()?, client.try_clone()?, client);
    let to_up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_r, &mut up_w);
        let _ = up_w.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up, &mut client_w);
    let _ = client_w.shutdown(Shutdown::Both); // also ends the other direction
    let _ = to_up.join();
    Ok(())
}
