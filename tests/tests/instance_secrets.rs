//! Instance secrets: set, listed by name and removed, never shown; sealed in Redis; a
//! `${NAME}` resolves only to the instance's own secrets and the operator's allow-list; a
//! process server gets them (and nothing else of the worker's environment); what a failing
//! server prints is masked; keys rotate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, eventually, spawn_app};
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);
const ADMIN: &str = "admin-token-for-secret-tests";
const VALUE: &str = "s3cr3t-Value-9f2c";

fn secret_path(id: &str, name: &str) -> String {
    format!("/api/v1/instances/{id}/secrets/{name}")
}

async fn set(app: &TestApp, id: &str, name: &str, value: &str) -> (StatusCode, Value) {
    app.send_json(Method::PUT, &secret_path(id, name), &json!({"value": value})).await
}

fn minimal() -> Value {
    json!({"sources": [], "queries": [], "reactions": []})
}

async fn raw_secrets(app: &TestApp, id: &str) -> std::collections::HashMap<String, String> {
    let key = draas_tests::secrets_key(&app.prefix, id);
    app.redis().await.hgetall(key).await.unwrap()
}

#[tokio::test]
async fn secrets_are_set_listed_by_name_and_removed_and_never_shown() {
    let app = spawn_app().await;
    let id = app.create_instance("vault", minimal()).await["id"].as_str().unwrap().to_owned();
    let (status, body) = set(&app, &id, "PG_PASSWORD", VALUE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "PG_PASSWORD");
    assert!(body["updatedAt"].is_string(), "{body}");
    let (status, _) = set(&app, &id, "PG_PASSWORD", "another-value").await;
    assert_eq!(status, StatusCode::OK, "replaced");
    assert_eq!(set(&app, &id, "API_TOKEN", VALUE).await.0, StatusCode::CREATED);

    let (status, list) = app.get_json(&format!("/api/v1/instances/{id}/secrets")).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["API_TOKEN", "PG_PASSWORD"]);
    for path in [
        format!("/api/v1/instances/{id}/secrets"),
        format!("/api/v1/instances/{id}"),
        format!("/api/v1/instances/{id}/config"),
    ] {
        let text = app.req(Method::GET, &path).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(VALUE) && !text.contains("another-value"), "{path} shows a value: {text}");
    }
    let stored = raw_secrets(&app, &id).await;
    assert!(stored.contains_key("PG_PASSWORD") && stored.contains_key("API_TOKEN"), "{stored:?}");
    assert!(stored.values().all(|v| !v.contains(VALUE) && !v.contains("another-value")), "sealed at rest: {stored:?}");

    let res = app.req(Method::DELETE, &secret_path(&id, "API_TOKEN")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (status, problem) =
        draas_tests::problem(app.req(Method::DELETE, &secret_path(&id, "API_TOKEN")).send().await.unwrap()).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("secret_not_found")));
    let (_, list) = app.get_json(&format!("/api/v1/instances/{id}/secrets")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    // Deleting the instance removes its secrets.
    let _worker = app.start_worker("node-a", &[]);
    assert_eq!(
        app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}"), &Value::Null).await.0,
        StatusCode::ACCEPTED
    );
    eventually("the secrets removed with the instance", LONG, || async {
        raw_secrets(&app, &id).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_names_values_and_counts_are_refused_and_nothing_is_written() {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_SECRETS__MAX_PER_INSTANCE", "2"), ("DRAAS_SECRETS__MAX_VALUE_BYTES", "16")]);
    let id = app.create_instance("picky", minimal()).await["id"].as_str().unwrap().to_owned();
    let before = app.snapshot().await;
    for (name, value, code) in [
        ("lower", "v", "invalid_secret_name"),
        ("DRAAS_REDIS_URL", "v", "invalid_secret_name"),
        ("1ABC", "v", "invalid_secret_name"),
        ("BIG", "seventeen-bytes!!", "secret_too_large"),
    ] {
        let res = app.req(Method::PUT, &secret_path(&id, name)).json(&json!({"value": value})).send().await.unwrap();
        let (status, problem) = draas_tests::problem(res).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{name}: {problem}"
        );
    }
    let res = app.req(Method::PUT, &secret_path(&id, "A")).json(&json!({"value": 1})).send().await.unwrap();
    assert!(res.status().is_client_error(), "a value that is not a string");
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert_eq!(set(&app, &id, "A", "1").await.0, StatusCode::CREATED);
    assert_eq!(set(&app, &id, "B", "2").await.0, StatusCode::CREATED);
    let res = app.req(Method::PUT, &secret_path(&id, "C")).json(&json!({"value": "3"})).send().await.unwrap();
    let (status, problem) = draas_tests::problem(res).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("too_many_secrets")));
    assert_eq!(set(&app, &id, "B", "4").await.0, StatusCode::OK, "replacing one is not one more");
    let res =
        app.req(Method::PUT, &secret_path("no-such-instance", "A")).json(&json!({"value": "1"})).send().await.unwrap();
    assert_eq!(draas_tests::problem(res).await.1["code"], "instance_not_found");

    // Without a key the routes say which setting is missing.
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_SECRETS__KEYS", "")]);
    let res = app.req(Method::PUT, &secret_path(&id, "A")).json(&json!({"value": "1"})).send().await.unwrap();
    let (status, problem) = draas_tests::problem(res).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("secrets_disabled")));
    assert!(problem["message"].as_str().unwrap().contains("DRAAS_SECRETS__KEYS"), "{problem}");
}

