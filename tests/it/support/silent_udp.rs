//! A DNS "server" that receives queries and never answers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use super::ports::free_port;

/// Holds a UDP socket and a TCP listener on 127.0.0.1:<free port> and never
/// replies; both are closed on drop.
/// Why: resolver-timeout tests need a server that swallows queries. Because
/// the port is bound, the kernel sends no ICMP port-unreachable (which would
/// make the resolver fail fast instead of timing out), datagrams just queue,
/// and TCP handshakes complete in the listen backlog with no answer ever sent.
/// No thread is needed for that, so none is started.
pub struct SilentDnsServer {
    /// Where to send the queries that will never be answered.
    pub addr: SocketAddr,
    udp: UdpSocket,
    _tcp: TcpListener,
}

impl SilentDnsServer {
    /// Binds both sockets on the same free loopback port.
    pub fn start() -> SilentDnsServer {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut last = String::new();
        for _ in 0..3 {
            let addr = SocketAddr::new(ip, free_port(ip));
            match (UdpSocket::bind(addr), TcpListener::bind(addr)) {
                (Ok(udp), Ok(tcp)) => {
                    udp.set_nonblocking(true).expect("set_nonblocking");
                    return SilentDnsServer {
                        addr,
                        udp,
                        _tcp: tcp,
                    };
                }
                (u, t) => last = format!("udp: {:?}, tcp: {:?}", u.err(), t.err()),
            }
        }
        panic!("SilentDnsServer: could not bind UDP+TCP on a free port: {last}");
    }

    /// Number of UDP datagrams received since the last call (drains the queue);
    /// lets a test assert the resolver really asked this server.
    pub fn drain_udp_queries(&self) -> usize {
        let mut buf = [0u8; 4096];
        let mut n = 0;
        while self.udp.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    }
}
