//! The one API error type and its one JSON shape: `application/problem+json` with a stable
//! `code`, a `message`, and (for body errors) the JSON pointer of the faulty field.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use draas_jobs::domain::ids::IdError;
use draas_jobs::domain::validate::{ConfigError, FieldError};
use draas_jobs::store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Problem details (RFC 9457) with draas' stable `code`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the `code` carries the meaning.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP status text.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// Stable machine-readable code, e.g. `invalid_name`, `instance_not_found`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// JSON pointer of the faulty field in the request body, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Every problem found, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    pointer: Option<String>,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
    www_authenticate: bool,
    close: bool,
}

impl ApiError {
    /// An error with a status, a stable code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            pointer: None,
            errors: Vec::new(),
            retry_after: None,
            www_authenticate: false,
            close: false,
        }
    }

    /// Tell the client the connection closes (the unread rest of an oversized body is dropped).
    pub fn close_connection(mut self) -> Self {
        self.close = true;
        self
    }

    /// Point at the faulty field of the request body.
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// Ask the client to come back later.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 with a code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with a code.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with a code.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 for one field.
    pub fn field(e: FieldError) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, &e.code, e.message.clone()).at(e.pointer)
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer <token>)",
        );
        e.www_authenticate = true;
        e
    }

    /// 412: the client's `If-Match` does not match the current version.
    pub fn precondition_failed(current: u64) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            format!("If-Match does not match the current version (ETag \"{current}\")"),
        )
    }

    /// 404 for an instance id.
    pub fn instance_not_found(id: &str) -> Self {
        Self::not_found("instance_not_found", format!("instance '{id}' does not exist"))
    }

    /// 500 without internals; the cause is logged once here.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }

    /// Status of this error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Stable code of this error.
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            code: self.code,
            message: self.message,
            pointer: self.pointer,
            errors: self.errors,
        };
        let mut res = (self.status, axum::Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "state store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the state store is unavailable; retry shortly",
                )
                .retry_after(1)
            }
            StoreError::NameTaken => Self::conflict("name_taken", "another instance already has this name"),
            StoreError::Contended => {
                Self::conflict("contended", "the instance is being changed concurrently; retry").retry_after(1)
            }
            StoreError::NotFound => Self::not_found("instance_not_found", "instance does not exist"),
            e @ StoreError::OverQuota { .. } => Self::quota_exceeded(e.to_string(), QUOTA_RETRY_SECS),
            StoreError::Corrupt { .. } => {
                tracing::error!(error = %e, "a record cannot be read");
                Self::corrupt()
            }
            e @ (StoreError::Redis(_) | StoreError::Protocol(_)) => Self::internal(&e),
        }
    }
}

/// When to ask a client over its instance quota to come back: instances are freed by deletes,
/// not by time.
const QUOTA_RETRY_SECS: u64 = 60;

impl ApiError {
    /// 429: the caller's token used up one of its quotas (`message` names it).
    pub fn quota_exceeded(message: impl Into<String>, retry_after: u64) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message).retry_after(retry_after.max(1))
    }

    /// 409: a record of the instance cannot be read, so it cannot be edited in place.
    pub fn corrupt() -> Self {
        Self::conflict(
            "instance_corrupt",
            "a record of this instance cannot be read: replace its whole configuration (PUT …/config) or delete it",
        )
    }

    /// An error about several fields, with `status`: the first one's code, message and pointer,
    /// and every one in `errors`.
    pub fn fields(status: StatusCode, errors: Vec<FieldError>) -> Self {
        let first =
            errors.first().cloned().unwrap_or_else(|| FieldError::new("invalid_config", "invalid configuration", ""));
        let mut e = Self::new(status, &first.code, first.message.clone()).at(first.pointer);
        e.errors = errors;
        e
    }
}

impl From<ConfigError> for ApiError {
    fn from(ConfigError(errors): ConfigError) -> Self {
        Self::fields(StatusCode::UNPROCESSABLE_ENTITY, errors)
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        Self::bad_request(e.code, e.message)
    }
}

impl ApiError {
    /// Re-base every pointer under `prefix` (a config nested in a larger body).
    pub fn under(mut self, prefix: &str) -> Self {
        self.pointer = self.pointer.map(|p| format!("{prefix}{p}"));
        for e in &mut self.errors {
            e.pointer = format!("{prefix}{}", e.pointer);
        }
        self
    }

    /// Strip `prefix` from every pointer that starts with it (a component validated inside
    /// its configuration, reported relative to the component's own body).
    pub fn relative_to(mut self, prefix: &str) -> Self {
        let strip = |p: &str| p.strip_prefix(prefix).map(str::to_owned);
        if let Some(p) = self.pointer.as_deref().and_then(strip) {
            self.pointer = Some(p);
        }
        for e in &mut self.errors {
            if let Some(p) = strip(&e.pointer) {
                e.pointer = p;
            }
        }
        self
    }
}