#[tokio::test]
async fn a_reference_to_the_workers_environment_is_refused_on_every_write_path() {
    let app = spawn_app().await;
    let before = app.snapshot().await;
    let (status, problem) =
        app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "homey", "config": {"id": "${HOME}"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["code"], "unknown_variable", "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/config/id", "{problem}");
    assert!(problem["errors"][0]["message"].as_str().unwrap().contains("${HOME}"), "{problem}");
    assert_eq!(app.snapshot().await, before, "nothing written");

    // With the secret given in the same request, the reference is the instance's own.
    let body = json!({"name": "owned", "config": {"id": "${APP_ID}"}, "secrets": {"APP_ID": "app-1"}});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, list) = app.get_json(&format!("/api/v1/instances/{id}/secrets")).await;
    assert_eq!((status, list["items"][0]["name"].as_str()), (StatusCode::OK, Some("APP_ID")));

    let config = format!("/api/v1/instances/{id}/config");
    let before = app.snapshot().await;
    let home_source = json!({"kind": "mock", "id": "s", "dataType": "${HOME}"});
    let writes = [
        app.req(Method::PUT, &config).json(&json!({"id": "${HOME}"})),
        app.req(Method::PATCH, &config)
            .header("content-type", "application/json-patch+json")
            .body(r#"[{"op": "add", "path": "/sources/-", "value": {"kind": "mock", "id": "s2", "dataType": "x-${PATH}-${HOME:-y}"}}]"#),
        app.req(Method::PATCH, &config).header("content-type", "application/merge-patch+json").body(r#"{"id": "${HOME}"}"#),
        app.req(Method::POST, &format!("{config}/sources")).json(&home_source),
    ];
    for req in writes {
        let (status, problem) = draas_tests::problem(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["errors"][0]["code"], "unknown_variable", "{problem}");
        assert!(problem["errors"][0]["message"].as_str().unwrap().contains("${HOME}"), "{problem}");
    }
    // The original API's configuration PATCH refuses it in its own error shape.
    let compat = app
        .req(Method::PATCH, &format!("/api/configuration/instances/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op": "add", "path": "/sources/-", "value": {"kind": "mock", "id": "s3", "dataType": "${HOME}"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(compat.status(), StatusCode::BAD_REQUEST);
    assert!(compat.text().await.unwrap().contains("${HOME}"), "the original API names the variable too");
    assert_eq!(app.snapshot().await, before, "nothing written");
    // PATH is on the operator's allow-list, the instance's secrets are its own.
    let allowed = json!({"id": "${APP_ID}", "sources": [{"kind": "mock", "id": "s", "dataType": "${APP_ID}-${PATH}"}]});
    let (status, body) = app.send_json(Method::PUT, &config, &allowed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_process_server_gets_its_secrets_and_nothing_else_of_the_workers_environment() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("WORKER_ONLY_VARIABLE", "leak")]);
    let body = json!({"name": "env", "config": {"id": "${APP_ID}", "sources": [], "queries": [], "reactions": []},
                      "secrets": {"APP_ID": "from-the-secret"}});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_op(&app.submit(&id, "start").await, LONG).await["status"], "succeeded");
    assert_eq!(served_id(&app, &id).await, "from-the-secret", "drasi-server resolved ${{APP_ID}} to the secret");

    let pid = app.get_json(&format!("/api/v1/instances/{id}")).await.1["runtimeFacts"]["pid"].as_i64().unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<String> = environ.split(|b| *b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    assert!(vars.contains(&"APP_ID=from-the-secret".to_owned()), "{vars:?}");
    assert!(vars.iter().any(|v| v.starts_with("PATH=")), "allow-listed: {vars:?}");
    for absent in ["HOME=", "WORKER_ONLY_VARIABLE=", "DRAAS_REDIS_URL=", "DRAAS_API_TOKENS=", "DRAAS_SECRETS__KEYS="] {
        assert!(!vars.iter().any(|v| v.starts_with(absent)), "{absent} reached the server: {vars:?}");
    }

    // A new value reaches the running server at once: the write restarts it.
    let res = app
        .req(Method::PUT, &format!("{}?wait=30", secret_path(&id, "APP_ID")))
        .json(&json!({"value": "rotated"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let op = res.headers().get("x-draas-operation").expect("the restart is named").to_str().unwrap().to_owned();
    let done = app.wait_op(&json!({"id": op}), LONG).await;
    assert_eq!((done["kind"].as_str(), done["status"].as_str()), (Some("restart"), Some("succeeded")), "{done}");
    assert_eq!(served_id(&app, &id).await, "rotated");
}

/// The server id the instance's server reports (the stand-in serves its resolved config).
async fn served_id(app: &TestApp, id: &str) -> String {
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    let endpoint = inst["endpoint"].as_str().unwrap().to_owned();
    let doc: Value = app.client.get(format!("{endpoint}/api/v1/config")).send().await.unwrap().json().await.unwrap();
    doc["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn what_a_failing_server_prints_of_a_secret_is_masked_in_errors_and_logs() {
    let app = spawn_app().await;
    let _worker = app.start_worker(
        "node-a",
        &[
            ("DRASI_STANDIN_NEVER_HEALTHY", "1"),
            ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "2"),
            ("DRAAS_WORKER__MAX_ATTEMPTS", "1"),
            ("DRAAS_RECONCILE__REPAIR_ERROR", "false"),
        ],
    );
    let body = json!({"name": "leaky", "config": {"id": "${APP_ID}", "sources": [], "queries": [], "reactions": []},
                      "secrets": {"APP_ID": VALUE}});
    let id = app.send_json(Method::POST, "/api/v1/instances", &body).await.1["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("failed"), Some("health_timeout")),
        "{done}"
    );
    let detail = done["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("Starting server id=***"), "the log tail, masked: {detail}");
    assert!(!done.to_string().contains(VALUE), "{done}");

    let logs = eventually("the server's output shipped", LONG, || async {
        let text =
            app.req(Method::GET, &format!("/api/v1/instances/{id}/logs")).send().await.unwrap().text().await.unwrap();
        text.contains("Starting server id=").then_some(text)
    })
    .await;
    assert!(logs.contains("Starting server id=***") && !logs.contains(VALUE), "{logs}");
    for path in [
        format!("/api/v1/instances/{id}"),
        format!("/api/v1/instances/{id}/history"),
        format!("/api/v1/operations?instance={id}"),
    ] {
        let text = app.req(Method::GET, &path).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(VALUE), "{path}: {text}");
    }
}

#[tokio::test]
async fn keys_rotate_an_old_key_still_opens_and_rewrap_reseals_with_the_new_one() {
    let mut app = spawn_app().await;
    let id = app.create_instance("rotating", minimal()).await["id"].as_str().unwrap().to_owned();
    assert_eq!(set(&app, &id, "APP_ID", "kept-across-keys").await.0, StatusCode::CREATED);
    let old_sealed = raw_secrets(&app, &id).await["APP_ID"].clone();

    // A new key first, the old one kept: values sealed with the old one still open.
    let new_key = "SuUT1qkP4xOTfG6UiRRzFg6QQ03PMh2UyVmFFM+ST9M=";
    let keys = format!("{new_key},{}", draas_tests::SECRETS_KEY);
    app.extra_env.push(("DRAAS_SECRETS__KEYS".into(), keys));
    app.extra_env.push(("DRAAS_ADMIN_TOKENS".into(), ADMIN.into()));
    app.api.kill();
    app.api = app.start_api(&[]);
    app.send_json(Method::PUT, &format!("/api/v1/instances/{id}/config"), &json!({"id": "${APP_ID}"})).await;
    let _worker = app.start_worker("node-a", &[]);
    assert_eq!(app.wait_op(&app.submit(&id, "start").await, LONG).await["status"], "succeeded");
    assert_eq!(served_id(&app, &id).await, "kept-across-keys", "the old key opened it");

    let res = app.req(Method::POST, "/api/v1/secrets/rewrap").send().await.unwrap();
    assert_eq!(draas_tests::problem(res).await.1["code"], "admin_required");
    let rewrap = || async {
        let url = format!("{}/api/v1/secrets/rewrap", app.api.base_url);
        let res = app.client.post(url).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()
    };
    let done = rewrap().await;
    assert_eq!((done["rewrapped"].as_u64(), done["failed"].as_u64()), (Some(1), Some(0)), "{done}");
    let resealed = raw_secrets(&app, &id).await["APP_ID"].clone();
    assert_ne!(resealed, old_sealed);
    assert_eq!(rewrap().await["rewrapped"], 0, "nothing left on the old key");

    // The old key can go now: a worker with the new key alone still starts the server.
    drop(_worker);
    let only_new = [("DRAAS_SECRETS__KEYS", new_key)];
    let _worker = app.start_worker("node-a", &only_new);
    assert_eq!(app.wait_op(&app.submit(&id, "restart").await, LONG).await["status"], "succeeded");
    assert_eq!(served_id(&app, &id).await, "kept-across-keys");
}
