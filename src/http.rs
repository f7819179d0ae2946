//! The HTTP endpoints: `/metrics`, `/-/healthy`, `/-/ready`, `/-/reload`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebConfig;

use crate::daemon::{ReloadRequest, request_reload};
use crate::history::History;
use crate::metrics::{Metrics, openmetrics_to_prometheus_text};
use crate::on_demand::{OnDemand, ProbeRequest, Refusal};

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    metrics: Arc<Metrics>,
    history: Arc<History>,
    on_demand: Arc<OnDemand>,
    reloads: mpsc::Sender<ReloadRequest>,
    ready: Arc<AtomicBool>,
}

impl AppState {
    /// State for the endpoints of one daemon.
    pub fn new(
        metrics: Arc<Metrics>,
        history: Arc<History>,
        on_demand: Arc<OnDemand>,
        reloads: mpsc::Sender<ReloadRequest>,
    ) -> Self {
        AppState {
            metrics,
            history,
            on_demand,
            reloads,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the agent ready (probes scheduled) or not (starting, shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The router, separate from serving so it can be inspected in tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/debug", get(debug))
        .route("/probe", get(probe))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(state)
}

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

async fn index() -> &'static str {
    "mailprobe\n\n/metrics     Prometheus metrics\n/debug?target=NAME  recent results of a target\n/-/healthy   liveness\n/-/ready     readiness\n/-/reload    POST: reload the configuration\n"
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    exposition(&state.metrics, &headers)
}

/// `/probe?target=NAME`, or `/probe?module=M&target=HOST:PORT`.
#[derive(Debug, serde::Deserialize)]
struct ProbeQuery {
    target: Option<String>,
    module: Option<String>,
}

async fn probe(
    State(state): State<AppState>,
    Query(query): Query<ProbeQuery>,
    headers: HeaderMap,
) -> Response {
    let request = match (query.module, query.target) {
        (None, Some(name)) => ProbeRequest::Configured(name),
        (Some(module), Some(target)) => ProbeRequest::Adhoc { module, target },
        (_, None) => {
            return (
                StatusCode::BAD_REQUEST,
                "usage: /probe?target=NAME (a configured target) or /probe?module=M&target=HOST:PORT\n",
            )
                .into_response();
        }
    };
    match state.on_demand.probe(&request).await {
        Ok(metrics) => exposition(&metrics, &headers),
        Err(Refusal::UnknownTarget) => {
            (StatusCode::NOT_FOUND, "no configured target of that name\n").into_response()
        }
        Err(Refusal::NotReady) => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        Err(Refusal::Busy) => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many /probe requests at once; try again\n",
        )
            .into_response(),
        Err(Refusal::BadRequest(reason)) => {
            (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response()
        }
        // The agent is never an open proxy: only hosts the configuration allows.
        Err(Refusal::NotAllowed) => (
            StatusCode::FORBIDDEN,
            "that host is not in probe_endpoint.allow\n",
        )
            .into_response(),
    }
}

/// `metrics` in the format the client asked for: OpenMetrics when its `Accept`
/// says so (Prometheus does), else the Prometheus text format.
fn exposition(metrics: &Metrics, headers: &HeaderMap) -> Response {
    let rendered = match metrics.render_openmetrics() {
        Ok(text) => text,
        Err(_) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n").into_response();
        }
    };
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], rendered).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)],
            openmetrics_to_prometheus_text(&rendered),
        )
            .into_response()
    }
}

/// `/debug?target=NAME`.
#[derive(Debug, serde::Deserialize)]
struct DebugQuery {
    target: Option<String>,
}

async fn debug(State(state): State<AppState>, Query(query): Query<DebugQuery>) -> Response {
    let Some(target) = query.target else {
        return (StatusCode::BAD_REQUEST, "usage: /debug?target=NAME\n").into_response();
    };
    match state.history.render(&target) {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no results for that target (unknown, or not probed yet)\n",
        )
            .into_response(),
    }
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn reload(State(state): State<AppState>) -> Response {
    match request_reload(&state.reloads).await {
        Ok(targets) => (StatusCode::OK, format!("reloaded: {targets} targets\n")).into_response(),
        Err(reason) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed, running configuration kept: {reason}\n"),
        )
            .into_response(),
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
