//! The listener: HTTP or HTTPS (`web.tls_server_config`), and HTTP Basic
//! authentication against bcrypt hashes (`web.basic_auth_users`), for every endpoint.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoints::{AppState, router};
use crate::config::WebConfig;

/// Serves until `stop` is cancelled, then closes the listener and finishes open
/// requests.
///
/// # Errors
///
/// The I/O error that ended the server.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    stop: CancellationToken,
    web: WebConfig,
) -> std::io::Result<()> {
    let mut app = router(state);
    if !web.basic_auth_users.is_empty() {
        app = app.layer(axum::middleware::from_fn_with_state(
            Arc::clone(&web.basic_auth_users),
            basic_auth,
        ));
    }
    match web.tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
        Some(tls) => {
            serve_tls(listener, app, tls, stop).await;
            Ok(())
        }
    }
}

/// A client that connects and never finishes its TLS handshake or its request
/// headers is dropped after this long, so idle sockets cannot pile up.
const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS: accept, handshake (bounded), serve HTTP/1.1 on each connection; on `stop`,
/// stop accepting and let open requests finish.
async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(%error, "accepting a connection failed");
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        connections.spawn(async move {
            let handshake = tokio::time::timeout(CLIENT_HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else {
                return;
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CLIENT_HANDSHAKE_TIMEOUT)
                .serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(app),
                );
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// A bcrypt hash of a random string, checked when the user name is unknown so that
/// the answer takes as long as for a known user (no user enumeration by timing).
const DUMMY_BCRYPT_HASH: &str = "$2y$10$N1eKXnTYSWGbjUwhGK/0yeXVrGzmURzy/yUEC.TZ8zh/vR6mTBwXO";

/// Basic authentication against bcrypt hashes, as the Prometheus exporters do.
async fn basic_auth(
    State(users): State<Arc<BTreeMap<String, String>>>,
    request: Request,
    next: Next,
) -> Response {
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let authorized = match offered.as_deref().and_then(|pair| pair.split_once(':')) {
        Some((user, password)) => {
            let (hash, known) = match users.get(user) {
                Some(hash) => (hash.clone(), true),
                None => (DUMMY_BCRYPT_HASH.to_owned(), false),
            };
            let password = password.to_owned();
            // bcrypt is deliberately slow: keep it off the request threads.
            let matches = tokio::task::spawn_blocking(move || {
                bcrypt::verify(password, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            known && matches
        }
        None => false,
    };
    if authorized {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"mailprobe\"")],
            "authentication required\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::DUMMY_BCRYPT_HASH;

    #[test]
    fn the_dummy_hash_is_a_real_bcrypt_hash_that_costs_as_much_as_a_real_check() {
        assert!(matches!(
            bcrypt::verify("anything", DUMMY_BCRYPT_HASH),
            Ok(false)
        ));
        let parts: Vec<&str> = DUMMY_BCRYPT_HASH.split('$').collect();
        assert_eq!(parts[2], "10", "cost 10, like `htpasswd -B`'s default");
    }
}
