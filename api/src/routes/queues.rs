//! `/api/v1/queues`: how many jobs each apalis queue holds, by state (the jobs dashboard and
//! anyone watching the backlog read it).

use axum::Json;
use axum::extract::State;
use draas_jobs::queue::QueueDepth;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;

/// One job queue and its tasks by state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDto {
    /// Short name: `shared`, `reconcile`, `node-<node>` or `reconcile-node-<node>`.
    pub name: String,
    /// The Redis key prefix of the queue, e.g. `{draas}:q:shared` (its waiting ids are in
    /// `<key>:active` and `<key>:scheduled`).
    pub key: String,
    /// Due, not yet taken by a worker.
    pub waiting: u64,
    /// Taken by a worker and not yet acknowledged.
    pub active: u64,
    /// To run later (not yet due).
    pub scheduled: u64,
    /// Finished; forgotten an hour later by the maintenance sweep.
    pub done: u64,
    /// Given up by the queue itself (a job whose handler never completed). A failed
    /// operation is not one: its outcome is in the operation record.
    pub failed: u64,
}

impl From<QueueDepth> for QueueDto {
    fn from(q: QueueDepth) -> Self {
        Self {
            name: q.name,
            key: q.key,
            waiting: q.waiting,
            active: q.active,
            scheduled: q.scheduled,
            done: q.done,
            failed: q.failed,
        }
    }
}

/// Every job queue of the deployment with its depth, shared and reconcile queues first, then
/// each node's.
#[utoipa::path(get, path = "/api/v1/queues", operation_id = "listQueues", tag = "operations", responses((status = 200, body = Vec<QueueDto>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<QueueDto>>, ApiError> {
    let depths = draas_jobs::queue::depths(&state.store).await?;
    Ok(Json(depths.into_iter().map(QueueDto::from).collect()))
}
