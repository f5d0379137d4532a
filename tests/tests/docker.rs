//! The docker platform against a real Docker engine: the process platform's lifecycle and
//! reconciliation tests again, with containers of the stand-in image (`FROM scratch`, built by
//! the harness). Each test's containers carry its own deployment label and are removed at the
//! end however it ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptions, DownloadFromContainerOptions, KillContainerOptions};
use draas_tests::docker::{self, ContainerGuard, SLOW_IMAGE};
use draas_tests::{DraasProcess, TestApp, eventually, spawn_app};
use futures::TryStreamExt;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// Reconcile every second in these tests.
const FAST: (&str, &str) = ("DRAAS_RECONCILE__INTERVAL_SECS", "1");

/// One test's world: its app, an engine client, and the guard removing its containers.
struct World {
    app: TestApp,
    docker: Docker,
    _guard: ContainerGuard,
}

async fn world() -> World {
    docker::standin_images();
    let mut app = spawn_app().await;
    app.allow_images("draas-standin:*,draas-test/*,127.0.0.1:9/*");
    let docker = docker::docker().await;
    let guard = ContainerGuard { prefix: app.prefix.clone() };
    World { app, docker, _guard: guard }
}

impl World {
    fn worker(&self, node: &str, extra: &[(&str, &str)]) -> DraasProcess {
        let env = docker::worker_env(self.app.ports);
        let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        self.app.start_worker(node, &all)
    }

    async fn create(&self, name: &str, config: Value, runtime: Value) -> String {
        let body = json!({"name": name, "platform": "docker", "config": config, "runtime": runtime});
        let (status, created) = self.app.send_json(Method::POST, "/api/v1/instances", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    async fn start(&self, id: &str) -> Value {
        let op = self.app.wait_op(&self.app.submit(id, "start").await, LONG).await;
        assert_eq!(op["status"], "succeeded", "{op}");
        op
    }

    async fn container(&self, id: &str) -> Option<ContainerInspectResponse> {
        self.docker.inspect_container(&format!("draas-{id}"), None).await.ok()
    }

    async fn count(&self) -> usize {
        docker::containers(&self.docker, &self.app.prefix).await.len()
    }

    /// The YAML the API says drasi-server gets, and its spec hash.
    async fn served_yaml(&self, id: &str) -> (String, String) {
        let res = self
            .app
            .req(Method::GET, &format!("/api/v1/instances/{id}/config"))
            .header(header::ACCEPT, "application/yaml")
            .send()
            .await
            .unwrap();
        let hash = res.headers()["x-draas-spec-hash"].to_str().unwrap().to_owned();
        (res.text().await.unwrap(), hash)
    }

    /// The config file inside the container: its text and mode.
    async fn config_file(&self, id: &str) -> (String, u32) {
        let options = DownloadFromContainerOptions { path: "/app/config/server.yaml".into() };
        let chunks: Vec<_> =
            self.docker.download_from_container(&format!("draas-{id}"), Some(options)).try_collect().await.unwrap();
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|b| b.to_vec()).collect();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mode = entry.header().mode().unwrap();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        (text, mode)
    }
}

fn minimal() -> Value {
    json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

async fn health(endpoint: &str) -> bool {
    matches!(reqwest::get(format!("{endpoint}/health")).await, Ok(r) if r.status().is_success())
}

#[tokio::test]
async fn start_stop_delete_runs_a_labelled_limited_container_and_removes_it() {
    let w = world().await;
    let _worker = w.worker("node-a", &[]);
    let id = w.create("boxed", draas_tests::sample_config(), json!({"memory": "256Mi", "cpus": 0.5})).await;

    let op = w.start(&id).await;
    let endpoint = op["result"]["endpoint"].as_str().unwrap().to_owned();
    assert!(health(&endpoint).await, "{op}");
    let port = op["result"]["port"].as_u64().unwrap();
    assert!((u64::from(w.app.ports.0)..=u64::from(w.app.ports.1)).contains(&port));
    let c = w.container(&id).await.expect("container");
    assert_eq!(op["result"]["containerId"].as_str(), c.id.as_deref());
    let (yaml, hash) = w.served_yaml(&id).await;
    assert_eq!(label(&c, "draas.managed"), Some("true"));
    assert_eq!(label(&c, "draas.instance"), Some(id.as_str()));
    assert_eq!(label(&c, "draas.deployment"), Some(w.app.prefix.as_str()));
    assert_eq!(label(&c, "draas.deployment-id"), Some(w.app.deployment_id().await.as_str()));
    assert_eq!(label(&c, "draas.spec-hash"), Some(hash.as_str()));
    let host = c.host_config.clone().unwrap();
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    // Hardened: no capabilities, no privilege gain, nothing written outside its volumes.
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_owned()]));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert!(host.tmpfs.as_ref().is_some_and(|t| t.contains_key("/tmp")), "{:?}", host.tmpfs);
    assert_eq!(host.restart_policy.unwrap().name, Some(RestartPolicyNameEnum::NO));
    assert_eq!(c.config.as_ref().unwrap().stop_signal.as_deref(), Some("SIGINT"));
    let (file, mode) = w.config_file(&id).await;
    assert_eq!(file, yaml, "the container's file is exactly the YAML the API shows");
    assert_eq!(mode & 0o777, 0o666, "writable: drasi-server's API takes changes only then");

    let stop = w.app.wait_op(&w.app.submit(&id, "stop").await, LONG).await;
    assert_eq!(stop["status"], "succeeded", "{stop}");
    assert!(!health(&endpoint).await);
    let state = w.container(&id).await.unwrap().state.unwrap();
    assert_eq!((state.running, state.exit_code), (Some(false), Some(0)), "SIGINT: a clean exit");

    let (status, del) = w.app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{del}");
    assert_eq!(w.app.wait_op(&del, LONG).await["status"], "succeeded");
    assert!(w.container(&id).await.is_none(), "the container and its config file are gone");
    assert_eq!(w.count().await, 0);
}

