//! What users may run (issue: "any token may pick any image, `cpus: 64`, `memory: 1024Ti`;
//! `pluginRegistry`, `autoInstallPlugins`, `verifyPlugins: false`, `solutionsDir: /etc`,
//! `stateStore.path: /root/.ssh/authorized_keys` pass validation and reach the server"): the
//! operator's image allow-list and CPU and memory maximums, the server settings only an admin
//! may write, and paths confined to the instance's directory — on every write path, refused
//! with 422 naming the field and nothing written; an admin token is exempt. On the real
//! drasi-server, a relative state store lands inside the instance's directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, eventually, spawn_app};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ADMIN: &str = "policy-admin-token";

async fn app_with_admin(extra: &[(&str, &str)]) -> TestApp {
    let mut app = spawn_app().await;
    app.api.kill();
    let mut env = vec![("DRAAS_ADMIN_TOKENS", ADMIN)];
    env.extend_from_slice(extra);
    app.api = app.start_api(&env);
    app
}

/// `(status, body)` of a JSON request sent with the admin token.
async fn as_admin(app: &TestApp, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.api.base_url);
    let res = app.client.request(method, url).bearer_auth(ADMIN).json(body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The (code, pointer) of every field error of a 422.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (e["code"].as_str().unwrap_or_default().to_owned(), e["pointer"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

async fn instance_count(app: &TestApp) -> usize {
    let (_, page) = app.get_json("/api/v1/instances").await;
    page["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn images_cpus_and_memory_beyond_the_policy_are_refused_and_an_admin_is_exempt() {
    let app = app_with_admin(&[("DRAAS_POLICY__IMAGES", "registry.example/drasi:*")]).await;
    let create = |runtime: Value| json!({"name": "boxed", "platform": "docker", "runtime": runtime});
    for (runtime, code, pointer) in [
        (json!({"image": "docker.io/attacker/anything"}), "image_not_allowed", "/runtime/image"),
        (json!({"cpus": 64}), "cpus_over_limit", "/runtime/cpus"),
        (json!({"memory": "1024Ti"}), "memory_over_limit", "/runtime/memory"),
    ] {
        let (status, problem) = app.send_json(Method::POST, "/api/v1/instances", &create(runtime.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{runtime}: {problem}");
        assert_eq!(field_errors(&problem), [(code.to_owned(), pointer.to_owned())], "{problem}");
    }
    assert_eq!(instance_count(&app).await, 0, "refused creates write nothing");

    // The platform's own image, an allowed one, and limits within the maximums pass.
    let own = json!({"image": "ghcr.io/drasi-project/drasi-server:latest", "cpus": 2, "memory": "2Gi"});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &create(own)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = format!("/api/v1/instances/{}", created["id"].as_str().unwrap());
    let (status, changed) =
        app.send_json(Method::PATCH, &path, &json!({"runtime": {"image": "registry.example/drasi:1.2"}})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");

    // A change of runtime options is held to the same policy.
    let (status, problem) =
        app.send_json(Method::PATCH, &path, &json!({"runtime": {"image": "docker.io/attacker/anything"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(field_errors(&problem), [("image_not_allowed".to_owned(), "/runtime/image".to_owned())]);
    let (_, unchanged) = app.get_json(&path).await;
    assert_eq!(unchanged["runtime"]["image"], "registry.example/drasi:1.2", "a refused change writes nothing");

    // An admin is exempt from the allow-list and the maximums.
    let (status, body) =
        as_admin(&app, Method::PATCH, &path, &json!({"runtime": {"image": "docker.io/ops/special:1", "cpus": 16}}))
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn server_settings_that_choose_plugins_are_admin_only_on_every_write_path() {
    let app = app_with_admin(&[]).await;
    let chosen = json!({"pluginRegistry": "http://plugins.attacker.example", "autoInstallPlugins": true, "verifyPlugins": false});
    let (status, problem) =
        app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "plugged", "config": chosen})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    let mut found = field_errors(&problem);
    found.sort();
    assert_eq!(
        found,
        [
            ("admin_only_setting".to_owned(), "/config/autoInstallPlugins".to_owned()),
            ("admin_only_setting".to_owned(), "/config/pluginRegistry".to_owned()),
            ("admin_only_setting".to_owned(), "/config/verifyPlugins".to_owned()),
        ]
    );
    assert_eq!(instance_count(&app).await, 0);

    let id = app.create_instance("plain", json!({})).await["id"].as_str().unwrap().to_owned();
    let config = format!("/api/v1/instances/{id}/config");
    // PUT, JSON Patch, merge patch and the original API's JSON Patch.
    let (status, problem) = app.send_json(Method::PUT, &config, &json!({"verifyPlugins": false})).await;
    assert_eq!(
        (status, field_errors(&problem)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec![("admin_only_setting".into(), "/verifyPlugins".into())])
    );
    let patch = json!([{"op": "add", "path": "/pluginRegistry", "value": "http://x.example"}]);
    let res = app
        .req(Method::PATCH, &config)
        .header("content-type", "application/json-patch+json")
        .json(&patch)
        .send()
        .await
        .unwrap();
    let (status, problem) = draas_tests::problem(res).await;
    assert_eq!(
        (status, field_errors(&problem)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec![("admin_only_setting".into(), "/pluginRegistry".into())])
    );
    let res = app
        .req(Method::PATCH, &config)
        .header("content-type", "application/merge-patch+json")
        .json(&json!({"autoInstallPlugins": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = app
        .req(Method::PATCH, &format!("/api/configuration/instances/{id}"))
        .header("content-type", "application/json-patch+json")
        .json(&patch)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body = res.text().await.unwrap();
    // The original API answers every invalid configuration with 400 and `{"error": …}`.
    assert!(status == StatusCode::BAD_REQUEST && body.contains("only an admin token may set it"), "{status}: {body}");
    let (_, stored) = app.get_json(&config).await;
    assert!(stored.get("pluginRegistry").is_none() && stored.get("verifyPlugins").is_none(), "{stored}");

    // An admin may set them; a user's later edit of something else leaves them be and passes.
    let (status, body) = as_admin(&app, Method::PUT, &config, &json!({"verifyPlugins": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        app.send_json(Method::PUT, &config, &json!({"verifyPlugins": true, "logLevel": "debug"})).await;
    assert_eq!(status, StatusCode::OK, "an admin's setting kept as it is: {body}");
    let (status, _) = app.send_json(Method::PUT, &config, &json!({"verifyPlugins": false})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "but not changed by a user");
}

#[tokio::test]
async fn paths_outside_the_instance_directory_are_refused() {
    let app = app_with_admin(&[]).await;
    for (config, pointer) in [
        (json!({"solutionsDir": "/etc"}), "/config/solutionsDir"),
        (json!({"stateStore": {"kind": "redb", "path": "/root/.ssh/authorized_keys"}}), "/config/stateStore/path"),
        (json!({"stateStore": {"kind": "redb", "path": "../../other/state.redb"}}), "/config/stateStore/path"),
        (json!({"stateStore": {"kind": "redb", "path": "${HOME}/state.redb"}}), "/config/stateStore/path"),
    ] {
        let (status, problem) =
            app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "pathy", "config": config})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{config}: {problem}");
        assert_eq!(field_errors(&problem), [("path_outside_instance".to_owned(), pointer.to_owned())], "{problem}");
    }
    assert_eq!(instance_count(&app).await, 0);
    let inside = json!({"solutionsDir": "solutions", "stateStore": {"kind": "redb", "path": "./state.redb"}});
    let (status, body) =
        app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "pathy", "config": inside})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A relative state store path of a real drasi-server lands inside the instance's own
/// directory (its working directory), nowhere else.
#[tokio::test]
async fn a_relative_state_store_of_the_real_server_lands_in_the_instance_directory() {
    let Some(real) = draas_tests::real_server("a relative state store of the real server") else { return };
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &real.worker_env());
    let config = json!({"enableUi": false, "stateStore": {"kind": "redb", "path": "state.redb"}});
    let id = app.create_instance("stateful", config).await["id"].as_str().unwrap().to_owned();
    let op = app.submit(&id, "start").await;
    let op = app.wait_op(&op, Duration::from_secs(60)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let file = eventually("the state store file", Duration::from_secs(20), || async {
        walk(app.data.path()).into_iter().find(|p| p.file_name().is_some_and(|n| n == "state.redb"))
    })
    .await;
    assert!(file.to_string_lossy().contains(&id), "{} is inside the instance's directory", file.display());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
