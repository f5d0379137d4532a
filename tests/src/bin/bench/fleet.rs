//! Figures of many instances and of an idle deployment: one reconcile node pass over 1k, 5k
//! and 10k running process instances whose health endpoints a local stub serves (probe,
//! record, drift check; nothing to repair), and the resident memory of an idle `draas up`.

use std::time::Duration;

use draas_jobs::domain::model::{Cause, ObservedRecord, Platform, RuntimeFacts, Status};
use draas_jobs::store::Store;
use draas_tests::{DraasProcess, TestRedis};

use super::{create_instances, ms, settings, store};

/// A stub drasi-server: its health endpoint, an empty instance snapshot and empty component
/// lists (what a probe reads); its base URL.
async fn health_stub() -> String {
    let empty = || async { axum::Json(serde_json::json!({"success": true, "data": [], "error": null})) };
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { r#"{"status":"ok"}"# }))
        .route("/api/v1/sources", axum::routing::get(empty))
        .route("/api/v1/queries", axum::routing::get(empty))
        .route("/api/v1/reactions", axum::routing::get(empty))
        .route(
            "/api/v1/instances/{id}/snapshot",
            axum::routing::get(|| async {
                let data = serde_json::json!({"sources": [], "queries": [], "reactions": []});
                axum::Json(serde_json::json!({"success": true, "data": data, "error": null}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// `n` running process instances on node `bench`, alive (this process) and healthy (the stub).
async fn running_fleet(store: &Store, n: usize, stub: &str) {
    let me = i32::try_from(std::process::id()).unwrap();
    let start_time = draas_workers::platform::process::procfs::start_time(me).unwrap();
    for id in create_instances(store, n, Platform::Process).await {
        let state = store.instances().load(&id).await.unwrap().unwrap();
        let hash = draas_jobs::domain::render::render(
            &state,
            "127.0.0.1",
            &draas_jobs::domain::render::Ports { server: Some(8100), ..Default::default() },
            draas_jobs::domain::network::Policy::default(),
        )
        .unwrap()
        .spec_hash;
        let observed = ObservedRecord {
            status: Status::Running,
            node: Some("bench".into()),
            port: Some(8100),
            spec_hash: Some(hash),
            runtime: RuntimeFacts {
                pid: Some(me),
                pid_start_time: Some(start_time),
                endpoint: Some(stub.to_owned()),
                ..RuntimeFacts::default()
            },
            ..Default::default()
        };
        let cause = Cause { source: "bench", reason: "setup", by: "" };
        store.instances().observe(&id, &observed, cause, None, None).await.unwrap();
    }
}

async fn passes(redis: &TestRedis) {
    let stub = health_stub().await;
    let mut per_instance = Vec::new();
    for n in [1000, 5000, 10_000] {
        let prefix = format!("rec{n}");
        let store = store(redis, &prefix);
        running_fleet(&store, n, &stub).await;
        let deployment =
            draas_workers::platform::Deployment { name: prefix.clone(), id: store.deployment_id().await.unwrap() };
        let ctx = draas_workers::Ctx::new(
            store.clone(),
            settings(&prefix),
            "bench".into(),
            "bench-worker".into(),
            deployment,
        )
        .await;
        store.nodes().heartbeat("bench", Duration::from_secs(600)).await.unwrap();
        let stats = draas_workers::reconcile::node::pass(&ctx).await.unwrap();
        let global = draas_workers::reconcile::global::pass(&ctx).await.unwrap();
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

/// Resident memory of `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `draas up` on this bench's Redis, idle for a few seconds (one reconcile tick a second).
async fn idle_up(redis: &TestRedis) {
    let data = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("DRAAS_REDIS_URL", redis.url.as_str()),
        ("DRAAS_KEY_PREFIX", "idle"),
        ("DRAAS_DEV", "true"),
        ("DRAAS_LISTEN", "127.0.0.1:0"),
        ("DRAAS_DATA_DIR", data.path().to_str().unwrap()),
        ("DRAAS_RECONCILE__INTERVAL_SECS", "1"),
        ("DRAAS_DOCKER__ENABLED", "false"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let up = DraasProcess::start(&["up"], &env);
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "idle `draas up` (API + worker, 5 s, one reconcile tick a second): RSS {:.1} MiB",
        rss_kib(up.pid()) as f64 / 1024.0
    );
}

/// Both figures.
pub async fn figures(redis: &TestRedis) {
    passes(redis).await;
    idle_up(redis).await;
}
