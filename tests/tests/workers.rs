//! Worker behaviour: draining on SIGTERM, processes outliving their worker, port allocation
//! across workers, node heartbeats, admission control under a burst.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use draas_tests::{eventually, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn minimal() -> Value {
    json!({"sources": [], "queries": [], "reactions": []})
}

#[tokio::test]
async fn sigterm_lets_the_in_flight_start_finish_before_the_worker_exits() {
    let app = spawn_app().await;
    let mut worker = app.start_worker("node-a", &[("DRASI_STANDIN_STARTUP_DELAY_MS", "1500")]);
    let id = app.create_instance("drain", minimal()).await["id"].as_str().unwrap().to_owned();
    let op = app.submit(&id, "start").await;
    let path = format!("/api/v1/operations/{}", op["id"].as_str().unwrap());
    eventually("the start to be running", LONG, || async {
        let (_, o) = app.get_json(&path).await;
        (o["status"] == "running").then_some(())
    })
    .await;
    let exit = worker.terminate(Duration::from_secs(30)).expect("the worker exits after draining");
    assert!(exit.success(), "{exit:?}");
    let (_, done) = app.get_json(&path).await;
    assert_eq!(done["status"], "succeeded", "the in-flight job finished before exit: {done}");
    assert_eq!(app.servers().len(), 1, "the server outlives its worker");
}

#[tokio::test]
async fn a_server_outlives_a_killed_worker_and_the_next_worker_on_the_node_stops_it() {
    let app = spawn_app().await;
    let mut first = app.start_worker("node-a", &[]);
    let id = app.create_instance("outlive", minimal()).await["id"].as_str().unwrap().to_owned();
    let started = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(started["status"], "succeeded");
    first.kill();
    assert_eq!(app.servers().len(), 1, "SIGKILL of the worker does not take the server down");
    let _second = app.start_worker("node-a", &[]);
    let again = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(again["result"]["pid"], started["result"]["pid"], "the new worker adopted the running server");
    let stopped = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    assert_eq!(stopped["status"], "succeeded");
    assert!(app.servers().is_empty());
}

#[tokio::test]
async fn concurrent_starts_across_workers_never_share_a_port_and_named_ports_are_reserved() {
    let mut app = spawn_app().await;
    app.allow_pool_ports();
    let _a = app.start_worker("node-a", &[]);
    let _b = app.start_worker("node-a", &[]);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(app.create_instance(&format!("port{i}"), minimal()).await["id"].as_str().unwrap().to_owned());
    }
    let mut ops = Vec::new();
    for id in &ids {
        ops.push(app.submit(id, "start").await);
    }
    let mut ports = HashSet::new();
    for op in &ops {
        let done = app.wait_op(op, LONG).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(ports.insert(done["result"]["port"].as_u64().unwrap()), "port used twice: {done}");
    }
    let named = *ports.iter().next().unwrap();
    let clash =
        app.create_instance("clash", json!({"port": named, "sources": [], "queries": [], "reactions": []})).await;
    let done = app.wait_op(&app.submit(clash["id"].as_str().unwrap(), "start").await, LONG).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("port_taken")),
        "{done}"
    );
}

