//! What an instance computes, read from its drasi-server through draas' authentication: a
//! query's current results and the components with their live status. The API replica asks
//! the server at the endpoint the worker recorded: the published host port for process and
//! Docker instances, and for Kubernetes ones the `kubernetes.endpoint` URL (by default the
//! instance's Service, `http://<name>.<namespace>.svc:<port>`), which an API replica running
//! in the cluster reaches directly; no route goes through the Kubernetes API server.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use draas_jobs::domain::ids::ComponentId;
use draas_jobs::domain::model::{ComponentStatus, InstanceState, Status};
use draas_jobs::drasi::{self, DrasiError};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::instances::{load, parse_id};
use crate::AppState;
use crate::error::{ApiError, Problem};
use crate::extract::PathParams;

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

fn http() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
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

fn unreachable(e: DrasiError) -> ApiError {
    match e {
        DrasiError::Refused { code, message, .. } if code == "INVALID_REQUEST" && message.contains("not running") => {
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
    let query: ComponentId = query.parse()?;
    if !s.config.value.queries.iter().any(|q| q.id == query) {
        return Err(ApiError::not_found("query_not_found", format!("instance {} has no query '{query}'", s.id())));
    }
    let rows = drasi::results(http(), &endpoint(&s)?, query.as_str()).await.map_err(unreachable)?;
    Ok(Json(ResultsDto { instance_id: s.id().to_string(), query_id: query.to_string(), rows }))
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
