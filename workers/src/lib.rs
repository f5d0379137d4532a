//! draas workers: stateless processes that run lifecycle jobs from the Redis queues (apalis),
//! act on platforms, and heartbeat their node. Any number may run, on any number of hosts.

pub mod actions;
pub mod context;
pub mod handler;
mod metrics_server;
pub mod platform;
pub mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::jobs::{
    InstanceJob, NODE_QUEUE_PREFIX, RECONCILE_NODE_QUEUE_PREFIX, RECONCILE_QUEUE, ReconcileJob, SHARED_QUEUE,
    queue_config,
};
use draas_jobs::nodes::check_node_id;
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use rand::Rng;

pub use context::Ctx;

/// Node heartbeats a worker may miss before apalis hands its in-flight jobs to another worker.
const MISSED_HEARTBEATS: u64 = 3;

/// apalis-redis moves due jobs to a queue's list on the worker's apalis heartbeat, so an idle
/// worker picks a new job up only then, whatever the poll interval (measured: 3.3 s with a 5 s
/// heartbeat). Its apalis heartbeat is therefore at most 1 s; the window before its jobs are
/// handed to another worker stays `MISSED_HEARTBEATS` node heartbeats. (250 ms was measured
/// too: idle pickup 24–99 ms, but every heartbeat also runs apalis' orphan scan, and under the
/// reliability suite's load the workers fell behind.)
const APALIS_HEARTBEAT: Duration = Duration::from_secs(1);

/// The apalis heartbeat and how many of them a worker may miss.
fn apalis_heartbeat(w: &draas_jobs::settings::WorkerSettings) -> (Duration, usize) {
    let node = Duration::from_secs(w.heartbeat_secs.max(1));
    let beat = APALIS_HEARTBEAT.min(node);
    let missed = (node * u32::try_from(MISSED_HEARTBEATS).unwrap_or(3)).as_millis().div_ceil(beat.as_millis()).max(1);
    (beat, usize::try_from(missed).unwrap_or(usize::MAX))
}

/// Why the worker could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Invalid(String),
    #[error("worker runtime failed: {0}")]
    Runtime(String),
}

/// Run a worker until `shutdown` resolves; in-flight jobs finish (or go back to the queue).
pub async fn run(
    store: Store,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let node = settings.node_id();
    check_node_id(&node).map_err(WorkerError::Invalid)?;
    let suffix: u32 = rand::rng().random();
    let worker = format!("{node}-{suffix:08x}");
    let mut ctx = Ctx::new(store, settings, node.clone(), worker.clone());
    if let Some(k) = kubernetes(&ctx.settings).await
        && let Some(c) = Arc::get_mut(&mut ctx)
    {
        c.shared.push(k);
    }
    std::fs::create_dir_all(&ctx.settings.data_dir).map_err(|e| WorkerError::Invalid(format!("data dir: {e}")))?;
    let beat = tokio::spawn(heartbeat(ctx.clone()));
    let ticks = tokio::spawn(reconcile::produce_ticks(ctx.clone()));
    let metrics = ctx.settings.worker.metrics_listen.map(|addr| {
        let s = &ctx.settings;
        let auth = (!s.api.metrics_public).then(|| draas_jobs::auth::Auth::new(&s.api_tokens, &s.admin_tokens, s.dev));
        let store = ctx.store.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics_server::serve(addr, store, auth).await {
                tracing::error!(%addr, error = %e, "worker metrics listener failed");
            }
        })
    });
    tokio::spawn(report_platforms(ctx.clone()));
    let deaths = tokio::spawn(reconcile::events::follow(ctx.clone()));
    tracing::info!(%node, %worker, "worker started");
    let mut monitor = Monitor::new();
    for queue in [SHARED_QUEUE.to_owned(), format!("{NODE_QUEUE_PREFIX}{node}")] {
        let ctx = ctx.clone();
        monitor = monitor.register(move |restarts| {
            let w = &ctx.settings.worker;
            WorkerBuilder::new(format!("{}-{queue}-{restarts}", ctx.worker))
                .backend(backend(&ctx, &queue))
                .concurrency(w.concurrency.max(1))
                .data(ctx.clone())
                .build(handler::handle)
        });
    }
    for queue in [RECONCILE_QUEUE.to_owned(), format!("{RECONCILE_NODE_QUEUE_PREFIX}{node}")] {
        let ctx = ctx.clone();
        monitor = monitor.register(move |restarts| {
            WorkerBuilder::new(format!("{}-{queue}-{restarts}", ctx.worker))
                .backend(reconcile_backend(&ctx, &queue))
                .concurrency(1)
                .data(ctx.clone())
                .build(reconcile::handle)
        });
    }
    let grace = Duration::from_secs(ctx.settings.worker.attempt_timeout_secs + 5);
    let result = monitor
        .should_restart(|_, e| {
            tracing::warn!(error = %e, "worker stopped; restarting it");
            true
        })
        .shutdown_timeout(grace)
        .run_with_signal(async move {
            shutdown.await;
            Ok(())
        })
        .await;
    beat.abort();
    ticks.abort();
    if let Some(m) = metrics {
        m.abort();
    }
    deaths.abort();
    tracing::info!("worker stopped");
    result.map_err(|e| WorkerError::Runtime(e.to_string()))
}

