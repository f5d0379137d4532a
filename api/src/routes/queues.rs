//! `/api/v1/queues`: how many jobs each apalis queue holds, by state (the jobs dashboard and
//! anyone watching the backlog read it), and `/api/v1/queues/backlog`: what shared workers
//! still have to do, counted exactly, for a scaler (KEDA's metrics-api trigger) to read even
//! while no worker runs.

use axum::Json;
use axum::extract::State;
use draas_jobs::queue::{Backlog, QueueDepth, SHARED_WORKER_QUEUES};
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

/// The unfinished jobs of the queues shared workers serve (`shared` and `reconcile`), read in
/// one step: a job is counted once wherever it is (waiting, backing off or running).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BacklogDto {
    /// Every unfinished job: `waiting + scheduled + running`. Each needs a worker to finish,
    /// so a scaler keeps at least one worker while this is above zero.
    pub pending: u64,
    /// Due, not yet taken by a worker.
    pub waiting: u64,
    /// To run later (a retry backing off).
    pub scheduled: u64,
    /// Taken by a worker and not yet acknowledged.
    pub running: u64,
    /// The queues counted.
    pub queues: Vec<String>,
}

impl From<Backlog> for BacklogDto {
    fn from(b: Backlog) -> Self {
        Self {
            pending: b.pending(),
            waiting: b.waiting,
            scheduled: b.scheduled,
            running: b.running,
            queues: SHARED_WORKER_QUEUES.iter().map(|q| (*q).to_owned()).collect(),
        }
    }
}

/// What shared workers still have to do: the scaling signal of `deploy/k8s`'s ScaledObject
/// (KEDA metrics-api trigger, `valueLocation: pending`). Exact from zero workers up: apalis
/// parks new jobs where no list-length scaler sees them, so the count is read here.
#[utoipa::path(get, path = "/api/v1/queues/backlog", operation_id = "getBacklog", tag = "operations", responses((status = 200, body = BacklogDto)))]
pub async fn backlog(State(state): State<AppState>) -> Result<Json<BacklogDto>, ApiError> {
    Ok(Json(draas_jobs::queue::shared_backlog(&state.store).await?.into()))
}
