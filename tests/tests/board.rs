//! The jobs dashboard (`/board`) in a real headless Chromium (Debian's `chromium`; scripts/test
//! installs it, and a missing browser fails these tests), and its queue-depth endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use draas_tests::{DraasProcess, TestApp, bin_dir, eventually, problem, spawn_app};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// The Chromium to drive: `DRAAS_TEST_CHROMIUM`, else `chromium` on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("DRAAS_TEST_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file());
    found.expect(
        "chromium is not installed: run `apt-get install -y chromium` (scripts/test does) or set DRAAS_TEST_CHROMIUM",
    )
}

/// Run headless Chromium on `url` with `extra` flags (a fresh profile each time, no network
/// beyond the page, 5 s of virtual time for the page's script) and return its stdout.
async fn headless(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1000",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(LONG, cmd.output()).await.expect("chromium timed out").expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The page as the browser rendered it, after its script ran.
async fn rendered(url: &str) -> String {
    headless(url, &["--dump-dom".to_owned()]).await
}

/// Where test artefacts go: `<target dir>/test-artefacts/`.
fn artefact(name: &str) -> PathBuf {
    let dir = bin_dir().parent().unwrap().join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

async fn queues(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.get_json("/api/v1/queues").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

fn queue<'a>(queues: &'a [Value], name: &str) -> &'a Value {
    queues.iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("no queue {name} in {queues:?}"))
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n") && b.len() > 10_000)
}

/// Two operations that fail whatever else runs on this host (no port involved): a config the
/// server rejects (permanent: one attempt, the server's message as detail) and a start that
/// panics (transient: retried up to the cap). Repairs are off so no other operation appears.
/// Returns them and the worker left running.
async fn two_failed_operations(app: &TestApp) -> (Value, Value, DraasProcess) {
    let no_repair = ("DRAAS_RECONCILE__REPAIR_ERROR", "false");
    let rejected = json!({"id": "${DRAAS_TEST_UNSET_ID}", "sources": [], "queries": [], "reactions": []});
    let id = app.create_instance("rejected", rejected).await["id"].as_str().unwrap().to_owned();
    let op = app.submit(&id, "start").await;
    let waiting = queues(app).await;
    assert_eq!(queue(&waiting, "shared")["waiting"], 1, "{waiting:?}");
    assert_eq!(queue(&waiting, "shared")["key"], format!("{{{}}}:q:shared", app.prefix));
    let mut worker = app.start_worker("node-a", &[no_repair]);
    let rejected = app.wait_op(&op, LONG).await;
    assert_eq!(
        (rejected["status"].as_str(), rejected["error"]["code"].as_str()),
        (Some("failed"), Some("config_rejected"))
    );
    assert!(worker.terminate(LONG).is_some_and(|s| s.success()), "the worker drains and acknowledges its job");

    let panicky = app.start_worker("node-a", &[no_repair, ("DRAAS_WORKER__INJECT_PANIC", "true")]);
    let id = app.create_instance("panicky", json!({"sources": [], "queries": [], "reactions": []})).await;
    let panicked = app.wait_op(&app.submit(id["id"].as_str().unwrap(), "start").await, LONG).await;
    assert_eq!((panicked["status"].as_str(), panicked["error"]["code"].as_str()), (Some("failed"), Some("panicked")));
    assert!(panicked["attempt"].as_u64() > Some(1) && panicked["attempt"] == panicked["maxAttempts"], "{panicked}");
    (rejected, panicked, panicky)
}

#[tokio::test]
async fn the_board_lists_queues_and_failed_operations_with_their_errors_and_attempts_in_a_real_browser() {
    let browser = chromium();
    let app = spawn_app().await;
    let (rejected, panicked, _worker) = two_failed_operations(&app).await;
    eventually("the jobs acknowledged", LONG, || async {
        let q = queues(&app).await;
        let shared = queue(&q, "shared");
        (shared["done"] == 2 && shared["waiting"] == 0 && shared["active"] == 0).then_some(())
    })
    .await;
    assert!(queues(&app).await.iter().any(|q| q["name"] == "node-node-a"), "the node's queue is listed");

    let url = format!("{}/board#token={}", app.api.base_url, app.token);
    let dom = rendered(&url).await;
    assert!(dom.contains(r#"data-state="ok""#), "the page loaded its data:\n{dom}");
    for op in [&rejected, &panicked] {
        let id = op["id"].as_str().unwrap();
        assert!(dom.contains(&format!(r#"data-operation="{id}""#)), "failed operation {id} is listed:\n{dom}");
    }
    assert!(dom.contains("config_rejected") && dom.contains("DRAAS_TEST_UNSET_ID"), "error and detail:\n{dom}");
    let attempts = format!("<td>{0}/{0}</td>", panicked["maxAttempts"]);
    assert!(dom.contains("panicked") && dom.contains(&attempts), "retried up to {attempts}:\n{dom}");
    for name in ["shared", "reconcile", "node-node-a"] {
        assert!(dom.contains(&format!("<td><code>{name}</code></td>")), "queue {name} has a row:\n{dom}");
    }
    assert!(dom.contains(r#"<li class="status-failed"><b>2</b>"#), "operations are counted by status:\n{dom}");
    assert!(!dom.contains(&app.token), "the token left the address and the page");

    let shot = artefact("board.png");
    let _ = std::fs::remove_file(&shot);
    headless(&url, &[format!("--screenshot={}", shot.display())]).await;
    assert!(is_png(&shot), "a screenshot at {}", shot.display());
    println!("board screenshot: {} (with {})", shot.display(), browser.display());
}

#[tokio::test]
async fn the_board_shows_nothing_without_a_token_and_its_data_routes_answer_401() {
    chromium();
    let app = spawn_app().await;
    let id = app.create_instance("private", json!({"sources": [], "queries": [], "reactions": []})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let op = app.submit(&id, "stop").await;
    let op_id = op["id"].as_str().unwrap();

    let shell = reqwest::get(format!("{}/board", app.api.base_url)).await.unwrap();
    assert_eq!(shell.status(), StatusCode::OK);
    assert!(shell.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("script-src 'self'"));
    let html = shell.text().await.unwrap();
    assert!(!html.contains(op_id) && !html.contains(&id), "the shell holds no data");
    for path in ["/api/v1/queues", "/api/v1/operations?limit=200"] {
        let anonymous = app.client.get(format!("{}{path}", app.api.base_url)).send().await.unwrap();
        assert_eq!(problem(anonymous).await.0, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = app.client.get(format!("{}{path}", app.api.base_url)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(problem(wrong).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }

    for url in [format!("{}/board", app.api.base_url), format!("{}/board#token=nope", app.api.base_url)] {
        let dom = rendered(&url).await;
        assert!(dom.contains(r#"data-state="login""#), "asks for a token at {url}:\n{dom}");
        assert!(
            !dom.contains(op_id) && !dom.contains("<td><code>shared</code></td>"),
            "shows no data at {url}:\n{dom}"
        );
    }
}
