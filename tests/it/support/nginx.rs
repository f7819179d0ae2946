//! A real nginx (HTTP or HTTPS) on a loopback port, as a webmail/Exchange stand-in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::{
    ChildGuard, StartError, command, daemon_dir, fixed_or_free_port, spawn_ready, write_config,
};

/// A running nginx listening on `addr`; killed on drop.
/// Why: HTTPS probes must be tested against a real TLS server presenting a
/// chain from [`TestPki`](super::certs::TestPki). Runs with
/// `master_process off` so that the one process SIGKILLed on drop is the one
/// holding the socket (with a master, a killed master leaves its worker behind).
pub struct Nginx {
    /// Where to connect (127.0.0.1 and a free port unless [`NginxBuilder::listen`] chose it).
    pub addr: SocketAddr,
    /// The network namespace it runs in ([`NginxBuilder::in_netns`]).
    pub netns: Option<String>,
    child: ChildGuard, // dropped (killed) before `dir` is removed
    dir: tempfile::TempDir,
}

/// Describes an [`Nginx`]; call [`start`](Self::start) to run it.
#[derive(Default)]
pub struct NginxBuilder {
    tls: Option<(PathBuf, PathBuf)>,
    server_extra: String,
    listen: Option<SocketAddr>,
    netns: Option<String>,
    servers: Vec<ExtraServer>,
}

/// A further `server { }` block of the same nginx ([`NginxBuilder::server`]).
struct ExtraServer {
    listen: SocketAddr,
    tls: bool,
    directives: String,
}

impl Nginx {
    /// Starts describing a plain-HTTP nginx with no locations (every path 404s).
    pub fn builder() -> NginxBuilder {
        NginxBuilder::default()
    }

    /// nginx's error log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.child.log_contents()
    }

    /// The temp dir holding nginx.conf, logs and temp paths; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl NginxBuilder {
    /// Serve TLS with this certificate (full-chain PEM) and key, e.g. from
    /// [`TestPki::issue`](super::certs::TestPki::issue).
    pub fn tls(mut self, cert_pem: impl AsRef<Path>, key_pem: impl AsRef<Path>) -> Self {
        self.tls = Some((
            cert_pem.as_ref().to_path_buf(),
            key_pem.as_ref().to_path_buf(),
        ));
        self
    }

    /// Extra directives inside the `server { }` block, e.g.
    /// `location / { return 200 'ok'; }`. Call several times to append.
    pub fn server_block_extra(mut self, directives: &str) -> Self {
        for line in directives.lines() {
            self.server_extra.push_str("    ");
            self.server_extra.push_str(line);
            self.server_extra.push('\n');
        }
        self
    }

    /// Listens on exactly `addr` instead of 127.0.0.1 and a free port, e.g.
    /// `10.213.2.25:443` inside a test bed namespace (no retry on "in use").
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// Adds another `server { }` block listening on exactly `listen`, with TLS
    /// (the certificate given to [`tls`](Self::tls)) or plain HTTP, and its own
    /// `directives`. Why: an Exchange stand-in answers on several addresses at
    /// once (`example.test:443`, `autodiscover.example.test:80` and `:443`), each
    /// differently; one nginx holds them all. [`start`](Self::start) returns once
    /// every listener accepts. No retry on "address in use".
    pub fn server(mut self, listen: SocketAddr, tls: bool, directives: &str) -> Self {
        self.servers.push(ExtraServer {
            listen,
            tls,
            directives: directives.to_string(),
        });
        self
    }

    /// Runs nginx inside network namespace `netns` (`ip netns exec`), polling
    /// readiness from inside it. Needs [`listen`](Self::listen).
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    /// Runs nginx on 127.0.0.1 and a free port (or on [`listen`](Self::listen)'s
    /// address); returns once its TCP port accepts.
    pub fn start(self) -> Result<Nginx, StartError> {
        fixed_or_free_port(
            "nginx",
            self.listen,
            self.netns.is_some(),
            |addr| self.start_on(addr),
            |ip, port| self.start_on(SocketAddr::new(ip, port)),
        )
    }

    fn start_on(&self, addr: SocketAddr) -> Result<Nginx, StartError> {
        let dir = daemon_dir("nginx")?;
        let d = dir.path().display();
        let (ssl, tls_directives) = match &self.tls {
            Some((cert, key)) => (
                " ssl",
                format!(
                    "    ssl_certificate {};\n    ssl_certificate_key {};\n",
                    cert.display(),
                    key.display()
                ),
            ),
            None => ("", String::new()),
        };
        let mut servers = String::new();
        for server in &self.servers {
            if server.tls && self.tls.is_none() {
                return Err(StartError(
                    "nginx: a TLS server() needs tls(cert, key)".into(),
                ));
            }
            servers.push_str(&format!(
                "  server {{\n    listen {}{};\n    server_name _;\n{}",
                server.listen,
                if server.tls { " ssl" } else { "" },
                if server.tls {
                    tls_directives.as_str()
                } else {
                    ""
                },
            ));
            for line in server.directives.lines() {
                servers.push_str("    ");
                servers.push_str(line);
                servers.push('\n');
            }
            servers.push_str("  }\n");
        }
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log stderr notice;
events {{ worker_connections 64; }}
http {{
  access_log off;
  default_type text/plain;
  client_body_temp_path {d}/client_body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen {addr}{ssl};
    server_name _;
{tls_directives}{extra}  }}
{servers}}}
",
            extra = self.server_extra,
        );
        let conf_path = dir.path().join("nginx.conf");
        write_config("nginx", &conf_path, conf)?;
        let netns = self.netns.as_deref();
        let mut cmd: Command = command("nginx", netns);
        // -e: log to stderr even before the config is read (else /var/log/nginx).
        cmd.arg("-e")
            .arg("stderr")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path);
        let addrs: Vec<SocketAddr> = std::iter::once(addr)
            .chain(self.servers.iter().map(|server| server.listen))
            .collect();
        let log = dir.path().join("nginx.log");
        let child = spawn_ready("nginx", cmd, &log, netns, &addrs, &conf_path)?;
        Ok(Nginx {
            addr,
            netns: self.netns.clone(),
            child,
            dir,
        })
    }
}
