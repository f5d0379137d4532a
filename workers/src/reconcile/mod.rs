//! Reconciliation: every replica turns apalis-cron ticks into reconcile jobs with deterministic
//! task ids (`reconcile-<tick>` and `reconcile-<tick>-<node>`), so each tick is reconciled once
//! however many workers run (shared/APALIS.md §4). A node pass probes and repairs the node's own
//! process instances; the global pass looks after instances no live node owns.

pub mod events;
pub mod probe;
pub mod settle;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{BoxDynError, Data};
use apalis_cron::CronScheduler;
use chrono::Utc;
use draas_jobs::ids::InstanceId;
use draas_jobs::jobs::{ReconcileJob, SCHEMA_VERSION};
use draas_jobs::lease::Lease;
use draas_jobs::model::{DesiredState, Platform, Status};
use draas_jobs::ops::OperationStatus;
use draas_jobs::store::history::Cause;
use draas_jobs::store::{InstanceState, StoreError};
use futures::{StreamExt, TryStreamExt};

use crate::context::Ctx;

/// Instances read per batch (one pipelined round trip each).
const BATCH: usize = 500;

/// How often (in tick seconds) the global pass also sweeps finished tasks and expired ids.
const MAINTENANCE_EVERY_SECS: u64 = 300;
/// How long finished apalis tasks are kept (tick ids must outlive every replica's clock skew).
const TASK_RETENTION: Duration = Duration::from_secs(3600);

/// Sweep every queue of this deployment.
async fn maintain(ctx: &Ctx) {
    let conn = ctx.store.connection();
    let swept = match draas_jobs::queues::all(&conn, ctx.store.keys()).await {
        Ok(queues) => draas_jobs::maintenance::sweep(&conn, ctx.store.keys(), &queues, TASK_RETENTION).await,
        Err(e) => Err(e),
    };
    match swept {
        Ok(n) => tracing::info!(removed = n, "swept finished tasks and expired operation ids"),
        Err(e) => tracing::warn!(error = %e, "sweep failed"),
    }
}

/// Figures of one pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub instances: usize,
    pub probed: usize,
    pub elapsed: Duration,
}

/// The cron expression for an interval (checked by `Settings`).
pub fn cron_expr(interval_secs: u64) -> String {
    if interval_secs < 60 {
        format!("*/{interval_secs} * * * * *")
    } else {
        format!("0 */{} * * * *", interval_secs / 60)
    }
}

