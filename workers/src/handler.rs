//! The lifecycle job handler. Level-triggered and idempotent: one script begins the attempt
//! (operation, instance, lease and port in one step; for most kinds apalis' fetch ran it as it
//! took the job, see `draas_jobs::queue::backend`), the action converges the platform, one
//! script finishes it (observed state, outcome, lease release in one step; run by apalis'
//! acknowledgement with what the handler returns).
//!
//! Retries, backoff, timeouts and panics are handled here, in our own operation record, not by
//! apalis-redis (whose retry cap ignores the policy and which stores timeouts and panics as
//! `Running`): the handler only ever returns `Ok` for a job it has settled (or hands the
//! acknowledgement to settle), and an error (apalis redelivers) only when Redis itself failed
//! or the lease stayed busy.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use chrono::Utc;
use draas_jobs::domain::model::Cause;
use draas_jobs::domain::operation::{Operation, OperationError, OperationKind, OperationStatus};
use draas_jobs::metrics::metrics;
use draas_jobs::queue::backend::{Bell, Closing, Delivery};
use draas_jobs::queue::{InstanceJob, SCHEMA_VERSION, node_queue};
use draas_jobs::store::StoreError;
use draas_jobs::store::events::Topic;
use draas_jobs::store::leases::Lease;
use draas_jobs::store::operations::{Begin, Begun, Finish, PortRequest, Ready};
use futures::FutureExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::actions::{self, Attempt, Done};
use crate::context::Ctx;
use crate::platform::{ErrorCode, PlatformError};

/// How often a start waiting for its server looks at the instance's generation when no
/// notification comes.
const SUPERSEDE_POLL: Duration = Duration::from_millis(500);
/// How often a job waiting for a busy lease tries again when no release is announced.
const LEASE_POLL: Duration = Duration::from_millis(250);

/// apalis entry point: a job as the lifecycle backend delivers it (begun already, for most
/// kinds); what it returns is the operation the acknowledgement ends.
pub async fn handle(delivery: Arc<Delivery>, ctx: Data<Arc<Ctx>>, bell: Data<Bell>) -> Result<Closing, BoxDynError> {
    let ctx: Arc<Ctx> = (*ctx).clone();
    let _busy = ctx.activity.begin();
    let outcome = match &delivery.job {
        None => {
            tracing::warn!("a job that does not decode was dropped");
            Ok(Closing::default())
        }
        Some(job) => {
            let span = tracing::info_span!("job", instance = %job.instance_id, operation = %job.operation_id,
                kind = job.kind.as_str(), correlation_id = %job.correlation_id, worker = %ctx.worker);
            run(&ctx, job, delivery.take_begun()).instrument(span).await.map_err(|e| {
                tracing::warn!(error = %e, operation = %job.operation_id, "the job will be redelivered");
                Box::new(e) as BoxDynError
            })
        }
    };
    // The acknowledgement (which ends the operation) goes out as this returns.
    bell.ring();
    outcome
}

/// Run `job`, whose delivery began it already when `begun` is given.
async fn run(ctx: &Ctx, job: &InstanceJob, mut begun: Option<Begun>) -> Result<Closing, StoreError> {
    // One line per delivery (debug): draas-scale counts them to show each job ran once.
    tracing::debug!(operation = %job.operation_id, "job received");
    if job.schema_version > SCHEMA_VERSION {
        let e = PlatformError::new(
            ErrorCode::UnsupportedJob,
            format!("job schema {} is newer than this worker", job.schema_version),
        );
        ctx.store.operations().settle(&job.operation_id, OperationStatus::Failed, Some(&(&e).into())).await?;
        return Ok(Closing::default());
    }
    let deadline = tokio::time::Instant::now() + ctx.lease_ttl();
    // Listening for the lease's release starts at the first `busy`, and a try follows at once:
    // a release between the two is then seen by that try.
    let mut released = None;
    let ready = loop {
        let this = match begun.take() {
            Some(b) => b,
            None => begin(ctx, job, None).await?,
        };
        match this {
            Begun::Ready(ready) => break ready,
            Begun::Busy if released.is_none() => {
                released = Some(ctx.store.events().watch(Topic::Lease(job.instance_id.to_string())));
            }
            Begun::Busy if tokio::time::Instant::now() < deadline => {
                if let Some(released) = released.as_mut() {
                    wait_for_release(released, deadline).await;
                }
            }
            // Held for a whole lease period: let apalis deliver the job again later.
            Begun::Busy => return Err(StoreError::Contended),
            other => {
                settle(ctx, job, other).await?;
                return Ok(Closing::default());
            }
        }
    };
    drop(released);
    attempts(ctx, job, ready).await
}

