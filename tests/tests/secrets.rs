//! Secrets in configurations: redacted in API reads unless an admin reveals them, kept when a
//! redacted document is written back, handed to drasi-server as written; `${VAR}` untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, problem, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-tests";

fn secret_config() -> Value {
    json!({
        "sources": [{"kind": "mock", "id": "db", "user": "reader", "password": "hunter2", "apiKey": "k-123",
                     "auth": {"accessToken": "t-456"}, "fromEnv": {"password": "${DB_PASSWORD}"}}],
        "queries": [], "reactions": []
    })
}

/// An app whose API also accepts the admin token [`ADMIN`].
async fn app_with_admin() -> TestApp {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_ADMIN_TOKENS", ADMIN)]);
    app
}

#[tokio::test]
async fn reads_hide_secrets_and_only_an_admin_may_reveal_them() {
    let app = app_with_admin().await;
    let id = app.create_instance("secretive", secret_config()).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/instances/{id}/config");

    let (_, shown) = app.get_json(&path).await;
    let db = &shown["sources"][0];
    assert_eq!(
        (db["password"].as_str(), db["apiKey"].as_str(), db["auth"]["accessToken"].as_str()),
        (Some("***"), Some("***"), Some("***"))
    );
    assert_eq!((db["user"].as_str(), db["fromEnv"]["password"].as_str()), (Some("reader"), Some("${DB_PASSWORD}")));
    let yaml = app
        .req(Method::GET, &path)
        .header(header::ACCEPT, "application/yaml")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!yaml.contains("hunter2") && yaml.contains("${DB_PASSWORD}"), "{yaml}");
    let (_, component) = app.get_json(&format!("{path}/sources/db")).await;
    assert_eq!(component["password"], "***");

    let (status, body) = problem(app.req(Method::GET, &format!("{path}?reveal=true")).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("reveal_forbidden")));
    let revealed: Value = app
        .client
        .get(format!("{}{path}?reveal=true", app.api.base_url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revealed["sources"][0]["password"], "hunter2");
}

#[tokio::test]
async fn a_redacted_config_written_back_keeps_its_secrets_and_the_server_gets_them() {
    let app = app_with_admin().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = app.create_instance("roundtrip", secret_config()).await["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/instances/{id}/config");
    let (_, mut shown) = app.get_json(&path).await;
    shown["logLevel"] = json!("debug");
    let (status, body) = app.send_json(Method::PUT, &path, &shown).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revealed: Value = app
        .client
        .get(format!("{}{path}?reveal=true", app.api.base_url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revealed["sources"][0]["password"], "hunter2", "the secret survived the round trip");
    assert_eq!(revealed["logLevel"], "debug");

    let op = app.wait_op(&app.submit(&id, "start").await, Duration::from_secs(60)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let file = std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.yaml")).unwrap();
    assert!(file.contains("hunter2") && file.contains("${DB_PASSWORD}"), "drasi-server gets the real values:\n{file}");
}

/// Secrets of every shape redaction knows, each a distinct string to look for in answers.
fn every_shape_of_secret() -> Value {
    json!({
        "sources": [{"kind": "mock", "id": "db", "user": "reader", "password": "s-password",
            "apiKeys": ["s-key-1", "s-key-2"], "token": {"value": "s-token"}, "pwd": "s-pwd", "pass": "s-pass",
            "connectionString": "Host=db;Username=reader;Password=s-conn;Port=5432",
            "url": "postgres://reader:s-url@db:5432/app"}],
        "queries": [], "reactions": []
    })
}

const SECRETS: [&str; 8] = ["s-password", "s-key-1", "s-key-2", "s-token", "s-pwd", "s-pass", "s-conn", "s-url"];

fn leaked(answer: &str) -> Vec<&'static str> {
    SECRETS.into_iter().filter(|s| answer.contains(s)).collect()
}

/// An instance holding [`every_shape_of_secret`]: the paths of its configuration in the v1
/// and in the original API.
async fn with_every_shape(app: &TestApp, name: &str) -> (String, String) {
    let id = app.create_instance(name, every_shape_of_secret()).await["id"].as_str().unwrap().to_owned();
    (format!("/api/v1/instances/{id}/config"), format!("/api/configuration/instances/{id}"))
}

async fn text(res: reqwest::Response) -> (StatusCode, String) {
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn no_read_or_write_answer_shows_a_secret_to_a_non_admin_token_compat_included() {
    let app = app_with_admin().await;
    let (v1, compat) = with_every_shape(&app, "shapes").await;
    let merge = json!({"logLevel": "debug"}).to_string();
    let replace = json!([{"op": "replace", "path": "/logLevel", "value": "warn"}]).to_string();
    let answers = [
        text(app.req(Method::GET, &v1).send().await.unwrap()).await,
        text(app.req(Method::GET, &format!("{v1}?effective=true")).send().await.unwrap()).await,
        text(app.req(Method::GET, &v1).header(header::ACCEPT, "application/yaml").send().await.unwrap()).await,
        text(app.req(Method::GET, &format!("{v1}/sources/db")).send().await.unwrap()).await,
        text(app.send_body(Method::PATCH, &v1, "application/merge-patch+json", merge).await).await,
        text(app.req(Method::GET, &compat).send().await.unwrap()).await,
        text(app.send_body(Method::PATCH, &compat, "application/json-patch+json", replace).await).await,
    ];
    for (i, (status, body)) in answers.iter().enumerate() {
        assert!(status.is_success(), "answer {i}: {status} {body}");
        assert_eq!(leaked(body), Vec::<&str>::new(), "answer {i} shows secrets: {body}");
    }
    let admin = app.client.get(format!("{}{compat}", app.api.base_url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(leaked(&admin.text().await.unwrap()).len(), SECRETS.len(), "an admin token reads them back");
}

#[tokio::test]
async fn json_patch_may_not_copy_move_or_test_a_secret_without_an_admin_token() {
    let app = app_with_admin().await;
    let (v1, compat) = with_every_shape(&app, "oracle").await;
    let before = app.snapshot().await;
    for ops in [
        json!([{"op": "copy", "from": "/sources/0/password", "path": "/sources/0/user"}]),
        json!([{"op": "move", "from": "/sources/0/token", "path": "/sources/0/shown"}]),
        json!([{"op": "test", "path": "/sources/0/password", "value": "guess"}]),
        json!([{"op": "test", "path": "/sources/0/apiKeys/0", "value": "s-key-1"}]),
    ] {
        for path in [&v1, &compat] {
            let (status, body) =
                text(app.send_body(Method::PATCH, path, "application/json-patch+json", ops.to_string()).await).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} {ops}: {body}");
            assert_eq!(leaked(&body), Vec::<&str>::new(), "{body}");
        }
    }
    assert_eq!(app.snapshot().await, before, "a refused patch changed the store");
    let copy = json!([{"op": "copy", "from": "/sources/0/password", "path": "/sources/0/user"}]).to_string();
    let res = app
        .client
        .patch(format!("{}{v1}", app.api.base_url))
        .bearer_auth(ADMIN)
        .header(header::CONTENT_TYPE, "application/json-patch+json")
        .body(copy)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "an admin token may");
}
