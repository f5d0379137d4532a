//! `draas-scale`: horizontal scaling shown (not a test; it prints figures and whether every job
//! ran exactly once, and exits non-zero when one did not).
//!
//! Run: `cargo build -p draas -p drasi-server-standin -p draas-tests && target/debug/draas-scale`
//! (add `--release` to all three for release figures; needs redis-server).
//!
//! For 1, 2 and 4 `draas worker` processes on one Redis, each with `SCALE_CONCURRENCY` jobs at
//! once (default 1, so a worker's capacity is fixed and only the number of workers changes), it
//! submits through one `draas api` the same batch of lifecycle operations on `SCALE_INSTANCES`
//! (default 200) stand-in instances:
//! 1. `stop` on instances never started: no platform work, the job's own cost (lease, records);
//! 2. `start` on all of them (a real stand-in process each: validate, spawn, health), then
//!    `stop` on all of them (SIGINT, wait for the exit).
//!
//! The workers share one node id: one host running several worker processes, sharing its node
//! queue and port pool. Exactly once is counted two ways: every operation's final record
//! (succeeded, on attempt 1, and which worker ran it), and the workers' own logs, which hold
//! one "job received" line per delivery of a job to the handler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use draas_jobs::domain::ids::OperationId;
use draas_jobs::domain::operation::OperationStatus;
use draas_jobs::store::Store;
use draas_tests::{DraasProcess, TestRedis, kill_processes_under};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

const WORKER_COUNTS: [usize; 3] = [1, 2, 4];
/// Submissions in flight at once.
const SUBMITTERS: usize = 16;
const PORTS: (u16, u16) = (45000, 45999);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// One worker count's world: its own key prefix, API, workers and data dir.
struct Round {
    api: DraasProcess,
    workers: Vec<DraasProcess>,
    store: Store,
    client: reqwest::Client,
    data: tempfile::TempDir,
}

impl Round {
    fn start(redis: &TestRedis, workers: usize, concurrency: usize) -> Self {
        let prefix = format!("scale{workers}");
        let base = [("DRAAS_REDIS_URL", redis.url.as_str()), ("DRAAS_KEY_PREFIX", prefix.as_str())];
        let mut api_env = env(&base);
        api_env.extend(env(&[("DRAAS_DEV", "true"), ("DRAAS_LISTEN", "127.0.0.1:0"), ("RUST_LOG", "warn,draas=info")]));
        let api = DraasProcess::start(&["api"], &api_env);
        let data = tempfile::tempdir().unwrap();
        let standin = draas_tests::bin("drasi-server-standin");
        let (concurrency, ports) = (concurrency.to_string(), (PORTS.0.to_string(), PORTS.1.to_string()));
        let mut worker_env = env(&base);
        worker_env.extend(env(&[
            ("DRAAS_NODE_ID", "scale"),
            ("DRAAS_DATA_DIR", data.path().to_str().unwrap()),
            ("DRAAS_PROCESS_EXECUTABLE", standin.to_str().unwrap()),
            ("DRAAS_PROCESS__PORT_RANGE_START", &ports.0),
            ("DRAAS_PROCESS__PORT_RANGE_END", &ports.1),
            ("DRAAS_WORKER__CONCURRENCY", &concurrency),
            ("DRAAS_WORKER__POLL_INTERVAL_MS", "20"),
            // apalis 1.0 may leave an idle worker unpolled until its next heartbeat: a queue's
            // first job after a quiet spell can wait up to this long (the default is 5 s).
            ("DRAAS_WORKER__HEARTBEAT_SECS", "1"),
            // One pass an hour: nothing but the submitted operations runs while measuring.
            ("DRAAS_RECONCILE__INTERVAL_SECS", "3600"),
            ("RUST_LOG", "warn,draas_workers=info,draas_workers::handler=debug"),
        ]));
        let workers = (0..workers).map(|_| DraasProcess::start(&["worker"], &worker_env)).collect();
        let store = Store::open(&SecretString::from(redis.url.clone()), &prefix).unwrap();
        Self { api, workers, store, client: reqwest::Client::new(), data }
    }