/// The apalis backend of `queue`: explicit name, no apalis locking (our leases do that),
/// bounded pickup latency.
fn backend(ctx: &Ctx, queue: &str) -> PollWith<RedisStorage<InstanceJob>, IntervalStrategy> {
    let w = &ctx.settings.worker;
    let (hb, missed) = apalis_heartbeat(w);
    let config = queue_config(ctx.store.keys(), queue, hb, missed).batch_size(w.concurrency.max(1));
    RedisStorage::<InstanceJob>::new(ctx.store.connection())
        .with_config(config)
        .poll_with_interval(Duration::from_millis(w.poll_interval_ms.max(10)))
}

/// The apalis backend of a reconcile queue.
fn reconcile_backend(ctx: &Ctx, queue: &str) -> PollWith<RedisStorage<ReconcileJob>, IntervalStrategy> {
    let w = &ctx.settings.worker;
    let (hb, missed) = apalis_heartbeat(w);
    RedisStorage::<ReconcileJob>::new(ctx.store.connection())
        .with_config(queue_config(ctx.store.keys(), queue, hb, missed).batch_size(1))
        .poll_with_interval(Duration::from_millis(w.poll_interval_ms.max(10)))
}

/// The Kubernetes platform when the settings enable it. A cluster this worker cannot use is
/// logged, not fatal: its jobs then fail with `platform_unavailable`.
async fn kubernetes(settings: &Settings) -> Option<Arc<dyn platform::Platform>> {
    if !settings.kubernetes.enabled {
        return None;
    }
    match platform::kubernetes::KubernetesPlatform::connect(&settings.kubernetes, &settings.key_prefix).await {
        Ok(k) => {
            tracing::info!(namespace = %settings.kubernetes.namespace, "kubernetes platform enabled");
            Some(Arc::new(k))
        }
        Err(e) => {
            tracing::error!(error = %e, "kubernetes platform unavailable on this worker");
            None
        }
    }
}

/// Say at start-up which shared platforms answer (the platform logs it); one that does not is
/// only a warning: it is tried again on every use.
async fn report_platforms(ctx: Arc<Ctx>) {
    for p in &ctx.shared {
        let _ = p.reachable().await;
    }
}

/// Keep this node alive in Redis and its instance logs under their cap.
async fn heartbeat(ctx: Arc<Ctx>) {
    let period = Duration::from_secs(ctx.settings.worker.heartbeat_secs.max(1));
    loop {
        if let Err(e) = ctx.nodes.heartbeat(&ctx.node, ctx.heartbeat_ttl()).await {
            tracing::warn!(error = %e, "node heartbeat failed");
            if let Ok(mut t) = ctx.heartbeat_failed_at.lock() {
                *t = Some(std::time::Instant::now());
            }
        }
        ctx.process.rotate_logs();
        tokio::time::sleep(period).await;
    }
}
