//! `/api/status`: status pushes from external daemons, the last known runtime status of an
//! instance, and recent status changes (rows 16–18), all on draas' real observed state and
//! its global history buffer.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use draas_jobs::domain::model::Cause;
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::queue::submit::Request;
use serde_json::{Map, Value};

use super::error::{Answer, CompatError};
use super::json;
use super::model::{InstanceRuntimeInfo, InstanceStatus, OriginalEnum, StatusChangeRecord};
use super::{InstancePath, instance_id, load};
use crate::AppState;
use crate::auth::Caller;
use crate::extract::{PathParams, QueryParams, RawBody, RequestId};
use crate::lifecycle;

const UPDATE_KEYS: &[&str] = &["instanceId", "status", "source", "metadata"];

fn text(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key).and_then(Value::as_str).unwrap_or_default().trim().to_owned()
}

/// `metadata`: a string map (numbers and booleans are taken as their text), bounded like v1.
fn metadata(v: Option<&Value>) -> Result<HashMap<String, String>, CompatError> {
    let invalid = || CompatError::bad_request("metadata must map at most 50 keys (100 bytes) to values (1000 bytes)");
    let Some(Value::Object(m)) = v else {
        return if v.is_none_or(Value::is_null) { Ok(HashMap::new()) } else { Err(invalid()) };
    };
    let out: HashMap<String, String> = m
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
            _ => Err(invalid()),
        })
        .collect::<Result<_, _>>()?;
    if out.len() > 50 || out.iter().any(|(k, v)| k.len() > 100 || v.len() > 1000) {
        return Err(invalid());
    }
    Ok(out)
}

/// Row 16: a daemon reports a status. It is recorded in the history (as a v1 push is) and
/// the instance is reconciled at once; 202 with an empty body.
pub async fn push(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Answer {
    let obj = json::object(json::body(&body, false)?.unwrap_or(Value::Null), UPDATE_KEYS)?;
    let (raw_id, source) = (text(&obj, "instanceId"), text(&obj, "source"));
    if raw_id.is_empty() || source.is_empty() {
        return Err(CompatError::bad_request("InstanceId and Source are required"));
    }
    if source.len() > 100 || source.chars().any(char::is_control) {
        return Err(CompatError::bad_request("Source must be 1-100 printable characters"));
    }
    let status = obj.get("status").and_then(InstanceStatus::from_json).ok_or_else(|| {
        CompatError::bad_request("Status must be Created, Running, Stopped, Error or ConfigurationChanged (or 0-4)")
    })?;
    let metadata = metadata(obj.get("metadata"))?;
    let id = instance_id(&raw_id)?;
    let s = load(&state, &id).await?;
    if let Some(status) = status.to_status() {
        let mut observed = s.observed.map(|o| o.value).unwrap_or_default();
        observed.status = status;
        observed.message = metadata.get("message").cloned().or_else(|| Some(format!("reported by {source}")));
        observed.observed_at = Some(Utc::now());
        let push_source = format!("push:{source}");
        let cause = Cause { source: &push_source, reason: "status-push", by: &caller.name };
        let recorded = state.store.instances().observe(&id, &observed, cause, None, None).await?;
        tracing::info!(instance = %id, %source, recorded, "status pushed through the original API");
    }
    lifecycle::submit(&state, &caller, Request::new(OperationKind::Reconcile, Some(&id), "status-push", &rid))
        .await
        .map_err(|e| CompatError::from(e).for_instance(id.as_str()))?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Row 17: the last known runtime status of an instance.
pub async fn runtime(State(state): State<AppState>, PathParams(p): PathParams<InstancePath>) -> Answer {
    let id = instance_id(&p.instance_id)?;
    let s = load(&state, &id).await?;
    let history = state.store.history().of(&id).await?;
    Ok(Json(InstanceRuntimeInfo::of(&s, &history)).into_response())
}

/// A `since` time: RFC 3339, or a time without offset (taken as UTC, not as the server's
/// local time), or a date.
fn parse_since(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    let rfc3339 = |s: &str| DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    // An unencoded `+01:00` arrives as ` 01:00`.
    if let Some(t) = rfc3339(raw).or_else(|| rfc3339(&raw.replace(' ', "+"))) {
        return Some(t);
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

/// Row 18: status changes since `since` (default five minutes ago), oldest first, only to
/// `statusFilter` when given. Query names are matched case-insensitively.
pub async fn recent_changes(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<HashMap<String, String>>,
) -> Answer {
    let q: HashMap<String, String> = q.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let since = match q.get("since").filter(|s| !s.trim().is_empty()) {
        Some(s) => parse_since(s).ok_or_else(|| {
            CompatError::bad_request(format!("since '{s}' is not a date and time (e.g. 2026-01-01T00:00:00Z)"))
        })?,
        None => Utc::now() - chrono::Duration::minutes(5),
    };
    let filter = match q.get("statusfilter").filter(|s| !s.trim().is_empty()) {
        Some(f) => Some(InstanceStatus::parse(f).ok_or_else(|| {
            CompatError::bad_request(format!("statusFilter '{f}' is not an InstanceStatus name or 0-4"))
        })?),
        None => None,
    };
    let start = format!("{}-0", since.timestamp_millis().max(1) - 1);
    let cap = state.settings.reconcile.history_global.max(1);
    let changes = state.store.history().after(Some(&start), cap).await?;
    let records: Vec<StatusChangeRecord> = changes
        .into_iter()
        .filter(|c| c.at >= since)
        .filter_map(StatusChangeRecord::of)
        .filter(|r| filter.is_none_or(|f| r.new_status == f))
        .collect();
    Ok(Json(records).into_response())
}
