//! draas REST API (axum). It validates, records desired state in the Redis state store and
//! (from the lifecycle issue on) enqueues jobs; it never touches a platform.

pub mod auth;
pub mod board;
pub mod compat;
pub mod dto;
pub mod error;
pub mod extract;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod network;
pub mod openapi;
pub mod patch;
pub mod plugins;
pub mod routes;
pub mod secrets;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use draas_jobs::queue::submit::Submitter;
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Auth;
use crate::error::ApiError;
use crate::routes::{
    components, config, data, health, instances, logs, operations, queues, secrets as instance_secrets, status,
};

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub submitter: Submitter,
    pub settings: Arc<Settings>,
    /// The streams served now (`api.max_streams`, and per token `quotas.max_streams`).
    pub streams: streams::Streams,
}

impl AppState {
    /// State over one store connection.
    pub fn new(store: Store, settings: Settings) -> Self {
        Self {
            submitter: Submitter::new(store.clone(), &settings),
            streams: streams::Streams::new(settings.api.max_streams, store.clone()),
            store,
            settings: Arc::new(settings),
        }
    }

    /// A permit for one more stream of `caller`, held as long as it runs; 429 when
    /// `api.max_streams` run, or the caller's token holds its `max_streams`.
    pub async fn stream_permit(&self, caller: &auth::Caller) -> Result<streams::StreamPermit, ApiError> {
        self.streams.permit(caller).await
    }

    /// The keep-alive every stream sends while it has nothing to say.
    pub fn keep_alive(&self) -> axum::response::sse::KeepAlive {
        axum::response::sse::KeepAlive::new()
            .interval(Duration::from_secs(self.settings.api.heartbeat_secs))
            .text("heartbeat")
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application: public health routes and the (data-less) dashboard shell, and
/// everything else behind the token.
pub fn router(state: AppState) -> Router {
    let auth = Auth::from_settings(&state.settings);
    let timeout = Duration::from_secs(state.settings.api.request_timeout_secs);
    let body_limit = state.settings.api.body_limit_bytes;
    let v1 = Router::new()
        .route("/api/v1/instances", get(instances::list).post(instances::create))
        .route("/api/v1/instances/{id}", get(instances::get).patch(instances::update).delete(operations::delete))
        .route("/api/v1/instances/{id}/start", post(operations::start))
        .route("/api/v1/instances/{id}/stop", post(operations::stop))
        .route("/api/v1/instances/{id}/restart", post(operations::restart))
        .route("/api/v1/instances/{id}/history", get(status::history))
        .route("/api/v1/instances/{id}/components", get(data::components))
        .route("/api/v1/instances/{id}/logs", get(logs::logs))
        .route("/api/v1/instances/{id}/queries/{query}/results", get(data::results))
        .route("/api/v1/instances/{id}/queries/{query}/watch", get(data::watch))
        .route("/api/v1/instances/{id}/reconcile", post(status::reconcile_one))
        .route("/api/v1/instances/{id}/secrets", get(instance_secrets::list))
        .route(
            "/api/v1/instances/{id}/secrets/{name}",
            axum::routing::put(instance_secrets::put).delete(instance_secrets::delete),
        )
        .route("/api/v1/secrets/rewrap", post(instance_secrets::rewrap))
        .route("/api/v1/status/recent-changes", get(status::recent_changes))
        .route("/api/v1/status/updates", post(status::push))
        .route("/api/v1/events", get(status::events))
        .route("/api/v1/reconcile", post(status::reconcile_all))
        .route("/api/v1/operations", get(operations::list))
        .route("/api/v1/operations/{id}", get(operations::get))
        .route("/api/v1/operations/{id}/cancel", post(operations::cancel))
        .route("/api/v1/queues", get(queues::list))
        .route("/api/v1/queues/backlog", get(queues::backlog))
        .route("/api/v1/plugins", get(plugins::list))
        .route("/api/v1/instances/{id}/config", get(config::get).put(config::put).patch(config::patch))
        .route("/api/v1/instances/{id}/config/{kind}", get(components::list).post(components::create))
        .route(
            "/api/v1/instances/{id}/config/{kind}/{component}",
            get(components::get).put(components::put).delete(components::delete),
        )
        .merge(compat::routes());
    let (public, v1) = if state.settings.api.metrics_public {
        (Router::new().route("/metrics", get(metrics::serve)), v1)
    } else {
        (Router::new(), v1.route("/metrics", get(metrics::serve)))
    };
    let v1 = v1
        .route_layer(middleware::from_fn_with_state(auth, auth::require_token))
        .route_layer(middleware::from_fn(network::warnings))
        .route_layer(middleware::from_fn(metrics::track));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(public)
        .merge(board::routes())
        .merge(docs())
        .route_layer(middleware::from_fn(metrics::track))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |req, next| with_timeout(timeout, req, next)))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::from_fn(drop_invalid_request_id))
        .with_state(state)
}

/// The reference UI at `/docs` (Swagger UI, its assets inside the binary) and the document it
/// shows at `/openapi.json`, both without a token: the document is the same for every
/// deployment (`draas openapi` prints it) and holds no data; the page's "Authorize" button
/// takes a token for the requests it sends.
fn docs() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", openapi::ApiDoc::openapi()))
}

/// Longest `x-request-id` kept.
const MAX_REQUEST_ID: usize = 128;

/// A client's `x-request-id` is logged, stored with the operations it causes and echoed: one
/// that is not 1-128 characters of `[A-Za-z0-9._:-]` is dropped before anything sees it, so
/// the request-id layer gives the request a fresh one.
async fn drop_invalid_request_id(mut req: Request, next: Next) -> Response {
    let valid = |v: &[u8]| {
        (1..=MAX_REQUEST_ID).contains(&v.len())
            && v.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    };
    let ids = req.headers().get_all(REQUEST_ID);
    if ids.iter().count() > 1 || ids.iter().any(|v| !valid(v.as_bytes())) {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

async fn with_timeout(limit: Duration, req: Request, next: Next) -> Result<Response, ApiError> {
    tokio::time::timeout(limit, next.run(req)).await.map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long; retry").retry_after(1)
    })
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if state.settings.dev {
        tracing::warn!("DEV MODE: authentication is disabled (DRAAS_DEV=true); never expose this API");
    }
    // The global reconcile ticks come from the API too, so they keep coming with no worker
    // running (each tick is decided once, whoever produces it).
    let ticks = tokio::spawn(draas_jobs::queue::ticks::produce(
        state.store.clone(),
        state.settings.reconcile.interval_secs,
        None,
    ));
    let header_timeout = Duration::from_secs(state.settings.api.header_timeout_secs.max(1));
    let served = listener::run(listener, router(state), header_timeout, shutdown).await;
    ticks.abort();
    served
}
