//! `draas-bench`: prints the lifecycle figures (not a test; nothing here passes or fails).
//!
//! Run: `cargo run --release -p draas-tests --bin draas-bench` (needs redis-server).
//! 1. submit latency of `POST …/stop` at fixed rates (open loop) against a real `draas api`;
//! 2. end-to-end throughput of no-op jobs through draas' handler vs bare apalis-redis with the
//!    same queue config (`lock_tasks(false)`), on the same Redis, in the same process;
//! 3. submit → pickup latency (operation `createdAt` → `startedAt`) with an idle worker;
//! 4. one reconcile node pass over 1k, 5k and 10k running process instances whose health
//!    endpoints a local stub serves (probe, record, drift check; nothing to repair).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use chrono::Utc;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::ids::{InstanceId, OperationId};
use draas_jobs::domain::model::{DesiredState, InstanceRecord, Platform};
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::queue::submit::{Request, Submitter};
use draas_jobs::queue::{InstanceJob, SCHEMA_VERSION, SHARED_QUEUE, queue_config, queue_name};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_tests::{DraasProcess, TestRedis};
use secrecy::SecretString;

const JOBS: usize = 5000;
const CONCURRENCY: usize = 16;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn settings(prefix: &str) -> Settings {
    let mut s = Settings {
        key_prefix: prefix.to_owned(),
        dev: true,
        node_id: Some("bench".into()),
        data_dir: std::env::temp_dir().join(format!("draas-bench-{prefix}")),
        ..Default::default()
    };
    s.worker.concurrency = CONCURRENCY;
    s.worker.poll_interval_ms = 10;
    s
}

async fn done_count(redis: &TestRedis, queue: &str) -> usize {
    let mut c = redis.connection().await;
    redis::cmd("SCARD").arg(format!("{queue}:done")).query_async(&mut c).await.unwrap_or(0)
}

async fn wait_done(redis: &TestRedis, queue: &str, n: usize) {
    while done_count(redis, queue).await < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bare apalis-redis: no-op handler, same queue config as draas.
async fn bare_apalis(redis: &TestRedis) -> f64 {
    let store = Store::open(&SecretString::from(redis.url.clone()), "bare").unwrap();
    let keys = store.keys().clone();
    let config = queue_config(&keys, "noop", Duration::from_secs(5), 3).batch_size(CONCURRENCY);
    let backend = RedisStorage::<u64>::new(store.connection()).with_config(config.clone());
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let worker = WorkerBuilder::new(format!("bare-{}", std::process::id()))
        .backend(backend.poll_with_interval(Duration::from_millis(10)))
        .concurrency(CONCURRENCY)
        .data(c)
        .build(|_: u64, c: Data<Arc<AtomicUsize>>| async move {
            c.fetch_add(1, Ordering::Relaxed);
            Ok::<(), BoxDynError>(())
        });
    let handle = tokio::spawn(worker.run());
    let mut producer = RedisStorage::<u64>::new(store.connection()).with_config(config);
    let start = Instant::now();
    for i in 0..JOBS as u64 {
        producer.push(i).await.unwrap();
    }
    wait_done(redis, &queue_name(&keys, "noop"), JOBS).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    handle.abort();
    rate
}

async fn create_instances(store: &Store, n: usize) -> Vec<InstanceId> {
    create_instances_on(store, n, Platform::Docker).await
}

async fn create_instances_on(store: &Store, n: usize, platform: Platform) -> Vec<InstanceId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let now = Utc::now();
        let rec = InstanceRecord {
            id: InstanceId::generate(),
            name: format!("bench-{i}").parse().unwrap(),
            description: String::new(),
            platform,
            desired_state: if platform == Platform::Process { DesiredState::Running } else { DesiredState::Stopped },
            generation: 1,
            created_at: now,
            updated_at: now,
            runtime: Default::default(),
        };
        store.instances().create(&rec, &DrasiConfig::default()).await.unwrap();
        ids.push(rec.id);
    }
    ids
}

/// Submit a no-op (`Reconcile`-kind) operation on `id`, as the API would.
async fn submit_noop(submitter: &Submitter, id: &InstanceId) -> draas_jobs::domain::operation::Operation {
    submitter.submit(Request::new(OperationKind::Reconcile, Some(id), "bench", "bench")).await.unwrap()
}

/// draas: the same number of no-op (`Reconcile`-kind) jobs through the real handler: operation
/// record, instance read, lease, outcome.
async fn through_draas(redis: &TestRedis) -> f64 {
    let prefix = "draas";
    let store = Store::open(&SecretString::from(redis.url.clone()), prefix).unwrap();
    let ids = create_instances(&store, JOBS).await;
    let submitter = Submitter::new(store.clone(), &settings(prefix));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(draas_workers::run(store.clone(), settings(prefix), async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    for id in &ids {
        submit_noop(&submitter, id).await;
    }
    wait_done(redis, &queue_name(store.keys(), SHARED_QUEUE), JOBS).await;
    let rate = JOBS as f64 / start.elapsed().as_secs_f64();
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    rate
}

/// Open-loop submits at `rate` per second for `secs` seconds; sorted latencies.
async fn submit_latency(api: &DraasProcess, ids: &[String], rate: u64, secs: u64) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let total = (rate * secs) as usize;
    let mut tasks = Vec::with_capacity(total);
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let url = format!("{}/api/v1/instances/{}/stop", api.base_url, ids[i % ids.len()]);
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let res = client.post(url).send().await.unwrap();
            assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
            t.elapsed()
        }));
    }
    let mut out = Vec::with_capacity(total);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort();
    out
}

