//! `draas-bench`: prints draas' figures side by side with what they compare to (not a test;
//! nothing here passes or fails).
//!
//! Run: `cargo build --release --workspace && target/release/draas-bench [start|jobs|api|fleet]`
//! (needs redis-server; the start latency needs the real drasi-server: `DRASI_SERVER_BIN`,
//! `DRASI_PLUGINS_DIR`; `RUST_LOG` shows the in-process API's and worker's logs).
//! 1. start latency: the real drasi-server started bare and through draas (`start`);
//! 2. no-op jobs end to end: bare apalis-redis and draas with the same queue config, on the
//!    same Redis, in the same process, with Redis round trips per job on each side (`jobs`);
//! 3. submit latency at fixed rates against a real `draas api`, and submit → pickup with an
//!    idle worker (`api`);
//! 4. one reconcile node pass over 1k, 5k and 10k running process instances (`fleet`);
//! 5. the resident memory of an idle `draas up` (`fleet`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod fleet;
mod jobs;
mod live;
mod start;

use std::time::Duration;

use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{DesiredState, InstanceRecord, Platform};
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_tests::TestRedis;
use secrecy::SecretString;

/// Worker concurrency of the job figures.
pub const CONCURRENCY: usize = 16;

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p50 / p90 / max` of durations, in ms.
pub fn summary(mut d: Vec<Duration>) -> String {
    d.sort();
    format!(
        "p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (n={})",
        ms(percentile(&d, 0.5)),
        ms(percentile(&d, 0.9)),
        ms(*d.last().unwrap()),
        d.len()
    )
}

/// A store on the bench's Redis under `prefix`.
pub fn store(redis: &TestRedis, prefix: &str) -> Store {
    Store::open(&SecretString::from(redis.url.clone()), prefix).unwrap()
}

/// Settings of an in-process worker of the bench under `prefix`.
pub fn settings(prefix: &str) -> Settings {
    let mut s = Settings {
        key_prefix: prefix.to_owned(),
        dev: true,
        node_id: Some("bench".into()),
        data_dir: std::env::temp_dir().join(format!("draas-bench-{prefix}-{}", std::process::id())),
        ..Default::default()
    };
    s.worker.concurrency = CONCURRENCY;
    s.docker.enabled = false;
    // One pass an hour: nothing but what is measured runs.
    s.reconcile.interval_secs = 3600;
    s.operations.max_queue_depth = 1_000_000;
    s
}

/// `n` instances on `platform` with an empty configuration.
pub async fn create_instances(store: &Store, n: usize, platform: Platform) -> Vec<InstanceId> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let now = chrono::Utc::now();
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
            created_by: None,
            updated_by: None,
        };
        store.instances().create(&rec, &DrasiConfig::default(), None).await.unwrap();
        ids.push(rec.id);
    }
    ids
}

/// Run an in-process worker until the returned sender is dropped or fired.
pub fn worker(store: Store, settings: Settings) -> tokio::sync::oneshot::Sender<()> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(draas_workers::run(store, settings, async {
        let _ = rx.await;
    }));
    tx
}

/// An in-process API (on its own store, so its round trips are counted apart) and worker
/// running the real drasi-server with its plugins, under key prefix `prefix`.
pub struct RealDeployment {
    pub base: String,
    pub api_store: Store,
    pub worker_store: Store,
    pub http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl RealDeployment {
    pub async fn start(redis: &TestRedis, prefix: &str, server: &draas_tests::RealServer) -> Self {
        let mut s = settings(prefix);
        s.process.executable = server.bin.display().to_string();
        s.process.plugins_dir = Some(server.plugins.clone());
        let (api_store, worker_store) = (store(redis, prefix), store(redis, prefix));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = draas_api::AppState::new(api_store.clone(), s.clone());
        tokio::spawn(draas_api::serve(listener, state, std::future::pending()));
        let stop = worker(worker_store.clone(), s);
        worker_ready(&worker_store).await;
        Self { base, api_store, worker_store, http: reqwest::Client::new(), _stop: stop }
    }

    /// Create an instance named `name` with `config`; its id.
    pub async fn create(&self, name: &str, config: serde_json::Value) -> String {
        let res = self.http.post(format!("{}/api/v1/instances", self.base));
        let created: serde_json::Value =
            res.json(&serde_json::json!({"name": name, "config": config})).send().await.unwrap().json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }
}

/// Wait until the worker of node `bench` heartbeats on `store`.
pub async fn worker_ready(store: &Store) {
    while !store.nodes().is_alive("bench").await.unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Its apalis workers register right after the first heartbeat.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Is section `name` to run (`draas-bench [section ...]`; none named: all)?
fn wanted(name: &str) -> bool {
    let asked: Vec<String> = std::env::args().skip(1).collect();
    asked.is_empty() || asked.iter().any(|a| a == name)
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        draas_jobs::telemetry::init(draas_jobs::settings::LogFormat::Text);
    }
    let redis = TestRedis::start();
    println!(
        "draas-bench: {} build, worker concurrency {CONCURRENCY}, redis on a unix socket",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    if wanted("start") {
        match draas_tests::real_server("the start-latency figures") {
            Some(server) => start::figures(&redis, &server, 15).await,
            None => println!("start latency: SKIPPED (no real drasi-server)"),
        }
    }
    if wanted("live") {
        match draas_tests::real_server("the live-apply figures") {
            Some(server) => live::figures(&redis, &server, 10).await,
            None => println!("live apply: SKIPPED (no real drasi-server)"),
        }
    }
    if wanted("jobs") {
        jobs::figures(&redis).await;
    }
    if wanted("api") {
        api::figures(&redis).await;
    }
    if wanted("fleet") {
        fleet::figures(&redis).await;
    }
}
