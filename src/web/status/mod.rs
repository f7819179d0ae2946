//! The status page (`/`) and its JSON twin (`/api/v1/status`): what a site
//! administrator reads when a user calls. Both are made from one [`view::StatusView`]
//! of a [`StatusSnapshot`](crate::export::status::StatusSnapshot), off the runtime's
//! threads (a page of 500 targets is a few milliseconds of formatting that must not
//! delay a probe's timers).

pub mod page;
pub mod view;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::export::Status;
pub use view::StatusView;

/// Seconds between automatic reloads of the page unless `?refresh=` says otherwise:
/// the agents' default probe interval, so each reload can show something new.
pub const DEFAULT_REFRESH: u32 = 30;
/// The shortest reload period `?refresh=N` accepts: a page left open on a wall screen
/// must not become a load on the agent.
pub const MIN_REFRESH: u32 = 5;
/// The longest: an hour.
pub const MAX_REFRESH: u32 = 3600;

/// Served with the page: no script may run and nothing may load from elsewhere, so
/// even an escaping mistake could not run code; styles are inline.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/?refresh=N` (seconds; `0` or `off` turns automatic reloads off).
#[derive(Debug, serde::Deserialize)]
pub struct PageQuery {
    refresh: Option<String>,
}

/// Why `?refresh=` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("refresh must be 0 (off) or a number of seconds from {MIN_REFRESH} to {MAX_REFRESH}")]
pub struct BadRefresh;

/// The reload period `?refresh=` asks for: `None` for off, [`DEFAULT_REFRESH`] when
/// absent, else the number of seconds within [`MIN_REFRESH`]..=[`MAX_REFRESH`].
///
/// # Errors
///
/// [`BadRefresh`] for anything else.
pub fn refresh_period(asked: Option<&str>) -> Result<Option<u32>, BadRefresh> {
    match asked.map(str::trim) {
        None | Some("") => Ok(Some(DEFAULT_REFRESH)),
        Some("0" | "off") => Ok(None),
        Some(seconds) => match seconds.parse::<u32>() {
            Ok(n) if (MIN_REFRESH..=MAX_REFRESH).contains(&n) => Ok(Some(n)),
            _ => Err(BadRefresh),
        },
    }
}

/// Renders the page for `status` as it is `now`.
///
/// # Errors
///
/// As [`page::render`].
pub fn render_html(
    status: &Status,
    now: SystemTime,
    refresh: Option<u32>,
) -> Result<String, askama::Error> {
    let snapshot = status.snapshot(now);
    page::render(&StatusView::of(&snapshot), refresh)
}

/// The same data as JSON.
///
/// # Errors
///
/// Only if serialisation fails (it does not for these types).
pub fn render_json(status: &Status, now: SystemTime) -> Result<String, serde_json::Error> {
    let snapshot = status.snapshot(now);
    serde_json::to_string(&StatusView::of(&snapshot))
}

/// `GET /`.
pub async fn html(State(status): State<Arc<Status>>, Query(query): Query<PageQuery>) -> Response {
    let refresh = match refresh_period(query.refresh.as_deref()) {
        Ok(refresh) => refresh,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let rendered =
        tokio::task::spawn_blocking(move || render_html(&status, SystemTime::now(), refresh)).await;
    answer(
        rendered,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
    )
}

/// `GET /api/v1/status`.
pub async fn json(State(status): State<Arc<Status>>) -> Response {
    let rendered =
        tokio::task::spawn_blocking(move || render_json(&status, SystemTime::now())).await;
    answer(
        rendered,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
    )
}

/// The rendered body with `headers`, or 500 when rendering failed (or its task
/// panicked).
fn answer<E, const N: usize>(
    rendered: Result<Result<String, E>, tokio::task::JoinError>,
    headers: [(HeaderName, &'static str); N],
) -> Response {
    match rendered {
        Ok(Ok(body)) => (headers, body).into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot render the status\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
