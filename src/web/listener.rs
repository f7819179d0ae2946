//! The listener, HTTP or HTTPS (`web.tls_server_config`), with the same limits for
//! both: at most `web.max_connections` client connections (more are closed as they
//! arrive), `web.header_timeout` for the TLS handshake and each request's headers,
//! `web.idle_timeout` for a connection where no byte moves. A client can therefore
//! never hold the agent's file descriptors, which its probes need.
//!
//! Shutdown: stop accepting, tell every connection to finish the response in progress
//! and close, wait at most [`SHUTDOWN_GRACE`], then drop what is left (a `/probe` still
//! running is cancelled with it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::basic_auth::{BasicAuth, basic_auth};
use super::endpoints::{AppState, router};
use crate::config::WebConfig;

/// How long responses in progress get to finish once the agent stops: enough for a
/// scrape in flight, short enough that a stop never waits on a slow client.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// After a failed accept (out of file descriptors, say), wait this long before the
/// next: the failure would otherwise repeat in a tight loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves until `stop` is cancelled, then closes the listener, gives open requests
/// [`SHUTDOWN_GRACE`] to finish, and ends.
///
/// # Errors
///
/// Never in practice: a failed accept is logged and retried.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
    web: WebConfig,
) -> io::Result<()> {
    let mut app = router(state);
    if !web.basic_auth_users.is_empty() {
        let auth = Arc::new(BasicAuth::new(Arc::clone(&web.basic_auth_users)));
        app = app.layer(axum::middleware::from_fn_with_state(auth, basic_auth));
    }
    let acceptor = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(web.max_connections));
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let over_cap_logged = AtomicBool::new(false);
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => break,
            // Reap finished connections as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closing at once keeps the descriptor for the probes.
            if !over_cap_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = web.max_connections,
                    "too many client connections; new ones are closed until some end"
                );
            }
            drop(tcp);
            continue;
        };
        over_cap_logged.store(false, Ordering::Relaxed);
        connections.spawn(connection(
            tcp,
            acceptor.clone(),
            app.clone(),
            web.clone(),
            closing.clone(),
            slot,
        ));
    }
    drop(listener);
    closing.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing the connections still open after the grace period"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    Ok(())
}

/// One client connection: the TLS handshake (bounded), then HTTP/1.1 with the header
/// and idle limits, until the client leaves, a limit is hit, or the agent stops.
async fn connection(
    tcp: TcpStream,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    web: WebConfig,
    closing: CancellationToken,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    match acceptor {
        None => http(IdleLimit::new(tcp, web.idle_timeout), app, &web, closing).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(web.header_timeout, acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            http(IdleLimit::new(stream, web.idle_timeout), app, &web, closing).await;
        }
    }
}

async fn http<S>(stream: S, app: Router, web: &WebConfig, closing: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(web.header_timeout)
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(app),
        );
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = closing.cancelled() => {
            // Finish the response in progress, read no further request; the listener
            // bounds how long this may take.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A stream that fails with `TimedOut` when no byte has moved either way for `limit`:
/// an idle keep-alive connection, or a client that stopped mid-request, is closed.
struct IdleLimit<S> {
    inner: S,
    limit: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleLimit<S> {
    fn new(inner: S, limit: Duration) -> Self {
        IdleLimit {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
        }
    }

    fn moved(&mut self) {
        let next = crate::probe::later(Instant::now(), self.limit);
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the connection was idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleLimit<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(outcome) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(outcome)
            }
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleLimit<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(error) => Poll::Ready(error),
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stream_where_nothing_moves_fails_after_the_idle_limit() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut limited = IdleLimit::new(client, Duration::from_secs(5));
        server.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        limited.read_exact(&mut buf).await.unwrap();
        let started = Instant::now();
        let error = limited.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(server);
    }
}
