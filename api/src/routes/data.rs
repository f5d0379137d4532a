//! What an instance computes, read from its drasi-server through draas' authentication: a
//! query's current results, its live changes (relayed from the server's `attach` stream) and
//! the components with their live status. The API replica asks
//! the server at the endpoint the worker recorded: the published host port for process and
//! Docker instances, and for Kubernetes ones the `kubernetes.endpoint` URL (by default the
//! instance's Service, `http://<name>.<namespace>.svc:<port>`), which an API replica running
//! in the cluster reaches directly; no route goes through the Kubernetes API server.

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::{Extension, Json};
use draas_jobs::domain::ids::{ComponentId, InstanceId};
use draas_jobs::domain::model::{ComponentStatus, DesiredState, InstanceState, Status};
use draas_jobs::drasi::{self, DrasiError, ResultChange};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::instances::{load, parse_id};
use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::extract::PathParams;
use crate::streams::StreamPermit;

/// A query's current result set.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultsDto {
    pub instance_id: String,
    pub query_id: String,
    /// The rows, as the query's `RETURN` names their fields.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Value>,
}

/// The instance's components as its server reports them now.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentsDto {
    pub instance_id: String,
    pub items: Vec<ComponentStatus>,
}

/// How often a relayed stream looks at the instance's record, to end when it is stopped.
const STREAM_CHECK: Duration = Duration::from_secs(1);

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default())
}

/// Is the server of `s` meant to run and seen running?
pub(super) fn runs(s: &InstanceState) -> bool {
    let observed = s.observed.as_ref().map(|o| &o.value);
    s.instance.value.desired_state == DesiredState::Running
        && observed.is_some_and(|o| matches!(o.status, Status::Running | Status::Degraded))
}

/// Where the running server of `s` answers; 409 when it does not run.
fn endpoint(s: &InstanceState) -> Result<String, ApiError> {
    let observed = s.observed.as_ref().map(|o| &o.value);
    let running = observed.is_some_and(|o| matches!(o.status, Status::Running | Status::Degraded));
    match observed.and_then(|o| o.runtime.endpoint.clone()).filter(|_| running) {
        Some(e) => Ok(e),
        None => Err(ApiError::conflict(
            "instance_not_running",
            format!("instance {} is not running ({})", s.id(), observed.map_or("created", |o| o.status.as_str())),
        )),
    }
}

/// One of the instance's queries, by id; 404 when its configuration has none.
fn query_of(s: &InstanceState, raw: &str) -> Result<ComponentId, ApiError> {
    let query: ComponentId = raw.parse()?;
    if !s.config.value.queries.iter().any(|q| q.id == query) {
        return Err(ApiError::not_found("query_not_found", format!("instance {} has no query '{query}'", s.id())));
    }
    Ok(query)
}

fn unreachable(e: DrasiError) -> ApiError {
    match e {
        DrasiError::Refused { code, message, .. }
            if code == "INVALID_REQUEST" && message.contains("not running") || code == "QUERY_NOT_FOUND" =>
        {
            // In the configuration, but not (yet) running on the server: a change not applied yet.
            ApiError::conflict("query_not_running", message)
        }
        e @ DrasiError::Refused { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "instance_refused", format!("drasi-server: {e}"))
        }
        e @ DrasiError::Unreachable { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "instance_unreachable", e.to_string())
        }
    }
}

/// The current result set of one of the instance's queries, from its server.
#[utoipa::path(get, path = "/api/v1/instances/{id}/queries/{queryId}/results", tag = "data",
    params(("id" = String, Path), ("queryId" = String, Path)),
    responses((status = 200, body = ResultsDto), (status = 400, body = Problem),
        (status = 404, body = Problem, description = "no such instance, or no such query in its configuration"),
        (status = 409, body = Problem, description = "instance_not_running, query_not_running"),
        (status = 502, body = Problem, description = "the server could not be reached or refused")))]
pub async fn results(
    State(state): State<AppState>,
    PathParams((id, query)): PathParams<(String, String)>,
) -> Result<Json<ResultsDto>, ApiError> {
    let s = load(&state, &parse_id(&id)?).await?;
    let query = query_of(&s, &query)?;
    let rows = drasi::results(http(), &endpoint(&s)?, query.as_str()).await.map_err(unreachable)?;
    Ok(Json(ResultsDto { instance_id: s.id().to_string(), query_id: query.to_string(), rows }))
}

