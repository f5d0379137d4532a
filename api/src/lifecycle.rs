//! Submit-and-poll: a lifecycle request records the new desired state, creates an operation
//! and enqueues a typed job; the client polls the operation (or waits with `?wait=`).

use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use draas_jobs::ids::{InstanceId, OperationId};
use draas_jobs::jobs::{InstanceJob, JobKind, NODE_QUEUE_PREFIX, SCHEMA_VERSION, SHARED_QUEUE};
use draas_jobs::model::{DesiredState, Platform};
use draas_jobs::ops::{Operation, OperationError, OperationKind, OperationStatus};
use draas_jobs::store::InstanceState;

use crate::AppState;
use crate::error::ApiError;
use crate::routes::instances::load;

/// The queue that runs jobs of an instance: its node's queue for a placed process instance,
/// the shared queue otherwise.
pub fn queue_for(s: &InstanceState) -> String {
    match (s.instance.value.platform, s.observed.as_ref().and_then(|o| o.value.node.as_deref())) {
        (Platform::Process, Some(node)) => format!("{NODE_QUEUE_PREFIX}{node}"),
        _ => SHARED_QUEUE.to_owned(),
    }
}

fn job_kind(kind: OperationKind) -> JobKind {
    match kind {
        OperationKind::Start => JobKind::StartInstance,
        OperationKind::Stop => JobKind::StopInstance,
        OperationKind::Restart => JobKind::RestartInstance,
        OperationKind::Delete => JobKind::DeleteInstance,
        OperationKind::Reconcile => JobKind::Reconcile,
    }
}

fn desired_after(kind: OperationKind, current: DesiredState) -> DesiredState {
    match kind {
        OperationKind::Start | OperationKind::Restart => DesiredState::Running,
        OperationKind::Stop => DesiredState::Stopped,
        OperationKind::Delete => DesiredState::Deleted,
        OperationKind::Reconcile => current,
    }
}

/// Record the intent of `kind` on instance `id`, create its operation and enqueue its job.
pub async fn submit(
    state: &AppState,
    id: &InstanceId,
    kind: OperationKind,
    reason: &str,
    correlation_id: &str,
) -> Result<Operation, ApiError> {
    let before = load(state, id).await?;
    let queue = queue_for(&before);
    let depth = state.enqueuer.depth(&queue).await.map_err(draas_jobs::store::StoreError::from)?;
    if depth >= state.settings.operations.max_queue_depth {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "queue_full",
            format!("queue '{queue}' holds {depth} jobs; retry later"),
        )
        .retry_after(5));
    }
    let (after, previous) = state
        .store
        .update(id, |s| {
            let current = s.instance.value.desired_state;
            if current == DesiredState::Deleted && kind != OperationKind::Delete {
                return Err(ApiError::conflict("instance_deleting", "the instance is being deleted"));
            }
            s.instance.value.desired_state = desired_after(kind, current);
            Ok::<_, ApiError>(current)
        })
        .await?;
    let op = Operation {
        id: OperationId::generate(),
        kind,
        instance_id: Some(id.clone()),
        status: OperationStatus::Queued,
        attempt: 0,
        max_attempts: state.settings.worker.max_attempts,
        error: None,
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        result: serde_json::Map::new(),
        target_generation: after.instance.value.generation,
        correlation_id: correlation_id.to_owned(),
        reason: reason.to_owned(),
        queue: queue.clone(),
        previous_desired: Some(previous),
        worker: None,
    };
    state.ops.create(&op).await?;
    let job = InstanceJob {
        schema_version: SCHEMA_VERSION,
        kind: job_kind(kind),
        instance_id: id.clone(),
        operation_id: op.id.clone(),
        target_generation: op.target_generation,
        correlation_id: correlation_id.to_owned(),
    };
    if let Err(e) = state.enqueuer.push(&queue, job).await {
        let mut failed = op.clone();
        failed.status = OperationStatus::Failed;
        failed.finished_at = Some(Utc::now());
        failed.error = Some(OperationError { code: "enqueue_failed".into(), message: e.to_string(), detail: None });
        let _ = state.ops.transition(&failed, &[OperationStatus::Queued]).await;
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "enqueue_failed",
            "the job could not be queued; retry",
        )
        .retry_after(1));
    }
    tracing::info!(instance = %id, operation = %op.id, kind = ?kind, %queue, correlation_id, "operation submitted");
    Ok(op)
}

/// Poll `id` until it ends or `wait` passes; the last record read.
pub async fn wait_for(state: &AppState, op: Operation, wait: Duration) -> Result<Operation, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut current = op;
    while !current.status.is_final() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(op) = state.ops.get(&current.id).await? {
            current = op;
        }
    }
    Ok(current)
}

/// Cancel a queued operation; its instance's desired state goes back to what it was when
/// nothing has changed it since.
pub async fn cancel(state: &AppState, id: &OperationId) -> Result<Operation, ApiError> {
    let op = state
        .ops
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("operation_not_found", format!("operation '{id}' does not exist")))?;
    let mut cancelled = op.clone();
    cancelled.status = OperationStatus::Cancelled;
    cancelled.finished_at = Some(Utc::now());
    if !state.ops.transition(&cancelled, &[OperationStatus::Queued]).await? {
        let now = state.ops.get(id).await?.map_or("gone", |o| o.status.as_str());
        return Err(ApiError::conflict(
            "not_cancellable",
            format!("only a queued operation can be cancelled; this one is {now}"),
        ));
    }
    if let (Some(instance), Some(previous)) = (&op.instance_id, op.previous_desired) {
        let reverted = state
            .store
            .update(instance, |s| {
                if s.instance.value.generation == op.target_generation {
                    s.instance.value.desired_state = previous;
                }
                Ok::<_, ApiError>(())
            })
            .await;
        if let Err(e) = reverted
            && e.status() != StatusCode::NOT_FOUND
        {
            return Err(e);
        }
    }
    Ok(cancelled)
}