#[tokio::test]
async fn secrets_reach_the_container_as_its_environment_and_nothing_of_the_workers() {
    let w = world().await;
    let _worker = w.worker("node-a", &[("WORKER_ONLY_VARIABLE", "leak")]);
    let body = json!({"name": "boxed-secrets", "platform": "docker",
        "config": {"id": "${APP_ID}", "logLevel": "info", "sources": [], "queries": [], "reactions": []},
        "secrets": {"APP_ID": "boxed-secret"}});
    let (status, created) = w.app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let op = w.start(&id).await;
    let endpoint = op["result"]["endpoint"].as_str().unwrap().to_owned();
    let served: Value = reqwest::get(format!("{endpoint}/api/v1/config")).await.unwrap().json().await.unwrap();
    assert_eq!(served["id"], "boxed-secret", "drasi-server resolved ${{APP_ID}} to the secret");
    let c = w.container(&id).await.expect("container");
    let env = c.config.as_ref().unwrap().env.clone().unwrap_or_default();
    assert!(env.contains(&"APP_ID=boxed-secret".to_owned()), "{env:?}");
    assert!(!env.iter().any(|v| v.starts_with("WORKER_ONLY_VARIABLE=") || v.starts_with("DRAAS_")), "{env:?}");
    let host = c.host_config.clone().unwrap();
    assert_eq!((host.cap_drop, host.readonly_rootfs), (Some(vec!["ALL".to_owned()]), Some(true)), "still hardened");
}

#[tokio::test]
async fn starting_twice_adopts_the_running_container() {
    let w = world().await;
    let _worker = w.worker("node-a", &[]);
    let id = w.create("twice", minimal(), json!({})).await;
    let first = w.start(&id).await;
    let second = w.start(&id).await;
    assert_eq!(first["result"]["containerId"], second["result"]["containerId"], "{second}");
    assert_eq!(w.count().await, 1);
}

