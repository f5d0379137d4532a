//! No-op jobs end to end, bare apalis-redis beside draas: the same queue configuration
//! (`queue_config`: `lock_tasks(false)`), the same Redis, the same process, one producer
//! pushing jobs one after another (on a thread of its own, as an API replica is a process of
//! its own) and one worker of the same concurrency draining them. The two take turns for
//! `ROUNDS` rounds (each on keys of its own), and the medians are compared: one round of
//! either moves by a third from run to run on a 2-core machine.
//! draas' job is a reconcile of an instance whose platform this worker lacks: submit, then
//! apalis' fetch (which begins the operation) and acknowledgement (which ends it), nothing else.
//! Each half is also measured alone, as the end-to-end figure hides the slower of them: the
//! producer with no worker running, and the worker draining a queue filled before it started.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::Platform;
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::queue::submit::{Request, Submitter};
use draas_jobs::queue::{SHARED_QUEUE, queue_config};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_tests::TestRedis;

use super::{CONCURRENCY, create_instances, settings, store, worker, worker_ready};

const JOBS: usize = 5000;
/// Rounds of each side, taking turns.
const ROUNDS: usize = 5;

/// CPU seconds this process has used so far (user + system; clock ticks of 10 ms).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// What one round of one side measured.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    /// Jobs per second, first push to last acknowledgement.
    rate: f64,
    /// Redis' CPU (µs) and commands per job.
    redis_cpu: f64,
    redis_calls: f64,
    /// This process' CPU (µs) per job: producer and worker.
    own_cpu: f64,
}

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
    /// Per command since `before`, over `jobs` jobs: (name, calls per job, µs per job).
    fn per_command(&self, before: &Self, jobs: f64) -> impl Iterator<Item = (&str, f64, f64)> {
        self.commands.iter().map(move |(name, (calls, usec))| {
            let (c0, u0) = before.commands.get(name).copied().unwrap_or_default();
            (name.as_str(), (calls - c0) as f64 / jobs, (usec - u0) as f64 / jobs)
        })
    }

    /// Redis' CPU (µs) and commands per job since `before`, over `jobs` jobs.
    fn per_job(&self, before: &Self, jobs: f64) -> (f64, f64) {
        ((self.cpu - before.cpu) * 1e6 / jobs, self.per_command(before, jobs).map(|(_, calls, _)| calls).sum())
    }

    /// The eight commands that cost Redis most per job since `before`, costliest first.
    fn costliest(&self, before: &Self) -> Vec<(String, f64, f64)> {
        let mut out: Vec<_> = self
            .per_command(before, JOBS as f64)
            .filter(|(_, calls, _)| *calls > 0.0)
            .map(|(n, c, u)| (n.to_owned(), c, u))
            .collect();
        out.sort_by(|a, b| b.2.total_cmp(&a.2));
        out.truncate(8);
        out
    }
}

/// The bare side's queue configuration on `store` (queue `noop`).
fn bare_config(store: &Store) -> apalis_redis::Config {
    queue_config(store.keys(), "noop", Duration::from_secs(1), 15).batch_size(CONCURRENCY)
}

/// A bare apalis-redis worker with a no-op handler on `store`'s queue `noop`, running until aborted.
fn bare_worker(store: &Store) -> tokio::task::AbortHandle {
    let backend = RedisStorage::<u64>::new(store.connection()).with_config(bare_config(store));
    let worker = WorkerBuilder::new(format!("bare-{}", std::process::id()))
        .backend(backend.poll_with_interval(Duration::from_millis(10)))
        .concurrency(CONCURRENCY)
        .data(Arc::new(AtomicUsize::new(0)))
        .build(|_: u64, c: Data<Arc<AtomicUsize>>| async move {
            c.fetch_add(1, Ordering::Relaxed);
            Ok::<(), BoxDynError>(())
        });
    tokio::spawn(worker.run()).abort_handle()
}

/// `JOBS` pushes of apalis-redis into `store`'s queue `noop`, one after another.
async fn push_all(store: &Store) {
    let mut producer = RedisStorage::<u64>::new(store.connection()).with_config(bare_config(store));
    for i in 0..JOBS as u64 {
        producer.push(i).await.unwrap();
    }
}

/// A no-op operation (a reconcile) submitted on each of `ids`, one after another.
async fn submit_all(submitter: &Submitter, ids: &[InstanceId]) {
    for id in ids {
        submitter.submit(Request::new(OperationKind::Reconcile, Some(id), "bench", "bench")).await.unwrap();
    }
}

