//! Shared dialling: resolve, connect, implicit TLS — each a timed phase.
//!
//! Every protocol that opens a connection goes through [`open`], so name resolution,
//! address fallback, error typing and TLS verification behave the same everywhere.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::{ErrorKind, Failed, Phase, ProbeError, Recorder, TlsFacts, tls};
use crate::config::{Endpoint, TlsMode};
use crate::probe::env::ProbeEnv;

/// A connection a probe talks over: plain TCP or TCP wrapped in TLS.
#[derive(Debug)]
pub enum Connection {
    /// Plain TCP (also the state before STARTTLS).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Resolves, connects and (for `tls: implicit`) completes the TLS handshake.
///
/// # Errors
///
/// [`Failed`] when a phase failed; the recorder holds the phase and reason.
pub async fn open(
    endpoint: &Endpoint,
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<Connection, Failed> {
    let addresses = addresses(endpoint, env, recorder).await?;
    open_to(endpoint, &addresses, env, deadline, recorder).await
}

/// The addresses of `endpoint`'s host: the literal, or a timed `resolve` phase.
///
/// # Errors
///
/// [`Failed`] when the lookup failed; the recorder holds the reason.
pub async fn addresses(
    endpoint: &Endpoint,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<Vec<IpAddr>, Failed> {
    match endpoint.host.parse::<IpAddr>() {
        // An address literal needs no lookup, so no resolve phase is recorded.
        Ok(ip) => Ok(vec![ip]),
        Err(_) => {
            let addresses = recorder
                .phase(Phase::Resolve, resolve(&env.dial_resolver, &endpoint.host))
                .await?;
            let listed: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            recorder.note(format!(
                "{} resolves to {}",
                endpoint.host,
                listed.join(", ")
            ));
            Ok(addresses)
        }
    }
}

/// Connects to one of `addresses` on `endpoint`'s port and (for `tls: implicit`)
/// completes the TLS handshake.
///
/// # Errors
///
/// [`Failed`] when a phase failed; the recorder holds the phase and reason.
pub async fn open_to(
    endpoint: &Endpoint,
    addresses: &[IpAddr],
    env: &ProbeEnv,
    deadline: Instant,
    recorder: &mut Recorder,
) -> Result<Connection, Failed> {
    let (stream, peer) = recorder
        .phase(Phase::Connect, connect(addresses, endpoint.port, deadline))
        .await?;
    recorder.peer = Some(peer);
    recorder.note(format!("connected to {peer}"));
    match endpoint.tls {
        TlsMode::Implicit => {
            let verifier = env.verifier(&endpoint.extra_roots);
            let tls = upgrade(
                stream,
                &endpoint.server_name,
                verifier,
                recorder,
                Phase::Tls,
            )
            .await?;
            Ok(Connection::Tls(Box::new(tls)))
        }
        // STARTTLS is the protocol's business: it upgrades with `upgrade` after its
        // own negotiation.
        TlsMode::Starttls | TlsMode::None => Ok(Connection::Plain(stream)),
    }
}

/// Runs the TLS handshake over `stream` as `phase`, recording certificate facts even
/// when verification fails.
///
/// # Errors
///
/// [`Failed`] when the handshake or verification failed.
pub async fn upgrade(
    stream: TcpStream,
    server_name: &str,
    verifier: &Arc<tls::ChainVerifier>,
    recorder: &mut Recorder,
    phase: Phase,
) -> Result<TlsStream<TcpStream>, Failed> {
    let mut facts = TlsFacts::default();
    let outcome = recorder
        .phase(
            phase,
            tls::handshake(stream, server_name, verifier, &mut facts),
        )
        .await;
    recorder.note(format!(
        "TLS {}: certificate {} issued by {}, valid until {}, names [{}]",
        facts
            .version
            .as_deref()
            .unwrap_or("handshake not completed"),
        facts.subject.as_deref().unwrap_or("-"),
        facts.issuer.as_deref().unwrap_or("-"),
        facts.not_after.map_or("-".to_owned(), |t| t.to_string()),
        facts.sans.join(", ")
    ));
    recorder.tls = Some(facts);
    outcome
}

/// Looks up A and AAAA records for `host` through the site resolvers.
///
/// # Errors
///
/// A DNS-typed [`ProbeError`] (NXDOMAIN, no data, SERVFAIL, REFUSED, timeout).
pub async fn resolve(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, ProbeError> {
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|error| dns_error(&error, &format!("{host} A/AAAA"), None))?;
    let addresses: Vec<IpAddr> = lookup.iter().collect();
    if addresses.is_empty() {
        return Err(ProbeError::new(
            ErrorKind::DnsNodata,
            format!("{host} has no A or AAAA record"),
        ));
    }
    Ok(addresses)
}

/// Connects to each address in turn until one accepts, sharing the time left before
/// `deadline` evenly between the addresses not yet tried.
///
/// # Errors
///
/// The error of the last address tried, typed by errno.
pub async fn connect(
    addresses: &[IpAddr],
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, SocketAddr), ProbeError> {
    let mut last_error = ProbeError::new(ErrorKind::ConnectTimeout, "no address to connect to");
    for (index, ip) in addresses.iter().enumerate() {
        let peer = SocketAddr::new(*ip, port);
        let left = deadline.saturating_duration_since(Instant::now());
        let share = left / u32::try_from(addresses.len() - index).unwrap_or(u32::MAX);
        match tokio::time::timeout(share, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => {
                // Probes exchange small request/response messages; Nagle would only
                // add latency to the phase timings.
                let _ = stream.set_nodelay(true);
                return Ok((stream, peer));
            }
            Ok(Err(error)) => last_error = connect_error(&error, peer),
            Err(_) => {
                last_error = ProbeError::new(
                    ErrorKind::ConnectTimeout,
                    format!(
                        "{peer} did not complete the TCP handshake within {}",
                        humantime::format_duration(super::recorder::rounded_to_ms(share))
                    ),
                );
            }
        }
        tracing::debug!(%peer, reason = last_error.kind.as_metrics_label(), "connect attempt failed");
    }
    if addresses.len() > 1 {
        last_error.message = format!(
            "all {} addresses failed; the last: {}",
            addresses.len(),
            last_error.message
        );
    }
    Err(last_error)
}

/// Types a failed `connect()` by its errno.
pub fn connect_error(error: &io::Error, peer: SocketAddr) -> ProbeError {
    if let Some(local) = super::error::local_limit(error, &format!("connecting to {peer}")) {
        return local;
    }
    let (kind, what) = match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => (
            ErrorKind::ConnectRefused,
            "refused the connection (nothing listens on that port)",
        ),
        Some(libc::ETIMEDOUT) => (
            ErrorKind::ConnectTimeout,
            "did not answer the TCP handshake",
        ),
        Some(libc::ENETUNREACH) => (
            ErrorKind::NetUnreachable,
            "is in a network this host has no route to",
        ),
        Some(libc::EHOSTUNREACH) => (
            ErrorKind::HostUnreachable,
            "is unreachable (no route to host, or rejected by a firewall)",
        ),
        Some(libc::ECONNRESET) => (ErrorKind::ConnectionReset, "reset the connection"),
        // A blackhole route makes connect() fail with EINVAL at once: this host cannot
        // send there. (EADDRNOTAVAIL, out of local ports, is the agent's own limit.)
        Some(libc::EINVAL) => (
            ErrorKind::NetUnreachable,
            "cannot be reached from this host (no usable route or source address)",
        ),
        // Locally generated packets dropped by this host's own firewall.
        Some(libc::EPERM | libc::EACCES) => (
            ErrorKind::NetUnreachable,
            "is blocked by this host's firewall",
        ),
        _ => (ErrorKind::ConnectTimeout, "could not be connected to"),
    };
    ProbeError::new(kind, format!("{peer} {what}: {error}"))
}

/// Types a resolver error. `resolver` names the server asked, when there is one.
pub fn dns_error(error: &NetError, question: &str, resolver: Option<&str>) -> ProbeError {
    let asked = resolver.map_or_else(String::new, |r| format!(" (asked {r})"));
    let (kind, what) = match error {
        NetError::Dns(DnsError::NoRecordsFound(no_records)) => match no_records.response_code {
            ResponseCode::NXDomain => (
                ErrorKind::DnsNxdomain,
                "does not exist (NXDOMAIN)".to_owned(),
            ),
            _ => (
                ErrorKind::DnsNodata,
                "has no record of that type (NOERROR, no data)".to_owned(),
            ),
        },
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => (
            ErrorKind::DnsRefused,
            "was refused by the resolver (REFUSED)".to_owned(),
        ),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => (
            ErrorKind::DnsServfail,
            "failed at the resolver (SERVFAIL)".to_owned(),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => (
            ErrorKind::DnsServfail,
            format!("failed at the resolver ({code})"),
        ),
        NetError::Timeout | NetError::NoConnections | NetError::Busy => {
            (ErrorKind::DnsTimeout, "got no answer in time".to_owned())
        }
        NetError::Io(io) => {
            match super::error::local_limit(io, &format!("asking for {question}")) {
                Some(local) => return local,
                None => (ErrorKind::DnsTimeout, format!("got no answer: {io}")),
            }
        }
        other if other.to_string().contains("timed out") => {
            (ErrorKind::DnsTimeout, "got no answer in time".to_owned())
        }
        other => (ErrorKind::ProtocolError, format!("failed: {other}")),
    };
    ProbeError::new(kind, format!("{question} {what}{asked}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_typed_by_errno() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let kind = |errno| connect_error(&io::Error::from_raw_os_error(errno), peer).kind;
        assert_eq!(kind(libc::ECONNREFUSED), ErrorKind::ConnectRefused);
        assert_eq!(kind(libc::ENETUNREACH), ErrorKind::NetUnreachable);
        assert_eq!(kind(libc::EHOSTUNREACH), ErrorKind::HostUnreachable);
        assert_eq!(kind(libc::EINVAL), ErrorKind::NetUnreachable);
        assert_eq!(kind(libc::ETIMEDOUT), ErrorKind::ConnectTimeout);
        assert_eq!(kind(libc::ECONNRESET), ErrorKind::ConnectionReset);
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            assert_eq!(kind(errno), ErrorKind::LocalResources, "errno {errno}");
        }
    }

    #[tokio::test]
    async fn a_refused_port_is_reported_as_refused_with_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let error = connect(&["127.0.0.1".parse().unwrap()], port, deadline)
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::ConnectRefused);
        assert!(
            error.message.contains(&format!("127.0.0.1:{port}")),
            "{}",
            error.message
        );
    }
}