/// Wait until the instance's lease is announced free (`released` changes), a poll interval
/// passes, or `deadline`.
async fn wait_for_release(released: &mut tokio::sync::watch::Receiver<u64>, deadline: tokio::time::Instant) {
    let until = deadline.min(tokio::time::Instant::now() + LEASE_POLL);
    if !matches!(tokio::time::timeout_at(until, released.changed()).await, Ok(Ok(()))) {
        // A poll interval passed (or the store is gone: waiting out the interval keeps this
        // from spinning).
        tokio::time::sleep_until(until).await;
    }
}

/// Begin (or, with `held`, resume) an attempt.
async fn begin(ctx: &Ctx, job: &InstanceJob, held: Option<&Lease>) -> Result<Begun, StoreError> {
    let starts = matches!(job.kind, OperationKind::Start | OperationKind::Restart | OperationKind::Reconfigure);
    let platform = job.platform.and_then(|p| ctx.platform(p).ok());
    let pool = platform.filter(|_| starts).and_then(|p| p.port_pool(&ctx.node).map(|pool| (p, pool)));
    let skip = pool.as_ref().map(|(p, pool)| p.busy_ports(&job.instance_id, pool.range)).unwrap_or_default();
    let check_placement = job.platform.is_none_or(|p| p == draas_jobs::domain::model::Platform::Process);
    let b = Begin {
        op: &job.operation_id,
        instance: &job.instance_id,
        holder: &ctx.worker,
        lease_ttl: ctx.lease_ttl(),
        target_generation: job.target_generation,
        held,
        node: &ctx.node,
        check_placement,
        port: pool.as_ref().map(|(_, pool)| PortRequest { pool: &pool.name, range: pool.range, skip: &skip }),
    };
    ctx.store.operations().begin(&b).await
}

/// A job that did not begin: say why, where someone waits for it.
async fn settle(ctx: &Ctx, job: &InstanceJob, begun: Begun) -> Result<(), StoreError> {
    let ops = ctx.store.operations();
    match begun {
        Begun::Gone => {}
        Begun::Final(status) => {
            tracing::debug!(operation = %job.operation_id, status = status.as_str(), "duplicate delivery: the operation has ended");
        }
        Begun::Superseded => metrics().job(job.kind.as_str(), "superseded", Duration::ZERO),
        Begun::NoInstance if job.kind == OperationKind::Delete => {
            ops.settle(&job.operation_id, OperationStatus::Succeeded, None).await?;
        }
        Begun::NoInstance => {
            let e = PlatformError::new(ErrorCode::InstanceNotFound, "the instance no longer exists");
            ops.settle(&job.operation_id, OperationStatus::Failed, Some(&(&e).into())).await?;
        }
        Begun::Foreign { node, alive } if !alive && !ctx.recently_cut_off() => {
            let e = PlatformError::new(
                ErrorCode::NodeLost,
                format!("node '{node}', which runs this instance, stopped heartbeating"),
            );
            ops.settle(&job.operation_id, OperationStatus::Failed, Some(&(&e).into())).await?;
        }
        Begun::Foreign { node, .. } => {
            tracing::info!(operation = %job.operation_id, %node, "forwarding to the node that owns the instance");
            job.push(&ctx.store, &node_queue(&node)).await?;
        }
        Begun::LeaseLost => {
            let e = PlatformError::new(ErrorCode::LeaseLost, "another worker took over this instance");
            ops.settle(&job.operation_id, OperationStatus::Failed, Some(&(&e).into())).await?;
        }
        Begun::Busy | Begun::Ready(_) => {}
    }
    Ok(())
}

/// Run attempts until success, a permanent failure, or the attempt cap; the lease is renewed
/// meanwhile.
async fn attempts(ctx: &Ctx, job: &InstanceJob, first: Box<Ready>) -> Result<Closing, StoreError> {
    let lease = first.lease.clone();
    // Whether the acknowledgement ends the operation and releases the lease (otherwise the
    // lease is released below).
    let mut finished = false;
    // The lease is renewed while the attempts run, in this task: a task of its own per job
    // would cost a wake-up of another runtime thread each.
    let result = tokio::select! {
        biased;
        result = retried(ctx, job, first, &lease, &mut finished) => result,
        never = keep_lease(ctx, &lease) => match never {},
    };
    // Attempts that ended another way (cancelled, superseded while backing off, a store
    // failure) give the lease back here; a superseding `begin` released it already.
    if !finished {
        let _ = ctx.store.leases().release(&lease).await;
    }
    result
}