    async fn post(&self, path: String, body: Value) -> Value {
        let res = self.client.post(format!("{}{path}", self.api.base_url)).json(&body).send().await.unwrap();
        assert!(res.status().is_success(), "POST {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// Create `n` instances named `<prefix>-<i>` with an empty configuration; their ids.
    async fn create_named(&self, prefix: &str, n: usize) -> Vec<String> {
        let config = json!({"sources": [], "queries": [], "reactions": []});
        futures::stream::iter(0..n)
            .map(|i| {
                self.post(
                    "/api/v1/instances".to_owned(),
                    json!({"name": format!("{prefix}-{i}"), "config": config.clone()}),
                )
            })
            .buffer_unordered(SUBMITTERS)
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
            .await
    }

    /// Submit `action` on every instance and wait until every operation has ended; the
    /// operation ids and the time from the first submit to the last end.
    async fn run(&self, ids: &[String], action: &str) -> (Vec<OperationId>, Duration) {
        let start = Instant::now();
        let ops: Vec<OperationId> = futures::stream::iter(ids)
            .map(|id| self.post(format!("/api/v1/instances/{id}/{action}"), Value::Null))
            .buffer_unordered(SUBMITTERS)
            .map(|op| op["id"].as_str().unwrap().parse().unwrap())
            .collect()
            .await;
        let deadline = start + Duration::from_secs(600);
        while !self.all_ended(&ops).await {
            assert!(Instant::now() < deadline, "{action}: operations did not end within 10 minutes");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ops, start.elapsed())
    }

    async fn all_ended(&self, ops: &[OperationId]) -> bool {
        for id in ops {
            if !self.store.operations().get(id).await.unwrap().is_some_and(|o| o.status.is_final()) {
                return false;
            }
        }
        true
    }

    /// Deliveries of each operation's job to a handler, from every worker's log.
    fn deliveries(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for w in &self.workers {
            for (op, n) in draas_tests::autoscale::deliveries_in(&w.log.lock().unwrap()) {
                *out.entry(op).or_default() += n;
            }
        }
        out
    }
}

/// What the records and logs say about a batch of operations.
#[derive(Default)]
struct Tally {
    ops: usize,
    succeeded: usize,
    first_attempt: usize,
    delivered_once: usize,
    extra_deliveries: usize,
    by_worker: BTreeMap<String, usize>,
    /// Submit → pickup (operation `createdAt` → `startedAt`), sorted.
    pickups: Vec<Duration>,
    /// Pickup → end (`startedAt` → `finishedAt`), sorted.
    runs: Vec<Duration>,
}

impl Tally {
    async fn of(round: &Round, ops: &[OperationId]) -> Self {
        let deliveries = round.deliveries();
        let mut t = Tally { ops: ops.len(), ..Default::default() };
        for id in ops {
            let op = round.store.operations().get(id).await.unwrap().expect("operation record");
            t.succeeded += usize::from(op.status == OperationStatus::Succeeded);
            t.first_attempt += usize::from(op.attempt == 1);
            *t.by_worker.entry(op.worker.unwrap_or_default()).or_default() += 1;
            let started = op.started_at.unwrap_or(op.created_at);
            t.pickups.push((started - op.created_at).to_std().unwrap_or_default());
            t.runs.push((op.finished_at.unwrap_or(started) - started).to_std().unwrap_or_default());
            let n = deliveries.get(id.as_str()).copied().unwrap_or(0);
            t.delivered_once += usize::from(n == 1);
            t.extra_deliveries += n.saturating_sub(1);
        }
        t.pickups.sort();
        t.runs.sort();
        t
    }

    fn exactly_once(&self) -> bool {
        self.succeeded == self.ops && self.first_attempt == self.ops && self.delivered_once == self.ops
    }

    fn line(&self) -> String {
        let spread: Vec<String> = self.by_worker.values().map(ToString::to_string).collect();
        let ms = |d: &Duration| d.as_millis();
        let p50 = |v: &[Duration]| v.get(v.len() / 2).map_or(0, ms);
        format!(
            "run p50 {} ms; pickup p50 {} ms, max {} ms; {} succeeded, {} on attempt 1, {} delivered once ({} extra), per worker [{}]: {}",
            p50(&self.runs),
            p50(&self.pickups),
            self.pickups.last().map_or(0, ms),
            self.succeeded,
            self.first_attempt,
            self.delivered_once,
            self.extra_deliveries,
            spread.join(" "),
            if self.exactly_once() { "exactly once" } else { "NOT exactly once" }
        )
    }
}

/// One workload's figure: operations per second and the exactly-once verdict.
fn report(workers: usize, what: &str, t: &Tally, elapsed: Duration) -> f64 {
    let rate = t.ops as f64 / elapsed.as_secs_f64();
    println!(
        "  {workers} worker(s), {what:<12} {:>4} ops in {:>6.2} s = {rate:>7.1} ops/s; {}",
        t.ops,
        elapsed.as_secs_f64(),
        t.line()
    );
    rate
}

async fn round(redis: &TestRedis, workers: usize, instances: usize, concurrency: usize) -> (bool, [f64; 3]) {
    let r = Round::start(redis, workers, concurrency);
    let warm_up = r.create_named("warm", workers * concurrency * 4).await;
    r.run(&warm_up, "stop").await;
    let ids = r.create_named("scale", instances).await;
    let mut once = true;
    let mut rates = [0.0; 3];
    for (i, (action, label)) in [("stop", "stop (no-op)"), ("start", "start"), ("stop", "stop")].into_iter().enumerate()
    {
        let (ops, took) = r.run(&ids, action).await;
        let tally = Tally::of(&r, &ops).await;
        once &= tally.exactly_once();
        rates[i] = report(workers, label, &tally, took);
    }
    kill_processes_under(r.data.path());
    (once, rates)
}

#[tokio::main]
async fn main() {
    let instances = env_usize("SCALE_INSTANCES", 200);
    let concurrency = env_usize("SCALE_CONCURRENCY", 1);
    let redis = TestRedis::start();
    println!(
        "draas-scale: {instances} instances, worker concurrency {concurrency}, {} build, {} cores, redis on a unix socket",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut ok = true;
    let mut rates = Vec::new();
    for workers in WORKER_COUNTS {
        let (once, r) = round(&redis, workers, instances, concurrency).await;
        ok &= once;
        rates.push((workers, r));
    }
    let base = rates[0].1;
    println!("throughput in ops/s (x the 1-worker figure): stop (no-op) | start | stop");
    for (workers, r) in &rates {
        let cols: Vec<String> = r.iter().zip(base).map(|(v, b)| format!("{v:>7.1} ({:.2}x)", v / b)).collect();
        println!("  {workers} worker(s): {}", cols.join(" | "));
    }
    println!("every job ran exactly once: {}", if ok { "yes" } else { "NO" });
    if !ok {
        std::process::exit(1);
    }
}
