//! Reconciliation: make what runs match what is desired, once per tick however many workers
//! run (the ticks themselves: `draas_jobs::queue::ticks`).
//!
//! | module | does |
//! |---|---|
//! | `node` | a node's pass over its own process instances |
//! | `global` | the pass over shared platforms, lost nodes and unplaced instances |
//! | `failover` | instances of lost nodes |
//! | `orphans` | what runs for this deployment that no instance owns |
//! | `probe`, `settle` | what a probe sees, and what it means (observed status, repairs) |
//! | `events` | deaths a platform reports as they happen |
//!
//! A pass takes its scope's lock (`global` or the node), so a slow pass makes the next tick
//! skip rather than pile up.

pub mod events;
pub mod failover;
pub mod global;
pub mod node;
pub mod orphans;
pub mod probe;
pub mod settle;

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{InstanceState, Status};
use draas_jobs::domain::operation::{OperationError, OperationStatus};
use draas_jobs::queue::ReconcileJob;
use draas_jobs::store::StoreError;
use draas_jobs::store::leases::Lease;
use futures::{StreamExt, TryStreamExt};

use crate::context::Ctx;

/// Instances read per batch (one pipelined round trip each).
const BATCH: usize = 500;

/// Figures of one pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub instances: usize,
    pub probed: usize,
    pub elapsed: Duration,
}

/// apalis entry point of the reconcile queues. A pass whose scope is still busy with an earlier
/// tick is skipped, so slow passes never pile up.
pub async fn handle(job: ReconcileJob, ctx: Data<Arc<Ctx>>) -> Result<(), BoxDynError> {
    let ctx: Arc<Ctx> = (*ctx).clone();
    // Passes are housekeeping: a worker does not leave in the middle of one, but they do not
    // keep an idle worker up (a live worker gets the global pass every tick, for orphans and
    // drift, even when no instance is desired running).
    let _busy = ctx.activity.housekeeping();
    let scope = job.node.clone().unwrap_or_else(|| "global".into());
    // Short-lived and renewed while the pass runs: a pass cut off by a Redis outage (which
    // cannot unlock) blocks the passes after it for one hold at most.
    let hold = Duration::from_secs(ctx.settings.reconcile.interval_secs.max(1) * 3);
    let token = job.task_id();
    let leases = ctx.store.leases();
    let Some(held) = leases.try_lock_pass(&scope, &token, hold).await.unwrap_or(None) else {
        let holder = leases.pass_holder(&scope).await.unwrap_or_default();
        tracing::debug!(%scope, tick = job.tick, holder = holder.as_deref().unwrap_or("-"),
            "previous pass still running; tick skipped");
        return Ok(());
    };
    tracing::debug!(%scope, tick = job.tick, "pass started");
    if let Err(e) = ctx.store.passes().count_run(&token).await {
        tracing::debug!(error = %e, "could not count the pass");
    }
    let pass = async {
        match &job.node {
            Some(node) if *node == ctx.node => node::pass(&ctx).await,
            Some(_) => Ok(PassStats::default()),
            None => global::pass(&ctx).await,
        }
    };
    let renew = async {
        loop {
            tokio::time::sleep(hold / 3).await;
            let _ = ctx.store.leases().renew(&held, hold).await;
        }
    };
    let result = tokio::select! {
        r = pass => r,
        () = renew => unreachable!("the renewal loop never ends"),
    };
    let _ = ctx.store.leases().release(&held).await;
    match &result {
        Ok(stats) => {
            let kind = if job.node.is_some() { "node" } else { "global" };
            draas_jobs::metrics::metrics().reconcile_pass(kind, stats.elapsed);
            tracing::debug!(%scope, tick = job.tick, instances = stats.instances, probed = stats.probed,
                elapsed_ms = stats.elapsed.as_millis() as u64, "reconcile pass");
        }
        Err(e) => tracing::warn!(%scope, error = %e, "reconcile pass failed"),
    }
    if let Some(op_id) = &job.operation_id {
        let (status, error) = match &result {
            Ok(_) => (OperationStatus::Succeeded, None),
            Err(e) => (
                OperationStatus::Failed,
                Some(OperationError {
                    code: "store_unavailable".into(),
                    message: e.to_string(),
                    detail: None,
                    pointer: None,
                }),
            ),
        };
        let _ = ctx.store.operations().settle(op_id, status, error.as_ref()).await;
    }
    Ok(())
}

