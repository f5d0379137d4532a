//! What an instance computes, through draas, on the real drasi-server: a query's results, its
//! live changes (`/watch`, relayed from the server's `attach`), its components, the server's
//! logs; 409 once it stopped, 404 for a query it lacks, 429 beyond the stream cap. Skipped,
//! loudly, without the real server (`scripts/test` finds it; CI always has it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::{RealServer, SseStream, TestApp, eventually, real_server, spawn_up};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// The mock source sends a reading every 500 ms: a change must come well within this.
const FLOW: Duration = Duration::from_secs(10);

/// The README's first-day pipeline (mock source → query → log reaction), as JSON.
fn sensors_config() -> Value {
    serde_norway::from_str(&draas_tests::readme_code("sensors-config", "yaml")).expect("YAML")
}

async fn up(real: &RealServer, extra: &[(&str, &str)]) -> TestApp {
    let mut env = real.worker_env().to_vec();
    env.push(("DRAAS_RECONCILE__INTERVAL_SECS", "1"));
    env.extend_from_slice(extra);
    spawn_up(&env).await
}

/// A running sensors instance; its id.
async fn running(app: &TestApp, name: &str) -> String {
    let id = app.create_instance(name, sensors_config()).await["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    id
}

fn watch_path(id: &str, query: &str) -> String {
    format!("/api/v1/instances/{id}/queries/{query}/watch")
}

fn sequence(data: &str) -> Option<u64> {
    serde_json::from_str::<Value>(data).ok()?["sequence"].as_u64()
}

#[tokio::test]
async fn a_watched_query_streams_its_changes_until_the_instance_stops() {
    let Some(real) = real_server("watching a query's results") else { return };
    let app = up(&real, &[]).await;
    let id = running(&app, "watched").await;

    let rows = eventually("the query's first rows", FLOW, || async {
        let (status, body) = app.get_json(&format!("/api/v1/instances/{id}/queries/all-sensors/results")).await;
        (status == StatusCode::OK && !body["rows"].as_array()?.is_empty()).then_some(body)
    })
    .await;
    assert!(rows["rows"][0]["sensor"].as_str().unwrap().starts_with("sensor_"), "{rows}");
    let (_, components) = app.get_json(&format!("/api/v1/instances/{id}/components")).await;
    let listed: Vec<(&str, &str, &str)> = components["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["id"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("source", "sensors", "Running"), ("query", "all-sensors", "Running"), ("reaction", "log-output", "Running")]
    );

    let mut watch = SseStream::request(app.req(Method::GET, &watch_path(&id, "all-sensors")), FLOW).await;
    let snapshot: Value = serde_json::from_str(&watch.until(FLOW, |d| d.contains("\"rows\"")).await).unwrap();
    assert_eq!(
        (snapshot["instanceId"].as_str(), snapshot["queryId"].as_str()),
        (Some(id.as_str()), Some("all-sensors"))
    );
    let first = watch.until(FLOW, |d| sequence(d).is_some()).await;
    let first_seq = sequence(&first).unwrap();
    let second = watch.until(FLOW, |d| sequence(d).is_some_and(|s| s > first_seq)).await;
    let change: Value = serde_json::from_str(&second).unwrap();
    let row = &change["results"][0];
    assert!(["ADD", "UPDATE"].contains(&row["type"].as_str().unwrap()), "{change}");
    let after = if row["type"] == "ADD" { &row["data"] } else { &row["after"] };
    assert!(after["temperature"].is_number(), "{change}");
    assert!(change.get("profiling").is_none(), "the server's profiling is left out: {change}");

    // Stopping the instance ends the stream, saying why, and the server stops.
    let (status, _) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let end: Value = serde_json::from_str(&watch.until(FLOW, |d| d.contains("\"reason\"")).await).unwrap();
    assert_eq!(end["reason"], "the instance is stopping", "{end}");
    watch.ended(FLOW).await;
    assert!(watch.seen().contains("event: end"), "{}", watch.seen());
    app.wait_instance(&id, "stopped", LONG, |i| i["status"] == "stopped").await;

    for path in [
        format!("/api/v1/instances/{id}/queries/all-sensors/results"),
        watch_path(&id, "all-sensors"),
        format!("/api/v1/instances/{id}/components"),
    ] {
        let (status, problem) = app.get_json(&path).await;
        assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("instance_not_running")), "{path}");
    }
    let (status, problem) = app.get_json(&watch_path(&id, "no-such-query")).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("query_not_found")), "{problem}");
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_with_429_until_one_ends() {
    let Some(real) = real_server("the stream cap") else { return };
    let app = up(&real, &[("DRAAS_API__MAX_STREAMS", "1")]).await;
    let id = running(&app, "capped").await;
    let path = watch_path(&id, "all-sensors");

    let mut first = SseStream::request(app.req(Method::GET, &path), FLOW).await;
    first.until(FLOW, |d| d.contains("\"rows\"")).await;
    for refused in [path.clone(), "/api/v1/events".to_owned()] {
        let res = SseStream::answer(app.req(Method::GET, &refused), FLOW).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{refused}");
        assert!(res.headers().contains_key("retry-after"), "{refused}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "too_many_streams", "{problem}");
    }

    // A client that goes away frees its place.
    drop(first);
    eventually("a stream once the first client left", FLOW, || async {
        let res = SseStream::answer(app.req(Method::GET, &path), FLOW).await;
        (res.status() == StatusCode::OK).then_some(())
    })
    .await;
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop?wait=60"), &json!(null)).await;
    assert_eq!(op["status"], "succeeded", "{op}");
}

#[tokio::test]
async fn the_servers_logs_are_tailed_and_followed_until_the_instance_stops() {
    let Some(real) = real_server("an instance's logs") else { return };
    let app = up(&real, &[]).await;
    let id = running(&app, "logged").await;
    let logs = format!("/api/v1/instances/{id}/logs");

    let tail = eventually("five lines of the server's output", FLOW, || async {
        let res = app.req(Method::GET, &format!("{logs}?tail=5")).send().await.unwrap();
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        let text = res.text().await.unwrap();
        (text.lines().count() == 5).then_some(text)
    })
    .await;
    assert!(!tail.contains('\u{1b}'), "colour codes are stripped: {tail:?}");

    // Following: the log reaction writes every change of the query, so lines keep coming.
    let mut res = app.req(Method::GET, &format!("{logs}?tail=1&follow=true")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + FLOW;
    while seen.lines().count() < 4 {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("the followed log stopped early ({other:?}); it sent:\n{seen}"),
        }
    }
    let (status, _) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop"), &Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let ended = tokio::time::timeout(LONG, async {
        while let Ok(Some(c)) = res.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&c));
        }
    })
    .await;
    assert!(ended.is_ok(), "the followed log ends when the instance stops; it sent:\n{seen}");
    app.wait_instance(&id, "stopped", LONG, |i| i["status"] == "stopped").await;

    // The last lines stay readable once it stopped; following a stopped one is refused.
    let (status, _) = app.get_json(&format!("{logs}?tail=3")).await;
    assert_eq!(status, StatusCode::OK);
    let text = app.req(Method::GET, &format!("{logs}?tail=3")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    let (status, problem) = app.get_json(&format!("{logs}?follow=true")).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("instance_not_running")));
    for bad in ["tail=0", "tail=1001", "tail=x", "lines=3"] {
        let (status, problem) = app.get_json(&format!("{logs}?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }
}

#[tokio::test]
async fn an_instance_stored_before_its_platform_had_a_field_of_its_own_still_has_its_logs_shipped() {
    let Some(real) = real_server("the logs of an instance stored by an older draas") else { return };
    let app = up(&real, &[]).await;
    let id = app.create_instance("older", sensors_config()).await["id"].as_str().unwrap().to_owned();
    // As an older draas stored it: the platform only inside the record's JSON.
    let key = format!("{{{}}}:instance:{id}", app.prefix);
    let mut redis = app.redis().await;
    let removed: u64 = redis::cmd("HDEL").arg(&key).arg("platform").query_async(&mut redis).await.unwrap();
    assert_eq!(removed, 1, "the record had the field");
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");

    eventually("lines of the server's output", FLOW, || async {
        let text = app
            .req(Method::GET, &format!("/api/v1/instances/{id}/logs?tail=3"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (text.lines().count() == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_readme_first_day_path_runs_as_written() {
    let Some(real) = real_server("the README's first-day path") else { return };
    let app = up(&real, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sensors.yaml"), draas_tests::readme_code("sensors-config", "yaml")).unwrap();
    // No server given: the client finds the running `up` where it recorded its address.
    let data = app.data.path().to_str().unwrap();
    assert!(app.data.path().join("api-url").is_file(), "draas up records where it listens");
    let env = [("DRAAS_DATA_DIR", data), ("DRAAS_TOKEN", app.token.as_str())];
    let run = draas_tests::run_readme_block("first-day", dir.path(), &env, &[]);
    assert!(run.success, "{run}");
    let lines: Vec<Vec<&str>> = run.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(lines.contains(&vec!["SENSOR", "TEMPERATURE"]), "the results as a table: {run}");
    assert!(lines.iter().any(|l| l.first().is_some_and(|w| ["ADD", "UPDATE"].contains(w))), "changes live: {run}");
    let endpoint =
        |l: &&Vec<&str>| l.first() == Some(&"Endpoint:") && l.get(1).is_some_and(|u| u.starts_with("http://"));
    assert!(lines.iter().any(|l| endpoint(&l)), "describe shows the endpoint: {run}");
    assert!(lines.contains(&vec!["source", "sensors", "Running"]), "describe lists the components: {run}");
    let changes: Vec<&Vec<&str>> =
        lines.iter().filter(|l| l.first().is_some_and(|w| ["ADD", "UPDATE"].contains(w))).collect();
    assert!(changes.windows(2).all(|w| w[0] != w[1]), "no change shown twice: {run}");
    assert!(!run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'), "no colour off a terminal: {run}");
    let (_, list) = app.get_json("/api/v1/instances").await;
    assert_eq!(list["items"], json!([]), "the block cleans up after itself");
}
