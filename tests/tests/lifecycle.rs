//! Submit-and-poll lifecycle against real Redis, real workers and real (stand-in) processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{eventually, sample_config, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn minimal() -> Value {
    json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

async fn health(port: u64) -> Option<Value> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/health")).await.ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

#[tokio::test]
async fn start_stop_delete_runs_a_real_server_and_cleans_up_everything() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let created = app.create_instance("life", sample_config()).await;
    let id = created["id"].as_str().unwrap();

    let res = app.req(Method::POST, &format!("/api/v1/instances/{id}/start")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(res.headers().contains_key(header::RETRY_AFTER));
    let op: Value = res.json().await.unwrap();
    assert_eq!(location, format!("/api/v1/operations/{}", op["id"].as_str().unwrap()));
    assert_eq!((op["kind"].as_str(), op["status"].as_str()), (Some("start"), Some("queued")));
    let done = app.wait_op(&op, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let port = done["result"]["port"].as_u64().unwrap();
    assert!((u64::from(app.ports.0)..=u64::from(app.ports.1)).contains(&port));
    assert_eq!(done["result"]["node"], "node-a");
    assert!(done["result"]["pid"].as_i64().unwrap() > 1);
    assert_eq!(health(port).await.unwrap()["status"], "ok");
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!((inst["status"].as_str(), inst["desiredState"].as_str()), (Some("running"), Some("running")));

    let dir = app.data.path().join("instances").join(id);
    let config_file = dir.join("server.yaml");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let yaml = std::fs::read_to_string(&config_file).unwrap();
    let served = app
        .req(Method::GET, &format!("/api/v1/instances/{id}/config"))
        .header(header::ACCEPT, "application/yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(served.text().await.unwrap(), yaml, "the file is exactly the YAML the API shows");

    let stop = app.wait_op(&app.submit(id, "stop").await, LONG).await;
    assert_eq!(stop["status"], "succeeded", "{stop}");
    assert!(health(port).await.is_none());
    assert!(app.servers().is_empty());
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "stopped");

    let (status, del) = app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{del}");
    assert_eq!(app.wait_op(&del, LONG).await["status"], "succeeded");
    assert!(!dir.exists(), "config file and log are gone");
    let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut redis = app.redis().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{{{}}}:*{id}*", app.prefix)).query_async(&mut redis).await.unwrap();
    let leftovers: Vec<&String> = keys.iter().filter(|k| !k.contains(":ops:")).collect();
    assert!(leftovers.is_empty(), "instance keys left: {leftovers:?}");
    let ports: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(format!("{{{}}}:ports", app.prefix)).query_async(&mut redis).await.unwrap();
    assert!(ports.is_empty(), "port released: {ports:?}");
}

#[tokio::test]
async fn starting_twice_leaves_exactly_one_process() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("twice", minimal()).await["id"].as_str().unwrap().to_owned();
    let first = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    let second = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!((first["status"].as_str(), second["status"].as_str()), (Some("succeeded"), Some("succeeded")));
    assert_eq!(first["result"]["pid"], second["result"]["pid"], "the second start adopted the first process");
    assert_eq!(app.servers().len(), 1);
}

