//! Lifecycle routes (`start`, `stop`, `restart`, `DELETE`) answering `202` with an operation,
//! and `/api/v1/operations`: read, list, cancel.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use draas_jobs::domain::ids::OperationId;
use draas_jobs::domain::model::RuntimeFacts;
use draas_jobs::domain::operation::{Operation, OperationError, OperationKind, OperationStatus};
use draas_jobs::queue::submit::Request;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::instances::{load, page_limit, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{IfMatch, PathParams, QueryParams, RequestId};
use crate::lifecycle;

/// An operation as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationDto {
    pub id: String,
    pub kind: OperationKind,
    pub instance_id: Option<String>,
    pub status: OperationStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    pub error: Option<OperationError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Runtime facts: pid, container id or pod, node, endpoint URL.
    pub result: RuntimeFacts,
    /// Why: `user`, or the reconciler's reason.
    pub reason: String,
    pub target_generation: u64,
    pub correlation_id: String,
    /// Who asked: the name of the caller's token, or `system` for what draas submits itself
    /// (repairs, fail-over, scheduled passes); absent on operations recorded before draas
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl From<&Operation> for OperationDto {
    fn from(o: &Operation) -> Self {
        Self {
            id: o.id.to_string(),
            kind: o.kind,
            instance_id: o.instance_id.as_ref().map(ToString::to_string),
            status: o.status,
            attempt: o.attempt,
            max_attempts: o.max_attempts,
            error: o.error.clone(),
            created_at: o.created_at,
            started_at: o.started_at,
            finished_at: o.finished_at,
            result: o.result.clone(),
            reason: o.reason.clone(),
            target_generation: o.target_generation,
            correlation_id: o.correlation_id.clone(),
            requested_by: o.requested_by.clone(),
        }
    }
}

/// `?wait=N`: hold the request up to N seconds (at most 60) for the operation to end.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    pub wait: Option<u64>,
}

/// Options of `DELETE /api/v1/instances/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Hold up to N seconds (at most 60) for the operation to end.
    pub wait: Option<u64>,
    /// Remove the instance's records even when its platform cannot be reached (what may remain
    /// there is reported as an orphan by the reconciler).
    pub force: Option<bool>,
}

/// Longest `?wait=`.
pub const MAX_WAIT_SECS: u64 = 60;

/// How long `?wait=` holds a request: at most 60 s (400 beyond), and at most what the
/// operators allow (a proxy in front with a shorter timeout).
pub fn wait_duration(state: &AppState, wait: Option<u64>) -> Result<Duration, ApiError> {
    let wait = wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request("invalid_wait", format!("wait must be at most {MAX_WAIT_SECS} seconds")));
    }
    Ok(Duration::from_secs(wait.min(state.settings.api.max_wait_secs)))
}

/// 202 + Location + Retry-After while the operation runs, 200 once it has ended.
fn operation_response(op: &Operation) -> Response {
    let status = if op.status.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let location = format!("/api/v1/operations/{}", op.id);
    (status, [(header::LOCATION, location), (header::RETRY_AFTER, "1".to_owned())], Json(OperationDto::from(op)))
        .into_response()
}

/// What a lifecycle route was asked.
struct Asked<'a> {
    id: &'a str,
    kind: OperationKind,
    if_match: &'a IfMatch,
    wait: Option<u64>,
    force: bool,
    request_id: &'a str,
    caller: &'a Caller,
}

async fn lifecycle(state: AppState, a: Asked<'_>) -> Result<Response, ApiError> {
    let id = parse_id(a.id)?;
    let wait = wait_duration(&state, a.wait)?;
    let mut request = Request::new(a.kind, Some(&id), "user", a.request_id);
    if a.if_match.is_present() {
        // Checked against this read, and the submit writes only if nothing changed since.
        let version = load(&state, &id).await?.instance.version;
        a.if_match.check(version)?;
        request.expected_version = Some(version);
    }
    request.force = a.force;
    let op = lifecycle::submit_and_wait(&state, a.caller, request, wait).await?;
    Ok(operation_response(&op))
}

