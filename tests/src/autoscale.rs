//! An autoscaler of real `draas worker` processes, for the scale-from-zero test and bench. It
//! reads the signal the KEDA ScaledObject reads (`GET /api/v1/queues/backlog`, `pending`, with
//! a bearer token) and acts as KEDA does: `ceil(pending / target)` workers between 0 and `max`,
//! more at once, fewer only after the signal stayed below for `cooldown`, stopped with SIGTERM
//! (a drain). It also burst-submits operations and tells what became of them: the parts the
//! test asserts and the bench prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use draas_jobs::domain::ids::OperationId;
use draas_jobs::domain::operation::{Operation, OperationStatus};
use draas_jobs::store::Store;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::{DraasProcess, TestApp};

/// Requests in flight at once when creating and submitting.
const SUBMITTERS: usize = 16;

/// How the autoscaler decides.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Unfinished jobs per worker (the ScaledObject's `targetValue`).
    pub target: u64,
    /// Most workers.
    pub max: usize,
    /// How long the signal must stay below the running count before workers are stopped.
    pub cooldown: Duration,
    /// Time between two reads of the signal (the ScaledObject's `pollingInterval`).
    pub poll: Duration,
}

impl Policy {
    /// Workers wanted for `pending` unfinished jobs.
    pub fn desired(&self, pending: u64) -> usize {
        usize::try_from(pending.div_ceil(self.target.max(1))).unwrap_or(usize::MAX).min(self.max)
    }
}

/// One reading of the signal.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub pending: u64,
    pub workers: usize,
}

/// What the autoscaler did so far.
#[derive(Default)]
struct Record {
    running: usize,
    started: usize,
    peak: usize,
    first_start: Option<Instant>,
    exits: Vec<ExitStatus>,
    samples: Vec<Sample>,
    logs: Vec<Arc<Mutex<Vec<String>>>>,
}

/// A running autoscaler (its loop is a task of the current runtime, which must be
/// multi-threaded: workers start and stop on blocking threads).
pub struct Autoscaler {
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Autoscaler {
    /// Scale `draas worker` processes with environment `worker_env` on the backlog of `app`'s
    /// API.
    pub fn start(app: &TestApp, worker_env: Vec<(String, String)>, policy: Policy) -> Self {
        let record = Arc::new(Mutex::new(Record::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let signal = app.req(Method::GET, "/api/v1/queues/backlog");
        let task = tokio::spawn(scale(signal, worker_env, policy, record.clone(), stop.clone()));
        Self { record, stop, task }
    }

    /// Workers running now.
    pub fn running(&self) -> usize {
        self.record.lock().unwrap().running
    }

    /// Workers started so far.
    pub fn started(&self) -> usize {
        self.record.lock().unwrap().started
    }

    /// Most workers running at once.
    pub fn peak(&self) -> usize {
        self.record.lock().unwrap().peak
    }

    /// When the first worker was started.
    pub fn first_start(&self) -> Option<Instant> {
        self.record.lock().unwrap().first_start
    }

    /// How every stopped worker exited.
    pub fn exits(&self) -> Vec<ExitStatus> {
        self.record.lock().unwrap().exits.clone()
    }

    /// Every reading of the signal.
    pub fn samples(&self) -> Vec<Sample> {
        self.record.lock().unwrap().samples.clone()
    }

    /// Deliveries of each operation's job to a handler, from every worker's log ("job
    /// received" lines: the workers must log `draas_workers::handler` at debug).
    pub fn deliveries(&self) -> HashMap<String, usize> {
        let logs = self.record.lock().unwrap().logs.clone();
        let mut out = HashMap::new();
        for log in logs {
            for (op, n) in deliveries_in(&log.lock().unwrap()) {
                *out.entry(op).or_default() += n;
            }
        }
        out
    }

    /// Stop the loop and every worker it runs (SIGTERM).
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
    }
}

/// The loop: read, decide, act, until told to stop; then stop every worker.
async fn scale(
    signal: reqwest::RequestBuilder,
    worker_env: Vec<(String, String)>,
    policy: Policy,
    record: Arc<Mutex<Record>>,
    stop: Arc<AtomicBool>,
) {
    let mut workers: Vec<DraasProcess> = Vec::new();
    let mut below_since: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        reap(&mut workers, &record);
        let Some(pending) = read(&signal).await else {
            tokio::time::sleep(policy.poll).await;
            continue;
        };
        let desired = policy.desired(pending);
        if desired > workers.len() {
            below_since = None;
            let more = desired - workers.len();
            start(&mut workers, more, &worker_env, &record).await;
        } else if desired < workers.len() {
            let since = *below_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= policy.cooldown {
                let n = workers.len() - desired;
                terminate(workers.split_off(workers.len() - n), &record).await;
                below_since = None;
            }
        } else {
            below_since = None;
        }
        {
            let mut r = record.lock().unwrap();
            r.running = workers.len();
            r.samples.push(Sample { at: Instant::now(), pending, workers: workers.len() });
        }
        tokio::time::sleep(policy.poll).await;
    }
    terminate(workers, &record).await;
    record.lock().unwrap().running = 0;
}

/// The signal's `pending`, or `None` when the API did not answer.
async fn read(signal: &reqwest::RequestBuilder) -> Option<u64> {
    let res = signal.try_clone()?.send().await.ok()?;
    assert!(res.status().is_success(), "the backlog answered {}", res.status());
    res.json::<Value>().await.ok()?["pending"].as_u64()
}

/// Forget workers that exited by themselves, noting how.
fn reap(workers: &mut Vec<DraasProcess>, record: &Mutex<Record>) {
    let mut i = 0;
    while i < workers.len() {
        if let Some(status) = workers[i].exited() {
            workers.remove(i);
            record.lock().unwrap().exits.push(status);
        } else {
            i += 1;
        }
    }
}

async fn start(workers: &mut Vec<DraasProcess>, n: usize, env: &[(String, String)], record: &Mutex<Record>) {
    record.lock().unwrap().first_start.get_or_insert_with(Instant::now);
    let started = futures::future::join_all((0..n).map(|_| {
        let env = env.to_vec();
        tokio::task::spawn_blocking(move || DraasProcess::start(&["worker"], &env))
    }))
    .await;
    let mut r = record.lock().unwrap();
    for w in started {
        let w = w.unwrap();
        r.logs.push(w.log.clone());
        workers.push(w);
    }
    r.started += n;
    r.peak = r.peak.max(workers.len());
}

async fn terminate(workers: Vec<DraasProcess>, record: &Mutex<Record>) {
    let stopped = futures::future::join_all(workers.into_iter().map(|mut w| {
        tokio::task::spawn_blocking(move || w.terminate(Duration::from_secs(60)).expect("the worker stops on SIGTERM"))
    }))
    .await;
    record.lock().unwrap().exits.extend(stopped.into_iter().map(Result::unwrap));
}

/// Deliveries of each operation's job to a handler in one worker's log lines.
pub fn deliveries_in(lines: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in lines {
        let Some((_, fields)) = line.split_once("job received") else { continue };
        let Some(op) = fields.split("operation=").nth(1).and_then(|r| r.split_whitespace().next()) else {
            continue;
        };
        *out.entry(op.to_owned()).or_default() += 1;
    }
    out
}

/// Create `n` instances named `<prefix>-<i>` with an empty configuration; their ids.
pub async fn create_instances(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let config = json!({"sources": [], "queries": [], "reactions": []});
    futures::stream::iter(0..n)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            let config = config.clone();
            async move { app.create_instance(&name, config).await["id"].as_str().unwrap().to_owned() }
        })
        .buffer_unordered(SUBMITTERS)
        .collect()
        .await
}