/// The attempts of [`attempts`], the first `first`; `finished` tells whether the closing
/// returned ends the operation and releases `lease`.
async fn retried(
    ctx: &Ctx,
    job: &InstanceJob,
    first: Box<Ready>,
    lease: &Lease,
    finished: &mut bool,
) -> Result<Closing, StoreError> {
    let mut ready = first;
    let kind = ready.op.kind.as_str();
    loop {
        let (attempt_no, max) = (ready.op.attempt, ready.op.max_attempts);
        if attempt_no == 1 {
            let waited = (Utc::now() - ready.op.created_at).to_std().unwrap_or_default();
            metrics().pickup(kind, waited);
        }
        let started = std::time::Instant::now();
        let outcome = attempt(ctx, job, &ready).await;
        match outcome {
            Err(e) if e.is_transient() && attempt_no < max => {
                tracing::warn!(attempt = attempt_no, code = %e.code, error = %e, "attempt failed; retrying");
                metrics().job(kind, "retried", started.elapsed());
                match ctx.store.operations().requeue(&ready.op.id, &(&e).into()).await {
                    Ok(true) => {}
                    Ok(false) => break Ok(Closing::default()), // cancelled meanwhile
                    Err(e) => break Err(e),
                }
                tokio::time::sleep(backoff(ctx, attempt_no)).await;
                match begin(ctx, job, Some(lease)).await {
                    Ok(Begun::Ready(next)) => ready = next,
                    Ok(other) => break settle(ctx, job, other).await.map(|()| Closing::default()),
                    Err(e) => break Err(e),
                }
            }
            outcome => {
                let label = match &outcome {
                    Ok(_) => "succeeded",
                    Err(e) if e.code == ErrorCode::Superseded => "superseded",
                    Err(_) => "failed",
                };
                metrics().job(kind, label, started.elapsed());
                let closing = finish(ctx, &ready, outcome);
                *finished = closing.is_ok();
                break closing;
            }
        }
    }
}

/// One attempt, bounded in time, with panics caught (so they fail the attempt, not the
/// worker), given way to when a newer operation on the instance arrives while it waits.
async fn attempt(ctx: &Ctx, job: &InstanceJob, ready: &Ready) -> Result<Done, PlatformError> {
    let needs_config = !matches!(job.kind, OperationKind::Stop | OperationKind::Delete);
    if needs_config && ready.state.unreadable.is_some() {
        return Err(PlatformError::new(
            ErrorCode::RecordCorrupt,
            "a record of the instance cannot be read; replace its configuration (PUT …/config) or delete it",
        ));
    }
    // A stop or a delete needs no secrets (and must work when they cannot be opened).
    let secrets = match crate::secrets::open_stored(ctx, &job.instance_id, &ready.secrets) {
        Ok(s) => s,
        Err(e) if needs_config => return Err(e),
        Err(_) => crate::secrets::Opened::default(),
    };
    let mut state = ready.state.clone();
    state.secrets_rev = secrets.rev;
    state.secret_names = secrets.env.iter().map(|(n, _)| n.clone()).collect();
    let superseded = CancellationToken::new();
    let watching = superseded.clone();
    let watcher = watch_generation(&ctx.store, job, &watching);
    let a = Attempt {
        lease: &ready.lease,
        state: &state,
        secrets: &secrets,
        port: ready.port,
        port_owners: ready.port_owners.as_deref(),
        superseded,
        force: ready.op.force,
        requested_by: ready.op.requested_by.as_deref().unwrap_or_default(),
    };
    let limit = Duration::from_secs(ctx.settings.worker.attempt_timeout_secs);
    let work = async {
        match job.kind {
            OperationKind::Start => actions::start(ctx, &a, a.state.observed_or_default()).await,
            OperationKind::Stop => actions::stop(ctx, &a, a.state.observed_or_default()).await,
            OperationKind::Restart => actions::restart(ctx, &a).await,
            OperationKind::Delete => actions::delete(ctx, &a).await,
            OperationKind::Reconfigure => actions::reconfigure(ctx, &a).await,
            OperationKind::Reconcile => {
                crate::reconcile::one(ctx, a.state, a.lease).await?;
                Ok(Done::default())
            }
        }
    };
    // The watcher runs beside the work in this task (see `attempts`).
    let bounded = tokio::select! {
        biased;
        bounded = tokio::time::timeout(limit, AssertUnwindSafe(work).catch_unwind()) => bounded,
        never = watcher => match never {},
    };
    let outcome = match bounded {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned());
            Err(PlatformError::new(ErrorCode::Panicked, format!("the job panicked: {}", what.unwrap_or_default())))
        }
        Err(_) => Err(PlatformError::new(
            ErrorCode::AttemptTimeout,
            format!("the attempt took longer than {} s", limit.as_secs()),
        )),
    };
    // What the server printed (a log tail, a validate report) must not repeat a secret.
    outcome.map_err(|e| e.masked(&secrets.masker))
}

