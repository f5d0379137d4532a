//! Named tokens with roles (`read`, `operate`, `admin`), who asked for what (`requestedBy`,
//! `createdBy`), and each token's quotas: instances, operations per minute and streams. Against
//! real `draas api` (and, where operations must run, `draas worker`) processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_jobs::settings::tokens::digest;
use draas_tests::{SseStream, TestApp, eventually, problem, spawn_app};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde_json::{Value, json};

const VIEWER: &str = "tok-viewer-0123456789";
const OPS: &str = "tok-ops-0123456789";
const ROOT: &str = "tok-root-0123456789";

/// A `tokens` entry for `token`.
fn entry(name: &str, role: &str, token: &str) -> Value {
    json!({"name": name, "role": role, "sha256": hex::encode(digest(token.as_bytes()))})
}

/// The test app's API restarted with three named tokens (`viewer`: read, `ops`: operate,
/// `root`: admin) besides the harness' own (`token-1`), each entry amended by `amend`.
fn with_tokens(app: &mut TestApp, amend: impl Fn(&mut Value)) {
    let mut tokens = vec![entry("viewer", "read", VIEWER), entry("ops", "operate", OPS), entry("root", "admin", ROOT)];
    tokens.iter_mut().for_each(&amend);
    app.extra_env.push(("DRAAS_TOKENS".into(), Value::Array(tokens).to_string()));
    app.api.kill();
    app.api = app.start_api(&[]);
}

/// A request to the app's API with `token`.
fn as_token(app: &TestApp, token: &str, method: Method, path: &str) -> RequestBuilder {
    app.client.request(method, format!("{}{path}", app.api.base_url)).bearer_auth(token)
}

async fn json_of(req: RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

async fn create(app: &TestApp, token: &str, name: &str) -> (StatusCode, Value) {
    json_of(as_token(app, token, Method::POST, "/api/v1/instances").json(&json!({"name": name}))).await
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers().get(header::RETRY_AFTER).expect("Retry-After").to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_read_token_may_read_everything_and_change_nothing() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |_| {});
    let (_, inst) = create(&app, OPS, "seen").await;
    let id = inst["id"].as_str().unwrap();

    for path in ["/api/v1/instances".to_owned(), format!("/api/v1/instances/{id}"), "/api/v1/operations".into()] {
        let res = as_token(&app, VIEWER, Method::GET, &path).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
    }
    let writes = [
        (Method::POST, "/api/v1/instances".to_owned(), json!({"name": "by-viewer"})),
        (Method::POST, format!("/api/v1/instances/{id}/start"), Value::Null),
        (Method::PATCH, format!("/api/v1/instances/{id}"), json!({"description": "defaced"})),
        (Method::DELETE, format!("/api/v1/instances/{id}"), Value::Null),
        (Method::PUT, format!("/api/v1/instances/{id}/config"), json!({})),
        (Method::POST, "/api/v1/reconcile".into(), Value::Null),
        (Method::POST, "/api/server/instances".into(), json!({"name": "by-viewer"})),
    ];
    for (method, path, body) in writes {
        let res = as_token(&app, VIEWER, method.clone(), &path).json(&body).send().await.unwrap();
        let (status, body) = problem(res).await;

        assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden_role")), "{method} {path}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("'viewer'") && message.contains("'read'") && message.contains("operate"), "{message}");
    }
    let (_, list) = app.get_json("/api/v1/instances").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "nothing was created: {list}");
    let (_, ops) = app.get_json("/api/v1/operations").await;
    assert_eq!(ops["items"], json!([]), "nothing was submitted");
    let (_, i) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!((i["description"].as_str(), i["desiredState"].as_str()), (Some(""), Some("stopped")));
}

