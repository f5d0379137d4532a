//! Extractors that turn every malformed request into the one error shape: bodies by content
//! type (JSON, YAML, JSON Patch, merge patch), path and query parameters, and `If-Match`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Media types a body may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    Json,
    Yaml,
    JsonPatch,
    MergePatch,
}

impl MediaType {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => Some(Self::Yaml),
            "application/json-patch+json" => Some(Self::JsonPatch),
            "application/merge-patch+json" => Some(Self::MergePatch),
            _ => None,
        }
    }
}

/// A request body with its media type, read within the body limit.
pub struct RawBody {
    pub media: Option<MediaType>,
    pub bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = MediaType::of(req.headers());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is larger than the limit (1 MiB by default)",
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        Ok(Self { media, bytes })
    }
}

impl RawBody {
    /// Require one of `allowed` media types.
    pub fn expect(&self, allowed: &[MediaType]) -> Result<MediaType, ApiError> {
        match self.media {
            Some(m) if allowed.contains(&m) => Ok(m),
            _ => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type must be one of: {}", names(allowed)),
            )),
        }
    }

    /// Decode a JSON body into `T`, reporting the faulty field's pointer.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        decode_json(&self.bytes)
    }

    /// Decode a JSON or YAML body into a JSON value.
    pub fn document(&self, media: MediaType) -> Result<Value, ApiError> {
        match media {
            MediaType::Yaml => serde_norway::from_slice(&self.bytes)
                .map_err(|e| ApiError::bad_request("malformed_yaml", format!("request body is not valid YAML: {e}"))),
            _ => decode_json(&self.bytes),
        }
    }
}

fn names(allowed: &[MediaType]) -> String {
    allowed
        .iter()
        .map(|m| match m {
            MediaType::Json => "application/json",
            MediaType::Yaml => "application/yaml",
            MediaType::JsonPatch => "application/json-patch+json",
            MediaType::MergePatch => "application/merge-patch+json",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decode JSON: a plain 400 when it is not JSON at all, a 422 with the JSON pointer of the
/// faulty field when it is JSON of the wrong shape.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("request body is not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let pointer = draas_jobs::domain::validate::pointer_of(e.path());
        let message = e.into_inner().to_string();
        let code = if message.starts_with("unknown field") { "unknown_field" } else { "invalid_field" };
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).at(pointer)
    })
}

/// Path parameters, with rejections in the one error shape.
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Self(t))
            .map_err(|e| ApiError::bad_request("invalid_path", e.body_text()))
    }
}

/// Query parameters, with rejections in the one error shape.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| Self(t))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// The `If-Match` precondition, if the client sent one.
pub struct IfMatch(Option<Vec<String>>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(v) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let v = v.to_str().map_err(|_| ApiError::bad_request("invalid_if_match", "If-Match must be ASCII"))?;
        let tags = v.split(',').map(|t| t.trim().trim_start_matches("W/").trim_matches('"').to_owned()).collect();
        Ok(Self(Some(tags)))
    }
}

impl IfMatch {
    /// Did the client send one?
    pub fn is_present(&self) -> bool {
        self.0.is_some()
    }

    /// Fail with 412 unless the precondition holds for `version`.
    pub fn check(&self, version: u64) -> Result<(), ApiError> {
        match &self.0 {
            Some(tags) if !tags.iter().any(|t| t == "*" || *t == version.to_string()) => {
                Err(ApiError::precondition_failed(version))
            }
            _ => Ok(()),
        }
    }
}

/// The `ETag` header value of a version.
pub fn etag(version: u64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

/// The request's id (`x-request-id`, set by the request-id layer when the client sent none):
/// the correlation id of the operations a request causes.
pub struct RequestId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        Ok(Self(id.to_owned()))
    }
}