/// Submit `action` on every instance of `ids` through the API; the operation ids.
pub async fn submit_all(app: &TestApp, ids: &[String], action: &str) -> Vec<OperationId> {
    futures::stream::iter(ids)
        .map(|id| async move { app.submit(id, action).await["id"].as_str().unwrap().parse().unwrap() })
        .buffer_unordered(SUBMITTERS)
        .collect()
        .await
}

/// What became of a burst of operations, from their records and the workers' logs.
#[derive(Debug)]
pub struct Outcome {
    pub ops: usize,
    /// Ended `succeeded` on their first attempt.
    pub succeeded_first_time: usize,
    /// Not ended (or ended otherwise).
    pub lost: usize,
    /// Deliveries of a job to a handler beyond the first.
    pub duplicated: usize,
    /// The first submit (creation of an operation), the first pickup and the last end.
    pub first_submit: Option<chrono::DateTime<chrono::Utc>>,
    pub first_pickup: Option<chrono::DateTime<chrono::Utc>>,
    pub last_end: Option<chrono::DateTime<chrono::Utc>>,
}

impl Outcome {
    /// Read the records of `ops` and count their deliveries.
    pub async fn of(store: &Store, ops: &[OperationId], deliveries: &HashMap<String, usize>) -> Self {
        let mut o = Outcome {
            ops: ops.len(),
            succeeded_first_time: 0,
            lost: 0,
            duplicated: 0,
            first_submit: None,
            first_pickup: None,
            last_end: None,
        };
        for id in ops {
            let op: Option<Operation> = store.operations().get(id).await.unwrap();
            if let Some(op) = &op {
                o.first_submit = Some(o.first_submit.map_or(op.created_at, |f| f.min(op.created_at)));
            }
            let Some(op) = op.filter(|op| op.status == OperationStatus::Succeeded) else {
                o.lost += 1;
                continue;
            };
            o.succeeded_first_time += usize::from(op.attempt == 1);
            o.duplicated += deliveries.get(id.as_str()).copied().unwrap_or(0).saturating_sub(1);
            if let Some(t) = op.started_at {
                o.first_pickup = Some(o.first_pickup.map_or(t, |f| f.min(t)));
            }
            o.last_end = o.last_end.max(op.finished_at);
        }
        o
    }
}

/// A test world whose API produces a reconcile tick every second.
pub async fn spawn_ticking_app() -> TestApp {
    let mut app = crate::spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[TICK_EVERY_SECOND]);
    app
}

/// Reconcile every second (APIs and workers alike).
pub const TICK_EVERY_SECOND: (&str, &str) = ("DRAAS_RECONCILE__INTERVAL_SECS", "1");

/// A store client of `app`'s Redis and key prefix, to read records from outside.
pub fn store_of(app: &TestApp) -> Store {
    Store::open(&secrecy::SecretString::from(app.redis.url.clone()), &app.prefix).unwrap()
}

/// The environment of an autoscaled worker of `app`: node `auto` (one host running several
/// worker processes), one job at a time (so capacity is the number of workers), and its
/// deliveries logged; `extra` on top.
pub fn worker_env(app: &TestApp, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut more = vec![
        ("DRAAS_WORKER__CONCURRENCY", "1"),
        ("DRAAS_DOCKER__ENABLED", "false"),
        ("RUST_LOG", "warn,draas_workers=info,draas_workers::handler=debug"),
    ];
    more.extend_from_slice(extra);
    app.worker_env("auto", &more)
}

/// Whether every operation of `ops` has ended.
pub async fn all_ended(store: &Store, ops: &[OperationId]) -> bool {
    for id in ops {
        if !store.operations().get(id).await.unwrap().is_some_and(|o| o.status.is_final()) {
            return false;
        }
    }
    true
}
