//! Changing a running pipeline without restarting it: the README's PostgreSQL pipeline on the
//! real drasi-server through `draas up`; each change becomes a `reconfigure` operation applied
//! through the server's own API (the same pid), a top-level change restarts, and a step the
//! server refuses falls back to a restart that says why. Skipped, loudly, without the real
//! server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::postgres::TestPostgres;
use draas_tests::{TestApp, eventually, real_server};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn shop_config() -> Value {
    serde_norway::from_str(&draas_tests::readme_code("postgres-config", "yaml")).unwrap()
}

async fn results(endpoint: &str, query: &str) -> Option<Vec<i64>> {
    let body: Value =
        reqwest::get(format!("{endpoint}/api/v1/queries/{query}/results")).await.ok()?.json().await.ok()?;
    let mut ids: Vec<i64> = body["data"].as_array()?.iter().filter_map(|r| r["id"].as_i64()).collect();
    ids.sort_unstable();
    Some(ids)
}

/// The server's own ids of one collection.
async fn listed(endpoint: &str, collection: &str) -> Vec<String> {
    let body: Value = reqwest::get(format!("{endpoint}/api/v1/{collection}")).await.unwrap().json().await.unwrap();
    let mut ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str().filter(|id| !id.starts_with("__")).map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

/// Send a configuration write with `?wait=30`; the reconfigure operation it names, ended.
async fn write(app: &TestApp, method: Method, path: &str, content_type: &str, body: &str) -> Value {
    let res = app.send_body(method, &format!("{path}?wait=30"), content_type, body.to_owned()).await;
    assert!(res.status().is_success(), "{}: {}", res.status(), res.text().await.unwrap());
    let op = res.headers()["x-draas-operation"].to_str().unwrap().to_owned();
    assert_eq!(res.headers()["x-draas-operation-status"], "succeeded");
    let (status, op) = app.get_json(&format!("/api/v1/operations/{op}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((op["kind"].as_str(), op["status"].as_str()), (Some("reconfigure"), Some("succeeded")), "{op}");
    op
}

fn applied(op: &Value) -> (String, Vec<String>) {
    let a = &op["result"]["applied"];
    let steps = a["steps"].as_array().map(|s| s.iter().map(|s| s.as_str().unwrap().to_owned()).collect());
    (a["how"].as_str().unwrap_or_default().to_owned(), steps.unwrap_or_default())
}

#[tokio::test]
async fn changes_to_a_running_postgres_pipeline_are_applied_live_and_top_level_ones_restart() {
    let Some(real) = real_server("live changes on the real server") else { return };
    let pg = TestPostgres::start();
    pg.shop(&[(1, "pencil", 5), (2, "desk", 20), (3, "chair", 12)]);
    let app = draas_tests::postgres::up_with(&real, &pg).await;
    let id = app.create_instance("shop", shop_config()).await["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let (endpoint, pid) = (op["result"]["endpoint"].as_str().unwrap().to_owned(), op["result"]["pid"].clone());
    eventually("the bootstrap rows", LONG, || async {
        results(&endpoint, "big-orders").await.filter(|r| r == &[2, 3])
    })
    .await;
    let config = format!("/api/v1/instances/{id}/config");

    // Add a reaction.
    let body = r#"{"kind": "log", "id": "audit", "queries": ["big-orders"]}"#;
    let op = write(&app, Method::POST, &format!("{config}/reactions"), "application/json", body).await;
    assert_eq!(applied(&op), ("live".to_owned(), vec!["create reaction audit".to_owned()]), "{op}");
    assert_eq!(op["result"]["pid"], pid, "the same server");
    assert_eq!(listed(&endpoint, "reactions").await, ["audit", "out", "stream"]);
    assert_eq!(results(&endpoint, "big-orders").await.unwrap(), [2, 3], "the query kept its results");

    // Replace a source's properties (a new replication slot): the source and what reads it are
    // recreated (bootstrapped again), and changes flow.
    let patch = r#"[{"op": "replace", "path": "/sources/0/slotName", "value": "drasi_slot_two"}]"#;
    let op = write(&app, Method::PATCH, &config, "application/json-patch+json", patch).await;
    let (how, steps) = applied(&op);
    assert_eq!(how, "live", "{op}");
    assert_eq!(
        steps[..5],
        [
            "delete reaction audit",
            "delete reaction out",
            "delete reaction stream",
            "delete query big-orders",
            "delete source shop"
        ]
    );
    assert_eq!(
        steps[5..],
        [
            "create source shop",
            "create query big-orders",
            "create reaction out",
            "create reaction stream",
            "create reaction audit"
        ]
    );
    assert_eq!(op["result"]["pid"], pid);
    pg.sql("shop", "INSERT INTO orders VALUES (4, 'lamp', 40)");
    eventually("a row inserted after the source changed", LONG, || async {
        results(&endpoint, "big-orders").await.filter(|r| r == &[2, 3, 4])
    })
    .await;

    // Change a query's text: the query and the reactions following it are recreated, and its
    // results are those of the new text.
    let patch = r#"[{"op": "replace", "path": "/queries/0/query",
        "value": "MATCH (o:orders) WHERE o.qty > 15 RETURN o.id AS id, o.item AS item, o.qty AS qty"}]"#;
    let op = write(&app, Method::PATCH, &config, "application/json-patch+json", patch).await;
    let (how, steps) = applied(&op);
    assert_eq!(how, "live", "{op}");
    assert_eq!(
        steps,
        [
            "delete reaction audit",
            "delete reaction out",
            "delete reaction stream",
            "delete query big-orders",
            "create query big-orders",
            "create reaction out",
            "create reaction stream",
            "create reaction audit"
        ]
    );
    assert_eq!(op["result"]["pid"], pid);
    eventually("the new query's results", LONG, || async {
        results(&endpoint, "big-orders").await.filter(|r| r == &[2, 4])
    })
    .await;

    // Add a query, then remove it.
    let body = r#"{"id": "cheap", "query": "MATCH (o:orders) WHERE o.qty <= 10 RETURN o.id AS id",
        "sources": [{"sourceId": "shop"}]}"#;
    let op = write(&app, Method::POST, &format!("{config}/queries"), "application/json", body).await;
    assert_eq!(applied(&op), ("live".to_owned(), vec!["create query cheap".to_owned()]), "{op}");
    eventually("the added query's results", LONG, || async { results(&endpoint, "cheap").await.filter(|r| r == &[1]) })
        .await;
    let op = write(&app, Method::DELETE, &format!("{config}/queries/cheap"), "application/json", "").await;
    assert_eq!(applied(&op), ("live".to_owned(), vec!["delete query cheap".to_owned()]), "{op}");
    assert_eq!(listed(&endpoint, "queries").await, ["big-orders"]);
    assert_eq!(op["result"]["pid"], pid);

    // No restart anywhere: the history shows the one start, the server still the same.
    let (_, history) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    let starts = history["items"].as_array().unwrap().iter().filter(|h| h["to"] == "starting").count();
    assert_eq!(starts, 1, "{history}");
    let (_, instance) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!((instance["status"].as_str(), &instance["runtimeFacts"]["pid"]), (Some("running"), &pid), "{instance}");

    // Ticks later the reconciler sees nothing to change: no new operation.
    let (_, before) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let count = before["items"].as_array().unwrap().len();
    let probed = instance["lastProbe"]["at"].clone();
    eventually("two more reconcile ticks", LONG, || async {
        let (_, i) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        (i["lastProbe"]["at"] != probed).then_some(())
    })
    .await;
    let (_, after) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    assert_eq!(after["items"].as_array().unwrap().len(), count, "{after}");

    // Someone changes the server behind draas' back: draas puts its configuration back, live.
    let gone = reqwest::Client::new().delete(format!("{endpoint}/api/v1/reactions/audit")).send().await.unwrap();
    assert!(gone.status().is_success(), "{}", gone.text().await.unwrap());
    let repair = eventually("the drift repaired", LONG, || async {
        let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
        ops["items"].as_array()?.iter().find(|o| o["reason"] == "server-drift" && o["status"] == "succeeded").cloned()
    })
    .await;
    assert_eq!(applied(&repair), ("live".to_owned(), vec!["create reaction audit".to_owned()]), "{repair}");
    assert_eq!(listed(&endpoint, "reactions").await, ["audit", "out", "stream"]);

    // A top-level change needs a new server, and says so.
    let op = write(&app, Method::PATCH, &config, "application/merge-patch+json", r#"{"logLevel": "debug"}"#).await;
    assert_eq!(op["result"]["applied"]["how"], "restart", "{op}");
    assert_eq!(op["result"]["applied"]["reason"], "top_level_changed: logLevel", "{op}");
    assert_ne!(op["result"]["pid"], pid, "a new server");
    let endpoint = op["result"]["endpoint"].as_str().unwrap().to_owned();
    let pid = op["result"]["pid"].clone();

    // A step the server refuses (a query it cannot parse; draas and `validate` let it pass)
    // falls back to a restart that names the step and the server's reason.
    let body = r#"{"id": "broken", "query": "MATCH (o:orders RETURN", "sources": [{"sourceId": "shop"}]}"#;
    let op = write(&app, Method::POST, &format!("{config}/queries"), "application/json", body).await;
    assert_eq!(op["result"]["applied"]["how"], "restart", "{op}");
    let reason = op["result"]["applied"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("live_apply_failed: create query broken: "), "{op}");
    assert_ne!(op["result"]["pid"], pid, "{op}");
    let listed_after = listed(&endpoint, "queries").await;
    assert!(listed_after.contains(&"broken".to_owned()), "the new server has the query: {listed_after:?}");
}