/// Push this replica's reconcile jobs for every tick; the first push of a tick wins.
pub async fn produce_ticks(ctx: Arc<Ctx>) {
    let expr = cron_expr(ctx.settings.reconcile.interval_secs);
    let schedule = match cron::Schedule::from_str(&expr) {
        Ok(s) => s,
        Err(e) => return tracing::error!(%expr, error = %e, "invalid reconcile schedule"),
    };
    // apalis-cron's stream fails every poll once it fell behind its schedule ("tick out of
    // range", e.g. after the process was suspended or a push hung on an unreachable Redis);
    // a fresh stream starts from now.
    loop {
        let mut ticks = Box::pin(CronScheduler::new(schedule.clone()).into_stream());
        while let Some(tick) = ticks.next().await {
            let tick = match tick {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile schedule fell behind; restarting it");
                    break;
                }
            };
            for node in [None, Some(ctx.node.clone())] {
                let job = ReconcileJob {
                    schema_version: SCHEMA_VERSION,
                    tick: tick.get_timestamp(),
                    node,
                    operation_id: None,
                };
                if let Err(e) = ctx.submitter.enqueuer.push_reconcile(job).await {
                    tracing::warn!(error = %e, "could not queue a reconcile tick");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// apalis entry point of the reconcile queues. A pass whose scope is still busy with an earlier
/// tick is skipped, so slow passes never pile up.
pub async fn handle(job: ReconcileJob, ctx: Data<Arc<Ctx>>) -> Result<(), BoxDynError> {
    let ctx: Arc<Ctx> = (*ctx).clone();
    let scope = job.node.clone().unwrap_or_else(|| "global".into());
    let lock = ctx.store.keys().reconcile_lock(&scope);
    let mut conn = ctx.store.connection();
    // Short-lived and renewed while the pass runs: a pass cut off by a Redis outage (which
    // cannot unlock) blocks the passes after it for one hold at most.
    let hold = Duration::from_secs(ctx.settings.reconcile.interval_secs.max(1) * 3);
    let token = job.task_id();
    let Some(held) = ctx.leases.try_lock(lock.clone(), &token, hold).await.unwrap_or(None) else {
        let holder: Option<String> = redis::AsyncCommands::get(&mut conn, &lock).await.unwrap_or_default();
        tracing::info!(%scope, tick = job.tick, holder = holder.as_deref().unwrap_or("-"),
            "previous pass still running; tick skipped");
        return Ok(());
    };
    tracing::debug!(%scope, tick = job.tick, "pass started");
    let counter = ctx.store.keys().reconcile_pass(&token);
    let _: Result<(), _> =
        redis::pipe().incr(&counter, 1).ignore().expire(&counter, 3600).ignore().query_async(&mut conn).await;
    let pass = async {
        match &job.node {
            Some(node) if *node == ctx.node => node_pass(&ctx).await,
            Some(_) => Ok(PassStats::default()),
            None => {
                let pass = global_pass(&ctx).await;
                if job.tick % MAINTENANCE_EVERY_SECS < ctx.settings.reconcile.interval_secs.max(1) {
                    maintain(&ctx).await;
                }
                pass
            }
        }
    };
    let renew = async {
        loop {
            tokio::time::sleep(hold / 3).await;
            let _ = ctx.leases.renew(&held, hold).await;
        }
    };
    let result = tokio::select! {
        r = pass => r,
        () = renew => unreachable!("the renewal loop never ends"),
    };
    let _ = ctx.leases.release(&held).await;
    match &result {
        Ok(stats) => {
            let kind = if job.node.is_some() { "node" } else { "global" };
            draas_jobs::metrics::metrics().reconcile_pass(kind, stats.elapsed);
            tracing::info!(%scope, tick = job.tick, instances = stats.instances, probed = stats.probed,
                elapsed_ms = stats.elapsed.as_millis() as u64, "reconcile pass");
        }
        Err(e) => tracing::warn!(%scope, error = %e, "reconcile pass failed"),
    }
    if let Some(op_id) = &job.operation_id
        && let Ok(Some(mut op)) = ctx.submitter.ops.get(op_id).await
    {
        op.status = if result.is_ok() { OperationStatus::Succeeded } else { OperationStatus::Failed };
        op.finished_at = Some(Utc::now());
        let _ = ctx.submitter.ops.transition(&op, &[OperationStatus::Queued, OperationStatus::Running]).await;
    }
    Ok(())
}

/// Every instance, in pipelined batches.
struct Batches<'a> {
    ctx: &'a Ctx,
    cursor: Option<InstanceId>,
    done: bool,
}

impl<'a> Batches<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Self { ctx, cursor: None, done: false }
    }

    async fn next(&mut self) -> Result<Option<Vec<InstanceState>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let ids = self.ctx.store.ids_after(self.cursor.as_ref(), BATCH).await?;
        self.done = ids.len() < BATCH;
        let Some(last) = ids.last().cloned() else { return Ok(None) };
        self.cursor = Some(last);
        Ok(Some(self.ctx.store.load_many(&ids).await?.into_iter().flatten().collect()))
    }
}

/// This node's process instances: probe them (bounded concurrency), record what was seen,
/// repair drift; then kill servers of this deployment that no instance here owns.
pub async fn node_pass(ctx: &Ctx) -> Result<PassStats, StoreError> {
    let started = Instant::now();
    let (mut instances, mut probed) = (0, 0);
    let mut batches = Batches::new(ctx);
    while let Some(batch) = batches.next().await? {
        instances += batch.len();
        let mine: Vec<InstanceState> = batch.into_iter().filter(|s| probe::placed_on(s, &ctx.node)).collect();
        probed += mine.len();
        tracing::debug!(instances = mine.len(), "node pass: probing a batch");
        probe_and_settle(ctx, mine).await?;
    }
    tracing::debug!("node pass: looking for orphans");
    kill_orphans(ctx).await?;
    Ok(PassStats { instances, probed, elapsed: started.elapsed() })
}

pub(crate) async fn probe_and_settle(ctx: &Ctx, batch: Vec<InstanceState>) -> Result<(), StoreError> {
    let leased = leased(ctx, &batch).await?;
    let free: Vec<InstanceState> = batch.into_iter().zip(leased).filter(|(_, l)| !l).map(|(s, _)| s).collect();
    let probes: Vec<(InstanceState, probe::Probe)> = futures::stream::iter(free)
        .map(|s| async move {
            let p = probe::probe(ctx, &s, &ctx.http).await;
            (s, p)
        })
        .buffer_unordered(ctx.settings.reconcile.probe_concurrency.max(1))
        .collect()
        .await;
    let facts: Vec<_> = probes.iter().map(|(s, p)| (s.instance.value.id.clone(), p.clone())).collect();
    tracing::debug!(probed = probes.len(), "probes done; recording");
    probe::record(ctx, &facts).await?;
    let looping = crash_looping(ctx, &probes).await?;
    tracing::debug!("settling");
    futures::stream::iter(probes.into_iter().zip(looping).map(Ok::<_, StoreError>))
        .try_for_each_concurrent(16, |((s, p), looping)| async move { settle_probed(ctx, &s, &p, None, looping).await })
        .await
}