#[tokio::test]
async fn wait_returns_200_with_the_finished_operation() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("waiter", minimal()).await["id"].as_str().unwrap().to_owned();
    let res = app.req(Method::POST, &format!("/api/v1/instances/{id}/start?wait=30")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let op: Value = res.json().await.unwrap();
    assert_eq!(op["status"], "succeeded");
    let res = app.req(Method::POST, &format!("/api/v1/instances/{id}/stop?wait=61")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn twenty_start_stop_pairs_end_in_the_last_desired_state() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("flappy", minimal()).await["id"].as_str().unwrap().to_owned();
    let mut ops = Vec::new();
    for _ in 0..20 {
        ops.push(app.submit(&id, "start").await);
        ops.push(app.submit(&id, "stop").await);
    }
    ops.push(app.submit(&id, "start").await);
    for op in &ops {
        let done = app.wait_op(op, LONG).await;
        assert!(matches!(done["status"].as_str(), Some("succeeded" | "superseded")), "{done}");
    }
    let last = app.wait_op(ops.last().unwrap(), LONG).await;
    assert_eq!(last["status"], "succeeded");
    let inst = app.wait_instance(&id, "running", LONG, |i| i["status"] == "running").await;
    assert_eq!(inst["desiredState"], "running");
    assert_eq!(app.servers().len(), 1);
}

#[tokio::test]
async fn a_missing_executable_fails_the_operation_at_once_and_marks_the_instance_error() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRAAS_PROCESS_EXECUTABLE", "/nonexistent/drasi-server")]);
    let id = app.create_instance("noexe", minimal()).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "executable_not_found");
    assert!(done["error"]["message"].as_str().unwrap().contains("/nonexistent/drasi-server"));
    assert_eq!(done["attempt"], 1, "a permanent failure is not retried");
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "error");
    assert!(inst["statusMessage"].as_str().unwrap().contains("executable_not_found"));
}

#[tokio::test]
async fn a_config_the_server_rejects_fails_with_the_servers_own_message() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let config = json!({"id": "${TEST_UNSET_ID}", "sources": [], "queries": [], "reactions": []});
    let id = app.create_instance("rejected", config).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "config_rejected");
    assert_eq!(done["attempt"], 1, "a rejected configuration is not retried");
    let message = done["error"]["message"].as_str().unwrap();
    assert!(message.contains("TEST_UNSET_ID") && message.contains("not found"), "{done}");
    assert!(app.servers().is_empty());
}

#[tokio::test]
async fn a_config_needing_a_plugin_the_node_lacks_fails_before_a_server_is_spawned() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let config = json!({"sources": [{"kind": "postgres", "id": "db", "host": "db.local"}]});
    let id = app.create_instance("pluginless", config).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "plugin_missing");
    assert_eq!(done["attempt"], 1, "a missing plugin is not retried");
    assert!(done["error"]["detail"].as_str().unwrap().contains("source/postgres — not installed"), "{done}");
    assert!(app.servers().is_empty(), "no server was spawned to die of it");
}

#[tokio::test]
async fn a_server_that_crashes_at_start_fails_after_its_attempts_with_the_log_tail() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRASI_STANDIN_CRASH_AFTER_SECS", "0")]);
    let id = app.create_instance("crashy", minimal()).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempt"], done["maxAttempts"], "a transient failure is retried up to the cap");
    assert!(done["attempt"].as_u64().unwrap() > 1);
    assert_eq!(done["error"]["code"], "crashed_on_start");
    assert!(done["error"]["detail"].as_str().unwrap().contains("simulated crash"), "{done}");
}

#[tokio::test]
async fn a_job_that_times_out_or_panics_ends_failed_not_stuck_running() {
    let app = spawn_app().await;
    let slow = app.start_worker(
        "node-a",
        &[("DRASI_STANDIN_STARTUP_DELAY_MS", "10000"), ("DRAAS_WORKER__ATTEMPT_TIMEOUT_SECS", "1")],
    );
    let id = app.create_instance("slow", minimal()).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("attempt_timeout")),
        "{done}"
    );
    assert_eq!(done["attempt"], done["maxAttempts"]);
    drop(slow);

    let _panicky = app.start_worker("node-a", &[("DRAAS_WORKER__INJECT_PANIC", "true")]);
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("failed"), Some("panicked")), "{done}");
    assert_eq!(done["attempt"], done["maxAttempts"]);
}

