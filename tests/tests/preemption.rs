//! A newer operation on an instance ends an older attempt that is only waiting (for `/health`,
//! for a rollout): the older ends `superseded`, the newer runs at once, nothing is left behind;
//! on every platform. And an instance whose platform cannot be reached can still be deleted,
//! with `?force=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::docker::{self, ContainerGuard, UNHEALTHY_IMAGE};
use draas_tests::kube::{FakeController, TestNamespace};
use draas_tests::{TestApp, eventually, spawn_app};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

fn minimal() -> Value {
    json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

async fn create(app: &TestApp, name: &str, platform: &str, runtime: Value) -> String {
    let body = json!({"name": name, "platform": platform, "config": minimal(), "runtime": runtime});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

/// Submit `DELETE` (with `query`) and return its operation.
async fn delete(app: &TestApp, id: &str, query: &str) -> Value {
    let res = app.req(Method::DELETE, &format!("/api/v1/instances/{id}{query}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    res.json().await.unwrap()
}

/// Start `id`, wait until its start is running (waiting for the server), then delete it:
/// the start ends superseded and the delete succeeds, long before the start's own deadline.
/// Returns how long the start took to give way.
async fn start_then_delete(app: &TestApp, id: &str, waiting: impl AsyncFn() -> bool) -> Duration {
    let start = app.submit(id, "start").await;
    let path = format!("/api/v1/operations/{}", start["id"].as_str().unwrap());
    eventually("the start to wait for its server", LONG, || async {
        let (_, op) = app.get_json(&path).await;
        (op["status"] == "running" && waiting().await).then_some(())
    })
    .await;
    let t = Instant::now();
    let del = delete(app, id, "").await;
    let start = app.wait_op(&start, LONG).await;
    let gave_way = t.elapsed();
    assert_eq!(start["status"], "superseded", "{start}");
    let del = app.wait_op(&del, LONG).await;
    assert_eq!(del["status"], "succeeded", "{del}");
    assert!(t.elapsed() < Duration::from_secs(20), "the delete ran at once, not after the start's deadline");
    let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    eprintln!("start gave way {} ms after the delete was submitted", gave_way.as_millis());
    gave_way
}

#[tokio::test]
async fn a_delete_ends_a_process_start_that_waits_for_health_and_leaves_no_server() {
    let app = spawn_app().await;
    let _worker = app
        .start_worker("node-a", &[("DRASI_STANDIN_NEVER_HEALTHY", "1"), ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "120")]);
    let id = create(&app, "waiter", "process", json!(null)).await;
    start_then_delete(&app, &id, async || !app.servers().is_empty()).await;
    assert!(app.servers().is_empty(), "no server left: {:?}", app.servers());
}

#[tokio::test]
async fn a_restart_ends_a_process_start_that_waits_for_health() {
    let app = spawn_app().await;
    let _worker = app
        .start_worker("node-a", &[("DRASI_STANDIN_NEVER_HEALTHY", "1"), ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "3")]);
    let id = create(&app, "restarted", "process", json!(null)).await;
    let start = app.submit(&id, "start").await;
    let path = format!("/api/v1/operations/{}", start["id"].as_str().unwrap());
    eventually("the start to wait for its server", LONG, || async {
        let (_, op) = app.get_json(&path).await;
        (op["status"] == "running" && !app.servers().is_empty()).then_some(())
    })
    .await;
    let restart = app.submit(&id, "restart").await;
    assert_eq!(app.wait_op(&start, LONG).await["status"], "superseded");
    // The restart itself waits for a server that is never healthy: it fails on its own
    // deadline (3 s), having stopped the server the start left.
    let restart = app.wait_op(&restart, LONG).await;
    assert_eq!(restart["error"]["code"], "health_timeout", "{restart}");
    assert!(app.servers().len() <= 1, "never two servers of one instance: {:?}", app.servers());
}

#[tokio::test]
async fn a_delete_ends_a_docker_start_that_waits_for_health_and_leaves_no_container() {
    docker::standin_images();
    let mut app = spawn_app().await;
    app.allow_images(UNHEALTHY_IMAGE);
    let engine = docker::docker().await;
    let _guard = ContainerGuard { prefix: app.prefix.clone() };
    let env = docker::worker_env(app.ports);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("DRAAS_DOCKER__HEALTH_TIMEOUT_SECS", "120"));
    let _worker = app.start_worker("node-a", &all);
    let id = create(&app, "boxed", "docker", json!({"image": UNHEALTHY_IMAGE})).await;
    let name = format!("draas-{id}");
    start_then_delete(&app, &id, async || engine.inspect_container(&name, None).await.is_ok()).await;
    assert!(docker::containers(&engine, &app.prefix).await.is_empty(), "no container left");
}

#[tokio::test]
async fn a_delete_ends_a_kubernetes_start_that_waits_for_its_rollout_and_leaves_no_object() {
    let t = TestNamespace::new().await;
    let (admin, ns) = (&t.admin, &t.ns);
    let app = spawn_app().await;
    let base = t.worker_env();
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("DRAAS_KUBERNETES__START_TIMEOUT_SECS", "180"));
    let _worker = app.start_worker("node-a", &env);
    // The controller never reports the replica available: the rollout waits.
    let controller = FakeController::spawn(admin.clone(), ns);
    controller.pause().await;
    let id = create(&app, "rolling", "kubernetes", json!(null)).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), ns);
    let name = format!("draas-{id}");
    start_then_delete(&app, &id, async || deployments.get_opt(&name).await.ok().flatten().is_some()).await;
    assert!(deployments.get_opt(&name).await.unwrap().is_none(), "no Deployment left");
}

#[tokio::test]
async fn an_instance_whose_platform_is_unavailable_is_deleted_with_force() {
    let app = spawn_app().await;
    // A worker whose docker engine does not exist: docker operations fail at once.
    let _worker = app.start_worker("node-a", &[("DRAAS_DOCKER__ENDPOINT", "unix:///nonexistent/docker.sock")]);
    let id = create(&app, "stranded", "docker", json!(null)).await;
    let plain = app.wait_op(&delete(&app, &id, "").await, LONG).await;
    assert_eq!(
        (plain["status"].as_str(), plain["error"]["code"].as_str()),
        (Some("failed"), Some("platform_unavailable"))
    );
    let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::OK, "a plain delete keeps the records");

    let forced = app.wait_op(&delete(&app, &id, "?force=true").await, LONG).await;
    assert_eq!(forced["status"], "succeeded", "{forced}");
    let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = app.get_json("/api/v1/instances").await;
    assert!(list["items"].as_array().unwrap().iter().all(|i| i["id"] != id.as_str()), "gone from the list");
}
