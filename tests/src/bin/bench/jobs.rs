//! No-op jobs end to end, bare apalis-redis beside draas: the same queue configuration
//! (`queue_config`: `lock_tasks(false)`), the same Redis, the same process, one producer
//! pushing jobs one after another (on a thread of its own, as an API replica is a process of
//! its own) and one worker of the same concurrency draining them.
//! draas' job is a reconcile of an instance whose platform this worker lacks: submit, pickup,
//! `begin`, `finish`, nothing else.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::domain::model::Platform;
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::queue::submit::{Request, Submitter};
use draas_jobs::queue::{SHARED_QUEUE, queue_config};
use draas_tests::TestRedis;

use super::{CONCURRENCY, create_instances, settings, store, worker, worker_ready};

const JOBS: usize = 5000;

async fn wait_done(store: &draas_jobs::store::Store, queue: &str, n: u64) {
    while store.queues().done(queue).await.unwrap_or(0) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Run `work` to its end on a thread and runtime of its own (started now, not waited for).
fn on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(work);
    });
}

/// What Redis itself has spent so far (its `INFO`): CPU seconds (user + system), and per
/// command its calls and µs, those that scripts run included (a script's time includes theirs).
struct RedisWork {
    cpu: f64,
    commands: HashMap<String, (u64, u64)>,
}

async fn redis_work(redis: &TestRedis) -> RedisWork {
    let mut c = store(redis, "info").connection();
    let info: String = redis::cmd("INFO").arg("all").query_async(&mut c).await.unwrap();
    let field = |line: &str, key: &str| line.strip_prefix(key).map(|v| v.trim().parse::<f64>().unwrap_or(0.0));
    let cpu: f64 = info.lines().filter_map(|l| field(l, "used_cpu_user:").or_else(|| field(l, "used_cpu_sys:"))).sum();
    let number = |stats: &str, key: &str| stats.split(key).nth(1)?.split(',').next()?.parse::<u64>().ok();
    let commands = info
        .lines()
        .filter_map(|l| l.strip_prefix("cmdstat_")?.split_once(':'))
        .filter(|(name, _)| *name != "info")
        .filter_map(|(name, stats)| Some((name.to_owned(), (number(stats, "calls=")?, number(stats, "usec=")?))))
        .collect();
    RedisWork { cpu, commands }
}

impl RedisWork {
    /// Per command since `before`: (name, calls per job, µs per job).
    fn per_command(&self, before: &Self) -> impl Iterator<Item = (&str, f64, f64)> {
        self.commands.iter().map(|(name, (calls, usec))| {
            let (c0, u0) = before.commands.get(name).copied().unwrap_or_default();
            (name.as_str(), (calls - c0) as f64 / JOBS as f64, (usec - u0) as f64 / JOBS as f64)
        })
    }

    /// Redis' CPU (µs) and commands per job since `before`.
    fn per_job(&self, before: &Self) -> (f64, f64) {
        ((self.cpu - before.cpu) * 1e6 / JOBS as f64, self.per_command(before).map(|(_, calls, _)| calls).sum())
    }

    /// The eight commands that cost Redis most per job since `before`, costliest first.
    fn costliest(&self, before: &Self) -> Vec<(String, f64, f64)> {
        let mut out: Vec<_> = self
            .per_command(before)
            .filter(|(_, calls, _)| *calls > 0.0)
            .map(|(n, c, u)| (n.to_owned(), c, u))
            .collect();
        out.sort_by(|a, b| b.2.total_cmp(&a.2));
        out.truncate(8);
        out
    }
}

/// Bare apalis-redis: a no-op handler.
async fn bare(redis: &TestRedis) -> (f64, (f64, f64)) {
    let store = store(redis, "bare");
    let config = queue_config(store.keys(), "noop", Duration::from_secs(1), 15).batch_size(CONCURRENCY);
    let backend = RedisStorage::<u64>::new(store.connection()).with_config(config.clone());
    let counter = Arc::new(AtomicUsize::new(0));
    let worker = WorkerBuilder::new(format!("bare-{}", std::process::id()))
        .backend(backend.poll_with_interval(Duration::from_millis(10)))
        .concurrency(CONCURRENCY)
        .data(counter)
        .build(|_: u64, c: Data<Arc<AtomicUsize>>| async move {
            c.fetch_add(1, Ordering::Relaxed);
            Ok::<(), BoxDynError>(())
        });
    let handle = tokio::spawn(worker.run());
    let producer_store = super::store(redis, "bare");
    let before = redis_work(redis).await;
    let start = Instant::now();
    on_own_thread(async move {
        let mut producer = RedisStorage::<u64>::new(producer_store.connection()).with_config(config);
        for i in 0..JOBS as u64 {
            producer.push(i).await.unwrap();
        }
    });
    wait_done(&store, "noop", JOBS as u64).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let work = redis_work(redis).await.per_job(&before);
    handle.abort();
    (rate, work)
}

/// Through draas: the same number of no-op operations, submitted as the API submits them and
/// run by the real handler; the round trips of each side per job.
async fn through_draas(redis: &TestRedis) -> (f64, f64, f64, (f64, f64), Vec<(String, f64, f64)>) {
    let prefix = "noop";
    let (worker_store, watch) = (store(redis, prefix), store(redis, prefix));
    let ids = create_instances(&watch, JOBS, Platform::Kubernetes).await;
    // Connected lazily: on the producer's own thread, at its first submit.
    let api_store = store(redis, prefix);
    let submitter = Submitter::new(api_store.clone(), &settings(prefix));
    let mut s = settings(prefix);
    s.worker.poll_interval_ms = 10;
    let stop = worker(worker_store.clone(), s);
    worker_ready(&worker_store).await;
    let (a0, w0) = (api_store.round_trips(), worker_store.round_trips());
    let before = redis_work(redis).await;
    let start = Instant::now();
    on_own_thread(async move {
        for id in &ids {
            submitter.submit(Request::new(OperationKind::Reconcile, Some(id), "bench", "bench")).await.unwrap();
        }
    });
    wait_done(&watch, SHARED_QUEUE, JOBS as u64).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let after = redis_work(redis).await;
    let (work, costliest) = (after.per_job(&before), after.costliest(&before));
    let api = (api_store.round_trips() - a0) as f64 / JOBS as f64;
    let worker = (worker_store.round_trips() - w0) as f64 / JOBS as f64;
    let _ = stop.send(());
    (rate, api, worker, work, costliest)
}

/// Print both, side by side.
pub async fn figures(redis: &TestRedis) {
    let (bare, (bare_cpu, bare_calls)) = bare(redis).await;
    let (draas, api, worker, (cpu, calls), costliest) = through_draas(redis).await;
    println!("no-op jobs end to end ({JOBS} jobs, one producer, one worker of concurrency {CONCURRENCY}):");
    println!("  bare apalis-redis:  {bare:.0} jobs/s");
    println!("  through draas:      {draas:.0} jobs/s ({:.0} % of bare)", draas / bare * 100.0);
    println!("  draas' own Redis round trips per job (apalis' fetch and ack aside): API {api:.2}, worker {worker:.2}");
    println!(
        "  Redis' own work per job (commands scripts run included): bare {bare_cpu:.0} µs CPU, {bare_calls:.1} commands; \
         draas {cpu:.0} µs CPU, {calls:.1} commands"
    );
    let top: Vec<_> = costliest.iter().map(|(name, calls, us)| format!("{name} {calls:.1}× {us:.1} µs")).collect();
    println!("  draas' costliest commands per job (a script's time includes its commands'): {}", top.join(", "));
}
