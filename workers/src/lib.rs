//! draas workers: stateless processes that run lifecycle jobs from the Redis queues (apalis),
//! act on platforms, and heartbeat their node. Any number may run, on any number of hosts.

pub mod actions;
pub mod context;
pub mod handler;
mod idle;
pub mod live;
mod logs;
mod metrics_server;
pub mod platform;
pub mod reconcile;
pub mod secrets;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::domain::ids::check_node_id;
use draas_jobs::queue::backend::{Bell, LifecycleBackend, Serving};
use draas_jobs::queue::{
    RECONCILE_NODE_QUEUE_PREFIX, RECONCILE_QUEUE, ReconcileJob, SHARED_QUEUE, node_queue, queue_config,
};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_jobs::store::deliveries::Holder;
use rand::Rng;

pub use context::Ctx;
use wake::Wakers;

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

/// This deployment's name and id, asking Redis until it answers.
async fn deployment(store: &Store, settings: &Settings) -> platform::Deployment {
    let mut pause = Duration::from_millis(100);
    loop {
        match store.deployment_id().await {
            Ok(id) => return platform::Deployment { name: settings.key_prefix.clone(), id },
            Err(e) => tracing::warn!(error = %e, "cannot read the deployment id; retrying"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Run a worker until `shutdown` resolves, or until no job ran for `worker.exit_when_idle_secs`
/// (when set); in-flight jobs finish (or go back to the queue) within the worker's shutdown
/// grace.
pub async fn run(
    store: Store,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let node = settings.node_id();
    check_node_id(&node).map_err(WorkerError::Invalid)?;
    let suffix: u32 = rand::rng().random();
    let worker = format!("{node}-{suffix:08x}");
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| WorkerError::Invalid(format!("data dir: {e}")))?;
    let mut shutdown = Box::pin(shutdown);
    let deployment = tokio::select! {
        d = deployment(&store, &settings) => d,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(deployment = %deployment.name, id = %deployment.id, "deployment");
    let ctx = Ctx::new(store, settings, node.clone(), worker.clone(), deployment).await;
    let mut tasks = vec![
        tokio::spawn(heartbeat(ctx.clone())),
        tokio::spawn(draas_jobs::queue::ticks::produce(
            ctx.store.clone(),
            ctx.settings.reconcile.interval_secs,
            Some(node.clone()),
        )),
        tokio::spawn(report_platforms(ctx.clone())),
        tokio::spawn(reconcile::events::follow(ctx.clone())),
        tokio::spawn(logs::ship(ctx.clone())),
    ];
    if let Some(addr) = ctx.settings.worker.metrics_listen {
        let s = &ctx.settings;
        let auth = (!s.api.metrics_public).then(|| draas_jobs::auth::Auth::from_settings(s));
        let store = ctx.store.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = metrics_server::serve(addr, store, auth).await {
                tracing::error!(%addr, error = %e, "worker metrics listener failed");
            }
        }));
    }
    let job_queues = [SHARED_QUEUE.to_owned(), node_queue(&node)];
    let pass_queues = [RECONCILE_QUEUE.to_owned(), format!("{RECONCILE_NODE_QUEUE_PREFIX}{node}")];
    let wakers = Wakers::start(&ctx.store, &[job_queues.clone(), pass_queues.clone()].concat());
    tracing::info!(%node, %worker, "worker started");
    let mut monitor = Monitor::new();
    for queue in job_queues {
        let (ctx, wakers) = (ctx.clone(), wakers.clone());
        monitor = monitor.register(move |restarts| {
            let bell = Bell::default();
            WorkerBuilder::new(format!("{}-{queue}-{restarts}", ctx.worker))
                .backend(lifecycle_backend(&ctx, &wakers, &queue, bell.clone()))
                .concurrency(ctx.settings.worker.concurrency.max(1))
                .data(ctx.clone())
                .data(bell)
                .build(handler::handle)
        });
    }
    for queue in pass_queues {
        let (ctx, wakers) = (ctx.clone(), wakers.clone());
        monitor = monitor.register(move |restarts| {
            WorkerBuilder::new(format!("{}-{queue}-{restarts}", ctx.worker))
                .backend(backend::<ReconcileJob>(&ctx, &wakers, &queue, 1))
                .concurrency(1)
                .data(ctx.clone())
                .build(reconcile::handle)
        });
    }
    let grace = Duration::from_secs(ctx.settings.shutdown_grace_secs.max(1));
    let idle = idle_exit(&ctx);
    let result = monitor
        .should_restart(|_, e| {
            tracing::warn!(error = %e, "worker stopped; restarting it");
            true
        })
        .shutdown_timeout(grace)
        .run_with_signal(async move {
            tokio::select! {
                () = shutdown => {}
                () = idle => {}
            }
            Ok(())
        })
        .await;
    for t in tasks {
        t.abort();
    }
    tracing::info!("worker stopped");
    result.map_err(|e| WorkerError::Runtime(e.to_string()))
}

/// Resolves when the worker may leave by itself: idle for `worker.exit_when_idle_secs` with no
/// drasi-server of its deployment on this host (never when the setting is 0).
fn idle_exit(ctx: &Arc<Ctx>) -> impl std::future::Future<Output = ()> + use<> {
    let hosts = ctx.clone();
    idle::exhausted(ctx.activity.clone(), Duration::from_secs(ctx.settings.worker.exit_when_idle_secs), move || {
        !hosts.process.deployment_processes().is_empty()
    })
}

/// The apalis backend of `queue`: explicit name, no apalis locking (our leases do that),
/// fetched as soon as a push announces work, and polled besides.
fn backend<T>(ctx: &Ctx, wakers: &Wakers, queue: &str, batch: usize) -> PollWith<RedisStorage<T>, Strategy> {
    let w = &ctx.settings.worker;
    let (hb, missed) = apalis_heartbeat(w);
    let config = queue_config(ctx.store.keys(), queue, hb, missed).batch_size(batch);
    RedisStorage::<T>::new(ctx.store.connection())
        .with_config(config)
        .poll_with_strategy(poll_strategy(ctx, wakers, queue))
}

/// How a worker polls `queue`: at once when a push announces work, and every
/// `worker.poll_interval_ms` besides.
fn poll_strategy(ctx: &Ctx, wakers: &Wakers, queue: &str) -> Strategy {
    let interval = Duration::from_millis(ctx.settings.worker.poll_interval_ms.max(10));
    Strategy::new().stream(wakers.stream(queue)).interval(interval)
}

/// The backend of lifecycle queue `queue` (see `draas_jobs::queue::backend`): apalis' fetch
/// begins the operations it takes and its acknowledgement ends them; woken like `backend`.
fn lifecycle_backend(ctx: &Ctx, wakers: &Wakers, queue: &str, bell: Bell) -> PollWith<LifecycleBackend, Strategy> {
    let w = &ctx.settings.worker;
    let (heartbeat, missed) = apalis_heartbeat(w);
    let serving = Serving {
        queue: queue.to_owned(),
        holder: Holder { name: ctx.worker.clone(), node: ctx.node.clone(), lease_ttl: ctx.lease_ttl() },
        capacity: w.concurrency.max(1),
        heartbeat,
        missed_heartbeats: u32::try_from(missed).unwrap_or(u32::MAX),
    };
    PollWith::new(LifecycleBackend::new(ctx.store.clone(), serving, bell), poll_strategy(ctx, wakers, queue))
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
        if let Err(e) = ctx.store.nodes().heartbeat(&ctx.node, ctx.heartbeat_ttl()).await {
            tracing::warn!(error = %e, "node heartbeat failed");
            ctx.heartbeat_failed();
        }
        publish_catalogs(&ctx).await;
        ctx.process.rotate_logs();
        tokio::time::sleep(period).await;
    }
}

/// Publish what this worker's platforms can run, for the API's checks of configurations.
async fn publish_catalogs(ctx: &Ctx) {
    use draas_jobs::domain::model::Platform as Kind;
    use draas_jobs::domain::plugins::Scope;
    let platforms =
        std::iter::once(&ctx.process as &dyn platform::Platform).chain(ctx.shared.iter().map(|p| p.as_ref()));
    for p in platforms {
        let Some(catalog) = p.catalog() else { continue };
        let scope = match p.kind() {
            Kind::Process => Scope::Process(ctx.node.clone()),
            Kind::Docker => Scope::Docker(ctx.node.clone()),
            Kind::Kubernetes => Scope::Kubernetes,
        };
        if let Err(e) = ctx.store.plugins().publish(&scope, &catalog).await {
            tracing::debug!(error = %e, "could not publish the plugin catalog");
        }
    }
}
