//! Start, stop and restart (rows 11–13), synchronous as in the original: each submits our
//! operation and waits for it (`compat.wait_secs`), then answers `{message, runtimeInfo}`, a
//! JSON error with the operation's reason, or 504 naming the operation, which carries on.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::operation::{Operation, OperationKind, OperationStatus};
use draas_jobs::queue::submit::Request;
use serde_json::Value;

use super::error::{Answer, CompatError};
use super::json;
use super::model::InstanceRuntimeInfo;
use super::{InstancePath, instance_id, load};
use crate::AppState;
use crate::auth::Caller;
use crate::extract::{PathParams, RawBody, RequestId};
use crate::lifecycle;

/// How long to wait: the setting, but always less than the request timeout, so the client
/// gets our 504 (with the operation id) rather than the generic timeout.
fn wait(state: &AppState) -> Duration {
    let limit = state.settings.api.request_timeout_secs.saturating_sub(1);
    Duration::from_secs(state.settings.compat.wait_secs.min(limit))
}

/// Submit `kind` on `id` for the user and wait until it ends; anything but success is an error.
pub async fn run_to_end(
    state: &AppState,
    caller: &Caller,
    id: &InstanceId,
    kind: OperationKind,
    correlation: &str,
) -> Answer<Operation> {
    let wait = wait(state);
    let op = lifecycle::submit_and_wait(state, caller, Request::new(kind, Some(id), "user", correlation), wait)
        .await
        .map_err(|e| CompatError::from(e).for_instance(id.as_str()))?;
    let op_id = op.id.to_string();
    match op.status {
        OperationStatus::Succeeded => Ok(op),
        OperationStatus::Queued | OperationStatus::Running => {
            tracing::info!(instance = %id, operation = %op_id, "compat wait ran out; the operation carries on");
            Err(CompatError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "Operation timed out after {} s: the {} operation '{op_id}' carries on; see /api/v1/operations/{op_id}",
                    wait.as_secs(),
                    kind.as_str()
                ),
            )
            .with("operationId", op_id))
        }
        OperationStatus::Failed => Err(failed(&op, kind)),
        OperationStatus::Superseded | OperationStatus::Cancelled => Err(CompatError::conflict(format!(
            "Failed to {} instance: the operation was {} by a newer request",
            kind.as_str(),
            op.status.as_str()
        ))
        .with("operationId", op_id)),
    }
}

fn failed(op: &Operation, kind: OperationKind) -> CompatError {
    let (code, message) =
        op.error.as_ref().map_or(("failed", "the operation failed"), |e| (e.code.as_str(), e.message.as_str()));
    let status = match code {
        "port_taken" | "instance_deleting" => StatusCode::CONFLICT,
        "instance_not_found" => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_GATEWAY,
    };
    CompatError::new(status, format!("Failed to {} instance: {message}", kind.as_str()))
        .with("code", code)
        .with("operationId", op.id.to_string())
}

/// Run `kind` to its end and answer `{message, runtimeInfo}`.
async fn sync(
    state: &AppState,
    caller: &Caller,
    id: &InstanceId,
    kind: OperationKind,
    rid: &str,
    done: &str,
) -> Answer {
    run_to_end(state, caller, id, kind, rid).await?;
    let after = load(state, id).await?;
    let history = state.store.history().of(id).await?;
    let body = serde_json::json!({
        "message": format!("Instance '{id}' {done} successfully"),
        "runtimeInfo": InstanceRuntimeInfo::of(&after, &history),
    });
    Ok(Json(body).into_response())
}

/// Row 11: start; an optional `Configuration` body replaces the stored configuration first.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Answer {
    let id = instance_id(&p.instance_id)?;
    load(&state, &id).await?;
    let given = match json::body(&body, false)? {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            Some(json::config_in(v, None)).filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
        }
        Some(_) => return Err(CompatError::bad_request("the body must be a Configuration object")),
    };
    if let Some(doc) = given {
        let config = draas_jobs::domain::validate::parse_config(doc)?;
        let plugins = crate::plugins::Checker::load(&state).await?;
        state
            .store
            .instances()
            .update_by(&id, Some(&caller.name), |s| {
                crate::network::check_references_for(&state, s, &config)?;
                plugins.check_instance(s, &config)?;
                s.config.value = config.clone();
                Ok::<_, CompatError>(())
            })
            .await
            .map_err(|e| e.for_instance(id.as_str()))?;
        tracing::info!(instance = %id, "configuration replaced by the body of a compat start");
    }
    sync(&state, &caller, &id, OperationKind::Start, &rid, "started").await
}

/// Row 12: stop.
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    RequestId(rid): RequestId,
) -> Answer {
    let id = instance_id(&p.instance_id)?;
    load(&state, &id).await?;
    sync(&state, &caller, &id, OperationKind::Stop, &rid, "stopped").await
}

/// Row 13: restart with the stored configuration.
pub async fn restart(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(p): PathParams<InstancePath>,
    RequestId(rid): RequestId,
) -> Answer {
    let id = instance_id(&p.instance_id)?;
    load(&state, &id).await?;
    sync(&state, &caller, &id, OperationKind::Restart, &rid, "restarted").await
}
