//! Minimal clients used from inside a namespace (no `dig`, `ping` or `curl` needed):
//! a DNS query, an ICMP echo, an HTTP GET.

use super::*;

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

pub(super) fn parse_reply(msg: &[u8]) -> Option<DnsReply> {
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
pub(super) fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
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

pub(super) fn checksum(data: &[u8]) -> u16 {
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
pub(super) fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> io::Result<(u16, String)> {
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
pub(super) fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
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
