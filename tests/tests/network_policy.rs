//! Where a server listens belongs to draas: a configuration's `host` and `port` are replaced
//! by draas' own, with a `Warning` header, unless the operator's `network` settings allow
//! them; a port outside the platform's pool is never bound nor kept reserved, and the health
//! probe targets only what draas allocated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, spawn_up};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// drasi-server's own example header, as people paste it.
fn pasted() -> Value {
    json!({"host": "0.0.0.0", "port": 8080, "logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

fn warnings(res: &reqwest::Response) -> Vec<String> {
    res.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

async fn started(app: &TestApp, id: &str) -> Value {
    let op = app.wait_op(&app.submit(id, "start").await, Duration::from_secs(60)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    app.get_json(&format!("/api/v1/instances/{id}")).await.1
}

fn in_pool(app: &TestApp, endpoint: &str) -> bool {
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    (app.ports.0..=app.ports.1).contains(&port)
}

#[tokio::test]
async fn a_pasted_host_and_port_are_replaced_by_draas_own_with_a_warning() {
    let app = spawn_up(&[]).await;
    let res = app
        .req(Method::POST, "/api/v1/instances")
        .json(&json!({"name": "pasted", "config": pasted()}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let said = warnings(&res);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said.iter().all(|w| w.starts_with("299 - \"")), "{said:?}");
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let config = format!("/api/v1/instances/{id}/config");
    let (_, stored) = app.get_json(&config).await;
    assert_eq!((stored.get("host"), stored.get("port")), (None, None), "{stored}");

    let res = app.send_body(Method::PUT, &config, "application/json", pasted().to_string()).await;
    assert_eq!((res.status(), warnings(&res).len()), (StatusCode::OK, 2));
    let res = app
        .send_body(
            Method::PUT,
            &format!("/api/server/instances/{id}/configuration/server/port"),
            "application/json",
            "2",
        )
        .await;
    assert_eq!((res.status(), warnings(&res).len()), (StatusCode::OK, 1));

    let instance = started(&app, &id).await;
    let endpoint = instance["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:") && in_pool(&app, endpoint), "{instance}");
    let file = std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.yaml")).unwrap();
    assert!(!file.contains("0.0.0.0") && !file.contains("8080"), "{file}");
}

#[tokio::test]
async fn a_port_or_host_stored_before_the_policy_is_never_bound_probed_or_kept_reserved() {
    let app = spawn_up(&[]).await;
    let id = app.create_instance("legacy", json!({})).await["id"].as_str().unwrap().to_owned();
    // As an older draas stored it: a port outside the pool, a host of the user's choosing.
    let key = format!("{{{}}}:config:{id}", app.prefix);
    let legacy = json!({"host": "127.0.0.5", "port": 2, "sources": [], "queries": [], "reactions": []}).to_string();
    let mut redis = app.redis().await;
    let _: () = redis::cmd("HSET").arg(&key).arg("data").arg(&legacy).query_async(&mut redis).await.unwrap();

    let instance = started(&app, &id).await;
    let endpoint = instance["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("http://127.0.0.1:") && in_pool(&app, endpoint), "{instance}");
    let reserved: Vec<String> =
        redis::cmd("HKEYS").arg(format!("{{{}}}:ports", app.prefix)).query_async(&mut redis).await.unwrap();
    assert!(reserved.iter().all(|f| !f.ends_with("|2")), "port 2 is reserved: {reserved:?}");
}

#[tokio::test]
async fn what_the_operator_allows_is_kept_without_a_warning() {
    let mut app = spawn_up(&[]).await;
    let port = (app.ports.0 + 7).to_string();
    let (start, end) = (app.ports.0.to_string(), app.ports.1.to_string());
    app.api.kill();
    let env = app.worker_env(
        "node-a",
        &[
            ("DRAAS_DOCKER__ENABLED", "false"),
            ("DRAAS_NETWORK__ALLOWED_HOSTS", "127.0.0.1,::1"),
            ("DRAAS_NETWORK__ALLOWED_PORTS__START", &start),
            ("DRAAS_NETWORK__ALLOWED_PORTS__END", &end),
        ],
    );
    app.api = draas_tests::DraasProcess::start(&["up"], &env);
    let config = json!({"host": "127.0.0.1", "port": port.parse::<u16>().unwrap()});
    let res = app
        .req(Method::POST, "/api/v1/instances")
        .json(&json!({"name": "allowed", "config": config}))
        .send()
        .await
        .unwrap();
    assert_eq!((res.status(), warnings(&res)), (StatusCode::CREATED, Vec::<String>::new()));
    let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let instance = started(&app, &id).await;
    assert_eq!(instance["endpoint"], format!("http://127.0.0.1:{port}"), "{instance}");
}