#[tokio::test]
async fn an_operate_token_runs_instances_but_only_an_admin_reveals_secrets() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |_| {});
    let config = json!({"sources": [{"kind": "postgres", "id": "db", "password": "hunter2"}]});
    let (status, inst) =
        json_of(as_token(&app, OPS, Method::POST, "/api/v1/instances").json(&json!({"name": "op", "config": config})))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{inst}");
    let id = inst["id"].as_str().unwrap();
    let (status, _) = json_of(as_token(&app, OPS, Method::POST, &format!("/api/v1/instances/{id}/start"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let reveal = format!("/api/v1/instances/{id}/config?reveal=true");
    let (status, body) = problem(as_token(&app, OPS, Method::GET, &reveal).send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("reveal_forbidden")));
    let (status, body) = json_of(as_token(&app, ROOT, Method::GET, &reveal)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sources"][0]["password"], "hunter2");
}

#[tokio::test]
async fn every_operation_and_the_history_it_causes_name_the_token_that_asked() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |_| {});
    let _worker = app.start_worker("node-a", &[]);
    let (_, inst) = create(&app, OPS, "audited").await;
    let id = inst["id"].as_str().unwrap().to_owned();
    assert_eq!(inst["createdBy"], "ops");
    let (_, legacy) = app.send_json(Method::POST, "/api/v1/instances", &json!({"name": "legacy"})).await;
    assert_eq!(legacy["createdBy"], "token-1", "the api_tokens entry is named token-1");
    assert!(inst.get("updatedBy").is_none(), "{inst}");
    let edit = as_token(&app, ROOT, Method::PATCH, &format!("/api/v1/instances/{id}"));
    let (status, edited) = json_of(edit.json(&json!({"description": "audited"}))).await;
    assert_eq!(
        (status, edited["createdBy"].as_str(), edited["updatedBy"].as_str()),
        (StatusCode::OK, Some("ops"), Some("root"))
    );
    let put = as_token(&app, OPS, Method::PUT, &format!("/api/v1/instances/{id}/config"));
    assert_eq!(put.json(&json!({"logLevel": "debug"})).send().await.unwrap().status(), StatusCode::OK);
    let (_, read) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(read["updatedBy"], "ops", "a configuration change records who made it: {read}");

    let (status, started) =
        json_of(as_token(&app, OPS, Method::POST, &format!("/api/v1/instances/{id}/start?wait=30"))).await;
    assert_eq!((status, started["status"].as_str()), (StatusCode::OK, Some("succeeded")), "{started}");
    assert_eq!(started["requestedBy"], "ops");
    let (_, pass) = json_of(as_token(&app, ROOT, Method::POST, &format!("/api/v1/instances/{id}/reconcile"))).await;
    assert_eq!(pass["requestedBy"], "root");
    let (_, stopped) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/stop?wait=30"), &Value::Null).await;
    assert_eq!((stopped["status"].as_str(), stopped["requestedBy"].as_str()), (Some("succeeded"), Some("token-1")));

    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    let by: Vec<_> = ops["items"].as_array().unwrap().iter().map(|o| o["requestedBy"].as_str().unwrap()).collect();
    assert_eq!(by, ["token-1", "root", "ops"], "{ops}");
    let (_, history) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    let changes: Vec<_> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["to"].as_str().unwrap(), c["requestedBy"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(changes, [("stopped", "token-1"), ("stopping", "token-1"), ("running", "ops"), ("starting", "ops")]);
}

#[tokio::test]
async fn a_token_at_its_instance_quota_gets_429_and_nothing_is_written_until_it_deletes_one() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |e| {
        if e["name"] == "ops" {
            e["max_instances"] = json!(2);
        }
    });
    let _worker = app.start_worker("node-a", &[]);
    // Twenty creates at once: the quota is counted where the instance is written, so exactly
    // two get through, whatever the interleaving.
    let names: Vec<_> = (0..20).map(|i| format!("burst-{i}")).collect();
    let burst = futures::future::join_all(names.iter().map(|n| create(&app, OPS, n))).await;
    let created: Vec<_> = burst.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, i)| i.clone()).collect();
    let refused = burst.iter().filter(|(s, b)| *s == StatusCode::TOO_MANY_REQUESTS && b["code"] == "quota_exceeded");
    assert_eq!((created.len(), refused.count()), (2, 18), "{burst:?}");
    if draas_tests::verbose() {
        eprintln!("FIGURE instance quota 2: 20 concurrent creates -> 2 created, 18 x 429");
    }
    let first = &created[0];
    let mut redis = app.redis().await;
    let names: usize =
        redis::cmd("HLEN").arg(format!("{{{}}}:names", app.prefix)).query_async(&mut redis).await.unwrap();
    assert_eq!(names, 2);

    let res =
        as_token(&app, OPS, Method::POST, "/api/v1/instances").json(&json!({"name": "three"})).send().await.unwrap();
    let wait = retry_after(&res);
    let (status, body) = problem(res).await;
    let compat = as_token(&app, OPS, Method::POST, "/api/server/instances").json(&json!({"name": "three"}));
    let compat = compat.send().await.unwrap();

    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("max_instances"), "{body}");
    assert!(wait >= 1, "Retry-After {wait}");
    assert_eq!(compat.status(), StatusCode::TOO_MANY_REQUESTS);
    let after: usize =
        redis::cmd("HLEN").arg(format!("{{{}}}:names", app.prefix)).query_async(&mut redis).await.unwrap();
    assert_eq!(after, names, "no instance was written");
    assert_eq!(create(&app, ROOT, "by-root").await.0, StatusCode::CREATED, "another token has its own quota");

    let id = first["id"].as_str().unwrap();
    let (_, deleted) = json_of(as_token(&app, OPS, Method::DELETE, &format!("/api/v1/instances/{id}?wait=30"))).await;
    assert_eq!(deleted["status"], "succeeded", "{deleted}");
    assert_eq!(create(&app, OPS, "three").await.0, StatusCode::CREATED, "a delete gives the quota back");
}