/// Which of the probed instances have a crash-loop record (one pipelined round trip).
async fn crash_looping(ctx: &Ctx, probes: &[(InstanceState, probe::Probe)]) -> Result<Vec<bool>, StoreError> {
    if probes.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for (s, _) in probes {
        pipe.exists(ctx.store.keys().crash_loop(&s.instance.value.id));
    }
    Ok(pipe.query_async(&mut ctx.store.connection()).await?)
}

/// Record one probe and repair what it shows. `looping`: the instance has a crash-loop record.
pub async fn settle_probed(
    ctx: &Ctx,
    s: &InstanceState,
    p: &probe::Probe,
    lease: Option<&Lease>,
    looping: bool,
) -> Result<(), StoreError> {
    let before = settle::current(s);
    let (after, reason) = settle::judge(&before, p);
    if !settle::record(ctx, s, &before, &after, reason, lease).await? {
        tracing::debug!(instance = %s.instance.value.id, "changed while probed; judged again next pass");
        return Ok(());
    }
    if looping && after.status == Status::Running && after.probe_failures == 0 {
        settle::forget_old_crashes(ctx, s).await?;
    }
    settle::repair(ctx, s, &after).await
}

/// Which instances of `batch` have a worker acting on them (one pipelined round trip).
async fn leased(ctx: &Ctx, batch: &[InstanceState]) -> Result<Vec<bool>, StoreError> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for s in batch {
        pipe.exists(ctx.store.keys().lease(&s.instance.value.id));
    }
    Ok(pipe.query_async(&mut ctx.store.connection()).await?)
}

/// Servers of this deployment on this host whose instance is gone or lives on another node.
async fn kill_orphans(ctx: &Ctx) -> Result<(), StoreError> {
    for (id, p) in ctx.process.deployment_processes() {
        let Ok(id) = id.parse::<InstanceId>() else { continue };
        let owned = match ctx.store.load(&id).await? {
            None => false,
            Some(s) => probe::placed_on(&s, &ctx.node) || ctx.leases.is_held(&id).await?,
        };
        if !owned {
            tracing::warn!(instance = %id, pid = p.pid, "killing a drasi-server no instance on this node owns");
            ctx.process.kill(&p);
        }
    }
    Ok(())
}

/// Instances no live node looks after: unplaced process instances and those of lost nodes;
/// and every instance of a shared platform (docker, kubernetes) this worker reaches, probed and
/// repaired like a node pass does, then the platforms' orphans.
pub async fn global_pass(ctx: &Ctx) -> Result<PassStats, StoreError> {
    let started = Instant::now();
    let platforms = reachable_platforms(ctx).await;
    let mut alive = std::collections::HashMap::new();
    let (mut instances, mut touched) = (0, 0);
    // Just back from a Redis outage: every node's key may have expired meanwhile. Nodes get
    // one heartbeat expiry to renew before any of them counts as lost.
    let judge_nodes = !ctx.recently_cut_off();
    if !judge_nodes {
        tracing::info!("Redis was unreachable recently; no node is judged lost in this pass");
    }
    let mut counts: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut batches = Batches::new(ctx);
    while let Some(batch) = batches.next().await? {
        instances += batch.len();
        for s in &batch {
            let status = s.observed.as_ref().map_or(Status::Created, |o| o.value.status);
            *counts.entry(format!("{}|{}", s.instance.value.platform.as_str(), status.as_str())).or_default() += 1;
        }
        let (process, shared): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|s| s.instance.value.platform == Platform::Process);
        for s in process {
            let node = s.observed.as_ref().and_then(|o| o.value.node.clone());
            let live = match &node {
                Some(_) if !judge_nodes => true,
                Some(n) => match alive.get(n) {
                    Some(v) => *v,
                    None => {
                        let v = ctx.nodes.is_alive(n).await?;
                        alive.insert(n.clone(), v);
                        v
                    }
                },
                None => false,
            };
            if !live && !ctx.leases.is_held(&s.instance.value.id).await? {
                touched += 1;
                unowned(ctx, &s, node.as_deref()).await?;
            }
        }
        let reachable: Vec<InstanceState> =
            shared.into_iter().filter(|s| platforms.iter().any(|p| p.kind() == s.instance.value.platform)).collect();
        touched += reachable.len();
        probe_and_settle(ctx, reachable).await?;
    }
    for platform in &platforms {
        shared_orphans(ctx, platform.as_ref()).await?;
    }
    // Instances by platform and status, for every replica's `/metrics`.
    let key = ctx.store.keys().instance_counts();
    let mut pipe = redis::pipe();
    pipe.atomic().del(&key).ignore();
    for (field, n) in &counts {
        pipe.hset(&key, field, n).ignore();
    }
    let _: () = pipe.query_async(&mut ctx.store.connection()).await?;
    Ok(PassStats { instances, probed: touched, elapsed: started.elapsed() })
}