#[tokio::test]
async fn a_worker_killed_during_a_start_is_replaced_and_exactly_one_process_exists() {
    let app = spawn_app().await;
    let slow = [("DRASI_STANDIN_STARTUP_DELAY_MS", "2500")];
    let mut first = app.start_worker("node-a", &slow);
    let id = app.create_instance("orphan", minimal()).await["id"].as_str().unwrap().to_owned();
    let op = app.submit(&id, "start").await;
    let path = format!("/api/v1/operations/{}", op["id"].as_str().unwrap());
    eventually("the first worker to spawn the server", LONG, || async {
        let (_, o) = app.get_json(&path).await;
        (o["status"] == "running" && !app.servers().is_empty()).then_some(())
    })
    .await;
    first.kill();
    let _second = app.start_worker("node-a", &slow);
    let done = app.wait_op(&op, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(app.servers().len(), 1, "no duplicate drasi-server");
    assert!(health(done["result"]["port"].as_u64().unwrap()).await.is_some());
}

#[tokio::test]
async fn a_stop_runs_on_the_node_that_owns_the_process() {
    let app = spawn_app().await;
    let _a = app.start_worker("node-a", &[]);
    let _b = app.start_worker("node-b", &[]);
    let mut owners = std::collections::HashSet::new();
    for i in 0..4 {
        let id = app.create_instance(&format!("placed{i}"), minimal()).await["id"].as_str().unwrap().to_owned();
        let started = app.wait_op(&app.submit(&id, "start").await, LONG).await;
        assert_eq!(started["status"], "succeeded", "{started}");
        let owner = started["result"]["node"].as_str().unwrap().to_owned();
        let stopped = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
        assert_eq!(stopped["status"], "succeeded", "{stopped}");
        assert_eq!(stopped["result"]["node"].as_str(), Some(owner.as_str()), "stop ran where the process is");
        owners.insert(owner);
    }
    assert!(app.servers().is_empty());
    assert!(!owners.is_empty());
}

#[tokio::test]
async fn a_queued_operation_can_be_cancelled_and_a_finished_one_cannot() {
    let app = spawn_app().await;
    let id = app.create_instance("cancel", minimal()).await["id"].as_str().unwrap().to_owned();
    let op = app.submit(&id, "start").await;
    let path = format!("/api/v1/operations/{}/cancel", op["id"].as_str().unwrap());
    let (status, cancelled) = app.send_json(Method::POST, &path, &Value::Null).await;
    assert_eq!((status, cancelled["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["desiredState"], "stopped", "the cancelled start no longer wants the instance running");
    let _worker = app.start_worker("node-a", &[]);
    let (status, again) = app.send_json(Method::POST, &path, &Value::Null).await;
    assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("not_cancellable")));
    let later = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    assert_eq!(later["status"], "succeeded");
    assert!(app.servers().is_empty(), "the cancelled start never ran");
}

#[tokio::test]
async fn operations_are_listed_newest_first_per_instance() {
    let app = spawn_app().await;
    let id = app.create_instance("history", minimal()).await["id"].as_str().unwrap().to_owned();
    let a = app.submit(&id, "start").await;
    let b = app.submit(&id, "stop").await;
    let c = app.submit(&id, "restart").await;
    let (status, page) = app.get_json(&format!("/api/v1/operations?instance={id}&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = page["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [c["id"].as_str().unwrap(), b["id"].as_str().unwrap()]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = app.get_json(&format!("/api/v1/operations?instance={id}&limit=2&cursor={cursor}")).await;
    assert_eq!(rest["items"][0]["id"], a["id"]);
    for bad in ["/api/v1/operations/NOPE", "/api/v1/operations?instance=../x"] {
        let (status, _) = app.get_json(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (status, _) = app.get_json("/api/v1/operations/01aaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_server_that_ignores_the_stop_signal_is_killed_after_the_grace_period() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRASI_STANDIN_IGNORE_SIGINT", "1")]);
    let id = app.create_instance("stubborn", minimal()).await["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_op(&app.submit(&id, "start").await, LONG).await["status"], "succeeded");
    let stop = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    assert_eq!(stop["status"], "succeeded", "{stop}");
    assert!(app.servers().is_empty(), "SIGKILL after the grace period");
    let log = std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.log")).unwrap();
    assert!(log.contains("SIGINT"), "the server saw the stop signal first:\n{log}");
}
