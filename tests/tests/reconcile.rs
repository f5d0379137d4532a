//! Reconciliation against real Redis, real workers and real (stand-in) processes: crash repair,
//! config drift, once-per-tick across replicas, crash-loop backoff, SSE, status pushes, fail-over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::{DraasProcess, TestApp, eventually, spawn_app};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// Reconcile every second in these tests.
const FAST: (&str, &str) = ("DRAAS_RECONCILE__INTERVAL_SECS", "1");

fn minimal() -> Value {
    json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

async fn running_instance(app: &TestApp, name: &str) -> (String, Value) {
    let id = app.create_instance(name, minimal()).await["id"].as_str().unwrap().to_owned();
    let op = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    (id, op)
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, h) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let mut items = h["items"].as_array().unwrap().clone();
    items.reverse(); // oldest first
    items
}

fn kill(pid: i64) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[tokio::test]
async fn a_killed_server_is_seen_crashed_and_running_again_within_two_ticks() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[FAST]);
    let (id, started) = running_instance(&app, "crashme").await;
    let killed_at = Instant::now();
    kill(started["result"]["pid"].as_i64().unwrap());
    let h = eventually("crashed, then running again", LONG, || async {
        let h = history(&app, &id).await;
        let crash = h.iter().position(|c| c["to"] == "error" && c["reason"] == "crashed")?;
        h[crash..].iter().any(|c| c["to"] == "running").then_some(h)
    })
    .await;
    let crash = h.iter().find(|c| c["to"] == "error").unwrap();
    assert_eq!((crash["from"].as_str(), crash["source"].as_str()), (Some("running"), Some("reconciler")));
    assert!(crash.get("requestedBy").is_none(), "a crash is seen, not asked for: {crash}");
    assert!(killed_at.elapsed() < Duration::from_secs(2 + 10), "detected within two ticks plus the restart");
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let repair = ops["items"].as_array().unwrap().iter().find(|o| o["kind"] == "restart" && o["reason"] == "crashed");
    assert_eq!(repair.map(|o| o["requestedBy"].as_str()), Some(Some("system")), "the repair is the system's: {ops}");
    // The repair's own `running` comes after the crash (this history is oldest first).
    eventually("the repair's running, recorded as the system's", LONG, || async {
        let h = history(&app, &id).await;
        let crash = h.iter().position(|c| c["to"] == "error")?;
        h[crash..].iter().any(|c| c["to"] == "running" && c["requestedBy"] == "system").then_some(())
    })
    .await;
    assert_eq!(app.servers().len(), 1);
}

#[tokio::test]
async fn a_config_change_redeploys_and_the_new_process_gets_the_new_yaml() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[FAST]);
    let (id, started) = running_instance(&app, "redeploy").await;
    let res = app
        .send_body(
            Method::PATCH,
            &format!("/api/v1/instances/{id}/config"),
            "application/merge-patch+json",
            r#"{"logLevel": "debug"}"#,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let port = started["result"]["port"].as_u64().unwrap();
    let served = eventually("the server to run the new config", LONG, || async {
        let c: Value = reqwest::get(format!("http://127.0.0.1:{port}/api/v1/config")).await.ok()?.json().await.ok()?;
        (c["logLevel"] == "debug").then_some(c)
    })
    .await;
    assert_eq!(served["logLevel"], "debug");
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    // A top-level key: no live apply can take it, so the reconfigure restarts, and says why.
    let redeploy = ops["items"].as_array().unwrap().iter().find(|o| o["kind"] == "reconfigure").cloned().unwrap();
    let done = app.wait_op(&redeploy, LONG).await;
    assert_eq!(done["result"]["applied"]["how"], "restart", "{done}");
    assert_eq!(done["result"]["applied"]["reason"], "top_level_changed: logLevel", "{done}");
    assert_ne!(done["result"]["pid"], started["result"]["pid"], "a new process");
    assert_eq!(app.servers().len(), 1);
}

