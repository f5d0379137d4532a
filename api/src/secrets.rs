//! Secrets in API reads: redacted (`***`) unless an admin asks with `?reveal=true`.

use axum::http::StatusCode;
use draas_jobs::domain::redact::redact;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;

/// May this caller see secrets? `?reveal=true` needs an admin token (403 otherwise).
pub fn reveal(asked: Option<bool>, caller: &Caller) -> Result<bool, ApiError> {
    match asked {
        Some(true) if !caller.is_admin() => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "reveal_forbidden", "only an admin token may reveal secrets"))
        }
        Some(true) => Ok(true),
        _ => Ok(false),
    }
}

/// `doc` as the caller may see it.
pub fn shown(mut doc: Value, reveal: bool) -> Value {
    if !reveal {
        redact(&mut doc);
    }
    doc
}

/// A YAML document as the caller may see it (re-serialised only when something is hidden).
pub fn shown_yaml(yaml: &str, reveal: bool) -> Result<String, ApiError> {
    if reveal {
        return Ok(yaml.to_owned());
    }
    let doc: Value = serde_norway::from_str(yaml).map_err(|e| ApiError::internal(&e))?;
    let hidden = shown(doc.clone(), false);
    if hidden == doc {
        return Ok(yaml.to_owned());
    }
    serde_norway::to_string(&hidden).map_err(|e| ApiError::internal(&e))
}
