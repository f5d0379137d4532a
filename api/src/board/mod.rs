//! The operations console at `/board`: instances (platform, desired and observed status,
//! endpoint, components health, age) with start, stop, restart and delete; an instance's page
//! (`#/instances/<id>`: components, a chosen query's results, the log tail, history and
//! operations); linkable operations (`#/operations/<id>`), queued ones cancellable; failures
//! grouped by error code; operations by status and the job queues. Refreshed every 2 s.
//!
//! It is a static page (HTML, CSS and vanilla JS embedded in the binary) that holds no data.
//! A browser cannot send a bearer token when it navigates, so the three files are public and
//! everything shown comes from the v1 API behind the same token as every other route: the
//! script asks for the token (or takes it from a `#token=…` URL fragment, or
//! `#/instances/<id>?token=…`, which browsers never send to the server), keeps it in
//! `sessionStorage` and sends it as `Authorization: Bearer`. Nothing is shown without a token.
//! apalis-board is not used: with apalis-redis its stats, workers and queues views answer 500,
//! and it has no authentication. Every value is inserted as text (`textContent`), and a strict
//! Content-Security-Policy allows only these files, so even a value that escaped the script
//! could not run as code.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("board.js");
const STYLE: &str = include_str!("board.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// The console's public routes (no data: see the module documentation).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/board", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/board/board.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/board/board.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
}
