//! Secrets in configurations: redacted in API reads unless an admin reveals them, kept when a
//! redacted document is written back, handed to drasi-server as written; `${VAR}` untouched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{problem, spawn_app};
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

#[tokio::test]
async fn reads_hide_secrets_and_only_an_admin_may_reveal_them() {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_ADMIN_TOKENS", ADMIN)]);
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
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[("DRAAS_ADMIN_TOKENS", ADMIN)]);
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
