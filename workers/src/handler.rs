//! The lifecycle job handler. Level-triggered and idempotent: it reads the operation and the
//! instance, takes the instance's lease, acts on the difference, records the outcome.
//!
//! Retries, backoff, timeouts and panics are handled here, in our own operation record, not by
//! apalis-redis (whose retry cap ignores the policy and which stores timeouts and panics as
//! `Running`, see shared/APALIS.md §3.3): the handler only ever returns `Ok` for a job it has
//! settled, and an error (apalis retries) only when Redis itself failed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use draas_jobs::jobs::{InstanceJob, JobKind, NODE_QUEUE_PREFIX, SCHEMA_VERSION};
use draas_jobs::lease::Lease;
use draas_jobs::model::Platform;
use draas_jobs::ops::{Operation, OperationError, OperationStatus};
use draas_jobs::store::{InstanceState, StoreError};
use futures::FutureExt;
use rand::Rng;
use tracing::Instrument;

use crate::actions::{self, Facts};
use crate::context::Ctx;
use crate::platform::PlatformError;
use draas_jobs::metrics::metrics;

/// apalis entry point.
pub async fn handle(job: InstanceJob, ctx: Data<Arc<Ctx>>) -> Result<(), BoxDynError> {
    let ctx: Arc<Ctx> = (*ctx).clone();
    let span = tracing::info_span!("job", instance = %job.instance_id, operation = %job.operation_id,
        kind = ?job.kind, correlation_id = %job.correlation_id, worker = %ctx.worker);
    run(&ctx, &job).instrument(span).await.map_err(|e| {
        tracing::warn!(error = %e, operation = %job.operation_id, "state store failed; the job will be redelivered");
        Box::new(e) as BoxDynError
    })
}

async fn run(ctx: &Ctx, job: &InstanceJob) -> Result<(), StoreError> {
    // One line per delivery (debug): draas-scale counts them to show each job ran once.
    tracing::debug!(operation = %job.operation_id, "job received");
    let (op, state) = read(ctx, job).await?;
    let Some(mut op) = op else {
        return Ok(()); // expired or unknown: nothing to report to
    };
    if op.status.is_final() {
        tracing::debug!(operation = %op.id, status = op.status.as_str(), "duplicate delivery: the operation has ended");
        return Ok(());
    }
    if job.schema_version > SCHEMA_VERSION {
        let e = PlatformError::new(
            "unsupported_job",
            format!("job schema {} is newer than this worker", job.schema_version),
        );
        return finish(ctx, &mut op, Err(e)).await;
    }
    let Some(state) = state else {
        return finish(ctx, &mut op, gone(job)).await;
    };
    if job.target_generation < state.instance.value.generation {
        return supersede(ctx, &mut op).await;
    }
    if let Some(owner) = foreign_owner(ctx, &state) {
        if !ctx.recently_cut_off() && !ctx.nodes.is_alive(&owner).await? {
            let lost = PlatformError::new(
                "node_lost",
                format!("node '{owner}', which runs this instance, stopped heartbeating"),
            );
            return finish(ctx, &mut op, Err(lost)).await;
        }
        return forward(ctx, job, &owner).await;
    }
    let Some(lease) = acquire(ctx, job).await? else {
        return Err(StoreError::Contended); // lease busy for too long: let apalis redeliver
    };
    let renewal = keep_lease(ctx, lease.clone());
    let result = attempts(ctx, job, &mut op, &lease).await;
    renewal.abort();
    ctx.leases.release(&lease).await?;
    result
}

/// The operation and the instance, read concurrently (one round trip on the multiplexed
/// connection).
async fn read(ctx: &Ctx, job: &InstanceJob) -> Result<(Option<Operation>, Option<InstanceState>), StoreError> {
    tokio::try_join!(ctx.ops.get(&job.operation_id), ctx.store.load(&job.instance_id))
}

/// The outcome of a job whose instance no longer exists: a delete is done, anything else fails.
fn gone(job: &InstanceJob) -> Result<Facts, PlatformError> {
    if job.kind == JobKind::DeleteInstance {
        Ok(Facts::new())
    } else {
        Err(PlatformError::new("instance_not_found", "the instance no longer exists"))
    }
}

/// A placed process instance whose node is another one: its jobs run there.
fn foreign_owner(ctx: &Ctx, s: &InstanceState) -> Option<String> {
    let node = s.observed.as_ref()?.value.node.clone()?;
    (s.instance.value.platform == Platform::Process && node != ctx.node).then_some(node)
}

async fn forward(ctx: &Ctx, job: &InstanceJob, owner: &str) -> Result<(), StoreError> {
    tracing::info!(operation = %job.operation_id, node = owner, "forwarding to the node that owns the instance");
    ctx.enqueuer
        .push(&format!("{NODE_QUEUE_PREFIX}{owner}"), job.clone())
        .await
        .map_err(|e| StoreError::Unavailable(redis::RedisError::from(std::io::Error::other(e.to_string()))))
}

/// Wait for the instance's lease (up to a lease period).
async fn acquire(ctx: &Ctx, job: &InstanceJob) -> Result<Option<Lease>, StoreError> {
    let deadline = tokio::time::Instant::now() + ctx.lease_ttl();
    loop {
        if let Some(lease) = ctx.leases.try_acquire(&job.instance_id, &ctx.worker, ctx.lease_ttl()).await? {
            return Ok(Some(lease));
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keep_lease(ctx: &Ctx, lease: Lease) -> tokio::task::JoinHandle<()> {
    let leases = ctx.leases.clone();
    let ttl = ctx.lease_ttl();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            if !matches!(leases.renew(&lease, ttl).await, Ok(true)) {
                tracing::warn!("lost the instance lease");
                return;
            }
        }
    })
}