#[tokio::test]
async fn a_running_worker_heartbeats_its_node_in_redis() {
    let app = spawn_app().await;
    let mut worker = app.start_worker("node-hb", &[]);
    let key = format!("{{{}}}:node:node-hb", app.prefix);
    let redis = app.redis().await;
    eventually("the node key to exist with an expiry", Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let ttl: i64 = redis::cmd("TTL").arg(&key).query_async(&mut redis).await.unwrap();
            (ttl > 0).then_some(())
        }
    })
    .await;
    worker.kill();
    eventually("the node heartbeat to expire", Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move {
            let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut redis).await.unwrap();
            (!exists).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn ten_thousand_submits_in_a_burst_get_429_above_the_depth_and_every_accepted_one_finishes() {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_OPERATIONS__MAX_QUEUE_DEPTH", "500")]);
    let mut worker = app.start_worker("node-a", &[("DRAAS_WORKER__CONCURRENCY", "16")]);
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(app.create_instance(&format!("burst{i}"), minimal()).await["id"].as_str().unwrap().to_owned());
    }
    let app = Arc::new(app);
    let (accepted, refused) = (Arc::new(tokio::sync::Mutex::new(Vec::new())), Arc::new(AtomicUsize::new(0)));
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (app, accepted, refused, next, ids) =
            (app.clone(), accepted.clone(), refused.clone(), next.clone(), ids.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= 10_000 {
                    return;
                }
                let path = format!("/api/v1/instances/{}/stop", ids[n % ids.len()]);
                let res = app.req(Method::POST, &path).send().await.unwrap();
                match res.status() {
                    StatusCode::ACCEPTED => accepted.lock().await.push(res.json::<Value>().await.unwrap()),
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert!(res.headers().contains_key("retry-after"));
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other}: {}", res.text().await.unwrap_or_default()),
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let accepted = accepted.lock().await.clone();
    let refused = refused.load(Ordering::Relaxed);
    assert_eq!(accepted.len() + refused, 10_000);
    assert!(refused > 0, "the depth limit refused some submits");
    for op in &accepted {
        let done = app.wait_op(op, Duration::from_secs(300)).await;
        assert!(matches!(done["status"].as_str(), Some("succeeded" | "superseded")), "{done}");
    }
    assert!(
        worker.terminate(Duration::from_secs(30)).is_some_and(|s| s.success()),
        "the worker stayed alive throughout"
    );
    eprintln!("burst: {} accepted, {refused} refused with 429", accepted.len());
}

#[tokio::test]
async fn the_sweep_forgets_finished_tasks_and_expired_operation_ids() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("swept", minimal()).await["id"].as_str().unwrap().to_owned();
    let op = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    assert_eq!(op["status"], "succeeded");
    let mut redis = app.redis().await;
    let done_key = format!("{{{}}}:q:shared:done", app.prefix);
    // The operation ends before apalis acknowledges the job (acks are batched).
    eventually("the job acknowledged", LONG, || {
        let mut redis = redis.clone();
        let done_key = done_key.clone();
        async move {
            let done: i64 = redis::cmd("SCARD").arg(&done_key).query_async(&mut redis).await.unwrap();
            (done >= 1).then_some(())
        }
    })
    .await;
    let op_key = format!("{{{}}}:op:{}", app.prefix, op["id"].as_str().unwrap());
    let _: () = redis::cmd("DEL").arg(&op_key).query_async(&mut redis).await.unwrap();

    let store =
        draas_jobs::store::Store::open(&secrecy::SecretString::from(app.redis.url.clone()), &app.prefix).unwrap();
    let removed = store.queues().sweep(&["shared".to_owned()], Duration::ZERO).await.unwrap();
    assert!(removed >= 2, "a task and an index entry: {removed}");
    let done: i64 = redis::cmd("SCARD").arg(&done_key).query_async(&mut redis).await.unwrap();
    let data: i64 =
        redis::cmd("HLEN").arg(format!("{{{}}}:q:shared:data", app.prefix)).query_async(&mut redis).await.unwrap();
    assert_eq!((done, data), (0, 0));
    let (_, page) = app.get_json("/api/v1/operations").await;
    assert!(page["items"].as_array().unwrap().is_empty());
    let index: i64 = redis::cmd("ZCARD").arg(format!("{{{}}}:ops", app.prefix)).query_async(&mut redis).await.unwrap();
    assert_eq!(index, 0);
}

#[tokio::test]
async fn a_chatty_server_log_is_capped_by_rotation() {
    let app = spawn_app().await;
    let cap = 20_000u64;
    let _worker =
        app.start_worker("node-a", &[("DRASI_STANDIN_LOG_EVERY_MS", "1"), ("DRAAS_PROCESS__LOG_MAX_BYTES", "20000")]);
    let id = app.create_instance("chatty", minimal()).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_op(&app.submit(&id, "start").await, LONG).await["status"], "succeeded");
    let dir = app.data.path().join("instances").join(&id);
    eventually("the log to be rotated", LONG, || async {
        std::fs::metadata(dir.join("server.log.1")).is_ok().then_some(())
    })
    .await;
    eventually("the live log back under the cap", LONG, || async {
        let len = std::fs::metadata(dir.join("server.log")).map(|m| m.len()).unwrap_or(0);
        (len < cap).then_some(())
    })
    .await;
    let old = std::fs::metadata(dir.join("server.log.1")).unwrap().len();
    assert!(old <= cap / 2 + 4096, "the rotated part keeps the newest half: {old} bytes");
}
