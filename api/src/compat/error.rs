//! Errors of the original API: always JSON `{"error": "<message>"}` (plus, where it helps,
//! `code` and `operationId`), never plain text and never a bare 500.
//!
//! Handlers may also return draas' own [`ApiError`]; the compat dispatcher rewrites every
//! `application/problem+json` answer into this shape (and a 422 into the original's 400).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use draas_jobs::domain::validate::ConfigError;
use draas_jobs::store::StoreError;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// What a compat handler answers.
pub type Answer<T = Response> = Result<T, CompatError>;

/// An error answered by a compat route.
#[derive(Debug)]
pub enum CompatError {
    /// draas' own error; rendered as problem+json, then rewritten by the dispatcher.
    Api(ApiError),
    /// An error in the original's shape.
    Json(StatusCode, Map<String, Value>),
}

impl CompatError {
    /// `{"error": message}` with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = Map::new();
        body.insert("error".into(), Value::String(message.into()));
        Self::Json(status, body)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 in the original's words.
    pub fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("Instance '{id}' not found"))
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// Add a field to the body (for example `operationId`).
    pub fn with(self, key: &str, value: impl Into<Value>) -> Self {
        match self {
            Self::Json(status, mut body) => {
                body.insert(key.to_owned(), value.into());
                Self::Json(status, body)
            }
            api => api,
        }
    }

    /// Turn any 404 into the original's "Instance '{id}' not found".
    pub fn for_instance(self, id: &str) -> Self {
        match self {
            Self::Api(e) if e.status() == StatusCode::NOT_FOUND => Self::not_found(id),
            Self::Json(StatusCode::NOT_FOUND, _) => Self::not_found(id),
            other => other,
        }
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        Self::Api(ApiError::internal(cause))
    }
}

impl From<ApiError> for CompatError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for CompatError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

impl From<ConfigError> for CompatError {
    fn from(ConfigError(errors): ConfigError) -> Self {
        let message = errors.first().map_or_else(
            || "invalid configuration".to_owned(),
            |e| if e.pointer.is_empty() { e.message.clone() } else { format!("{} (at {})", e.message, e.pointer) },
        );
        Self::bad_request(message)
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Json(status, body) => {
                if status.is_server_error() {
                    let error = body.get("error").and_then(Value::as_str).unwrap_or_default();
                    tracing::warn!(%status, error, "compat request failed");
                }
                (status, Json(Value::Object(body))).into_response()
            }
        }
    }
}