async fn api_figures(redis: &TestRedis) {
    let env: Vec<(String, String)> = [
        ("DRAAS_REDIS_URL", redis.url.as_str()),
        ("DRAAS_KEY_PREFIX", "api"),
        ("DRAAS_DEV", "true"),
        ("DRAAS_LISTEN", "127.0.0.1:0"),
        ("DRAAS_OPERATIONS__MAX_QUEUE_DEPTH", "1000000"),
        ("RUST_LOG", "warn,draas=info"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let api = DraasProcess::start(&["api"], &env);
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let res = client
            .post(format!("{}/api/v1/instances", api.base_url))
            .json(&serde_json::json!({"name": format!("lat-{i}"), "platform": "docker"}))
            .send()
            .await
            .unwrap();
        ids.push(res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    for rate in [100, 1000] {
        let lat = submit_latency(&api, &ids, rate, 5).await;
        println!(
            "submit latency at {rate:>4} req/s ({} requests): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            ms(percentile(&lat, 0.5)),
            ms(percentile(&lat, 0.99)),
            ms(*lat.last().unwrap())
        );
    }
}

/// Submit → pickup with an idle worker: operation `createdAt` → `startedAt`.
async fn pickup(redis: &TestRedis) {
    let prefix = "pickup";
    let store = Store::open(&SecretString::from(redis.url.clone()), prefix).unwrap();
    let ids = create_instances(&store, 200).await;
    let submitter = Submitter::new(store.clone(), &settings(prefix));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(draas_workers::run(store.clone(), settings(prefix), async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waits = Vec::new();
    // Truly idle: every job comes 1.2 s after the previous one ended (apalis-redis promotes due
    // jobs on its heartbeat, so back-to-back jobs would hide an idle worker's latency).
    for id in ids.iter().take(20) {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let op = submit_noop(&submitter, id).await;
        let started = loop {
            let o = store.operations().get(&op.id).await.unwrap().unwrap();
            if let Some(s) = o.started_at {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        waits.push((started - op.created_at).to_std().unwrap_or_default());
    }
    waits.sort();
    println!(
        "submit -> pickup, idle worker (1.2 s between jobs), poll interval 10 ms, heartbeat 5 s ({} jobs): p50 {:.2} ms, p99 {:.2} ms",
        waits.len(),
        ms(percentile(&waits, 0.5)),
        ms(percentile(&waits, 0.99))
    );
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
}

/// A stub drasi-server health endpoint; returns its base URL.
async fn health_stub() -> String {
    let app = axum::Router::new().route("/health", axum::routing::get(|| async { r#"{"status":"ok"}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// `n` running process instances on node `bench`, alive (this process) and healthy (the stub).
async fn running_fleet(store: &Store, n: usize, stub: &str) {
    let me = i32::try_from(std::process::id()).unwrap();
    let start_time = draas_workers::platform::process::procfs::start_time(me).unwrap();
    for id in create_instances_on(store, n, Platform::Process).await {
        let state = store.instances().load(&id).await.unwrap().unwrap();
        let hash = draas_jobs::domain::render::render(&state, "127.0.0.1", Some(8100)).unwrap().spec_hash;
        let runtime = draas_jobs::domain::model::RuntimeFacts {
            pid: Some(me),
            pid_start_time: Some(start_time),
            endpoint: Some(stub.to_owned()),
            ..Default::default()
        };
        let observed = draas_jobs::domain::model::ObservedRecord {
            status: draas_jobs::domain::model::Status::Running,
            node: Some("bench".into()),
            port: Some(8100),
            spec_hash: Some(hash),
            runtime,
            ..Default::default()
        };
        let cause = draas_jobs::domain::model::Cause { source: "bench", reason: "setup" };
        store.instances().observe(&id, &observed, cause, None, None).await.unwrap();
    }
}

async fn reconcile_figures(redis: &TestRedis) {
    let stub = health_stub().await;
    let mut per_instance = Vec::new();
    for n in [1000, 5000, 10_000] {
        let prefix = format!("rec{n}");
        let store = Store::open(&SecretString::from(redis.url.clone()), &prefix).unwrap();
        running_fleet(&store, n, &stub).await;
        let ctx =
            draas_workers::Ctx::new(store.clone(), settings(&prefix), "bench".into(), "bench-worker".into()).await;
        store.nodes().heartbeat("bench", Duration::from_secs(600)).await.unwrap();
        let stats = draas_workers::reconcile::node::pass(&ctx).await.unwrap();
        let global = draas_workers::reconcile::global::pass(&ctx, 1).await.unwrap();
        assert_eq!(stats.probed, n);
        let us = stats.elapsed.as_secs_f64() * 1e6 / n as f64;
        per_instance.push(us);
        println!(
            "reconcile node pass over {n:>5} instances: {:.0} ms ({us:.0} µs per instance); global pass {:.0} ms",
            ms(stats.elapsed),
            ms(global.elapsed)
        );
    }
    println!("reconcile cost per instance, 10k vs 1k: {:.2}x", per_instance[2] / per_instance[0]);
}

#[tokio::main]
async fn main() {
    let redis = TestRedis::start();
    println!(
        "draas-bench: {JOBS} jobs, concurrency {CONCURRENCY}, redis on a unix socket, {} build",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    api_figures(&redis).await;
    let bare = bare_apalis(&redis).await;
    let draas = through_draas(&redis).await;
    println!(
        "end-to-end no-op jobs: bare apalis-redis {bare:.0} jobs/s, through draas {draas:.0} jobs/s ({:.0} %)",
        draas / bare * 100.0
    );
    pickup(&redis).await;
    reconcile_figures(&redis).await;
}