/// The draas worker's settings: polling as often as the bare worker (10 ms).
fn worker_settings(prefix: &str) -> Settings {
    let mut s = settings(prefix);
    s.worker.poll_interval_ms = 10;
    s
}

/// Bare apalis-redis: a no-op handler.
async fn bare(redis: &TestRedis, round: usize) -> Round {
    let prefix = format!("bare{round}");
    let store = store(redis, &prefix);
    let handle = bare_worker(&store);
    let producer_store = super::store(redis, &prefix);
    let before = redis_work(redis).await;
    let cpu = own_cpu();
    let start = Instant::now();
    on_own_thread(async move {
        push_all(&producer_store).await;
    });
    wait_done(&store, "noop", JOBS as u64).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let own_cpu = (own_cpu() - cpu) * 1e6 / JOBS as f64;
    let (redis_cpu, redis_calls) = redis_work(redis).await.per_job(&before, JOBS as f64);
    handle.abort();
    Round { rate, redis_cpu, redis_calls, own_cpu }
}

/// Through draas: the same number of no-op operations, submitted as the API submits them and
/// run by the real handler; the round trips of each side per job.
async fn through_draas(redis: &TestRedis, round: usize) -> (Round, f64, f64, Vec<(String, f64, f64)>) {
    let prefix = &format!("noop{round}");
    let (worker_store, watch) = (store(redis, prefix), store(redis, prefix));
    let ids = create_instances(&watch, JOBS, Platform::Kubernetes).await;
    // Connected lazily: on the producer's own thread, at its first submit.
    let api_store = store(redis, prefix);
    let submitter = Submitter::new(api_store.clone(), &settings(prefix));
    let stop = worker(worker_store.clone(), worker_settings(prefix));
    worker_ready(&worker_store).await;
    let (a0, w0) = (api_store.round_trips(), worker_store.round_trips());
    let before = redis_work(redis).await;
    let cpu = own_cpu();
    let start = Instant::now();
    on_own_thread(async move { submit_all(&submitter, &ids).await });
    wait_done(&watch, SHARED_QUEUE, JOBS as u64).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let own_cpu = (own_cpu() - cpu) * 1e6 / JOBS as f64;
    let after = redis_work(redis).await;
    let ((redis_cpu, redis_calls), costliest) = (after.per_job(&before, JOBS as f64), after.costliest(&before));
    let api = (api_store.round_trips() - a0) as f64 / JOBS as f64;
    let worker = (worker_store.round_trips() - w0) as f64 / JOBS as f64;
    let _ = stop.send(());
    (Round { rate, redis_cpu, redis_calls, own_cpu }, api, worker, costliest)
}

/// The producers alone, no worker running: `JOBS` submits of draas one after another, then
/// `JOBS` pushes of apalis-redis; each side's rate, and Redis' CPU (µs) and this process' CPU
/// (µs) per job. The end-to-end figures cannot beat these: one producer waits for each answer.
async fn producers_alone(redis: &TestRedis) -> [(f64, f64, f64); 2] {
    let watch = store(redis, "alone");
    let ids = create_instances(&watch, JOBS, Platform::Kubernetes).await;
    let submitter = Submitter::new(store(redis, "alone"), &settings("alone"));
    let (before, cpu, start) = (redis_work(redis).await, own_cpu(), Instant::now());
    submit_all(&submitter, &ids).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let draas = (rate, redis_work(redis).await.per_job(&before, JOBS as f64).0, (own_cpu() - cpu) * 1e6 / JOBS as f64);
    let bare = store(redis, "alone-bare");
    let (before, cpu, start) = (redis_work(redis).await, own_cpu(), Instant::now());
    push_all(&bare).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    [draas, (rate, redis_work(redis).await.per_job(&before, JOBS as f64).0, (own_cpu() - cpu) * 1e6 / JOBS as f64)]
}

/// The worker alone: `queue` of `store` holds `JOBS` jobs and a worker was just started on it.
/// Measured from the tenth job done to the last, so the worker's start-up is not counted.
async fn drained(redis: &TestRedis, store: &Store, queue: &str) -> Round {
    wait_done(store, queue, JOBS as u64 / 10).await;
    let (before, cpu, start) = (redis_work(redis).await, own_cpu(), Instant::now());
    let first = store.queues().done(queue).await.unwrap_or(0);
    wait_done(store, queue, JOBS as u64).await;
    let jobs = (JOBS as u64).saturating_sub(first).max(1) as f64;
    let rate = jobs / start.elapsed().as_secs_f64();
    let own_cpu = (own_cpu() - cpu) * 1e6 / jobs;
    let (redis_cpu, redis_calls) = redis_work(redis).await.per_job(&before, jobs);
    Round { rate, redis_cpu, redis_calls, own_cpu }
}

