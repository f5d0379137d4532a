//! The original DRaaS REST API (`/api/server`, `/api/configuration`, `/api/status`), served
//! unchanged for its clients on top of the v1 store and operations.
//!
//! The original matched paths case-insensitively (its `Location` headers say `/api/Server/…`).
//! axum matches exactly, so one catch-all route takes every `/{api}/{controller}/…` path that
//! no v1 route took, lowercases its fixed segments (never the instance id) and hands it to an
//! inner router of the lowercase paths. Paths that are not the original's answer the same 404
//! as any unknown route. Errors of the inner routes leave as `{"error": "…"}`: draas' own
//! problem+json answers are rewritten on the way out (and 422 becomes the original's 400).

mod configuration;
mod error;
mod json;
mod lifecycle;
mod model;
mod server;
mod server_config;
mod status;

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::InstanceState;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

pub use error::{Answer, CompatError};

use crate::AppState;
use crate::error::ApiError;

/// The original API's routes (behind the same authentication as v1).
pub fn routes() -> Router<AppState> {
    let inner: Arc<OnceLock<Router>> = Arc::default();
    Router::new().route(
        "/{compat_api}/{compat_controller}/{*compat_rest}",
        any(move |State(state): State<AppState>, req: Request| {
            let inner = inner.clone();
            async move { dispatch(&inner, state, req).await }
        }),
    )
}

/// The original's routes, at their lowercase paths.
fn original_routes() -> Router<AppState> {
    let i = "/api/server/instances/{instanceId}";
    Router::new()
        .route("/api/server/instances", get(server::list).post(server::create))
        .route(i, get(server::get).delete(server::delete))
        .route(&format!("{i}/status"), put(server::set_status))
        .route(&format!("{i}/configuration/server"), get(server_config::get).patch(server_config::patch))
        .route(&format!("{i}/configuration/server/host"), put(server_config::put_host))
        .route(&format!("{i}/configuration/server/port"), put(server_config::put_port))
        .route(&format!("{i}/configuration/server/loglevel"), put(server_config::put_log_level))
        .route(&format!("{i}/start"), post(lifecycle::start))
        .route(&format!("{i}/stop"), post(lifecycle::stop))
        .route(&format!("{i}/restart"), post(lifecycle::restart))
        .route("/api/configuration/instances/{instanceId}", get(configuration::get).patch(configuration::patch))
        .route("/api/status/updates", post(status::push))
        .route("/api/status/recent-changes", get(status::recent_changes))
        .route("/api/status/{instanceId}/status", get(status::runtime))
        .fallback(|| async { route_not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
}

/// Exactly what the application answers for an unknown route.
fn route_not_found() -> Response {
    ApiError::not_found("route_not_found", "no such route").into_response()
}

async fn dispatch(inner: &OnceLock<Router>, state: AppState, mut req: Request) -> Response {
    let Some(path) = normalize(req.uri().path()) else {
        return route_not_found();
    };
    let uri = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    match uri.parse() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return route_not_found(),
    }
    let router = inner.get_or_init(|| original_routes().with_state(state)).clone();
    let Ok(res) = router.oneshot(req).await;
    json_errors(res).await
}

/// The path with the original's fixed segments lowercased, or `None` when it is not one of
/// the original's. The instance id keeps its case.
fn normalize(path: &str) -> Option<String> {
    let mut segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segs.len() > 3 && segs.last() == Some(&"") {
        segs.pop(); // a trailing slash, which the original tolerated
    }
    if segs.len() < 3 || !segs[0].eq_ignore_ascii_case("api") {
        return None;
    }
    let id_at = match segs[1].to_ascii_lowercase().as_str() {
        "server" | "configuration" => 3,
        "status" if segs.len() > 3 => 2,
        "status" => usize::MAX,
        _ => return None,
    };
    let segs: Vec<String> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| if i == id_at { (*s).to_owned() } else { s.to_ascii_lowercase() })
        .collect();
    Some(format!("/{}", segs.join("/")))
}

/// Rewrite a problem+json answer as `{"error": message}`; a 422 becomes the original's 400.
async fn json_errors(res: Response) -> Response {
    let problem = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == "application/problem+json");
    if !problem {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let message = problem["message"].as_str().unwrap_or("request failed");
    let message = match problem["pointer"].as_str() {
        Some(p) if !p.is_empty() => format!("{message} (at {p})"),
        _ => message.to_owned(),
    };
    if parts.status == StatusCode::UNPROCESSABLE_ENTITY {
        parts.status = StatusCode::BAD_REQUEST;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(json!({ "error": message }).to_string()))
}

/// The `{instanceId}` of a path (other captured parameters are ignored).
#[derive(Debug, Deserialize)]
pub struct InstancePath {
    #[serde(rename = "instanceId")]
    pub instance_id: String,
}

/// Parse an instance id; one that cannot be ours does not exist (404, as in the original).
pub fn instance_id(raw: &str) -> Result<InstanceId, CompatError> {
    raw.parse().map_err(|_| CompatError::not_found(raw))
}

/// Load an instance or answer the original's 404.
pub async fn load(state: &AppState, id: &InstanceId) -> Result<InstanceState, CompatError> {
    state.store.instances().load(id).await?.ok_or_else(|| CompatError::not_found(id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn fixed_segments_are_lowercased_and_the_id_is_kept() {
        assert_eq!(normalize("/api/Server/Instances/AbC/Start").as_deref(), Some("/api/server/instances/AbC/start"));
        assert_eq!(normalize("/API/Status/Recent-Changes").as_deref(), Some("/api/status/recent-changes"));
        assert_eq!(normalize("/api/Status/XyZ/Status/").as_deref(), Some("/api/status/XyZ/status"));
        assert_eq!(normalize("/api/Configuration/instances/Q").as_deref(), Some("/api/configuration/instances/Q"));
        assert_eq!(normalize("/api/v1/instances"), None);
        assert_eq!(normalize("/docs/a/b"), None);
    }
}