#[tokio::test]
async fn a_config_change_replaces_the_container_with_the_new_config() {
    let w = world().await;
    let _worker = w.worker("node-a", &[FAST]);
    let id = w.create("redeploy", minimal(), json!({})).await;
    let before = w.start(&id).await["result"]["containerId"].as_str().unwrap().to_owned();
    let res = w
        .app
        .send_body(
            Method::PATCH,
            &format!("/api/v1/instances/{id}/config"),
            "application/merge-patch+json",
            r#"{"logLevel": "debug"}"#,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (yaml, hash) = w.served_yaml(&id).await;
    let c = eventually("a container with the new spec hash", LONG, || async {
        let c = w.container(&id).await?;
        let running = c.state.as_ref()?.running == Some(true);
        (running && label(&c, "draas.spec-hash") == Some(hash.as_str())).then_some(c)
    })
    .await;
    assert_ne!(c.id.as_deref(), Some(before.as_str()), "a new container");
    let (file, _) = w.config_file(&id).await;
    assert_eq!(file, yaml);
    assert!(file.contains("logLevel: debug"), "{file}");
    assert_eq!(w.count().await, 1);
}

#[tokio::test]
async fn a_killed_container_is_repaired_within_two_ticks() {
    let w = world().await;
    // The ticks alone: the event stream (tested below) would see it sooner.
    let _worker = w.worker("node-a", &[FAST, ("DRAAS_DOCKER__FOLLOW_EVENTS", "false")]);
    let id = w.create("crashme", minimal(), json!({})).await;
    let before = w.start(&id).await["result"]["containerId"].as_str().unwrap().to_owned();
    let killed = chrono::Utc::now();
    let options = KillContainerOptions { signal: "SIGKILL".into() };
    w.docker.kill_container(&format!("draas-{id}"), Some(options)).await.unwrap();
    let h = eventually("crashed, then running again in a new container", LONG, || async {
        let h = history(&w.app, &id).await;
        let crash = h.iter().position(|c| c["to"] == "error" && c["reason"] == "crashed")?;
        let back = h[crash..].iter().position(|c| c["to"] == "running")?;
        let c = w.container(&id).await?;
        (c.id.as_deref() != Some(before.as_str())).then(|| (h[crash].clone(), h[crash + back].clone()))
    })
    .await;
    let (crash, back) = h;
    assert_eq!((crash["from"].as_str(), crash["source"].as_str()), (Some("running"), Some("reconciler")));
    let at = |c: &Value| c["at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let (seen, repaired) = ((at(&crash) - killed).to_std().unwrap(), (at(&back) - killed).to_std().unwrap());
    eprintln!("kill → crash recorded {seen:?}, → running again {repaired:?}");
    assert!(seen < Duration::from_secs(2), "seen within two ticks: {seen:?}");
    assert!(repaired < Duration::from_secs(2 + 10), "repaired within two ticks plus the restart: {repaired:?}");
    let (_, ops) = w.app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    assert!(
        ops["items"].as_array().unwrap().iter().any(|o| o["kind"] == "restart" && o["reason"] == "crashed"),
        "{ops}"
    );
    assert_eq!(w.count().await, 1);
}

#[tokio::test]
async fn a_container_death_is_recorded_from_the_engine_events_before_the_next_tick() {
    let w = world().await;
    // One tick a minute: a repair within seconds can only come from the event stream.
    let worker = w.worker("node-a", &[("DRAAS_RECONCILE__INTERVAL_SECS", "60")]);
    let id = w.create("evented", minimal(), json!({})).await;
    let before = w.start(&id).await["result"]["containerId"].as_str().unwrap().to_owned();
    let killed = chrono::Utc::now();
    let options = KillContainerOptions { signal: "SIGKILL".into() };
    w.docker.kill_container(&format!("draas-{id}"), Some(options)).await.unwrap();
    let (crash, _) = eventually("crashed, then running again", Duration::from_secs(20), || async {
        let h = history(&w.app, &id).await;
        let crash = h.iter().position(|c| c["to"] == "error" && c["reason"] == "crashed")?;
        let back = h[crash..].iter().position(|c| c["to"] == "running")?;
        let c = w.container(&id).await?;
        (c.id.as_deref() != Some(before.as_str())).then(|| (h[crash].clone(), h[crash + back].clone()))
    })
    .await;
    let at = crash["at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let seen = (at - killed).to_std().unwrap();
    eprintln!("kill → crash recorded from the event {seen:?}");
    assert!(seen < Duration::from_secs(2), "{seen:?}");
    assert!(worker.logged(&["reports the server died", &id]), "the event path acted");
}

async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, h) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let mut items = h["items"].as_array().unwrap().clone();
    items.reverse(); // oldest first
    items
}

#[tokio::test]
async fn a_worker_killed_mid_start_leaves_exactly_one_container() {
    let w = world().await;
    let mut first = w.worker("node-a", &[]);
    let id = w.create("midstart", minimal(), json!({"image": SLOW_IMAGE})).await;
    let op = w.app.submit(&id, "start").await;
    eventually("the container to be created", LONG, || async { w.container(&id).await }).await;
    first.kill();
    let _second = w.worker("node-b", &[]);
    let done = w.app.wait_op(&op, LONG).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(health(done["result"]["endpoint"].as_str().unwrap()).await);
    assert_eq!(w.count().await, 1);
}

#[tokio::test]
async fn a_missing_image_with_policy_never_fails_the_start_with_image_missing() {
    let w = world().await;
    let _worker = w.worker("node-a", &[]);
    let id = w.create("noimage", minimal(), json!({"image": "draas-test/no-such-image:0"})).await;
    let op = w.app.wait_op(&w.app.submit(&id, "start").await, LONG).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "image_missing", "{op}");
    let message = op["error"]["message"].as_str().unwrap();
    assert!(message.contains("draas-test/no-such-image:0") && message.contains("never"), "{message}");
    assert_eq!(op["attempt"], 1, "permanent: not retried");
    assert_eq!(w.count().await, 0);
}