/// Every instance, in pipelined batches.
pub(crate) struct Batches<'a> {
    ctx: &'a Ctx,
    cursor: Option<InstanceId>,
    done: bool,
}

impl<'a> Batches<'a> {
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Self { ctx, cursor: None, done: false }
    }

    pub(crate) async fn next(&mut self) -> Result<Option<Vec<InstanceState>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let instances = self.ctx.store.instances();
        let ids = instances.ids_after(self.cursor.as_ref(), BATCH).await?;
        self.done = ids.len() < BATCH;
        let Some(last) = ids.last().cloned() else { return Ok(None) };
        self.cursor = Some(last);
        // Unreadable instances were reported as they were read; a pass leaves them alone.
        let readable = instances.load_many(&ids).await?.into_iter().flatten().filter(|s| s.unreadable.is_none());
        Ok(Some(readable.collect()))
    }
}

/// Probe the instances of `batch` no operation is acting on (bounded concurrency), record
/// what was seen, and repair what it shows.
pub(crate) async fn probe_and_settle(ctx: &Ctx, batch: Vec<InstanceState>) -> Result<(), StoreError> {
    let leased = ctx.store.leases().held(&batch.iter().map(InstanceState::id).collect::<Vec<_>>()).await?;
    let free: Vec<InstanceState> = batch.into_iter().zip(leased).filter(|(_, l)| !l).map(|(s, _)| s).collect();
    let probes: Vec<(InstanceState, probe::Probe)> = futures::stream::iter(free)
        .map(|s| async move {
            let p = probe::probe(ctx, &s, &ctx.http).await;
            (s, p)
        })
        .buffer_unordered(ctx.settings.reconcile.probe_concurrency.max(1))
        .collect()
        .await;
    tracing::debug!(probed = probes.len(), "probes done; recording");
    probe::record(ctx, &probes).await?;
    let looping = ctx.store.crash_loops().exist(&probes.iter().map(|(s, _)| s.id()).collect::<Vec<_>>()).await?;
    tracing::debug!("settling");
    futures::stream::iter(probes.into_iter().zip(looping).map(Ok::<_, StoreError>))
        .try_for_each_concurrent(16, |((s, p), looping)| async move { settle_probed(ctx, &s, &p, None, looping).await })
        .await
}

/// Record one probe and repair what it shows. `looping`: the instance has a crash-loop record.
pub async fn settle_probed(
    ctx: &Ctx,
    s: &InstanceState,
    p: &probe::Probe,
    lease: Option<&Lease>,
    looping: bool,
) -> Result<(), StoreError> {
    let before = s.observed_or_default();
    let (mut after, reason) = settle::judge(&before, p);
    settle::forget_stale_refusal(ctx, s, &mut after);
    // The common case, a healthy server as it was: nothing to write, nothing to repair, so no
    // round trip (the staleness check below matters only before a write or a repair).
    if !looping && !settle::changed(&before, &after) && settle::plan(ctx, s, &after).is_none() {
        return Ok(());
    }
    if !settle::record(ctx, s, &before, &after, reason, lease).await? {
        tracing::debug!(instance = %s.id(), "changed while probed; judged again next pass");
        return Ok(());
    }
    if looping && after.status == Status::Running && after.probe_failures == 0 {
        settle::forget_old_crashes(ctx, s).await?;
    }
    settle::repair(ctx, s, &after).await
}

/// Reconcile one instance now (status push, `POST …/reconcile`), under the caller's lease.
pub async fn one(ctx: &Ctx, s: &InstanceState, lease: &Lease) -> Result<(), StoreError> {
    let kind = s.instance.value.platform;
    let shared = match ctx.platform(kind) {
        Ok(p) if kind != draas_jobs::domain::model::Platform::Process => p.reachable().await.is_ok(),
        _ => false,
    };
    if s.placed_on(&ctx.node) || shared {
        let p = probe::probe(ctx, s, &ctx.http).await;
        probe::record(ctx, &[(s.clone(), p.clone())]).await?;
        settle_probed(ctx, s, &p, Some(lease), true).await?;
    }
    Ok(())
}