macro_rules! lifecycle_route {
    ($name:ident, $method:ident, $path:literal, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path($method, path = $path, tag = "lifecycle", params(("id" = String, Path), WaitQuery),
            responses((status = 202, body = OperationDto, description = "Accepted; poll the Location"),
                (status = 200, body = OperationDto, description = "Ended within ?wait="),
                (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
                (status = 412, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
        pub async fn $name(
            State(state): State<AppState>,
            Extension(caller): Extension<Caller>,
            PathParams(id): PathParams<String>,
            QueryParams(q): QueryParams<WaitQuery>,
            if_match: IfMatch,
            RequestId(rid): RequestId,
        ) -> Result<Response, ApiError> {
            let asked = Asked {
                id: &id,
                kind: $kind,
                if_match: &if_match,
                wait: q.wait,
                force: false,
                request_id: &rid,
                caller: &caller,
            };
            lifecycle(state, asked).await
        }
    };
}

lifecycle_route!(start, post, "/api/v1/instances/{id}/start", OperationKind::Start, "Start an instance.");
lifecycle_route!(stop, post, "/api/v1/instances/{id}/stop", OperationKind::Stop, "Stop an instance.");
lifecycle_route!(
    restart,
    post,
    "/api/v1/instances/{id}/restart",
    OperationKind::Restart,
    "Restart an instance with its stored configuration."
);
/// Delete an instance: stop it, remove its files, port and records. With `?force=true` the
/// records go even when the platform cannot be reached.
#[utoipa::path(delete, path = "/api/v1/instances/{id}", tag = "lifecycle", params(("id" = String, Path), DeleteQuery),
    responses((status = 202, body = OperationDto, description = "Accepted; poll the Location"),
        (status = 200, body = OperationDto, description = "Ended within ?wait="),
        (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 412, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<DeleteQuery>,
    if_match: IfMatch,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let force = q.force.unwrap_or(false);
    let asked = Asked {
        id: &id,
        kind: OperationKind::Delete,
        if_match: &if_match,
        wait: q.wait,
        force,
        request_id: &rid,
        caller: &caller,
    };
    lifecycle(state, asked).await
}

fn parse_op_id(raw: &str) -> Result<OperationId, ApiError> {
    Ok(raw.parse::<OperationId>()?)
}

/// Read an operation (`?wait=N` holds until it ends).
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", params(("id" = String, Path), WaitQuery),
    responses((status = 200, body = OperationDto), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<WaitQuery>,
) -> Result<Response, ApiError> {
    let id = parse_op_id(&id)?;
    let op = state
        .store
        .operations()
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("operation_not_found", format!("operation '{id}' does not exist")))?;
    let wait = q.wait.unwrap_or(0).min(MAX_WAIT_SECS).min(state.settings.api.max_wait_secs);
    let op = lifecycle::wait_for(&state, op, Duration::from_secs(wait)).await?;
    Ok(Json(OperationDto::from(&op)).into_response())
}

/// Filters and paging of `GET /api/v1/operations`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOperations {
    /// Only this instance's operations.
    pub instance: Option<String>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// A page of operations, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationPage {
    pub items: Vec<OperationDto>,
    pub next_cursor: Option<String>,
}

/// List operations, newest first.
#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", params(ListOperations),
    responses((status = 200, body = OperationPage), (status = 400, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ListOperations>,
) -> Result<Json<OperationPage>, ApiError> {
    let limit = page_limit(&state, q.limit)?;
    let instance = q.instance.as_deref().map(parse_id).transpose()?;
    let cursor = q
        .cursor
        .as_deref()
        .map(parse_op_id)
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned"))?;
    let (ops, next) = state.store.operations().list(instance.as_ref(), cursor.as_ref(), limit).await?;
    Ok(Json(OperationPage {
        items: ops.iter().map(OperationDto::from).collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}

/// Cancel a queued operation.
#[utoipa::path(post, path = "/api/v1/operations/{id}/cancel", tag = "operations", params(("id" = String, Path)),
    responses((status = 200, body = OperationDto), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<OperationDto>, ApiError> {
    let op = lifecycle::cancel(&state, &parse_op_id(&id)?).await?;
    Ok(Json(OperationDto::from(&op)))
}
