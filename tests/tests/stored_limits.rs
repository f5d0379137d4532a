//! The bounds of a stored configuration hold on every write path, and a record that cannot be
//! read (stored by an older version, or damaged in Redis) never breaks a list or a reconcile
//! pass: the instance is listed as `corrupt` and can be given a new configuration or deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{TestApp, eventually, problem, spawn_app, spawn_up};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

fn deep_source(levels: usize) -> Value {
    json!({"kind": "mock", "id": "deep", "nest": nested(levels)})
}

async fn status_of(res: reqwest::Response) -> (StatusCode, Option<String>) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().map(str::to_owned))
}

async fn list_answers(app: &TestApp) {
    let (status, body) = app.get_json("/api/v1/instances").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get_json("/api/server/instances").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The value of one series of the API's metrics (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.req(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_document_nested_past_the_stored_limit_is_refused_on_every_write_path() {
    let app = spawn_app().await;
    let id = app.create_instance("deep", json!({})).await["id"].as_str().unwrap().to_owned();
    let config = format!("/api/v1/instances/{id}/config");
    let before = app.snapshot().await;
    // A component nested 125 deep parses (under serde_json's 128 levels) but is stored three
    // levels down; a whole document carries it two levels further, so it nests a little less.
    let deep = deep_source(125);
    let whole = json!({"sources": [deep_source(100)]});
    let attempts = [
        (Method::POST, format!("{config}/sources"), "application/json", deep.clone()),
        (Method::PUT, format!("{config}/sources/deep"), "application/json", deep.clone()),
        (Method::PUT, config.clone(), "application/json", whole.clone()),
        (Method::PATCH, config.clone(), "application/merge-patch+json", whole.clone()),
        (
            Method::PATCH,
            config.clone(),
            "application/json-patch+json",
            json!([{"op": "add", "path": "/sources/-", "value": deep_source(110)}]),
        ),
    ];
    for (method, path, content_type, body) in attempts {
        let res = app.send_body(method.clone(), &path, content_type, body.to_string()).await;
        let (status, body) = problem(res).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("config_too_deep")),
            "{method} {path}: {body}"
        );
    }
    let compat = format!("/api/configuration/instances/{id}");
    let ops = json!([{"op": "add", "path": "/sources/-", "value": deep_source(110)}]);
    let res = app.send_body(Method::PATCH, &compat, "application/json-patch+json", ops.to_string()).await;
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("nests deeper"), "{body}");
    assert_eq!(app.snapshot().await, before, "a refused write changed the store");
    list_answers(&app).await;
}

#[tokio::test]
async fn a_json_patch_that_copies_itself_larger_than_the_limit_is_refused() {
    let app = spawn_app().await;
    let config = json!({"sources": [{"kind": "mock", "id": "s", "blob": "x".repeat(4000)}]});
    let id = app.create_instance("copies", config).await["id"].as_str().unwrap().to_owned();
    let doubling: Vec<Value> =
        (0..10).map(|i| json!({"op": "copy", "from": "/sources/0", "path": format!("/sources/0/c{i}")})).collect();
    let path = format!("/api/v1/instances/{id}/config");
    let res =
        app.send_body(Method::PATCH, &path, "application/json-patch+json", Value::Array(doubling).to_string()).await;
    let (status, body) = problem(res).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("config_too_large")), "{body}");
    if draas_tests::verbose() {
        eprintln!("FIGURE doubling copies: refused at {} ({})", body["pointer"], body["message"]);
    }
}

#[tokio::test]
async fn an_unreadable_record_is_listed_as_corrupt_and_can_be_replaced_or_deleted() {
    let app = spawn_up(&[("DRAAS_RECONCILE__INTERVAL_SECS", "1")]).await;
    let good = app.create_instance("good", json!({})).await["id"].as_str().unwrap().to_owned();
    let bad = app.create_instance("bad", json!({})).await["id"].as_str().unwrap().to_owned();
    // A configuration record as an older draas could store it: deeper than serde_json reads.
    let key = format!("{{{}}}:config:{bad}", app.prefix);
    let unreadable = json!({"sources": [deep_source(130)]}).to_string();
    let _: () =
        redis::cmd("HSET").arg(&key).arg("data").arg(&unreadable).query_async(&mut app.redis().await).await.unwrap();

    let (status, page) = app.get_json("/api/v1/instances").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let status_of_id =
        |id: &str| page["items"].as_array().unwrap().iter().find(|i| i["id"] == id).map(|i| i["status"].clone());
    assert_eq!((status_of_id(&good), status_of_id(&bad)), (Some(json!("created")), Some(json!("corrupt"))));
    list_answers(&app).await;
    let (_, corrupt) = app.get_json("/api/v1/instances?status=corrupt").await;
    assert_eq!(corrupt["items"].as_array().unwrap().len(), 1, "{corrupt}");
    // Global passes run while something is to be watched (an instance desired running).
    let _ = app.submit(&good, "start").await;
    let passes = metric(&app, "draas_reconcile_pass_duration_seconds_count{scope=\"global\"}").await;
    eventually("two reconcile passes over the corrupt record", Duration::from_secs(30), || async {
        (metric(&app, "draas_reconcile_pass_duration_seconds_count{scope=\"global\"}").await >= passes + 2.0)
            .then_some(())
    })
    .await;
    assert!(!app.api.logged(&["reconcile pass failed"]), "a pass failed on the corrupt record");
    assert!(metric(&app, "draas_corrupt_records_total").await > 0.0);

    let config = format!("/api/v1/instances/{bad}/config");
    let merge = app.send_body(Method::PATCH, &config, "application/merge-patch+json", "{}").await;
    assert_eq!(status_of(merge).await, (StatusCode::CONFLICT, Some("instance_corrupt".into())));
    let (status, _) = app.send_json(Method::PUT, &config, &json!({"logLevel": "info"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, mended) = app.get_json(&format!("/api/v1/instances/{bad}")).await;
    assert_eq!(mended["status"], "created", "{mended}");

    let _: () =
        redis::cmd("HSET").arg(&key).arg("data").arg(&unreadable).query_async(&mut app.redis().await).await.unwrap();
    let asked = std::time::Instant::now();
    let res = app.req(Method::DELETE, &format!("/api/v1/instances/{bad}?wait=30")).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    eventually("the corrupt instance to be gone", Duration::from_secs(30), || async {
        let (status, _) = app.get_json(&format!("/api/v1/instances/{bad}")).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    if draas_tests::verbose() {
        let counted = metric(&app, "draas_corrupt_records_total").await;
        eprintln!("FIGURE corrupt record: deleted in {:?}; {counted} unreadable reads counted", asked.elapsed());
    }
}
