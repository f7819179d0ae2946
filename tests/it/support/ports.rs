//! Free-port picking for test daemons.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports already handed out by this test process, so that two tests running in
/// parallel threads never get the same port even if the kernel offers it twice.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Returns a port that is currently free for BOTH TCP and UDP on `ip`.
///
/// Why: DNS daemons listen on the same port number over UDP and TCP, so a
/// port free for TCP alone is not enough. The sockets are closed before
/// returning, so another process could still take the port before the daemon
/// binds it; the `start()` functions retry with a new port when a daemon
/// reports "Address already in use".
pub fn free_port(ip: IpAddr) -> u16 {
    let mut last_err = String::new();
    for _ in 0..32 {
        let tcp = match TcpListener::bind((ip, 0)) {
            Ok(l) => l,
            Err(e) => {
                last_err = format!("tcp bind {ip}:0: {e}");
                continue;
            }
        };
        let port = tcp
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if let Err(e) = UdpSocket::bind((ip, port)) {
            last_err = format!("udp bind {ip}:{port}: {e}");
            continue;
        }
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("no port free for both TCP and UDP on {ip} after 32 tries; last error: {last_err}");
}

/// A TCP listener on 127.0.0.1 and a free port, and its address: connects
/// succeed (the kernel completes them) for as long as it is kept.
pub fn open_port() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// A loopback address where nothing listens (a port that was free a moment ago):
/// connects are refused.
pub fn closed_port() -> SocketAddr {
    open_port().1
}
