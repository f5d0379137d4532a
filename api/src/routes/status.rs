//! Status: per-instance history, the global recent-changes buffer, the live event stream
//! (SSE, resumable with `Last-Event-ID`), status pushes from external daemons, and on-demand
//! reconciliation.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use draas_jobs::domain::model::{Cause, Status, StatusChange};
use draas_jobs::domain::operation::{Operation, OperationKind};
use draas_jobs::queue::submit::Request;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::instances::{load, parse_id};
use super::operations::OperationDto;
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::{MediaType, PathParams, QueryParams, RawBody, RequestId};
use crate::lifecycle;

/// Transitions of one instance, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct History {
    pub items: Vec<StatusChange>,
}

/// An instance's status transitions, newest first (capped, default 100).
#[utoipa::path(get, path = "/api/v1/instances/{id}/history", tag = "status", params(("id" = String, Path)),
    responses((status = 200, body = History), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<History>, ApiError> {
    let id = parse_id(&id)?;
    load(&state, &id).await?;
    Ok(Json(History { items: state.store.history().of(&id).await? }))
}

/// Filters of `recent-changes`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    /// RFC 3339 time; default five minutes ago.
    pub since: Option<String>,
    /// Only transitions to this status.
    pub status: Option<Status>,
}

/// Recent transitions of every instance, oldest first (rolling buffer, default 1000).
#[utoipa::path(get, path = "/api/v1/status/recent-changes", tag = "status", params(RecentQuery),
    responses((status = 200, body = Vec<StatusChange>), (status = 400, body = Problem)))]
pub async fn recent_changes(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<RecentQuery>,
) -> Result<Json<Vec<StatusChange>>, ApiError> {
    let since = match q.since.as_deref() {
        Some(s) => DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|_| {
            ApiError::bad_request("invalid_since", "since must be an RFC 3339 time, e.g. 2026-01-01T00:00:00Z")
        })?,
        None => Utc::now() - chrono::Duration::minutes(5),
    };
    let start = format!("{}-0", since.timestamp_millis().max(1) - 1);
    let cap = state.settings.reconcile.history_global.max(1);
    let changes = state.store.history().after(Some(&start), cap).await?;
    Ok(Json(changes.into_iter().filter(|c| c.at >= since && q.status.is_none_or(|s| c.to == s)).collect()))
}

/// Filter of the event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this instance's transitions.
    pub instance: Option<String>,
}

/// Live status transitions as Server-Sent Events (`event: status`, `id` = buffer id). Send
/// `Last-Event-ID` to resume after a disconnect.
#[utoipa::path(get, path = "/api/v1/events", tag = "status", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of StatusChange"), (status = 400, body = Problem),
        (status = 429, body = Problem, description = "too_many_streams: api.max_streams streams run, or the token's quotas.max_streams")))]
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(q): QueryParams<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = q.instance.as_deref().map(parse_id).transpose()?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(r) = &resume
        && !r.split_once('-').is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
    {
        return Err(ApiError::bad_request("invalid_last_event_id", "Last-Event-ID must be an id this stream sent"));
    }
    let permit = state.stream_permit(&caller).await?;
    let start = match resume {
        Some(r) => Some(r),
        None => state.store.history().latest_id().await?,
    };
    let keep_alive = state.keep_alive();
    let stream =
        futures::stream::unfold((state, start, Vec::<StatusChange>::new()), move |(state, mut last, mut buf)| {
            let filter = filter.clone();
            async move {
                loop {
                    if let Some(change) = buf.pop() {
                        let data = serde_json::to_string(&change).unwrap_or_default();
                        let event =
                            Event::default().event("status").id(change.id.clone().unwrap_or_default()).data(data);
                        return Some((Ok(event), (state, last, buf)));
                    }
                    match state.store.history().after(last.as_deref(), 100).await {
                        Ok(changes) if !changes.is_empty() => {
                            last = changes.last().and_then(|c| c.id.clone());
                            buf = changes
                                .into_iter()
                                .filter(|c| filter.as_ref().is_none_or(|f| c.instance_id == f.as_str()))
                                .rev()
                                .collect();
                        }
                        _ => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }
        });
    // The permit is released when the client goes and the stream is dropped.
    let stream = stream.map(move |e| {
        let _held = &permit;
        e
    });
    Ok(Sse::new(stream).keep_alive(keep_alive))
}

/// Body of `POST /api/v1/status/updates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusUpdate {
    pub instance_id: String,
    pub status: Status,
    /// Who reports (1-100 characters).
    pub source: String,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Answer to a status push.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusPushed {
    /// Whether the status was recorded (not while a worker is acting on the instance).
    pub recorded: bool,
    /// The reconciliation the push triggered.
    pub operation: OperationDto,
}

/// An external daemon reports an instance's status: recorded in its history, then the instance
/// is reconciled at once.
#[utoipa::path(post, path = "/api/v1/status/updates", tag = "status", request_body = StatusUpdate,
    responses((status = 202, body = StatusPushed), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem, description = "quota_exceeded (quotas.ops_per_minute), queue_full")))]