/// Cancel `superseded` once the instance's generation moves past the job's: told by the
/// notification a submit publishes, or seen on a slower poll. Never ends: once cancelled, it
/// waits.
async fn watch_generation(
    store: &draas_jobs::store::Store,
    job: &InstanceJob,
    superseded: &CancellationToken,
) -> Infallible {
    let id = job.instance_id.to_string();
    let mut announced = store.events().watch(Topic::Generation(id.clone()));
    loop {
        let newer = match tokio::time::timeout(SUPERSEDE_POLL, announced.changed()).await {
            Ok(Ok(())) => *announced.borrow_and_update() > job.target_generation,
            // Quiet for a while (or the store is gone): look at the record.
            Ok(Err(_)) | Err(_) => {
                if announced.has_changed().is_err() {
                    tokio::time::sleep(SUPERSEDE_POLL).await;
                }
                store
                    .instances()
                    .generation(&job.instance_id)
                    .await
                    .ok()
                    .flatten()
                    .is_none_or(|g| g > job.target_generation)
            }
        };
        if newer {
            tracing::info!(instance = %id, "a newer operation arrived; this attempt gives way");
            superseded.cancel();
            return std::future::pending().await;
        }
    }
}

/// Renew `lease` every third of its time to live. Never ends: once the lease is lost, it
/// waits.
async fn keep_lease(ctx: &Ctx, lease: &Lease) -> Infallible {
    let ttl = ctx.lease_ttl();
    loop {
        tokio::time::sleep(ttl / 3).await;
        if !matches!(ctx.store.leases().renew(lease, ttl).await, Ok(true)) {
            tracing::warn!("lost the instance lease");
            return std::future::pending().await;
        }
    }
}

/// Exponential backoff with full jitter, between the settings' bounds.
fn backoff(ctx: &Ctx, attempt: u32) -> Duration {
    let w = &ctx.settings.worker;
    let cap = w.backoff_initial_ms.saturating_mul(1u64 << attempt.min(20)).min(w.backoff_max_ms).max(1);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// End the operation with `outcome`: what was observed, the outcome and the lease release,
/// handed to the acknowledgement, which makes them in one step with it.
fn finish(ctx: &Ctx, ready: &Ready, outcome: Result<Done, PlatformError>) -> Result<Closing, StoreError> {
    let mut op: Operation = ready.op.clone();
    op.finished_at = Some(Utc::now());
    let source = format!("worker:{}", ctx.worker);
    let observed = match outcome {
        Ok(done) => {
            op.status = OperationStatus::Succeeded;
            op.result = done.facts;
            op.error = None;
            done.observed
        }
        Err(e) if e.code == ErrorCode::Superseded => {
            tracing::info!(operation = %op.id, "superseded by a newer operation");
            op.status = OperationStatus::Superseded;
            None
        }
        Err(e) => {
            tracing::warn!(code = %e.code, error = %e, "operation failed");
            op.status = OperationStatus::Failed;
            op.error = Some(OperationError::from(&e));
            (op.kind != OperationKind::Reconcile).then(|| (actions::errored(ctx, &ready.state, &e), e.code.as_str()))
        }
    };
    let by = op.requested_by.as_deref().unwrap_or_default();
    let observed = observed.as_ref().map(|(o, reason)| (o, Cause { source: &source, reason, by }));
    // A server that came up for another reason than a crash repair (a new configuration, a
    // user's request) ends the crash loop: its next crash starts counting anew. A repair that
    // comes up and crashes again keeps counting, so a crash loop still gives up.
    let started = op.status == OperationStatus::Succeeded
        && matches!(op.kind, OperationKind::Start | OperationKind::Restart | OperationKind::Reconfigure)
        && !matches!(op.reason.as_str(), "crashed" | "exited");
    let f = Finish { op: &op, lease: Some(&ready.lease), observed, reset_crash_loop: started };
    let (instance, args) = ctx.store.operations().finish_args(&f)?;
    Ok(Closing(Some((op.id.clone(), instance, args))))
}
