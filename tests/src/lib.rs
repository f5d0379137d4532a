//! Test harness: a real `redis-server` per test (on a unix socket in a temp dir), real
//! `draas` processes started from the built binary, an HTTP client with the test's token,
//! and helpers that look into Redis from outside. Silent unless `TEST_LOG=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod redis_server;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

pub use redis_server::TestRedis;

/// Directory holding the workspace's built binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// Path of a workspace binary; the test command builds them first.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --all-targets` first (scripts/test does)",
        path.display()
    );
    path
}

/// Should test processes print their logs?
pub fn verbose() -> bool {
    std::env::var_os("TEST_LOG").is_some_and(|v| v == "1")
}

/// Poll `check` until it returns `Some` or `deadline` passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A running `draas` process (killed on drop).
pub struct DraasProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// Lines the process logged so far (stderr), for assertions on log output.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl DraasProcess {
    /// Start `draas <args>` with `env` (on top of a clean `DRAAS_*`-free environment) and wait
    /// until it logs where it listens.
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let mut cmd = Command::new(bin("draas"));
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
            cmd.env_remove(k);
        }
        cmd.env("DRAAS_CONFIG_DIR", "/nonexistent")
            .env("RUST_LOG", "info");
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn draas");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if verbose() {
                    eprintln!("[draas] {line}");
                }
                if let Some(addr) = line.split("listen=").nth(1) {
                    let _ = tx.send(
                        addr.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                sink.lock().expect("log").push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "draas did not start listening; log:\n{}",
                    log.lock().expect("log").join("\n")
                )
            });
        Self {
            child,
            base_url: format!("http://{addr}"),
            log,
        }
    }

    /// Stop the process (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Does the log contain a line with all of `needles`?
    pub fn logged(&self, needles: &[&str]) -> bool {
        self.log
            .lock()
            .expect("log")
            .iter()
            .any(|l| needles.iter().all(|n| l.contains(n)))
    }
}

impl Drop for DraasProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's world: its own Redis, key prefix, token and API process.
pub struct TestApp {
    pub redis: TestRedis,
    pub prefix: String,
    pub token: String,
    pub api: DraasProcess,
    pub client: reqwest::Client,
}

/// Start Redis and one `draas api` for a test.
pub async fn spawn_app() -> TestApp {
    let redis = TestRedis::start();
    let prefix = format!("t{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
    let token = format!("tok-{}", ulid::Ulid::new());
    let env = app_env(&redis, &prefix, &token);
    TestApp {
        api: DraasProcess::start(&["api"], &env),
        redis,
        prefix,
        token,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
    }
}

impl TestApp {
    /// The environment of a `draas api` of this test.
    pub fn env(&self) -> Vec<(String, String)> {
        app_env(&self.redis, &self.prefix, &self.token)
    }

    /// Start another `draas api` on this test's Redis, with `extra` environment on top.
    pub fn start_api(&self, extra: &[(&str, &str)]) -> DraasProcess {
        let mut env = self.env();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        DraasProcess::start(&["api"], &env)
    }

    /// A request to the test's API with its token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_to(&self.api, method, path)
    }

    /// A request to a given API process with the test's token.
    pub fn req_to(&self, api: &DraasProcess, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", api.base_url))
            .bearer_auth(&self.token)
    }

    /// POST a JSON body and return status and JSON answer.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self
            .req(method, path)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// GET a path and return status and JSON answer.
    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let res = self.req(Method::GET, path).send().await.expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Create an instance and return its JSON.
    pub async fn create_instance(&self, name: &str, config: Value) -> Value {
        let (status, body) = self
            .send_json(
                Method::POST,
                "/api/v1/instances",
                &serde_json::json!({"name": name, "config": config}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {name}: {body}");
        body
    }

    /// A connection to the test's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        self.redis.connection().await
    }

    /// Every key of this test's prefix with its serialised value: a snapshot to prove that
    /// a rejected request wrote nothing.
    pub async fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut c = self.redis().await;
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{{{}}}*", self.prefix))
            .query_async(&mut c)
            .await
            .expect("keys");
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let v: Vec<u8> = redis::cmd("DUMP")
                .arg(&k)
                .query_async(&mut c)
                .await
                .expect("dump");
            out.push((k, v));
        }
        out
    }
}

fn app_env(redis: &TestRedis, prefix: &str, token: &str) -> Vec<(String, String)> {
    vec![
        ("DRAAS_REDIS_URL".into(), redis.url.clone()),
        ("DRAAS_KEY_PREFIX".into(), prefix.to_owned()),
        ("DRAAS_API_TOKENS".into(), token.to_owned()),
        ("DRAAS_LISTEN".into(), "127.0.0.1:0".into()),
    ]
}

/// A small valid configuration with one source, query and reaction.
pub fn sample_config() -> Value {
    serde_json::json!({
        "logLevel": "info",
        "sources": [{"kind": "mock", "id": "sensors", "dataType": "sensor", "intervalMs": 1000}],
        "queries": [{"id": "hot", "query": "MATCH (s:Sensor) WHERE s.value > 30 RETURN s.id", "sources": [{"sourceId": "sensors"}]}],
        "reactions": [{"kind": "log", "id": "out", "queries": ["hot"]}]
    })
}
