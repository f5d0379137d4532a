//! The API's figures: submit latency of `POST …/stop` at fixed rates (open loop) against a
//! real `draas api`, and submit → pickup (operation `createdAt` → `startedAt`) with an idle
//! worker.

use std::time::{Duration, Instant};

use draas_jobs::domain::model::Platform;
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::queue::submit::{Request, Submitter};
use draas_tests::{DraasProcess, TestRedis};

use super::{create_instances, ms, percentile, settings, store, worker, worker_ready};

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

async fn submits(redis: &TestRedis) {
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
    let ids: Vec<String> = create_instances(&store(redis, "api"), 200, Platform::Docker)
        .await
        .into_iter()
        .map(|i| i.to_string())
        .collect();
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

/// Submit → pickup with an idle worker: every job comes 1.2 s after the previous one ended.
async fn pickup(redis: &TestRedis) {
    let prefix = "pickup";
    let (api_store, worker_store) = (store(redis, prefix), store(redis, prefix));
    let ids = create_instances(&api_store, 20, Platform::Kubernetes).await;
    let submitter = Submitter::new(api_store.clone(), &settings(prefix));
    let stop = worker(worker_store.clone(), settings(prefix));
    worker_ready(&worker_store).await;
    let mut waits = Vec::new();
    for id in &ids {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let op = submitter.submit(Request::new(OperationKind::Reconcile, Some(id), "bench", "bench")).await.unwrap();
        let started = loop {
            if let Some(s) = api_store.operations().get(&op.id).await.unwrap().and_then(|o| o.started_at) {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        waits.push((started - op.created_at).to_std().unwrap_or_default());
    }
    waits.sort();
    println!(
        "submit -> pickup, idle worker (1.2 s between jobs), default poll interval 100 ms ({} jobs): p50 {:.2} ms, p99 {:.2} ms",
        waits.len(),
        ms(percentile(&waits, 0.5)),
        ms(percentile(&waits, 0.99))
    );
    let _ = stop.send(());
}

/// Both figures.
pub async fn figures(redis: &TestRedis) {
    submits(redis).await;
    pickup(redis).await;
}