/// The shared platforms that answer now; the instances of the others are left as they are
/// (judging them from an engine that does not answer would call every one of them crashed).
async fn reachable_platforms(ctx: &Ctx) -> Vec<Arc<dyn crate::platform::Platform>> {
    let mut up = Vec::new();
    for p in &ctx.shared {
        match p.reachable().await {
            Ok(()) => up.push(p.clone()),
            Err(e) => tracing::debug!(platform = p.kind().as_str(), error = %e, "platform unreachable; not reconciled"),
        }
    }
    up
}

/// What a shared platform runs for this deployment that no instance owns: reported, and
/// removed when `reconcile.remove_orphans` says so.
async fn shared_orphans(ctx: &Ctx, platform: &dyn crate::platform::Platform) -> Result<(), StoreError> {
    let managed = match platform.managed().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(platform = platform.kind().as_str(), error = %e, "cannot list managed objects");
            return Ok(());
        }
    };
    for m in managed {
        let owned = match m.instance.parse::<InstanceId>() {
            Ok(id) => ctx.store.load(&id).await?.is_some() || ctx.leases.is_held(&id).await?,
            Err(_) => false,
        };
        if owned {
            continue;
        }
        let remove = ctx.settings.reconcile.remove_orphans;
        tracing::warn!(platform = platform.kind().as_str(), instance = %m.instance, handle = %m.handle, remove,
            "found a draas-managed object no instance owns");
        if remove && let Err(e) = platform.remove(&m).await {
            tracing::warn!(handle = %m.handle, error = %e, "could not remove an orphan");
        }
    }
    Ok(())
}

/// An instance whose node is lost (or that has none): mark it unknown, fail it over when the
/// settings allow, start it when it should run.
async fn unowned(ctx: &Ctx, s: &InstanceState, lost: Option<&str>) -> Result<(), StoreError> {
    let before = settle::current(s);
    let mut after = before.clone();
    if let Some(node) = lost {
        after.status = Status::Unknown;
        after.message = Some(format!("node '{node}' stopped heartbeating"));
        let failover = ctx.settings.reconcile.failover && s.instance.value.desired_state == DesiredState::Running;
        if failover {
            after.node = None;
            after.runtime.clear();
        }
        let reason = if failover { "failover" } else { "node-lost" };
        fail_stranded(ctx, s, node).await?;
        if after != before {
            ctx.store.observe(&s.instance.value.id, &after, &Cause { source: "reconciler", reason }, None).await?;
        }
        if !failover {
            return Ok(());
        }
    }
    let mut moved = s.clone();
    if let Some(o) = moved.observed.as_mut() {
        o.value = after.clone();
    }
    settle::repair(ctx, &moved, &after).await
}

/// Operations queued for a lost node will never run there: end them `failed` (`node_lost`), so
/// the instance is not left waiting on them.
async fn fail_stranded(ctx: &Ctx, s: &InstanceState, node: &str) -> Result<(), StoreError> {
    let queue = format!("{}{node}", draas_jobs::jobs::NODE_QUEUE_PREFIX);
    let (ops, _) = ctx.submitter.ops.list(Some(&s.instance.value.id), None, 20).await?;
    for mut op in ops.into_iter().filter(|o| o.queue == queue && o.status == OperationStatus::Queued) {
        op.status = OperationStatus::Failed;
        op.finished_at = Some(Utc::now());
        op.error = Some(draas_jobs::ops::OperationError {
            code: "node_lost".into(),
            message: format!("node '{node}' stopped heartbeating before the operation ran"),
            detail: None,
        });
        ctx.submitter.ops.transition(&op, &[OperationStatus::Queued]).await?;
    }
    Ok(())
}

/// Reconcile one instance now (status push, `POST …/reconcile`), under the caller's lease.
pub async fn one(ctx: &Ctx, s: &InstanceState, lease: &Lease) -> Result<(), StoreError> {
    let kind = s.instance.value.platform;
    let shared = match ctx.platform(kind) {
        Ok(p) if kind != Platform::Process => p.reachable().await.is_ok(),
        _ => false,
    };
    if probe::placed_on(s, &ctx.node) || shared {
        let p = probe::probe(ctx, s, &ctx.http).await;
        probe::record(ctx, &[(s.instance.value.id.clone(), p.clone())]).await?;
        settle_probed(ctx, s, &p, Some(lease), true).await?;
    }
    Ok(())
}
