//! Submit-and-poll: a lifecycle request records the new desired state, creates an operation
//! and enqueues a typed job; the client polls the operation (or waits with `?wait=`).

use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;
use draas_jobs::ids::{InstanceId, OperationId};
use draas_jobs::ops::{Operation, OperationKind, OperationStatus};
use draas_jobs::submit::SubmitError;

use crate::AppState;
use crate::error::ApiError;

/// Record the intent of `kind` on instance `id`, create its operation and enqueue its job.
pub async fn submit(
    state: &AppState,
    id: &InstanceId,
    kind: OperationKind,
    reason: &str,
    correlation_id: &str,
) -> Result<Operation, ApiError> {
    state.submitter.submit(id, kind, reason, correlation_id).await.map_err(|e| match e {
        SubmitError::NotFound => ApiError::instance_not_found(id.as_str()),
        SubmitError::Deleting => ApiError::conflict("instance_deleting", "the instance is being deleted"),
        e @ SubmitError::Stale { .. } => ApiError::conflict("instance_changed", e.to_string()),
        e @ SubmitError::QueueFull { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string()).retry_after(5)
        }
        SubmitError::Store(e) => e.into(),
        SubmitError::Enqueue(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "enqueue_failed", "the job could not be queued; retry")
                .retry_after(1)
        }
    })
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