async fn pass_counts(app: &TestApp, pattern: &str) -> Vec<(u64, i64)> {
    let mut redis = app.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}}}:reconcile:pass:{pattern}", app.prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut out = Vec::new();
    for k in keys {
        let tail = k.rsplit(":reconcile:pass:reconcile-").next().unwrap();
        let Ok(tick) = tail.split('-').next().unwrap().parse::<u64>() else { continue };
        let n: i64 = redis::cmd("GET").arg(&k).query_async(&mut redis).await.unwrap();
        out.push((tick, n));
    }
    out.sort_unstable();
    out
}

#[tokio::test]
async fn three_replicas_reconcile_each_tick_exactly_once() {
    let app = spawn_app().await;
    let _w: Vec<DraasProcess> = ["node-a", "node-b", "node-a"].iter().map(|n| app.start_worker(n, &[FAST])).collect();
    running_instance(&app, "ticked").await;
    let global = eventually("six global passes", LONG, || async {
        let counts = pass_counts(&app, "reconcile-[0-9]*[0-9]").await;
        let global: Vec<(u64, i64)> = counts.into_iter().collect();
        (global.len() >= 6).then_some(global)
    })
    .await;
    assert!(global.iter().all(|(_, n)| *n == 1), "each tick once: {global:?}");
    let ticks: Vec<u64> = global.iter().map(|(t, _)| *t).collect();
    let (first, last) = (ticks[0], *ticks.last().unwrap());
    assert_eq!(ticks.len() as u64, last - first + 1, "no tick missed: {ticks:?}");
    let node_a = pass_counts(&app, "reconcile-*-node-a").await;
    assert!(
        node_a.len() >= 5 && node_a.iter().all(|(_, n)| *n == 1),
        "node-a's pass once per tick with two replicas on it: {node_a:?}"
    );
}