/// Run attempts until success, a permanent failure, or the attempt cap.
async fn attempts(ctx: &Ctx, job: &InstanceJob, op: &mut Operation, lease: &Lease) -> Result<(), StoreError> {
    loop {
        // Re-read under the lease: a client may have cancelled it, or a newer change superseded it.
        let (current, state) = read(ctx, job).await?;
        match current {
            Some(current) if !current.status.is_final() => *op = current,
            _ => return Ok(()),
        }
        let Some(state) = state else {
            return finish(ctx, op, gone(job)).await;
        };
        if job.target_generation < state.instance.value.generation {
            return supersede(ctx, op).await;
        }
        op.attempt += 1;
        op.status = OperationStatus::Running;
        if op.started_at.is_none() {
            let waited = (Utc::now() - op.created_at).to_std().unwrap_or_default();
            metrics().pickup(kind_label(op), waited);
        }
        op.started_at.get_or_insert_with(Utc::now);
        let attempt_started = std::time::Instant::now();
        op.worker = Some(ctx.worker.clone());
        if !ctx.ops.transition(op, &[OperationStatus::Queued, OperationStatus::Running]).await? {
            return Ok(()); // cancelled in between
        }
        let outcome = attempt(ctx, job, lease, &state).await;
        match outcome {
            Err(e) if e.is_transient() && op.attempt < op.max_attempts => {
                tracing::warn!(attempt = op.attempt, code = e.code, error = %e, "attempt failed; retrying");
                metrics().job(kind_label(op), "retried", attempt_started.elapsed());
                op.status = OperationStatus::Queued;
                op.error = Some(op_error(&e));
                ctx.ops.transition(op, &[OperationStatus::Running]).await?;
                tokio::time::sleep(backoff(ctx, op.attempt)).await;
            }
            outcome => {
                if let Err(e) = &outcome {
                    actions::record_error(ctx, lease, &state, e).await;
                }
                let label = if outcome.is_ok() { "succeeded" } else { "failed" };
                metrics().job(kind_label(op), label, attempt_started.elapsed());
                return finish(ctx, op, outcome).await;
            }
        }
    }
}

/// One attempt, bounded in time, with panics caught (so they fail the attempt, not the worker).
async fn attempt(ctx: &Ctx, job: &InstanceJob, lease: &Lease, s: &InstanceState) -> Result<Facts, PlatformError> {
    let limit = Duration::from_secs(ctx.settings.worker.attempt_timeout_secs);
    let work = async {
        match job.kind {
            JobKind::StartInstance => actions::start(ctx, lease, s).await,
            JobKind::StopInstance => actions::stop(ctx, lease, s).await,
            JobKind::RestartInstance => actions::restart(ctx, lease, s).await,
            JobKind::DeleteInstance => actions::delete(ctx, s).await,
            JobKind::Reconcile => crate::reconcile::one(ctx, s, lease)
                .await
                .map(|()| Facts::new())
                .map_err(|e| PlatformError::new("store_unavailable", e.to_string())),
        }
    };
    match tokio::time::timeout(limit, AssertUnwindSafe(work).catch_unwind()).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned());
            Err(PlatformError::new("panicked", format!("the job panicked: {}", what.unwrap_or_default())))
        }
        Err(_) => {
            Err(PlatformError::new("attempt_timeout", format!("the attempt took longer than {} s", limit.as_secs())))
        }
    }
}

/// Exponential backoff with full jitter, between the settings' bounds.
fn backoff(ctx: &Ctx, attempt: u32) -> Duration {
    let w = &ctx.settings.worker;
    let cap = w.backoff_initial_ms.saturating_mul(1u64 << attempt.min(20)).min(w.backoff_max_ms).max(1);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

fn op_error(e: &PlatformError) -> OperationError {
    OperationError { code: e.code.to_owned(), message: e.message.clone(), detail: e.detail.clone() }
}

async fn finish(ctx: &Ctx, op: &mut Operation, outcome: Result<Facts, PlatformError>) -> Result<(), StoreError> {
    match outcome {
        Ok(facts) => {
            op.status = OperationStatus::Succeeded;
            op.result = facts;
            op.error = None;
        }
        Err(e) => {
            tracing::warn!(code = e.code, error = %e, "operation failed");
            op.status = OperationStatus::Failed;
            op.error = Some(op_error(&e));
        }
    }
    op.finished_at = Some(Utc::now());
    ctx.ops.transition(op, &[OperationStatus::Queued, OperationStatus::Running]).await?;
    Ok(())
}

fn kind_label(op: &Operation) -> &'static str {
    match op.kind {
        draas_jobs::ops::OperationKind::Start => "start",
        draas_jobs::ops::OperationKind::Stop => "stop",
        draas_jobs::ops::OperationKind::Restart => "restart",
        draas_jobs::ops::OperationKind::Delete => "delete",
        draas_jobs::ops::OperationKind::Reconcile => "reconcile",
    }
}

async fn supersede(ctx: &Ctx, op: &mut Operation) -> Result<(), StoreError> {
    metrics().job(kind_label(op), "superseded", Duration::ZERO);
    op.status = OperationStatus::Superseded;
    op.finished_at = Some(Utc::now());
    ctx.ops.transition(op, &[OperationStatus::Queued, OperationStatus::Running]).await?;
    Ok(())
}