pub async fn push(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestId(rid): RequestId,
    body: RawBody,
) -> Result<Response, ApiError> {
    body.expect(&[MediaType::Json])?;
    let req: StatusUpdate = body.json()?;
    let source = req.source.trim();
    if source.is_empty() || source.len() > 100 || source.chars().any(char::is_control) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_source",
            "source must be 1-100 printable characters",
        )
        .at("/source"));
    }
    if req.metadata.len() > 50 || req.metadata.iter().any(|(k, v)| k.len() > 100 || v.len() > 1000) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
            "metadata: at most 50 entries, keys 100 and values 1000 bytes",
        )
        .at("/metadata"));
    }
    let id = req.instance_id.parse().map_err(|e: draas_jobs::domain::ids::IdError| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message).at("/instanceId")
    })?;
    let s = load(&state, &id).await?;
    let mut observed = s.observed.map(|o| o.value).unwrap_or_default();
    observed.status = req.status;
    observed.message = req.metadata.get("message").cloned().or_else(|| Some(format!("reported by {source}")));
    observed.observed_at = Some(Utc::now());
    let push_source = format!("push:{source}");
    let recorded = state
        .store
        .instances()
        .observe(&id, &observed, Cause { source: &push_source, reason: "status-push", by: &caller.name }, None, None)
        .await?;
    let request = Request::new(OperationKind::Reconcile, Some(&id), "status-push", &rid);
    let op = lifecycle::submit(&state, &caller, request).await?;
    let body = StatusPushed { recorded, operation: OperationDto::from(&op) };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Reconcile one instance now.
#[utoipa::path(post, path = "/api/v1/instances/{id}/reconcile", tag = "status", params(("id" = String, Path)),
    responses((status = 202, body = OperationDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 429, body = Problem, description = "quota_exceeded (quotas.ops_per_minute), queue_full")))]
pub async fn reconcile_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let op =
        lifecycle::submit(&state, &caller, Request::new(OperationKind::Reconcile, Some(&id), "user", &rid)).await?;
    Ok(accepted(&op))
}

fn accepted(op: &Operation) -> Response {
    let location = format!("/api/v1/operations/{}", op.id);
    (StatusCode::ACCEPTED, [("location", location), ("retry-after", "1".to_owned())], Json(OperationDto::from(op)))
        .into_response()
}

/// Run a reconciliation pass over every instance now.
#[utoipa::path(post, path = "/api/v1/reconcile", tag = "status",
    responses((status = 202, body = OperationDto), (status = 503, body = Problem),
        (status = 429, body = Problem, description = "quota_exceeded (quotas.ops_per_minute), queue_full")))]
pub async fn reconcile_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestId(rid): RequestId,
) -> Result<Response, ApiError> {
    let op = lifecycle::submit(&state, &caller, Request::new(OperationKind::Reconcile, None, "user", &rid)).await?;
    Ok(accepted(&op))
}
