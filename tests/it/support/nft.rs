//! nftables rules that make one loopback address drop or reset TCP (or drop UDP).

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// An nftables table `inet mailprobe_test_<pid>_<n>` filtering packets to one
/// loopback address in the INPUT hook; the table is deleted on drop.
/// (Not the output hook: a drop there makes the local sender's `send()` fail
/// at once with EPERM for UDP, which no real network does.)
/// Why: a firewall that drops SYNs (connect times out) and one that resets
/// them (connect refused at once) must be told apart by the prober, and only
/// a real packet filter produces the first. Needs root.
pub struct DropRule {
    /// Name of the nftables table (family `inet`).
    pub table: String,
}

/// A listener on 127.0.0.1 whose packets are dropped: a connect to `addr`
/// hangs until its timeout.
pub struct Blackhole {
    /// The silent address.
    pub addr: SocketAddr,
    _rule: DropRule,
    _listener: std::net::TcpListener,
}

impl Blackhole {
    /// A new listener and the rule that drops TCP to it.
    pub fn new() -> Blackhole {
        let (listener, addr) = super::ports::open_port();
        Blackhole {
            addr,
            _rule: DropRule::drop_tcp(addr),
            _listener: listener,
        }
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}

impl DropRule {
    /// Silently drops TCP packets to `addr`: `connect()` hangs until its timeout.
    pub fn drop_tcp(addr: SocketAddr) -> DropRule {
        Self::install(addr, "tcp", "drop")
    }

    /// Answers TCP SYNs to `addr` with a RST: `connect()` is refused at once.
    pub fn reject_tcp_reset(addr: SocketAddr) -> DropRule {
        Self::install(addr, "tcp", "reject with tcp reset")
    }

    /// Silently drops UDP datagrams to `addr` (a DNS server that went dark).
    pub fn drop_udp(addr: SocketAddr) -> DropRule {
        Self::install(addr, "udp", "drop")
    }

    fn install(addr: SocketAddr, proto: &str, verdict: &str) -> DropRule {
        assert!(
            addr.ip().is_loopback(),
            "DropRule only filters loopback, got {addr}"
        );
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let table = format!("mailprobe_test_{}_{n}", std::process::id());
        let family = if addr.is_ipv4() { "ip" } else { "ip6" };
        // add+delete first so a stale table left by a killed run with a reused
        // pid is replaced instead of merged; nft -f applies it atomically.
        let script = format!(
            "add table inet {table}\ndelete table inet {table}\n\
             table inet {table} {{\n  chain input {{\n    \
             type filter hook input priority 0; policy accept;\n    \
             {family} daddr {ip} {proto} dport {port} {verdict}\n  }}\n}}\n",
            ip = addr.ip(),
            port = addr.port(),
        );
        nft(&["-f", "-"], &script).unwrap_or_else(|e| panic!("nft rule for {addr}: {e}"));
        DropRule { table }
    }
}

impl Drop for DropRule {
    fn drop(&mut self) {
        if let Err(e) = nft(&["delete", "table", "inet", &self.table], "") {
            // Not a panic: panicking in drop during unwinding would abort.
            eprintln!("warning: could not delete nft table {}: {e}", self.table);
        }
    }
}

/// Runs `nft args` with `stdin`; Err carries nft's stderr.
fn nft(args: &[&str], stdin: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn nft: {e}"))?;
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .map_err(|e| format!("write nft stdin: {e}"))?;
    drop(input);
    let out = child
        .wait_with_output()
        .map_err(|e| format!("wait nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft {args:?} {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