#[tokio::test]
async fn a_crash_loop_backs_off_longer_each_time_then_stays_in_error() {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_WORKER__MAX_ATTEMPTS", "1")]);
    let _worker = app.start_worker(
        "node-a",
        &[
            FAST,
            ("DRASI_STANDIN_CRASH_AFTER_SECS", "0"),
            ("DRAAS_RECONCILE__MAX_FAILURES", "3"),
            ("DRAAS_RECONCILE__BACKOFF_INITIAL_MS", "1000"),
        ],
    );
    let id = app.create_instance("looper", minimal()).await["id"].as_str().unwrap().to_owned();
    let first = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(first["status"], "failed");
    let inst = app
        .wait_instance(&id, "the reconciler to give up", LONG, |i| {
            i["statusMessage"].as_str().is_some_and(|m| m.starts_with("crash loop: gave up after 3 repairs"))
        })
        .await;
    assert_eq!(inst["status"], "error");
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let mut repairs: Vec<chrono::DateTime<chrono::Utc>> = ops["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["reason"] == "crashed")
        .map(|o| o["createdAt"].as_str().unwrap().parse().unwrap())
        .collect();
    repairs.sort();
    assert_eq!(repairs.len(), 3, "{ops}");
    let gaps: Vec<i64> = repairs.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect();
    assert!(gaps[1] > gaps[0], "the backoff grows: {gaps:?}");
    let settled = ops["items"].as_array().unwrap().len();
    tokio::time::sleep(Duration::from_secs(3)).await; // three more ticks: nothing new may happen
    let (_, later) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    assert_eq!(later["items"].as_array().unwrap().len(), settled, "no repair after giving up");
}

/// Read SSE events (`id`, JSON data) until `n` arrived.
async fn read_events(res: reqwest::Response, n: usize) -> Vec<(String, Value)> {
    let mut stream = res.bytes_stream();
    let (mut buf, mut out) = (String::new(), Vec::new());
    while out.len() < n {
        let chunk = tokio::time::timeout(LONG, stream.next()).await.expect("an event in time").unwrap().unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let id = block.lines().find_map(|l| l.strip_prefix("id:")).map(|s| s.trim().to_owned());
            let data = block.lines().find_map(|l| l.strip_prefix("data:")).map(|s| s.trim().to_owned());
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    out
}

#[tokio::test]
async fn an_sse_client_receives_the_transitions_in_order_and_can_resume() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("streamed", minimal()).await["id"].as_str().unwrap().to_owned();
    let res = app.req(Method::GET, &format!("/api/v1/events?instance={id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    app.wait_op(&app.submit(&id, "start").await, LONG).await;
    app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    let events = read_events(res, 4).await;
    let path: Vec<(&str, &str)> =
        events.iter().map(|(_, e)| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap())).collect();
    assert_eq!(
        path,
        [("created", "starting"), ("starting", "running"), ("running", "stopping"), ("stopping", "stopped")]
    );
    let resumed = app
        .req(Method::GET, &format!("/api/v1/events?instance={id}"))
        .header("last-event-id", &events[1].0)
        .send()
        .await
        .unwrap();
    let again = read_events(resumed, 2).await;
    assert_eq!(again.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>(), [events[2].0.clone(), events[3].0.clone()]);
    let (status, _) = app.get_json("/api/v1/status/recent-changes?status=running").await;
    assert_eq!(status, StatusCode::OK);
    let (_, recent) = app.get_json("/api/v1/status/recent-changes?status=running").await;
    assert!(recent.as_array().unwrap().iter().all(|c| c["to"] == "running") && !recent.as_array().unwrap().is_empty());
    let (status, _) = app.get_json("/api/v1/status/recent-changes?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_status_push_is_recorded_in_history_and_triggers_a_probe() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let (id, _) = running_instance(&app, "pushed").await;
    let (status, body) = app
        .send_json(
            Method::POST,
            "/api/v1/status/updates",
            &json!({"instanceId": id, "status": "error", "source": "daemon-x", "metadata": {"message": "looked sick"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!((body["recorded"].as_bool(), body["operation"]["kind"].as_str()), (Some(true), Some("reconcile")));
    let probe = app.wait_op(&body["operation"], LONG).await;
    assert_eq!(probe["status"], "succeeded", "{probe}");
    let h = history(&app, &id).await;
    let pushed = h.iter().position(|c| c["source"] == "push:daemon-x" && c["to"] == "error").expect("push in history");
    assert!(
        h[pushed..].iter().any(|c| c["to"] == "running" && c["source"] == "reconciler"),
        "the probe saw it healthy: {h:?}"
    );
    for bad in [
        json!({"instanceId": id, "status": "error"}),
        json!({"instanceId": "../x", "status": "error", "source": "d"}),
        json!({"instanceId": id, "status": "sick", "source": "d"}),
    ] {
        let (status, _) = app.send_json(Method::POST, "/api/v1/status/updates", &bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn on_demand_reconcile_passes_end_in_a_succeeded_operation() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let (id, _) = running_instance(&app, "ondemand").await;
    let (status, op) = app.send_json(Method::POST, "/api/v1/reconcile", &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.wait_op(&op, LONG).await["status"], "succeeded");
    let (status, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/reconcile"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(app.wait_op(&op, LONG).await["status"], "succeeded");
}

#[tokio::test]
async fn a_lost_nodes_instances_are_started_on_a_live_node_when_failover_is_on() {
    let app = spawn_app().await;
    let on = ("DRAAS_RECONCILE__FAILOVER", "true");
    let mut a = app.start_worker("node-a", &[FAST, on]);
    let (id, started) = running_instance(&app, "movable").await;
    assert_eq!(started["result"]["node"], "node-a");
    let _b = app.start_worker("node-b", &[FAST, on]);
    a.kill();
    kill(started["result"]["pid"].as_i64().unwrap()); // the host is gone with its processes
    let stranded = app.submit(&id, "restart").await; // queued for node-a, which will never run it
    let moved = eventually("a start on a live node", LONG, || async {
        let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
        ops["items"].as_array()?.iter().find(|o| o["reason"] == "not-running" && o["status"] == "succeeded").cloned()
    })
    .await;
    assert_eq!(moved["result"]["node"], "node-b", "{moved}");
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "running");
    let h = history(&app, &id).await;
    assert!(h.iter().any(|c| c["to"] == "unknown" && c["reason"] == "failover"), "{h:?}");
    let stranded = app.wait_op(&stranded, LONG).await;
    assert_eq!((stranded["status"].as_str(), stranded["error"]["code"].as_str()), (Some("failed"), Some("node_lost")));
}