#[tokio::test]
async fn a_pull_that_cannot_reach_a_registry_fails_with_image_pull_failed() {
    let w = world().await;
    let _worker = w.worker("node-a", &[("DRAAS_DOCKER__IMAGE_POLICY", "if-missing")]);
    let id = w.create("nopull", minimal(), json!({"image": "127.0.0.1:9/draas-test/none:0"})).await;
    let op = w.app.wait_op(&w.app.submit(&id, "start").await, LONG).await;
    assert_eq!(op["status"], "failed", "{op}");
    assert_eq!(op["error"]["code"], "image_pull_failed", "{op}");
    assert!(op["error"]["message"].as_str().unwrap().contains("127.0.0.1:9/draas-test/none:0"), "{op}");
}

#[tokio::test]
async fn an_orphan_container_of_this_deployment_is_reported_and_removed_and_others_are_left_alone() {
    let w = world().await;
    let foreign = format!("{}-other", w.app.prefix);
    let _foreign_guard = ContainerGuard { prefix: foreign.clone() };
    let ours = w.app.deployment_id().await;
    let orphan = create_labelled(&w.docker, (&w.app.prefix, &ours), "orphan").await;
    // Another deployment of the same name (its own Redis): the id tells them apart.
    let namesake = create_labelled(&w.docker, (&w.app.prefix, "01namesake0000000000000000"), "namesake").await;
    let other = create_labelled(&w.docker, (&foreign, &ours), "other").await;
    let worker = w.worker("node-a", &[FAST, ("DRAAS_RECONCILE__REMOVE_ORPHANS", "true")]);
    // Global passes (which find orphans) run while an instance is desired running.
    let watched = w.app.create_instance("watched", serde_json::json!({})).await["id"].as_str().unwrap().to_owned();
    w.app.submit(&watched, "start").await;
    eventually("the orphan removed", LONG, || async {
        w.docker.inspect_container(&orphan, None).await.is_err().then_some(())
    })
    .await;
    assert!(worker.logged(&["no instance owns", "01orphan"]), "reported");
    assert!(w.docker.inspect_container(&other, None).await.is_ok(), "another deployment's container is left");
    assert!(w.docker.inspect_container(&namesake, None).await.is_ok(), "a namesake deployment's container is left");
}

