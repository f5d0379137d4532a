//! The original DRaaS REST API (ORIGINAL.md §1, all 18 rows), replayed against a running draas
//! (real Redis, real workers, the drasi-server stand-in): original paths, shapes and status
//! codes, JSON errors `{"error": …}`, the synchronous lifecycle, and one store shared with v1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use chrono::{DateTime, Utc};
use draas_tests::{TestApp, spawn_app, spawn_permissive_app};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// An id that is well formed but unknown.
const GHOST: &str = "01jzzzzzzzzzzzzzzzzzzzzzzz";

fn srv(id: &str) -> String {
    format!("/api/server/instances/{id}")
}

/// Send and return status, headers and the JSON body (`null` when there is none).
async fn send(req: RequestBuilder) -> (StatusCode, header::HeaderMap, Value) {
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let text = res.text().await.unwrap();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
    (status, headers, body)
}

/// A request with a JSON body (or none).
fn req(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> RequestBuilder {
    let r = app.req(method, path);
    if let Some(b) = body { r.json(b) } else { r }
}

/// Expect `status` with an original-style JSON error and return its message.
async fn refused(r: RequestBuilder, status: StatusCode) -> (String, Value) {
    let (got, headers, body) = send(r).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{body}");
    (body["error"].as_str().unwrap_or_else(|| panic!("no error message: {body}")).to_owned(), body)
}

async fn ok(r: RequestBuilder, status: StatusCode) -> Value {
    let (got, _, body) = send(r).await;
    assert_eq!(got, status, "{body}");
    body
}

async fn create(app: &TestApp, body: Value) -> Value {
    ok(req(app, Method::POST, "/api/server/instances", Some(&body)), StatusCode::CREATED).await
}

async fn create_named(app: &TestApp, name: &str) -> String {
    create(app, json!({"name": name})).await["id"].as_str().unwrap().to_owned()
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_list_read_and_set_status_use_the_original_shapes() {
    let app = spawn_permissive_app().await;
    let body = json!({"name": "orig", "description": "from an old client",
        "serverConfiguration": {"host": "127.0.0.1", "port": 9555, "logLevel": "Debug"}});
    let (status, headers, created) = send(req(&app, Method::POST, "/api/server/instances", Some(&body))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(headers[header::LOCATION], srv(&id));
    assert_eq!((created["name"].as_str(), created["description"].as_str()), (Some("orig"), Some("from an old client")));
    assert_eq!((created["platformType"].as_u64(), created["status"].as_u64()), (Some(0), Some(0)));
    assert_eq!(created["metadata"], json!({}));
    assert!(created["createdAt"].is_string() && created["lastModifiedAt"].is_string(), "{created}");
    let (_, config) = app.get_json(&format!("/api/v1/instances/{id}/config")).await;
    assert_eq!(
        config,
        json!({"host": "127.0.0.1", "port": 9555, "logLevel": "debug", "sources": [], "queries": [], "reactions": []})
    );

    let plain = create(&app, json!({"name": "plain", "platformType": "Docker"})).await;
    assert_eq!(plain["platformType"], 1, "platformType is accepted by name as an extension");
    let (_, config) = app.get_json(&format!("/api/v1/instances/{}/config", plain["id"].as_str().unwrap())).await;
    assert!(config.get("host").is_none() && config.get("port").is_none(), "no 0.0.0.0:8080 defaults: {config}");

    let list = ok(app.req(Method::GET, "/api/server/instances"), StatusCode::OK).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["orig", "plain"]);
    assert_eq!(ok(app.req(Method::GET, &srv(&id)), StatusCode::OK).await["name"], "orig");

    let set =
        ok(req(&app, Method::PUT, &format!("{}/status", srv(&id)), Some(&json!("Running"))), StatusCode::OK).await;
    assert_eq!(set["status"], 1);
    assert!(at(&set["lastModifiedAt"]) >= at(&created["lastModifiedAt"]));
    let set = ok(req(&app, Method::PUT, &format!("{}/status", srv(&id)), Some(&json!(2))), StatusCode::OK).await;
    assert_eq!(set["status"], 2);
    let (_, v1) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(v1["status"], "stopped");
    let (_, history) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert_eq!(
        (history["items"][0]["source"].as_str(), history["items"][0]["reason"].as_str()),
        (Some("compat"), Some("status-set"))
    );
}

#[tokio::test]
async fn create_read_and_set_status_refuse_bad_input_with_json_errors() {
    let app = spawn_app().await;
    let id = create_named(&app, "taken").await;
    for (body, status) in [
        (json!({"name": "Not A DNS Label"}), StatusCode::BAD_REQUEST),
        (json!({"description": "no name"}), StatusCode::BAD_REQUEST),
        (json!({"name": "p0", "serverConfiguration": {"port": 0}}), StatusCode::BAD_REQUEST),
        (json!({"name": "loud", "serverConfiguration": {"logLevel": "loud"}}), StatusCode::BAD_REQUEST),
        (json!({"name": "plat", "platformType": 7}), StatusCode::BAD_REQUEST),
        (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST),
        (json!({"name": "taken"}), StatusCode::CONFLICT),
    ] {
        refused(req(&app, Method::POST, "/api/server/instances", Some(&body)), status).await;
    }
    let garbled =
        app.req(Method::POST, "/api/server/instances").header(header::CONTENT_TYPE, "application/json").body("{");
    refused(garbled, StatusCode::BAD_REQUEST).await;
    let (message, _) = refused(app.req(Method::GET, &srv(GHOST)), StatusCode::NOT_FOUND).await;
    assert_eq!(message, format!("Instance '{GHOST}' not found"));
    refused(app.req(Method::GET, &srv("Not-Ours")), StatusCode::NOT_FOUND).await;

    let status = |i: &str| format!("{}/status", srv(i));
    refused(req(&app, Method::PUT, &status(&id), Some(&json!("Sleeping"))), StatusCode::BAD_REQUEST).await;
    refused(req(&app, Method::PUT, &status(&id), Some(&json!(9))), StatusCode::BAD_REQUEST).await;
    refused(req(&app, Method::PUT, &status(&id), Some(&json!("ConfigurationChanged"))), StatusCode::BAD_REQUEST).await;
    refused(req(&app, Method::PUT, &status(GHOST), Some(&json!("Running"))), StatusCode::NOT_FOUND).await;
    let lease = format!("{{{}}}:lease:{id}", app.prefix);
    let mut redis = app.redis().await;
    let _: () = redis::cmd("SET").arg(&lease).arg("1:some-worker").query_async(&mut redis).await.unwrap();
    let (message, _) = refused(req(&app, Method::PUT, &status(&id), Some(&json!("Error"))), StatusCode::CONFLICT).await;
    assert!(message.contains("worker"), "{message}");
}

#[tokio::test]
async fn the_server_configuration_is_read_patched_and_set_field_by_field() {
    let app = spawn_permissive_app().await;
    let id = create(&app, json!({"name": "srvcfg", "serverConfiguration": {"logLevel": "info"}})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("{}/configuration/server", srv(&id));
    assert_eq!(
        ok(app.req(Method::GET, &path), StatusCode::OK).await,
        json!({"host": null, "port": null, "logLevel": "info"})
    );

    let ops = json!([{"op": "replace", "path": "/logLevel", "value": "debug"}, {"op": "add", "path": "/port", "value": 9123}]);
    let patched = ok(
        app.req(Method::PATCH, &path).header(header::CONTENT_TYPE, "application/json-patch+json").body(ops.to_string()),
        StatusCode::OK,
    )
    .await;
    assert_eq!(patched, json!({"host": null, "port": 9123, "logLevel": "debug"}));
    let pascal = json!([{"Op": "Replace", "Path": "/Host", "Value": "127.0.0.1"}]);
    assert_eq!(ok(req(&app, Method::PATCH, &path, Some(&pascal)), StatusCode::OK).await["host"], "127.0.0.1");
    let (_, config) = app.get_json(&format!("/api/v1/instances/{id}/config")).await;
    assert_eq!(
        (config["host"].as_str(), config["port"].as_u64(), config["logLevel"].as_str()),
        (Some("127.0.0.1"), Some(9123), Some("debug"))
    );

    for bad in [
        json!([{"op": "replace", "path": "/nope", "value": 1}]),
        json!([{"op": "replace", "path": "/port", "value": 0}]),
        json!({"op": "add"}),
    ] {
        refused(req(&app, Method::PATCH, &path, Some(&bad)), StatusCode::BAD_REQUEST).await;
    }
    let (message, _) = refused(
        app.req(Method::PATCH, &path).header(header::CONTENT_TYPE, "application/json"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(message, "Patch document is required");
    refused(
        req(&app, Method::PATCH, &format!("{}/configuration/server", srv(GHOST)), Some(&json!([]))),
        StatusCode::NOT_FOUND,
    )
    .await;
    refused(app.req(Method::GET, &format!("{}/configuration/server", srv(GHOST))), StatusCode::NOT_FOUND).await;

    let put = |field: &str, body: Value| req(&app, Method::PUT, &format!("{path}/{field}"), Some(&body));
    assert_eq!(ok(put("host", json!("0.0.0.0")), StatusCode::OK).await["host"], "0.0.0.0");
    assert_eq!(ok(put("port", json!(9200)), StatusCode::OK).await["port"], 9200);
    assert_eq!(ok(put("loglevel", json!("WARN")), StatusCode::OK).await["logLevel"], "warn");
    for (field, body) in
        [("port", json!(70000)), ("port", json!("9000")), ("loglevel", json!("loud")), ("host", json!(""))]
    {
        refused(put(field, body), StatusCode::BAD_REQUEST).await;
    }
    for field in ["host", "port", "loglevel"] {
        let body = if field == "port" { json!(9300) } else { json!("info") };
        let ghost = req(&app, Method::PUT, &format!("{}/configuration/server/{field}", srv(GHOST)), Some(&body));
        refused(ghost, StatusCode::NOT_FOUND).await;
    }
    assert_eq!(
        ok(app.req(Method::GET, &path), StatusCode::OK).await,
        json!({"host": "0.0.0.0", "port": 9200, "logLevel": "warn"})
    );
}

#[tokio::test]
async fn start_restart_and_stop_wait_and_answer_message_and_runtime_info() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = create_named(&app, "sync").await;
    let started = ok(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::OK).await;
    assert_eq!(started["message"], format!("Instance '{id}' started successfully"));
    let info = &started["runtimeInfo"];
    assert_eq!((info["instanceId"].as_str(), info["status"].as_u64()), (Some(id.as_str()), Some(1)));
    let pid: i32 = info["processId"].as_str().unwrap().parse().unwrap();
    assert!(app.servers().contains(&pid), "processId is the running server's pid");
    assert_eq!(info["runtimeMetadata"]["PlatformType"], "Process");
    assert_eq!(info["runtimeMetadata"]["node"], "node-a");
    assert!(info["startedAt"].is_string() && info["stoppedAt"].is_null(), "{info}");
    assert!(info["containerId"].is_null() && info["errorMessage"].is_null(), "{info}");

    let restarted = ok(app.req(Method::POST, &format!("{}/restart", srv(&id))), StatusCode::OK).await;
    assert_eq!(restarted["message"], format!("Instance '{id}' restarted successfully"));
    assert_eq!(restarted["runtimeInfo"]["status"], 1);
    assert_ne!(restarted["runtimeInfo"]["processId"], info["processId"], "a restart runs a new process");
    assert!(at(&restarted["runtimeInfo"]["startedAt"]) > at(&info["startedAt"]));

    let stopped = ok(app.req(Method::POST, &format!("{}/stop", srv(&id))), StatusCode::OK).await;
    assert_eq!(stopped["message"], format!("Instance '{id}' stopped successfully"));
    let info = &stopped["runtimeInfo"];
    assert_eq!(info["status"], 2);
    assert!(info["processId"].is_null() && info["stoppedAt"].is_string(), "{info}");
    assert!(app.servers().is_empty());
    assert_eq!(ok(app.req(Method::GET, &srv(&id)), StatusCode::OK).await["status"], 2);
    for action in ["start", "stop", "restart"] {
        refused(app.req(Method::POST, &format!("{}/{action}", srv(GHOST))), StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn a_start_with_an_original_configuration_body_stores_it_and_runs_it() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = create_named(&app, "withbody").await;
    let start = format!("{}/start", srv(&id));
    let invalid =
        json!({"queries": [{"id": "q", "queryText": "MATCH (n) RETURN n", "sources": [{"sourceId": "missing"}]}]});
    let (message, _) = refused(req(&app, Method::POST, &start, Some(&invalid)), StatusCode::BAD_REQUEST).await;
    assert!(message.contains("missing"), "{message}");
    assert!(app.servers().is_empty(), "nothing started");
    let original = json!({"host": null, "port": null, "logLevel": "Debug",
        "sources": [{"kind": "mock", "id": "sensors", "autoStart": true}],
        "queries": [{"id": "hot", "queryText": "MATCH (s:Sensor) RETURN s.id", "sources": [{"sourceId": "sensors"}]}],
        "reactions": [{"kind": "log", "id": "out", "queries": ["hot"]}]});
    let started = ok(req(&app, Method::POST, &start, Some(&original)), StatusCode::OK).await;
    assert_eq!(started["runtimeInfo"]["status"], 1, "{started}");
    let (_, config) = app.get_json(&format!("/api/v1/instances/{id}/config")).await;
    assert_eq!(config["queries"][0]["query"], "MATCH (s:Sensor) RETURN s.id");
    assert_eq!(config["logLevel"], "debug");
    let again = ok(req(&app, Method::POST, &start, Some(&json!({"host": null}))), StatusCode::OK).await;
    assert_eq!(
        again["runtimeInfo"]["processId"], started["runtimeInfo"]["processId"],
        "an empty body keeps the config"
    );
}

#[tokio::test]
async fn a_failed_operation_answers_a_json_error_with_its_reason() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRAAS_PROCESS_EXECUTABLE", "/nonexistent/drasi-server")]);
    let id = create_named(&app, "broken").await;
    let (message, body) = refused(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::BAD_GATEWAY).await;
    assert!(message.contains("/nonexistent/drasi-server"), "{message}");
    assert_eq!(body["code"], "executable_not_found");
    let (_, op) = app.get_json(&format!("/api/v1/operations/{}", body["operationId"].as_str().unwrap())).await;
    assert_eq!(op["status"], "failed");
    let info = ok(app.req(Method::GET, &format!("/api/status/{id}/status")), StatusCode::OK).await;
    assert_eq!(info["status"], 3);
    assert!(info["errorMessage"].as_str().unwrap().contains("executable_not_found"), "{info}");
}

#[tokio::test]
async fn a_wait_that_runs_out_answers_504_and_the_operation_carries_on() {
    let app = spawn_app().await;
    let impatient = app.start_api(&[("DRAAS_COMPAT__WAIT_SECS", "1")]);
    let id = create_named(&app, "patient").await;
    let (message, body) =
        refused(app.req_to(&impatient, Method::POST, &format!("{}/start", srv(&id))), StatusCode::GATEWAY_TIMEOUT)
            .await;
    assert!(message.contains("timed out"), "{message}");
    let op_id = body["operationId"].as_str().unwrap();
    assert!(message.contains(op_id), "{message}");
    let (status, op) = app.get_json(&format!("/api/v1/operations/{op_id}")).await;
    assert_eq!((status, op["kind"].as_str()), (StatusCode::OK, Some("start")));
    let _worker = app.start_worker("node-a", &[]);
    assert_eq!(app.wait_op(&op, LONG).await["status"], "succeeded");
    assert_eq!(ok(app.req(Method::GET, &srv(&id)), StatusCode::OK).await["status"], 1);
}

#[tokio::test]
async fn delete_waits_for_the_delete_operation_and_answers_204() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = create_named(&app, "doomed").await;
    ok(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::OK).await;
    assert_eq!(app.servers().len(), 1);
    let (status, _, body) = send(app.req(Method::DELETE, &srv(&id))).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert!(app.servers().is_empty(), "the server was stopped");
    refused(app.req(Method::GET, &srv(&id)), StatusCode::NOT_FOUND).await;
    refused(app.req(Method::DELETE, &srv(&id)), StatusCode::NOT_FOUND).await;
    let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_full_configuration_is_read_and_patched_with_202() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRAAS_RECONCILE__INTERVAL_SECS", "3600")]);
    let id = create_named(&app, "fullcfg").await;
    let path = format!("/api/configuration/instances/{id}");
    let empty = json!({"host": null, "port": null, "logLevel": null, "sources": [], "queries": [], "reactions": []});
    assert_eq!(ok(app.req(Method::GET, &path), StatusCode::OK).await, empty);
    ok(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::OK).await;

    let ops = json!([
        {"op": "add", "path": "/sources/-", "value": {"kind": "mock", "id": "sensors"}},
        {"op": "add", "path": "/queries/-", "value": {"id": "hot", "queryText": "MATCH (s) RETURN s", "sources": [{"sourceId": "sensors"}]}},
        {"op": "add", "path": "/reactions/-", "value": {"kind": "log", "id": "out", "queries": ["hot"]}},
        {"op": "replace", "path": "/LogLevel", "value": "debug"}
    ]);
    let patch =
        |body: &Value, ct: &str| app.req(Method::PATCH, &path).header(header::CONTENT_TYPE, ct).body(body.to_string());
    let patched = ok(patch(&ops, "application/json-patch+json"), StatusCode::ACCEPTED).await;
    assert_eq!(patched["queries"][0]["queryText"], "MATCH (s) RETURN s");
    assert_eq!(patched["queries"][0]["query"], "MATCH (s) RETURN s");
    assert_eq!((patched["sources"][0]["id"].as_str(), patched["logLevel"].as_str()), (Some("sensors"), Some("debug")));
    let edit = json!([{"op": "replace", "path": "/queries/0/queryText", "value": "MATCH (t) RETURN t"}]);
    assert_eq!(
        ok(patch(&edit, "application/json"), StatusCode::ACCEPTED).await["queries"][0]["query"],
        "MATCH (t) RETURN t"
    );
    assert_eq!(ok(app.req(Method::GET, &path), StatusCode::OK).await["queries"][0]["queryText"], "MATCH (t) RETURN t");
    assert_eq!(
        ok(app.req(Method::GET, &srv(&id)), StatusCode::OK).await["status"],
        4,
        "ConfigurationChanged while running an older config"
    );

    let before = ok(app.req(Method::GET, &path), StatusCode::OK).await;
    for bad in [
        json!([{"op": "remove", "path": "/sources/0"}]),
        json!([{"op": "replace", "path": "/nope/0", "value": 1}]),
        json!([{"op": "replace", "path": "/port", "value": 0}]),
    ] {
        refused(patch(&bad, "application/json-patch+json"), StatusCode::BAD_REQUEST).await;
    }
    refused(patch(&json!([]), "application/merge-patch+json"), StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let (message, _) = refused(app.req(Method::PATCH, &path), StatusCode::BAD_REQUEST).await;
    assert_eq!(message, "Patch document is required");
    assert_eq!(ok(app.req(Method::GET, &path), StatusCode::OK).await, before, "a refused patch changed nothing");
    refused(app.req(Method::GET, &format!("/api/configuration/instances/{GHOST}")), StatusCode::NOT_FOUND).await;
    refused(
        req(&app, Method::PATCH, &format!("/api/configuration/instances/{GHOST}"), Some(&json!([]))),
        StatusCode::NOT_FOUND,
    )
    .await;

    let restarted = ok(app.req(Method::POST, &format!("{}/restart", srv(&id))), StatusCode::OK).await;
    assert_eq!(restarted["runtimeInfo"]["status"], 1, "the restart applied the stored config");
}

#[tokio::test]
async fn status_pushes_are_recorded_and_reconcile_the_instance() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = create_named(&app, "pushed").await;
    ok(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::OK).await;
    let push = json!({"instanceId": id, "status": "Error", "source": "docker-daemon", "metadata": {"message": "looked sick", "ExitCode": 1}});
    let (status, _, body) = send(req(&app, Method::POST, "/api/status/updates", Some(&push))).await;
    assert_eq!((status, body), (StatusCode::ACCEPTED, Value::Null));
    let (_, history) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert!(
        history["items"].as_array().unwrap().iter().any(|c| c["source"] == "push:docker-daemon" && c["to"] == "error"),
        "{history}"
    );
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let reconcile = ops["items"].as_array().unwrap().iter().find(|o| o["reason"] == "status-push").cloned().unwrap();
    assert_eq!(reconcile["kind"], "reconcile");
    assert_eq!(app.wait_op(&reconcile, LONG).await["status"], "succeeded");
    let numeric = json!({"InstanceId": id, "Status": 1, "Source": "aks-daemon"});
    ok(req(&app, Method::POST, "/api/status/updates", Some(&numeric)), StatusCode::ACCEPTED).await;

    for blank in [
        json!({"instanceId": id, "status": 1, "source": " "}),
        json!({"instanceId": "", "status": 1, "source": "d"}),
        json!({"status": 1}),
    ] {
        let (message, _) =
            refused(req(&app, Method::POST, "/api/status/updates", Some(&blank)), StatusCode::BAD_REQUEST).await;
        assert_eq!(message, "InstanceId and Source are required");
    }
    let sick = json!({"instanceId": id, "status": "Sick", "source": "d"});
    refused(req(&app, Method::POST, "/api/status/updates", Some(&sick)), StatusCode::BAD_REQUEST).await;
    let ghost = json!({"instanceId": GHOST, "status": 1, "source": "d"});
    refused(req(&app, Method::POST, "/api/status/updates", Some(&ghost)), StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn runtime_status_and_recent_changes_return_real_data() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let id = create_named(&app, "watched").await;
    let fresh = ok(app.req(Method::GET, &format!("/api/status/{id}/status")), StatusCode::OK).await;
    assert_eq!((fresh["status"].as_u64(), fresh["processId"].as_str()), (Some(0), None));
    ok(app.req(Method::POST, &format!("{}/start", srv(&id))), StatusCode::OK).await;
    let info = ok(app.req(Method::GET, &format!("/api/status/{id}/status")), StatusCode::OK).await;
    assert_eq!((info["instanceId"].as_str(), info["status"].as_u64()), (Some(id.as_str()), Some(1)));
    assert!(app.servers().contains(&info["processId"].as_str().unwrap().parse().unwrap()));
    assert_eq!(info["runtimeMetadata"]["PlatformType"], "Process");
    assert!(info["runtimeMetadata"]["endpoint"].as_str().unwrap().starts_with("http://"), "{info}");
    refused(app.req(Method::GET, &format!("/api/status/{GHOST}/status")), StatusCode::NOT_FOUND).await;

    let recent = |query: &str| app.req(Method::GET, &format!("/api/status/recent-changes{query}"));
    let all = ok(recent(""), StatusCode::OK).await;
    let mine: Vec<&Value> = all.as_array().unwrap().iter().filter(|c| c["instanceId"] == id.as_str()).collect();
    assert_eq!(mine.len(), 1, "created→starting→running is one original change: {all}");
    assert_eq!((mine[0]["oldStatus"].as_u64(), mine[0]["newStatus"].as_u64()), (Some(0), Some(1)));
    assert!(mine[0]["source"].as_str().unwrap().starts_with("worker:"), "{all}");
    let when = at(&mine[0]["timestamp"]);
    let naive = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string();
    let count = |v: &Value| v.as_array().unwrap().iter().filter(|c| c["instanceId"] == id.as_str()).count();
    assert_eq!(count(&ok(recent("?statusFilter=Running"), StatusCode::OK).await), 1);
    assert_eq!(count(&ok(recent("?statusFilter=1"), StatusCode::OK).await), 1);
    assert_eq!(count(&ok(recent("?statusFilter=stopped"), StatusCode::OK).await), 0);
    let before = naive(when - chrono::Duration::seconds(1));
    assert_eq!(
        count(&ok(recent(&format!("?since={before}")), StatusCode::OK).await),
        1,
        "a time without offset is UTC"
    );
    let after = naive(when + chrono::Duration::seconds(1));
    assert_eq!(count(&ok(recent(&format!("?since={after}&statusFilter=Running")), StatusCode::OK).await), 0);
    let zulu = (when - chrono::Duration::seconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(count(&ok(recent(&format!("?since={zulu}")), StatusCode::OK).await), 1);
    refused(recent("?since=yesterday"), StatusCode::BAD_REQUEST).await;
    refused(recent("?statusFilter=Sleeping"), StatusCode::BAD_REQUEST).await;

    ok(app.req(Method::POST, &format!("{}/stop", srv(&id))), StatusCode::OK).await;
    let stopped = ok(recent("?statusFilter=Stopped"), StatusCode::OK).await;
    let change = stopped.as_array().unwrap().iter().find(|c| c["instanceId"] == id.as_str()).cloned().unwrap();
    assert_eq!((change["oldStatus"].as_u64(), change["newStatus"].as_u64()), (Some(1), Some(2)));
}

#[tokio::test]
async fn both_apis_manage_the_same_instances() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let old = create_named(&app, "from-old").await;
    let op = app.wait_op(&app.submit(&old, "start").await, LONG).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    let info = ok(app.req(Method::GET, &format!("/api/status/{old}/status")), StatusCode::OK).await;
    assert_eq!(info["status"], 1);
    assert_eq!(info["processId"].as_str().unwrap(), op["result"]["pid"].to_string());

    let new = app.create_instance("from-new", json!({"logLevel": "warn"})).await;
    let id = new["id"].as_str().unwrap();
    let seen = ok(app.req(Method::GET, &srv(id)), StatusCode::OK).await;
    assert_eq!(
        (seen["name"].as_str(), seen["status"].as_u64(), seen["platformType"].as_u64()),
        (Some("from-new"), Some(0), Some(0))
    );
    let server = ok(app.req(Method::GET, &format!("{}/configuration/server", srv(id))), StatusCode::OK).await;
    assert_eq!(server["logLevel"], "warn");
    let stopped = ok(app.req(Method::POST, &format!("{}/stop", srv(&old))), StatusCode::OK).await;
    assert_eq!(stopped["runtimeInfo"]["status"], 2);
    let (_, v1) = app.get_json(&format!("/api/v1/instances/{old}")).await;
    assert_eq!((v1["status"].as_str(), v1["desiredState"].as_str()), (Some("stopped"), Some("stopped")));
}

#[tokio::test]
async fn paths_match_case_insensitively_like_the_original() {
    let app = spawn_app().await;
    let (status, headers, created) =
        send(req(&app, Method::POST, "/api/Server/instances", Some(&json!({"name": "cased"})))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let location = headers[header::LOCATION].to_str().unwrap();
    assert_eq!(ok(app.req(Method::GET, location), StatusCode::OK).await["id"], id);
    assert_eq!(ok(app.req(Method::GET, &format!("/API/SERVER/INSTANCES/{id}")), StatusCode::OK).await["id"], id);
    assert_eq!(ok(app.req(Method::GET, &format!("/api/Server/instances/{id}/")), StatusCode::OK).await["id"], id);
    ok(app.req(Method::GET, &format!("/api/Configuration/instances/{id}")), StatusCode::OK).await;
    ok(app.req(Method::GET, &format!("/api/Status/{id}/Status")), StatusCode::OK).await;
    ok(
        app.req(Method::GET, "/api/Status/Recent-Changes?Since=2020-01-01T00:00:00Z&StatusFilter=Created"),
        StatusCode::OK,
    )
    .await;
    let level = req(
        &app,
        Method::PUT,
        &format!("/api/Server/Instances/{id}/Configuration/Server/LogLevel"),
        Some(&json!("debug")),
    );
    assert_eq!(ok(level, StatusCode::OK).await["logLevel"], "debug");
    refused(app.req(Method::GET, "/api/server/nope"), StatusCode::NOT_FOUND).await;
    refused(app.req(Method::DELETE, "/api/server/instances"), StatusCode::METHOD_NOT_ALLOWED).await;
    let v1_unknown = app.req(Method::GET, &format!("/api/v1/instances/{id}/nope")).send().await.unwrap();
    let (status, problem) = draas_tests::problem(v1_unknown).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("route_not_found")));
}

#[tokio::test]
async fn compat_routes_require_the_token() {
    let app = spawn_app().await;
    let id = create_named(&app, "guarded").await;
    let before = app.snapshot().await;
    for (method, path) in [
        (Method::GET, "/api/server/instances".to_owned()),
        (Method::POST, "/api/Server/instances".to_owned()),
        (Method::DELETE, srv(&id)),
        (Method::POST, format!("{}/start", srv(&id))),
        (Method::GET, format!("/api/configuration/instances/{id}")),
        (Method::POST, "/api/status/updates".to_owned()),
        (Method::GET, "/api/status/recent-changes".to_owned()),
    ] {
        let res = app
            .client
            .request(method.clone(), format!("{}{path}", app.api.base_url))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(app.snapshot().await, before, "an unauthenticated request wrote");
}
