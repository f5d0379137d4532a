//! Submit-and-poll: a lifecycle request records the new desired state, creates an operation
//! and enqueues a typed job in one step; the client polls the operation (or waits with
//! `?wait=`, answered as the operation ends).

use std::time::Duration;

use axum::http::StatusCode;
use draas_jobs::domain::ids::OperationId;
use draas_jobs::domain::operation::Operation;
use draas_jobs::queue::submit::{Request, SubmitError};
use draas_jobs::store::events::Topic;
use tokio::sync::watch::Receiver;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// How often a `?wait` looks at the operation when no notification comes (Redis pub/sub
/// delivers at most once, and nothing while the subscription reconnects).
const WAIT_POLL: Duration = Duration::from_millis(500);

/// Submit an operation (see [`Request`]) asked for by `caller`, within its quota of
/// operations per minute (429 `quota_exceeded` with `Retry-After` until the minute ends).
pub async fn submit(state: &AppState, caller: &Caller, r: Request<'_>) -> Result<Operation, ApiError> {
    if let Some(limit) = caller.quota.ops_per_minute
        && let Some(wait) = state.store.quotas().take_op(&caller.name, limit).await?
    {
        return Err(ApiError::quota_exceeded(
            format!(
                "token '{}' submitted {limit} operations this minute, its quota (quotas.ops_per_minute); retry in {wait} s",
                caller.name
            ),
            wait,
        ));
    }
    let r = r.by(&caller.name);
    state.submitter.submit(r).await.map_err(|e| match e {
        SubmitError::NotFound => ApiError::instance_not_found(r.instance.map(|i| i.as_str()).unwrap_or_default()),
        SubmitError::Deleting => ApiError::conflict("instance_deleting", "the instance is being deleted"),
        e @ SubmitError::Stale { .. } => ApiError::conflict("instance_changed", e.to_string()),
        SubmitError::Precondition { current } => ApiError::precondition_failed(current),
        e @ SubmitError::QueueFull { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string()).retry_after(5)
        }
        SubmitError::Store(e) => e.into(),
    })
}

/// Submit, then hold until the operation ends or `wait` passes (no hold for a zero wait).
/// Listening for the operation's end starts before the submit (its id chosen here), so the
/// end cannot slip past unseen.
pub async fn submit_and_wait(
    state: &AppState,
    caller: &Caller,
    r: Request<'_>,
    wait: Duration,
) -> Result<Operation, ApiError> {
    if wait.is_zero() {
        return submit(state, caller, r).await;
    }
    let id = OperationId::generate();
    let ended = state.store.events().watch(Topic::Operation(id.to_string()));
    let op = submit(state, caller, Request { id: Some(&id), ..r }).await?;
    hold(state, op, wait, ended).await
}

/// Hold until `op` ends or `wait` passes; the last record read.
pub async fn wait_for(state: &AppState, op: Operation, wait: Duration) -> Result<Operation, ApiError> {
    if op.status.is_final() || wait.is_zero() {
        return Ok(op);
    }
    let ended = state.store.events().watch(Topic::Operation(op.id.to_string()));
    // The record as of now: it may have ended before we listened.
    let current = state.store.operations().get(&op.id).await?.unwrap_or(op);
    if current.status.is_final() {
        return Ok(current);
    }
    hold(state, current, wait, ended).await
}

/// Wait for `ended` (the end of `op` announced; a slow poll besides), then read it.
async fn hold(
    state: &AppState,
    op: Operation,
    wait: Duration,
    mut ended: Receiver<u64>,
) -> Result<Operation, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut current = op;
    loop {
        let until = deadline.min(tokio::time::Instant::now() + WAIT_POLL);
        if tokio::time::timeout_at(until, ended.changed()).await.is_ok_and(|r| r.is_err()) {
            // The store is gone: no word will come; wait out the interval rather than spin.
            tokio::time::sleep_until(until).await;
        }
        if let Some(op) = state.store.operations().get(&current.id).await? {
            current = op;
        }
        if current.status.is_final() || tokio::time::Instant::now() >= deadline {
            return Ok(current);
        }
    }
}

/// Cancel a queued operation; its instance's desired state goes back to what it was when
/// nothing has changed it since.
pub async fn cancel(state: &AppState, id: &OperationId) -> Result<Operation, ApiError> {
    let ops = state.store.operations();
    let op = ops
        .get(id)
        .await?
        .ok_or_else(|| ApiError::not_found("operation_not_found", format!("operation '{id}' does not exist")))?;
    if !ops.cancel(id).await? {
        let now = ops.get(id).await?.map_or("gone", |o| o.status.as_str());
        return Err(ApiError::conflict(
            "not_cancellable",
            format!("only a queued operation can be cancelled; this one is {now}"),
        ));
    }
    if let (Some(instance), Some(previous)) = (&op.instance_id, op.previous_desired) {
        let reverted = state
            .store
            .instances()
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
    Ok(ops.get(id).await?.unwrap_or(op))
}
