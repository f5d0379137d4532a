//! Real Drasi pipelines through `draas up` on the real drasi-server and its plugins: a real
//! PostgreSQL (logical replication) → postgres source with postgres bootstrap → Cypher query →
//! log and sse reactions. Skipped, loudly, without the real server (`scripts/test` finds it;
//! CI always has it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::postgres::TestPostgres;
use draas_tests::{RealServer, SseStream, TestApp, eventually, real_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// How soon a row inserted into PostgreSQL must reach the results and the sse stream.
const FLOW: Duration = Duration::from_secs(5);

/// The pipeline of the README's postgres example, as JSON.
fn shop_config() -> Value {
    let yaml = draas_tests::readme_code("postgres-config", "yaml");
    serde_norway::from_str(&yaml).expect("the README's postgres example is YAML")
}

async fn up(real: &RealServer, pg: &TestPostgres) -> TestApp {
    draas_tests::postgres::up_with(real, pg).await
}

async fn instance(app: &TestApp, id: &str) -> Value {
    app.get_json(&format!("/api/v1/instances/{id}")).await.1
}

/// The query's current result rows, from the server itself.
async fn results(endpoint: &str, query: &str) -> Option<Vec<Value>> {
    let body: Value =
        reqwest::get(format!("{endpoint}/api/v1/queries/{query}/results")).await.ok()?.json().await.ok()?;
    body["data"].as_array().cloned()
}

fn ids(rows: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    ids.sort_unstable();
    ids
}

/// Wait for `n` more reconcile ticks to have probed the instance (its `lastProbe.at` moving on).
async fn ticks(app: &TestApp, id: &str, n: usize) {
    let seen = std::sync::Mutex::new(Vec::<String>::new());
    eventually(&format!("{n} reconcile ticks"), LONG, || async {
        let at = instance(app, id).await["lastProbe"]["at"].as_str().map(str::to_owned)?;
        let mut seen = seen.lock().unwrap();
        if !seen.contains(&at) {
            seen.push(at);
        }
        (seen.len() > n).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_postgres_cdc_pipeline_bootstraps_streams_changes_and_survives_a_bad_change() {
    let Some(real) = real_server("the postgres CDC pipeline") else { return };
    let pg = TestPostgres::start();
    pg.shop(&[(1, "pencil", 5), (2, "desk", 20), (3, "chair", 12)]);
    let app = up(&real, &pg).await;

    // The node's catalog is the plugins directory; a kind it lacks is refused before anything runs.
    let catalog = eventually("the node's plugin catalog", LONG, || async {
        let (_, body) = app.get_json("/api/v1/plugins").await;
        body["catalogs"].as_array()?.iter().find(|c| c["platform"] == "process" && c["node"] == "node-a").cloned()
    })
    .await;
    for kind in ["source/postgres", "bootstrap/postgres", "reaction/log", "reaction/sse"] {
        assert!(catalog["kinds"].as_array().unwrap().contains(&json!(kind)), "{kind} in {catalog}");
    }
    let mut lacking = shop_config();
    lacking["reactions"][0]["kind"] = json!("kafka");
    let body = json!({"name": "lacking", "config": lacking});
    let (status, problem) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["code"], "plugin_missing", "{problem}");
    assert_eq!(problem["pointer"], "/config/reactions/0/kind", "{problem}");
    assert!(problem["message"].as_str().unwrap().contains("reaction/kafka"), "{problem}");

    // Start: the bootstrap rows are in the results at once.
    let id = app.create_instance("shop", shop_config()).await["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let i = instance(&app, &id).await;
    let (endpoint, pid) = (i["endpoint"].as_str().unwrap().to_owned(), i["runtimeFacts"]["pid"].as_i64().unwrap());
    let bootstrapped = eventually("the bootstrap rows", LONG, || async {
        results(&endpoint, "big-orders").await.filter(|r| ids(r) == [2, 3])
    })
    .await;
    assert!(bootstrapped.iter().any(|r| r["item"] == "desk" && r["qty"] == 20), "{bootstrapped:?}");

    // The same through draas, behind its token: the results, the components, and clear
    // refusals of what does not exist.
    let (status, through) = app.get_json(&format!("/api/v1/instances/{id}/queries/big-orders/results")).await;
    assert_eq!(status, StatusCode::OK, "{through}");
    assert_eq!(ids(through["rows"].as_array().unwrap()), [2, 3], "{through}");
    let (status, listed) = app.get_json(&format!("/api/v1/instances/{id}/components")).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let running: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "Running")
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["shop", "big-orders", "out", "stream"], "{listed}");
    let (status, problem) = app.get_json(&format!("/api/v1/instances/{id}/queries/nope/results")).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("query_not_found")), "{problem}");
    let anonymous = reqwest::get(format!("{}/api/v1/instances/{id}/components", app.api.base_url)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // The sse reaction got a port of the node's pool, recorded on the instance.
    let stream = i["runtimeFacts"]["listeners"]["reactions/stream"].as_str().unwrap().to_owned();
    let stream_port: u16 = stream.rsplit(':').next().unwrap().parse().unwrap();
    assert!((app.ports.0..=app.ports.1).contains(&stream_port), "{stream} in {:?}", app.ports);

    // A row inserted now reaches the results and the sse stream within 5 s.
    let mut events = SseStream::open(&format!("{stream}/events"), LONG).await;
    let inserted = Instant::now();
    pg.sql("shop", "INSERT INTO orders VALUES (4, 'lamp', 40)");
    let (rows, event) = tokio::join!(
        eventually("the new row in the results", FLOW, || async {
            results(&endpoint, "big-orders").await.filter(|r| ids(r) == [2, 3, 4])
        }),
        events.until(FLOW, |d| d.contains("big-orders") && d.contains("\"id\":4"))
    );
    assert!(rows.iter().any(|r| r["item"] == "lamp") && event.contains("lamp"), "{rows:?} {event}");
    eprintln!("insert → results and sse: {} ms", inserted.elapsed().as_millis());

    // Component health: every source, query and reaction running, recorded on the instance.
    let healthy =
        app.wait_instance(&id, "the components recorded", LONG, |i| i["componentsSummary"]["total"] == 4).await;
    assert_eq!(healthy["status"], "running");
    assert_eq!(healthy["componentsSummary"], json!({"total": 4, "running": 4, "failing": 0}), "{healthy}");
    let names: Vec<String> = healthy["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}/{}", c["kind"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect();
    assert_eq!(names, ["source/shop", "query/big-orders", "reaction/out", "reaction/stream"]);

    // A change drasi-server's validate rejects leaves the running server alone, with a condition.
    let bad = r#"[{"op": "replace", "path": "/sources/0/password", "value": "${TEST_NO_SUCH_VAR}"}]"#;
    let res = app
        .send_body(Method::PATCH, &format!("/api/v1/instances/{id}/config"), "application/json-patch+json", bad)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let refused = app.wait_instance(&id, "the refusal recorded", LONG, |i| !i["conditions"][0].is_null()).await;
    let condition = &refused["conditions"][0];
    assert_eq!(condition["code"], "config_rejected", "{refused}");
    assert!(condition["message"].as_str().unwrap().contains("TEST_NO_SUCH_VAR"), "{refused}");
    assert_eq!(refused["status"], "running", "{refused}");
    assert_eq!(refused["runtimeFacts"]["pid"], pid, "the same server still runs");
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let failed: Vec<&Value> = ops["items"].as_array().unwrap().iter().filter(|o| o["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ops}");
    assert_eq!(
        (failed[0]["error"]["code"].as_str(), failed[0]["attempt"].as_u64()),
        (Some("config_rejected"), Some(1))
    );
    let detail = failed[0]["error"]["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains('\u{1b}') && !condition.to_string().contains("\\u001b"), "no ANSI codes: {detail}");
    // Ticks later: not retried, no crash loop, the data still flowing.
    ticks(&app, &id, 3).await;
    let (_, later) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    assert_eq!(later["items"].as_array().unwrap().len(), ops["items"].as_array().unwrap().len(), "{later}");
    let still = instance(&app, &id).await;
    assert_eq!((still["status"].as_str(), &still["runtimeFacts"]["pid"]), (Some("running"), &json!(pid)), "{still}");
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok(), "pid {pid} is alive");
    pg.sql("shop", "INSERT INTO orders VALUES (5, 'shelf', 50)");
    eventually("a row inserted after the refusal", FLOW, || async {
        results(&endpoint, "big-orders").await.filter(|r| ids(r) == [2, 3, 4, 5])
    })
    .await;

    // Putting the configuration back clears the condition; nothing restarts.
    let fix = r#"[{"op": "replace", "path": "/sources/0/password", "value": "${PGPASSWORD}"}]"#;
    let res = app
        .send_body(Method::PATCH, &format!("/api/v1/instances/{id}/config"), "application/json-patch+json", fix)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fixed = app.wait_instance(&id, "the condition cleared", LONG, |i| i["conditions"] == json!([])).await;
    assert_eq!((fixed["status"].as_str(), &fixed["runtimeFacts"]["pid"]), (Some("running"), &json!(pid)), "{fixed}");

    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let (status, problem) = app.get_json(&format!("/api/v1/instances/{id}/queries/big-orders/results")).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("instance_not_running")), "{problem}");
}

#[tokio::test]
async fn a_component_the_server_reports_in_error_makes_the_instance_degraded() {
    let Some(real) = real_server("component health on the real server") else { return };
    let pg = TestPostgres::start();
    pg.shop(&[(1, "pencil", 5)]);
    let app = up(&real, &pg).await;
    // A second source whose database does not answer, left stopped: the server starts healthy.
    // The real server keeps a running source "Running" while its database is away (it retries);
    // one started while the database is unreachable is in Error, the server still up.
    let mut config = shop_config();
    let mut away = config["sources"][0].clone();
    away["id"] = json!("away");
    away["port"] = json!(draas_tests::free_port());
    away["autoStart"] = json!(false);
    away.as_object_mut().unwrap().remove("bootstrapProvider");
    config["sources"].as_array_mut().unwrap().push(away);
    let id = app.create_instance("flaky", config).await["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let healthy =
        app.wait_instance(&id, "the components recorded", LONG, |i| i["componentsSummary"]["total"] == 5).await;
    assert_eq!((healthy["status"].as_str(), &healthy["componentsSummary"]["failing"]), (Some("running"), &json!(0)));
    let endpoint = healthy["endpoint"].as_str().unwrap().to_owned();

    let started = reqwest::Client::new().post(format!("{endpoint}/api/v1/sources/away/start")).send().await.unwrap();
    eprintln!("starting the unreachable source: {}", started.status());
    let degraded = app.wait_instance(&id, "degraded", LONG, |i| i["status"] == "degraded").await;
    let failing: Vec<&Value> =
        degraded["components"].as_array().unwrap().iter().filter(|c| c["status"] == "Error").collect();
    assert_eq!(failing.len(), 1, "{degraded}");
    assert_eq!((failing[0]["kind"].as_str(), failing[0]["id"].as_str()), (Some("source"), Some("away")), "{degraded}");
    assert!(!failing[0]["error"].as_str().unwrap_or_default().is_empty(), "the server's reason: {degraded}");
    assert!(degraded["statusMessage"].as_str().unwrap().contains("source 'away' is in error"), "{degraded}");
    assert_eq!(degraded["componentsSummary"]["failing"], 1, "{degraded}");
    let (_, live) = app.get_json(&format!("/api/v1/instances/{id}/components")).await;
    let away = live["items"].as_array().unwrap().iter().find(|c| c["id"] == "away").cloned().unwrap();
    assert_eq!((away["kind"].as_str(), away["status"].as_str()), (Some("source"), Some("Error")), "{live}");
    assert_eq!(degraded["runtimeFacts"]["pid"], healthy["runtimeFacts"]["pid"], "degraded is not restarted");
    let (_, history) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert!(history["items"].as_array().unwrap().iter().any(|h| h["to"] == "degraded"), "{history}");

    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");
}

#[tokio::test]
async fn the_readme_postgres_example_runs_as_written() {
    let Some(real) = real_server("the README's postgres example") else { return };
    let pg = TestPostgres::start();
    pg.shop(&[(1, "pencil", 5), (2, "desk", 20), (3, "chair", 12)]);
    let app = up(&real, &pg).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.yaml"), draas_tests::readme_code("postgres-config", "yaml")).unwrap();
    let port = pg.port.to_string();
    let env = [("DRAAS_SERVER", app.api.base_url.as_str()), ("DRAAS_TOKEN", app.token.as_str()), ("PGPORT", &port)];
    let run = draas_tests::run_readme_block("postgres-run", dir.path(), &env, &[pg.bin_dir()]);
    assert!(run.success, "{run}");
    assert!(run.stdout.contains("instance shop started at http://127.0.0.1:"), "{run}");
    assert!(run.stdout.contains("INSERT 0 1"), "{run}");
    let table: Vec<Vec<&str>> = run.stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(table.contains(&vec!["ID", "ITEM", "QTY"]), "draas results prints a table: {run}");
    assert!(table.contains(&vec!["4", "lamp", "40"]), "{run}");
}