#[tokio::test]
async fn a_token_over_its_operations_per_minute_gets_429_with_retry_after_until_the_minute_ends() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |e| {
        if e["name"] == "ops" {
            e["ops_per_minute"] = json!(3);
        }
    });
    let (_, inst) = create(&app, OPS, "busy").await;
    let id = inst["id"].as_str().unwrap();
    // The window is the clock minute: do not begin in its last seconds.
    let second = || chrono::Utc::now().timestamp().rem_euclid(60);
    if second() >= 55 {
        eventually("the next minute", Duration::from_secs(10), || async { (second() < 55).then_some(()) }).await;
    }
    let stop = format!("/api/v1/instances/{id}/stop");
    let burst = futures::future::join_all((0..20).map(|_| json_of(as_token(&app, OPS, Method::POST, &stop)))).await;
    let accepted = burst.iter().filter(|(s, _)| *s == StatusCode::ACCEPTED).count();
    let refused = burst.iter().filter(|(s, b)| *s == StatusCode::TOO_MANY_REQUESTS && b["code"] == "quota_exceeded");
    assert_eq!((accepted, refused.count()), (3, 17), "{burst:?}");
    if draas_tests::verbose() {
        eprintln!("FIGURE ops quota 3/min: 20 concurrent stops -> 3 accepted, 17 x 429");
    }

    let res = as_token(&app, OPS, Method::POST, &format!("/api/v1/instances/{id}/start")).send().await.unwrap();
    let wait = retry_after(&res);
    let (status, body) = problem(res).await;

    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("quota_exceeded")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("ops_per_minute"), "{body}");
    assert!((1..=60).contains(&wait), "Retry-After {wait} is the rest of the minute");
    let (_, i) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(i["desiredState"], "stopped", "the refused start changed nothing");
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
    assert_eq!(ops["items"].as_array().unwrap().len(), 3);
    let (status, _) = json_of(as_token(&app, ROOT, Method::POST, &format!("/api/v1/instances/{id}/start"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "another token has its own quota");
}

#[tokio::test]
async fn a_token_at_its_stream_quota_gets_429_on_every_replica_while_another_token_still_streams() {
    let mut app = spawn_app().await;
    with_tokens(&mut app, |e| {
        if e["name"] == "viewer" {
            e["max_streams"] = json!(1);
        }
    });
    let deadline = Duration::from_secs(10);
    let events = "/api/v1/events";
    let first = SseStream::request(as_token(&app, VIEWER, Method::GET, events), deadline).await;

    let res = SseStream::answer(as_token(&app, VIEWER, Method::GET, events), deadline).await;
    let wait = retry_after(&res);
    let (status, body) = problem(res).await;
    let other = SseStream::request(as_token(&app, OPS, Method::GET, events), deadline).await;

    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_streams")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("'viewer'"), "{body}");
    assert!(wait >= 1);

    // The quota holds across API replicas: a second one refuses the token too, until the
    // first replica's stream ends.
    let second = app.start_api(&[]);
    let elsewhere = || app.client.get(format!("{}{events}", second.base_url)).bearer_auth(VIEWER);
    let res = SseStream::answer(elsewhere(), deadline).await;
    let (status, body) = problem(res).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("too_many_streams")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("all API replicas"), "{body}");
    drop(other);
    drop(first);
    eventually("a stream on the second replica once the first one closed", deadline, || async {
        let res = SseStream::answer(elsewhere(), deadline).await;
        res.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_bad_tokens_entry_stops_the_api_from_starting_with_a_message_naming_it() {
    let app = spawn_app().await;
    let sha = hex::encode(digest(b"t"));
    let cases = [
        ("[{\"name\": \"ci\"", "DRAAS_TOKENS must be a JSON array".to_owned()),
        (r#"{"name": "ci"}"#, "DRAAS_TOKENS must be a JSON array".to_owned()),
        (&*format!(r#"[{{"name": "ci", "role": "root", "sha256": "{sha}"}}]"#), "unknown variant `root`".to_owned()),
        (r#"[{"name": "ci", "role": "read", "sha256": "abc"}]"#, "token 'ci': sha256 must be 64 hex digits".into()),
        (&*format!(r#"[{{"name": "c i", "role": "read", "sha256": "{sha}"}}]"#), "token name 'c i'".into()),
        (&*format!(r#"[{{"name": "system", "role": "read", "sha256": "{sha}"}}]"#), "not 'system'".into()),
        (
            &*format!(
                r#"[{{"name": "a", "role": "read", "sha256": "{sha}"}}, {{"name": "a", "role": "admin", "sha256": "{}"}}]"#,
                hex::encode(digest(b"u"))
            ),
            "two tokens are named 'a'".into(),
        ),
        (
            &*format!(
                r#"[{{"name": "a", "role": "read", "sha256": "{sha}"}}, {{"name": "b", "role": "admin", "sha256": "{sha}"}}]"#
            ),
            "token 'b' is the same token".into(),
        ),
    ];
    for (tokens, expected) in cases {
        let (status, stderr) =
            draas_tests::api_exit(&[("DRAAS_REDIS_URL", &app.redis.url), ("DRAAS_TOKENS", tokens)]).await;

        assert!(!status.success(), "{tokens}: exited {status}");
        assert!(stderr.contains(&expected), "{tokens}: stderr does not say {expected:?}:\n{stderr}");
    }
    let (status, stderr) = draas_tests::api_exit(&[("DRAAS_REDIS_URL", &app.redis.url), ("DRAAS_TOKENS", "[]")]).await;
    assert!(!status.success() && stderr.contains("DRAAS_TOKENS"), "no token at all: {stderr}");
}

#[tokio::test]
async fn draas_token_new_prints_a_token_and_the_entry_that_accepts_it() {
    let mut app = spawn_app().await;
    let out = std::process::Command::new(draas_tests::bin("draas"))
        .args(["token", "new", "ci-bot", "--role", "read"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let json_line = stderr.lines().find(|l| l.starts_with('{')).expect("the DRAAS_TOKENS entry");
    let entry: Value = serde_json::from_str(json_line).unwrap();
    assert_eq!((entry["name"].as_str(), entry["role"].as_str()), (Some("ci-bot"), Some("read")));
    assert!(stderr.contains("- name: ci-bot\n  role: read\n  sha256: "), "the settings file entry:\n{stderr}");
    let mut hash = std::process::Command::new(draas_tests::bin("draas"))
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut hash.stdin.take().unwrap(), format!("{token}\n").as_bytes()).unwrap();
    let hashed = hash.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(hashed.stdout).unwrap().trim(), entry["sha256"].as_str().unwrap());
    assert!(!stderr.contains(&token), "the token is printed on stdout only");

    app.extra_env.push(("DRAAS_TOKENS".into(), Value::Array(vec![entry]).to_string()));
    app.api.kill();
    app.api = app.start_api(&[]);
    let (status, _) = json_of(as_token(&app, &token, Method::GET, "/api/v1/instances")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = create(&app, &token, "nope").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let bad = std::process::Command::new(draas_tests::bin("draas")).args(["token", "new", "a:b"]).output().unwrap();
    assert!(!bad.status.success());
}