/// The live changes of one of the instance's queries, as Server-Sent Events: first `snapshot`
/// (the current rows, as `/results` answers them), then one `change` per change of its results
/// (`{sequence, timestamp, results: [{type: ADD|UPDATE|DELETE, data | before, after}]}`, relayed
/// from the server's `attach`), `: heartbeat` comments every `api.heartbeat_secs` while nothing
/// changes, and a last `end` (`{"reason"}`) when the instance is stopped or deleted or its server
/// closes the stream. At most `api.max_streams` streams per API replica (429 beyond).
#[utoipa::path(get, path = "/api/v1/instances/{id}/queries/{queryId}/watch", tag = "data",
    params(("id" = String, Path), ("queryId" = String, Path)),
    responses((status = 200, description = "text/event-stream: snapshot, change…, end"), (status = 400, body = Problem),
        (status = 404, body = Problem, description = "no such instance, or no such query in its configuration"),
        (status = 409, body = Problem, description = "instance_not_running, query_not_running"),
        (status = 429, body = Problem, description = "too_many_streams: api.max_streams streams run, or the token's quotas.max_streams; see Retry-After"),
        (status = 502, body = Problem, description = "the server could not be reached or refused")))]
pub async fn watch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams((id, query)): PathParams<(String, String)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let s = load(&state, &parse_id(&id)?).await?;
    let query = query_of(&s, &query)?;
    let url = endpoint(&s)?;
    let permit = state.stream_permit(&caller).await?;
    // Attached before the snapshot is read, so that no change falls between the two.
    let changes = drasi::attach(http(), &url, query.as_str()).await.map_err(unreachable)?;
    let rows = drasi::results(http(), &url, query.as_str()).await.map_err(unreachable)?;
    let (tx, rx) = mpsc::channel(64);
    let snapshot = ResultsDto { instance_id: s.id().to_string(), query_id: query.to_string(), rows };
    let _ = tx.try_send(event("snapshot", &snapshot));
    tokio::spawn(relay(state.clone(), s.id().clone(), changes, tx, permit));
    let events = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(events).keep_alive(state.keep_alive()))
}

fn event(name: &str, data: &impl Serialize) -> Event {
    Event::default().event(name).data(serde_json::to_string(data).unwrap_or_default())
}

/// Relay the server's changes to `tx` until the instance is stopped or deleted, the server
/// closes the stream, or the client goes away; then say why in `end`. Ending on the stop itself
/// lets the server shut down at once: it would otherwise wait for its open streams.
async fn relay(
    state: AppState,
    id: InstanceId,
    changes: impl Stream<Item = Result<ResultChange, DrasiError>>,
    tx: mpsc::Sender<Event>,
    _permit: StreamPermit,
) {
    let mut changes = std::pin::pin!(changes);
    let mut check = tokio::time::interval(STREAM_CHECK);
    // drasi-server 0.2.2 was seen to send a change twice on one attach (same sequence): a
    // change at or below the last one relayed is dropped.
    let mut last: Option<u64> = None;
    let reason = loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(c)) if last.is_some_and(|l| c.sequence <= l) => {}
                Some(Ok(c)) => {
                    last = Some(c.sequence);
                    if tx.send(event("change", &c)).await.is_err() {
                        return;
                    }
                }
                // A server that stops closes its streams, often before the next look at the
                // record: the record says why, when it says the instance no longer runs.
                Some(Err(e)) => break ended(&state, &id).await.unwrap_or_else(|| e.to_string()),
                None => break ended(&state, &id).await.unwrap_or_else(|| "the server closed the stream".to_owned()),
            },
            _ = check.tick() => {
                if tx.is_closed() {
                    return;
                }
                if let Some(reason) = ended(&state, &id).await {
                    break reason;
                }
            }
        }
    };
    let _ = tx.send(event("end", &json!({ "reason": reason }))).await;
}

/// Why a stream of instance `id` ends, when its record says it no longer runs (`None`: it
/// runs, or the store did not answer this time).
pub(super) async fn ended(state: &AppState, id: &InstanceId) -> Option<String> {
    match state.store.instances().load(id).await {
        Ok(None) => Some("the instance was deleted".to_owned()),
        Ok(Some(s)) if !runs(&s) => Some(format!("the instance is {}", stopping(&s))),
        _ => None,
    }
}

/// What a stream's end says of an instance that no longer runs.
fn stopping(s: &InstanceState) -> &'static str {
    match (s.instance.value.desired_state, s.observed.as_ref().map(|o| o.value.status)) {
        (DesiredState::Running, Some(status)) => status.as_str(),
        (DesiredState::Running, None) => "not running",
        _ => "stopping",
    }
}

/// The instance's sources, queries and reactions with their live status, from its server.
#[utoipa::path(get, path = "/api/v1/instances/{id}/components", tag = "data", params(("id" = String, Path)),
    responses((status = 200, body = ComponentsDto), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "instance_not_running"),
        (status = 502, body = Problem, description = "the server could not be reached")))]
pub async fn components(
    State(state): State<AppState>,
    PathParams(id): PathParams<String>,
) -> Result<Json<ComponentsDto>, ApiError> {
    let s = load(&state, &parse_id(&id)?).await?;
    let url = endpoint(&s)?;
    let items = drasi::components(http(), &url).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "instance_unreachable",
            format!("drasi-server at {url} did not list its components"),
        )
    })?;
    Ok(Json(ComponentsDto { instance_id: s.id().to_string(), items }))
}
