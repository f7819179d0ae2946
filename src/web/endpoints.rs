//! The HTTP endpoints: `/` and `/api/v1/status` (the status page, [`super::status`]),
//! `/metrics`, `/probe`, `/debug`, `/-/healthy`, `/-/ready`, `/-/reload`. The listener
//! they are served on is [`super::listener`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;

use super::on_demand::{OnDemand, ProbeRequest, Refusal};
use crate::agent::control::{ReloadRequest, request_reload};
use crate::export::metrics::{Format, Metrics};
use crate::export::{History, Status};

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    metrics: Arc<Metrics>,
    history: Arc<History>,
    status: Arc<Status>,
    on_demand: Arc<OnDemand>,
    reloads: mpsc::Sender<ReloadRequest>,
    ready: Arc<AtomicBool>,
}

/// The status page's handlers need only its state.
impl FromRef<AppState> for Arc<Status> {
    fn from_ref(state: &AppState) -> Arc<Status> {
        Arc::clone(&state.status)
    }
}

impl AppState {
    /// State for the endpoints of one daemon.
    pub fn new(
        metrics: Arc<Metrics>,
        history: Arc<History>,
        status: Arc<Status>,
        on_demand: Arc<OnDemand>,
        reloads: mpsc::Sender<ReloadRequest>,
    ) -> Self {
        AppState {
            metrics,
            history,
            status,
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
        .route("/", get(super::status::html))
        .route("/api/v1/status", get(super::status::json))
        .route("/metrics", get(metrics))
        .route("/debug", get(debug))
        .route("/probe", get(probe))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let format = format_of(&headers);
    exposition(state.metrics.exposition(format).await, format)
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
        Ok(metrics) => {
            // One probe's series: small, rendered where the answer is sent.
            let format = format_of(&headers);
            exposition(metrics.render(format).into(), format)
        }
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

/// The format a request asks for: OpenMetrics when its `Accept` says so (Prometheus
/// does), else the Prometheus text format.
fn format_of(headers: &HeaderMap) -> Format {
    Format::from_accept(
        headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok()),
    )
}

/// A rendered exposition as a response.
fn exposition(body: bytes::Bytes, format: Format) -> Response {
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
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