/// The workers alone, bare apalis-redis: `JOBS` pushed first, then drained.
async fn bare_drain(redis: &TestRedis, round: usize) -> Round {
    let store = store(redis, &format!("bare-drain{round}"));
    push_all(&store).await;
    let handle = bare_worker(&store);
    let r = drained(redis, &store, "noop").await;
    handle.abort();
    r
}

/// The workers alone, draas: `JOBS` operations submitted first, then run by the real handler.
async fn draas_drain(redis: &TestRedis, round: usize) -> Round {
    let prefix = &format!("drain{round}");
    let watch = store(redis, prefix);
    let ids = create_instances(&watch, JOBS, Platform::Kubernetes).await;
    let submitter = Submitter::new(store(redis, prefix), &settings(prefix));
    submit_all(&submitter, &ids).await;
    let stop = worker(store(redis, prefix), worker_settings(prefix));
    let r = drained(redis, &watch, SHARED_QUEUE).await;
    let _ = stop.send(());
    r
}

/// The median of `rounds` by `f`.
fn median(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    let mut v: Vec<f64> = rounds.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Print both, side by side.
pub async fn figures(redis: &TestRedis) {
    let (mut bares, mut draases) = (Vec::new(), Vec::new());
    let (mut api, mut worker, mut costliest) = (0.0, 0.0, Vec::new());
    for round in 0..ROUNDS {
        bares.push(bare(redis, round).await);
        let d;
        (d, api, worker, costliest) = through_draas(redis, round).await;
        draases.push(d);
    }
    let rates = |r: &[Round]| r.iter().map(|r| format!("{:.0}", r.rate)).collect::<Vec<_>>().join(", ");
    let (bare, draas) = (median(&bares, |r| r.rate), median(&draases, |r| r.rate));
    println!(
        "no-op jobs end to end ({JOBS} jobs, one producer, one worker of concurrency {CONCURRENCY}; \
         {ROUNDS} rounds each, taking turns; medians):"
    );
    println!("  bare apalis-redis:  {bare:.0} jobs/s (rounds: {})", rates(&bares));
    println!(
        "  through draas:      {draas:.0} jobs/s (rounds: {}), {:.0} % of bare",
        rates(&draases),
        draas / bare * 100.0
    );
    println!(
        "  draas' Redis round trips per job: API {api:.2} (the submit), worker {worker:.2} (apalis' fetch and \
         acknowledgement, which begin and end the operations, shared by the jobs of a batch)"
    );
    for (side, r) in [("bare", &bares), ("draas", &draases)] {
        println!(
            "  CPU per job, {side:5}: Redis {:.0} µs ({:.1} commands, those scripts run included), this process \
             (producer and worker) {:.0} µs",
            median(r, |r| r.redis_cpu),
            median(r, |r| r.redis_calls),
            median(r, |r| r.own_cpu)
        );
    }
    let [(d, d_redis, d_own), (b, b_redis, b_own)] = producers_alone(redis).await;
    println!(
        "  the producer alone (no worker; one round): draas' submit {d:.0}/s (Redis {d_redis:.0} µs, this process \
         {d_own:.0} µs per job), apalis-redis' push {b:.0}/s (Redis {b_redis:.0} µs, this process {b_own:.0} µs): {:.0} %",
        d / b * 100.0
    );
    let (mut bare_drains, mut draas_drains) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        bare_drains.push(bare_drain(redis, round).await);
        draas_drains.push(draas_drain(redis, round).await);
    }
    let (b, d) = (median(&bare_drains, |r| r.rate), median(&draas_drains, |r| r.rate));
    println!(
        "  the worker alone (the queue filled first, then drained; {ROUNDS} rounds each, medians): bare \
         {b:.0} jobs/s (rounds: {}), draas {d:.0} jobs/s (rounds: {}): {:.0} %",
        rates(&bare_drains),
        rates(&draas_drains),
        d / b * 100.0
    );
    for (side, r) in [("bare", &bare_drains), ("draas", &draas_drains)] {
        println!(
            "    worker CPU per job, {side:5}: Redis {:.0} µs ({:.1} commands), this process {:.0} µs",
            median(r, |r| r.redis_cpu),
            median(r, |r| r.redis_calls),
            median(r, |r| r.own_cpu)
        );
    }
    let top: Vec<_> = costliest.iter().map(|(name, calls, us)| format!("{name} {calls:.1}× {us:.1} µs")).collect();
    println!(
        "  draas' costliest commands per job (last round; a script's time includes its commands'): {}",
        top.join(", ")
    );
}