/// A draas-labelled container of `deployment` (name, id) whose instance does not exist.
async fn create_labelled(docker: &Docker, (deployment, id): (&str, &str), tag: &str) -> String {
    let labels = [
        ("draas.managed", "true".to_owned()),
        ("draas.deployment", deployment.to_owned()),
        ("draas.deployment-id", id.to_owned()),
        ("draas.instance", format!("01{tag}00000000000000000000")),
        ("draas.spec-hash", "0".to_owned()),
    ];
    let body = ContainerCreateBody {
        image: Some(docker::IMAGE.into()),
        labels: Some(labels.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ..Default::default()
    };
    let name = format!("draas-test-{deployment}-{tag}");
    let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    docker.create_container(Some(options), body).await.unwrap();
    name
}

/// The mock → log and sse pipeline on the real drasi-server, in an image built `FROM scratch`
/// from its binary; the plugins reach the container in its config archive (no bind mount), only
/// those the configuration needs.
#[tokio::test]
async fn a_real_mock_pipeline_runs_in_a_container_with_its_plugins_copied_in() {
    let Some(real) = draas_tests::real_server("the docker mock pipeline") else { return };
    let w = world().await;
    let image = docker::real_server_image(&real.bin);
    let plugins = real.plugins.to_str().unwrap();
    let _worker = w.worker("node-a", &[FAST, ("DRAAS_DOCKER_IMAGE", image), ("DRAAS_DOCKER__PLUGINS_DIR", plugins)]);

    let catalog = eventually("the docker catalog", LONG, || async {
        let (_, body) = w.app.get_json("/api/v1/plugins").await;
        body["catalogs"].as_array()?.iter().find(|c| c["platform"] == "docker").cloned()
    })
    .await;
    assert!(catalog["kinds"].as_array().unwrap().contains(&json!("source/mock")), "{catalog}");
    let config = json!({
        "logLevel": "info",
        "sources": [{"kind": "mock", "id": "sensors", "dataType": {"type": "sensorReading", "sensorCount": 3},
                     "intervalMs": 200}],
        "queries": [{"id": "temps", "sources": [{"sourceId": "sensors"}],
                     "query": "MATCH (s:SensorReading) RETURN s.sensor_id AS sensor, s.temperature AS temperature"}],
        "reactions": [{"kind": "log", "id": "out", "queries": ["temps"]},
                      {"kind": "sse", "id": "stream", "queries": ["temps"]}],
    });
    let mut lacking = config.clone();
    lacking["sources"][0]["kind"] = json!("kafka");
    let body = json!({"name": "lacking", "platform": "docker", "config": lacking});
    let (status, problem) = w.app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("plugin_missing")));
    assert_eq!(problem["pointer"], "/config/sources/0/kind", "{problem}");

    let id = w.create("sensors", config, json!({})).await;
    let op = w.start(&id).await;
    let endpoint = op["result"]["endpoint"].as_str().unwrap().to_owned();
    let rows = eventually("the mock readings in the results", LONG, || async {
        let body: Value =
            reqwest::get(format!("{endpoint}/api/v1/queries/temps/results")).await.ok()?.json().await.ok()?;
        body["data"].as_array().filter(|rows| !rows.is_empty()).cloned()
    })
    .await;
    assert!(rows.iter().all(|r| r["sensor"].is_string() && r["temperature"].is_number()), "{rows:?}");

    // The sse reaction listens on a port of the pool, published like the server's.
    let instance =
        w.app.wait_instance(&id, "listeners recorded", LONG, |i| !i["runtimeFacts"]["listeners"].is_null()).await;
    let stream = instance["runtimeFacts"]["listeners"]["reactions/stream"].as_str().unwrap().to_owned();
    let mut events = draas_tests::SseStream::open(&format!("{stream}/events"), LONG).await;
    let event = events.until(LONG, |d| d.contains("temps")).await;
    assert!(event.contains("temperature"), "{event}");

    // Only the plugins this configuration needs are in the container.
    let options = DownloadFromContainerOptions { path: "/app/plugins".into() };
    let chunks: Vec<_> =
        w.docker.download_from_container(&format!("draas-{id}"), Some(options)).try_collect().await.unwrap();
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|b| b.to_vec()).collect();
    let mut names: Vec<String> = tar::Archive::new(bytes.as_slice())
        .entries()
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().ok()?.file_name()?.to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".so"))
        .collect();
    names.sort();
    assert_eq!(names, ["libdrasi_reaction_log.so", "libdrasi_reaction_sse.so", "libdrasi_source_mock.so"]);

    let healthy = w.app.wait_instance(&id, "components recorded", LONG, |i| i["componentsSummary"]["total"] == 4).await;
    assert_eq!(healthy["componentsSummary"], json!({"total": 4, "running": 4, "failing": 0}), "{healthy}");

    // A live change keeps the container: a reaction added through draas is created in it.
    let container = w.container(&id).await.unwrap().id;
    let body = r#"{"kind": "log", "id": "audit", "queries": ["temps"]}"#;
    let res = w
        .app
        .send_body(Method::POST, &format!("/api/v1/instances/{id}/config/reactions?wait=30"), "application/json", body)
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let op = res.headers()["x-draas-operation"].to_str().unwrap().to_owned();
    let (_, op) = w.app.get_json(&format!("/api/v1/operations/{op}")).await;
    assert_eq!(op["result"]["applied"]["how"], "live", "{op}");
    assert_eq!(op["result"]["applied"]["steps"], json!(["create reaction audit"]), "{op}");
    assert_eq!(w.container(&id).await.unwrap().id, container, "the same container");
    let reactions: Value = reqwest::get(format!("{endpoint}/api/v1/reactions")).await.unwrap().json().await.unwrap();
    assert!(reactions.to_string().contains("\"audit\""), "{reactions}");

    // drasi-server's data directory is a named volume of the instance: a new container (a
    // restart) mounts the same one; delete removes it.
    let volume = format!("draas-{id}-data");
    let created = w.docker.inspect_volume(&volume).await.unwrap().created_at;
    let mounted = |c: &ContainerInspectResponse| {
        c.mounts
            .iter()
            .flatten()
            .any(|m| m.name.as_deref() == Some(volume.as_str()) && m.destination.as_deref() == Some("/app/data"))
    };
    assert!(mounted(&w.container(&id).await.unwrap()));
    let restart = w.app.wait_op(&w.app.submit(&id, "restart").await, LONG).await;
    assert_eq!(restart["status"], "succeeded", "{restart}");
    let after = w.container(&id).await.unwrap();
    assert_ne!(after.id, container, "a new container");
    assert!(mounted(&after), "the new container mounts the same volume");
    assert_eq!(w.docker.inspect_volume(&volume).await.unwrap().created_at, created, "the same volume");
    let (_, del) = w.app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}?wait=30"), &Value::Null).await;
    assert_eq!(del["status"], "succeeded", "{del}");
    assert!(w.docker.inspect_volume(&volume).await.is_err(), "the volume went with the instance");
}
