//! `/metrics` and the HTTP request histogram.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use draas_jobs::metrics;

use crate::AppState;

/// Route-layer middleware: time each request, labelled by its route template (never the raw
/// path, so ids do not explode the series).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    metrics::metrics().http_request(&route, &method, res.status().as_u16(), started.elapsed());
    res
}

/// The process's metrics in the OpenMetrics text format.
pub async fn serve(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&state.store).await).into_response()
}
