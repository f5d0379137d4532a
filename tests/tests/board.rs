//! The operations console (`/board`) in a real headless Chromium (Debian's `chromium`;
//! scripts/test installs it, and a missing browser fails these tests), and its queue-depth
//! endpoint. `--dump-dom` and `--screenshot` for what a page shows; for clicks, Chromium driven
//! over the DevTools protocol (tokio-tungstenite's WebSocket).
//! The stop-from-the-console test runs the real drasi-server (skipped, loudly, without it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use draas_tests::{DraasProcess, RealServer, TestApp, bin_dir, eventually, problem, real_server, spawn_app, spawn_up};
use futures::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

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

/// The flags of every headless Chromium of these tests.
const CHROMIUM_FLAGS: [&str; 10] = [
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
];

/// Run headless Chromium on `url` with `extra` flags (a fresh profile each time, no network
/// beyond the page, 5 s of virtual time for the page's script) and return its stdout.
async fn headless(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=5000")
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

/// Operations that fail whatever else runs on this host (no port involved): three starts of a
/// config the server rejects (permanent: one attempt each, the server's message as detail) and
/// a start that panics (transient: retried up to the cap). Repairs are off so no other
/// operation appears. Returns the rejected ones, the panicked one and the worker left running.
async fn failed_operations(app: &TestApp) -> (Vec<Value>, Value, DraasProcess) {
    let no_repair = ("DRAAS_RECONCILE__REPAIR_ERROR", "false");
    let rejected = json!({"id": "${TEST_UNSET_ID}", "sources": [], "queries": [], "reactions": []});
    let mut ops = Vec::new();
    for name in ["rejected-a", "rejected-b", "rejected-c"] {
        let id = app.create_instance(name, rejected.clone()).await["id"].as_str().unwrap().to_owned();
        ops.push(app.submit(&id, "start").await);
    }
    let waiting = queues(app).await;
    assert_eq!(queue(&waiting, "shared")["waiting"], 3, "{waiting:?}");
    assert_eq!(queue(&waiting, "shared")["key"], format!("{{{}}}:q:shared", app.prefix));
    let mut worker = app.start_worker("node-a", &[no_repair]);
    let mut rejected = Vec::new();
    for op in &ops {
        let op = app.wait_op(op, LONG).await;
        assert_eq!((op["status"].as_str(), op["error"]["code"].as_str()), (Some("failed"), Some("config_rejected")));
        rejected.push(op);
    }
    assert!(worker.terminate(LONG).is_some_and(|s| s.success()), "the worker drains and acknowledges its jobs");

    let panicky = app.start_worker("node-a", &[no_repair, ("DRAAS_WORKER__INJECT_PANIC", "true")]);
    let id = app.create_instance("panicky", json!({"sources": [], "queries": [], "reactions": []})).await;
    let panicked = app.wait_op(&app.submit(id["id"].as_str().unwrap(), "start").await, LONG).await;
    assert_eq!((panicked["status"].as_str(), panicked["error"]["code"].as_str()), (Some("failed"), Some("panicked")));
    assert!(panicked["attempt"].as_u64() > Some(1) && panicked["attempt"] == panicked["maxAttempts"], "{panicked}");
    (rejected, panicked, panicky)
}

/// The console's URL for `route` (`/`, `/instances/<id>`, …) with the token in the fragment.
fn console(app: &TestApp, route: &str) -> String {
    format!("{}/board#{route}?token={}", app.api.base_url, app.token)
}

#[tokio::test]
async fn the_console_groups_failures_by_code_and_lists_instances_queues_and_operations_in_a_real_browser() {
    let browser = chromium();
    let app = spawn_app().await;
    let (rejected, panicked, _worker) = failed_operations(&app).await;
    eventually("the jobs acknowledged", LONG, || async {
        let q = queues(&app).await;
        let shared = queue(&q, "shared");
        (shared["done"] == 4 && shared["waiting"] == 0 && shared["active"] == 0).then_some(())
    })
    .await;
    assert!(queues(&app).await.iter().any(|q| q["name"] == "node-node-a"), "the node's queue is listed");

    let url = format!("{}/board#token={}", app.api.base_url, app.token);
    let dom = rendered(&url).await;
    assert!(dom.contains(r#"data-state="ok""#), "the page loaded its data:\n{dom}");
    // One row per error code, with its count, not three identical rows.
    assert!(dom.contains(r#"<tr data-code="config_rejected" data-count="3">"#), "config_rejected ×3:\n{dom}");
    assert!(dom.contains(r#"<tr data-code="panicked" data-count="1">"#), "panicked ×1:\n{dom}");
    assert_eq!(dom.matches("data-code=").count(), 2, "one row per code:\n{dom}");
    for op in rejected.iter().chain([&panicked]) {
        let id = op["id"].as_str().unwrap();
        assert!(dom.contains(&format!(r##"href="#/operations/{id}""##)), "failed operation {id} is linked:\n{dom}");
    }
    assert!(dom.contains("TEST_UNSET_ID"), "the latest error's detail:\n{dom}");
    for name in ["shared", "reconcile", "node-node-a"] {
        assert!(dom.contains(&format!("<td><code>{name}</code></td>")), "queue {name} has a row:\n{dom}");
    }
    assert!(dom.contains(r#"<li class="status-failed"><b>4</b>"#), "operations are counted by status:\n{dom}");
    for name in ["rejected-a", "rejected-b", "rejected-c", "panicky"] {
        assert!(dom.contains(&format!(">{name}</a>")), "instance {name} has a row:\n{dom}");
    }
    assert!(dom.contains(r#"data-action="stop""#) && dom.contains(r#"data-action="delete""#), "actions:\n{dom}");
    assert!(!dom.contains(&app.token), "the token left the address and the page");

    // An operation has a page of its own, linkable.
    let id = panicked["id"].as_str().unwrap();
    let dom = rendered(&console(&app, &format!("/operations/{id}"))).await;
    assert!(dom.contains(r#"data-view="operation""#) && dom.contains(r#"data-operation-status="failed""#), "{dom}");
    let attempts = format!("<dd>{0}/{0}</dd>", panicked["maxAttempts"]);
    assert!(dom.contains(&attempts) && dom.contains("panicked"), "retried up to {attempts}:\n{dom}");
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
    let csp = shell.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe"), "no inline scripts or styles, no eval: {csp}");
    let html = shell.text().await.unwrap();
    assert!(!html.contains(op_id) && !html.contains(&id), "the shell holds no data");
    assert!(!html.contains("<script>") && !html.contains("style="), "nothing inline");
    for path in [
        "/api/v1/queues".to_owned(),
        "/api/v1/operations?limit=200".to_owned(),
        "/api/v1/instances".to_owned(),
        format!("/api/v1/instances/{id}"),
        format!("/api/v1/operations/{op_id}"),
    ] {
        let anonymous = app.client.get(format!("{}{path}", app.api.base_url)).send().await.unwrap();
        assert_eq!(problem(anonymous).await.0, StatusCode::UNAUTHORIZED, "{path}");
        let wrong = app.client.get(format!("{}{path}", app.api.base_url)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(problem(wrong).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }

    for url in [
        format!("{}/board", app.api.base_url),
        format!("{}/board#token=nope", app.api.base_url),
        format!("{}/board#/instances/{id}?token=nope", app.api.base_url),
    ] {
        let dom = rendered(&url).await;
        assert!(dom.contains(r#"data-state="login""#), "asks for a token at {url}:\n{dom}");
        assert!(
            !dom.contains(op_id) && !dom.contains(&id) && !dom.contains("<td><code>shared</code></td>"),
            "shows no data at {url}:\n{dom}"
        );
    }
}

#[tokio::test]
async fn a_queued_operation_is_cancelled_from_its_page_with_a_click() {
    chromium();
    let app = spawn_app().await; // no worker: the start stays queued
    let id = app.create_instance("waiting", json!({"sources": [], "queries": [], "reactions": []})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let op = app.submit(&id, "start").await;
    let op_id = op["id"].as_str().unwrap();
    assert_eq!(op["status"], "queued", "{op}");

    let mut cdp = Cdp::launch().await;
    cdp.navigate(&console(&app, &format!("/operations/{op_id}"))).await;
    cdp.until("the cancel button", r#"document.querySelector('#o-actions button[data-action="cancel"]') !== null"#)
        .await;
    cdp.screenshot("console-operation-queued.png").await;
    cdp.eval(r#"document.querySelector('#o-actions button[data-action="cancel"]').click(); true"#).await;
    eventually("the operation cancelled", LONG, || async {
        let (_, op) = app.get_json(&format!("/api/v1/operations/{op_id}")).await;
        (op["status"] == "cancelled").then_some(())
    })
    .await;
    cdp.until("the page showing it cancelled", "document.body.dataset.operationStatus === 'cancelled'").await;
    let html = cdp.eval("document.body.innerText").await;
    assert!(!html.as_str().unwrap().contains(&app.token), "the token is not on the page");
}

/// The README's first-day pipeline (mock source → query → log reaction), as JSON.
fn sensors_config() -> Value {
    serde_norway::from_str(&draas_tests::readme_code("sensors-config", "yaml")).expect("YAML")
}

async fn up_real(real: &RealServer) -> TestApp {
    let mut env = real.worker_env().to_vec();
    env.push(("DRAAS_RECONCILE__INTERVAL_SECS", "1"));
    spawn_up(&env).await
}

#[tokio::test]
async fn the_console_shows_a_running_instance_its_results_and_logs_and_stops_it_with_a_click() {
    let Some(real) = real_server("the console against a running instance") else { return };
    chromium();
    let app = up_real(&real).await;
    let hostile = r#"<img src=x onerror="document.title='pwned'"> & <b>bold</b>"#;
    let body = json!({"name": "console-demo", "description": hostile, "config": sensors_config()});
    let (status, created) = app.send_json(Method::POST, "/api/v1/instances", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (_, op) = app.send_json(Method::POST, &format!("/api/v1/instances/{id}/start?wait=60"), &Value::Null).await;
    assert_eq!(op["status"], "succeeded", "{op}");

    // The instances table: the running instance, its endpoint and its three components.
    let mut cdp = Cdp::launch().await;
    cdp.navigate(&console(&app, "/")).await;
    let row = format!(r#"document.querySelector('tr[data-instance="{id}"]')"#);
    let text = cdp
        .until(
            "the running instance with its components in the table",
            &format!(
                "(() => {{ const r = {row}; return r && r.dataset.status === 'running' \
                 && r.textContent.includes('3/3 running') ? r.innerText : null; }})()"
            ),
        )
        .await;
    let text = text.as_str().unwrap();
    assert!(text.contains("console-demo") && text.contains("process") && text.contains("http://127.0.0.1:"), "{text}");
    let href = cdp.eval("location.href").await;
    assert!(!href.as_str().unwrap().contains(&app.token), "the token left the address: {href}");
    cdp.screenshot("console-instances.png").await;

    // The instance page: components, the query's rows, the server's log.
    cdp.eval(&format!("location.hash = '#/instances/{id}'; true")).await;
    cdp.until(
        "the components, the query's rows and the log tail",
        "document.body.dataset.view === 'instance' \
         && document.querySelectorAll('#components tr[data-component]').length === 3 \
         && [...document.querySelectorAll('#components tr[data-component]')].every(r => r.innerText.includes('Running')) \
         && document.getElementById('query').value === 'all-sensors' \
         && document.querySelector('#results tbody').innerText.includes('sensor_') \
         && document.getElementById('logs').textContent.trim().split('\\n').length > 3",
    )
    .await;
    let components = cdp
        .eval("[...document.querySelectorAll('#components tr[data-component]')].map(r => r.dataset.component)")
        .await;
    assert_eq!(components, json!(["source/sensors", "query/all-sensors", "reaction/log-output"]));
    let columns = cdp.eval("[...document.querySelectorAll('#results thead th')].map(th => th.textContent)").await;
    assert!(columns.as_array().unwrap().contains(&json!("sensor")), "{columns}");
    // A hostile description is shown as text: no element made of it, no script run.
    let description = cdp.eval("document.getElementById('i-description').textContent").await;
    assert_eq!(description, hostile);
    let injected = cdp.eval("[document.querySelectorAll('img, #i-description b').length, document.title]").await;
    assert_eq!(injected, json!([0, "draas · console"]));
    cdp.screenshot("console-instance.png").await;

    // Stop, clicked in the page: the instance ends stopped.
    let clicked = cdp
        .eval(
            r#"(() => { const b = document.querySelector('#i-actions button[data-action="stop"]');
                 if (!b || b.disabled) return false; b.click(); return true; })()"#,
        )
        .await;
    assert_eq!(clicked, json!(true), "the stop button is there and enabled");
    let stopped = eventually("the instance stopped", LONG, || async {
        let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        (inst["status"] == "stopped").then_some(inst)
    })
    .await;
    assert_eq!(stopped["desiredState"], "stopped", "{stopped}");
    cdp.until("the page showing it stopped", "document.body.dataset.instanceStatus === 'stopped'").await;
    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}&limit=20")).await;
    let stop = ops["items"].as_array().unwrap().iter().find(|o| o["kind"] == "stop").expect("a stop operation");
    assert_eq!(stop["status"], "succeeded", "{stop}");
    let stop_id = stop["id"].as_str().unwrap();
    cdp.until(
        "the stop operation listed on the instance page",
        &format!(r#"document.querySelector('#i-operations tr[data-operation="{stop_id}"][data-status="succeeded"]') !== null"#),
    )
    .await;
    cdp.screenshot("console-instance-stopped.png").await;

    // The operation's link opens its page.
    cdp.eval(&format!(r##"document.querySelector('#i-operations a[href="#/operations/{stop_id}"]').click(); true"##))
        .await;
    cdp.until("the stop operation's page", "document.body.dataset.operationStatus === 'succeeded'").await;
    let facts = cdp.eval("document.getElementById('o-facts').innerText").await;
    assert!(facts.as_str().unwrap().contains("stop"), "{facts}");
}

/// The DevTools socket of one page.
type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium driven over the DevTools protocol (one page).
struct Cdp {
    socket: WebSocket,
    next_id: u64,
    _browser: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Cdp {
    async fn launch() -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut browser = tokio::process::Command::new(chromium())
            .args(CHROMIUM_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run chromium");
        let mut stderr = BufReader::new(browser.stderr.take().unwrap()).lines();
        let browser_url = tokio::time::timeout(LONG, async {
            while let Some(line) = stderr.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.trim().to_owned();
                }
            }
            panic!("chromium exited without a DevTools address");
        })
        .await
        .expect("chromium's DevTools address");
        // Keep reading its stderr so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

        let authority = browser_url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
        let page_url = eventually("chromium's page target", LONG, || async {
            let list: Value = reqwest::get(format!("http://{authority}/json/list")).await.ok()?.json().await.ok()?;
            let page = list.as_array()?.iter().find(|t| t["type"] == "page")?;
            Some(page["webSocketDebuggerUrl"].as_str()?.to_owned())
        })
        .await;
        let (socket, _) = tokio_tungstenite::connect_async(page_url.as_str()).await.expect("the DevTools socket");
        Self { socket, next_id: 0, _browser: browser, _profile: profile }
    }

    /// Call `method` and return its result (events in between are ignored).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(request)).await.expect("send to the DevTools socket");
        let answer = tokio::time::timeout(LONG, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let message: Value = serde_json::from_str(&text).unwrap();
                        if message["id"] == id {
                            return message;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the DevTools socket ended: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method}"));
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// The value of `expression` in the page (a script error fails the test).
    async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await;
        assert!(result.get("exceptionDetails").is_none(), "{expression} threw: {result}");
        result["result"]["value"].clone()
    }

    /// Poll `expression` until it is truthy (a script error counts as not yet, e.g. while the
    /// page loads); its value.
    async fn until(&mut self, what: &str, expression: &str) -> Value {
        let end = tokio::time::Instant::now() + LONG;
        let params = json!({"expression": expression, "returnByValue": true});
        loop {
            let result = self.call("Runtime.evaluate", params.clone()).await;
            let value = &result["result"]["value"];
            let truthy =
                !matches!(value, Value::Null | Value::Bool(false)) && value != &json!(0) && value != &json!("");
            if result.get("exceptionDetails").is_none() && truthy {
                return value.clone();
            }
            if tokio::time::Instant::now() > end {
                let page = self.eval("document.body ? document.body.innerText : ''").await;
                panic!("timed out after {LONG:?} waiting for {what}; the page shows:\n{}", page.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the page as test artefact `name`.
    async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        let path = artefact(name);
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert!(is_png(&path), "a screenshot at {}", path.display());
        println!("console screenshot: {}", path.display());
        path
    }
}
