//! Test harness: a real `redis-server` per test (on a unix socket in a temp dir), real
//! `draas` processes started from the built binary, an HTTP client with the test's token,
//! and helpers that look into Redis from outside. Silent unless `TEST_LOG=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod autoscale;
pub mod docker;
pub mod kube;
pub mod postgres;
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
    // target/<profile>/deps/<test binary>, or target/<profile>/<bin>
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") { dir.parent().expect("target dir").to_path_buf() } else { dir.to_path_buf() }
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
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
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
    /// until it logs where it listens (`api`, `up`) or that it started (`worker`).
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let marker = if args.first() == Some(&"worker") { "worker started" } else { "listen=" };
        Self::start_until(args, env, marker)
    }

    /// Start `draas <args>` and wait for a log line containing `marker`.
    pub fn start_until(args: &[&str], env: &[(String, String)], marker: &str) -> Self {
        let mut cmd = Command::new(bin("draas"));
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
            cmd.env_remove(k);
        }
        // DRAAS_TEST_RUST_LOG turns up the children's logging when a test needs a closer look.
        let filter = std::env::var("DRAAS_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_owned());
        cmd.env("DRAAS_CONFIG_DIR", "/nonexistent").env("RUST_LOG", filter);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn draas");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if verbose() {
                    eprintln!("[draas] {line}");
                }
                if let Some(addr) = line.split("listen=").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or_default().to_owned());
                } else if line.contains(&marker) {
                    let _ = tx.send(String::new());
                }
                sink.lock().expect("log").push(line);
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("draas {args:?} did not start; log:\n{}", log.lock().expect("log").join("\n"))
        });
        Self { child, base_url: format!("http://{addr}"), log }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM (graceful stop) and wait up to `within` for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// How the process exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stop the process (SIGKILL) and wait for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Does the log contain a line with all of `needles`?
    pub fn logged(&self, needles: &[&str]) -> bool {
        self.log.lock().expect("log").iter().any(|l| needles.iter().all(|n| l.contains(n)))
    }
}

impl Drop for DraasProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One test's world: its own Redis, key prefix, token, data dir, port range and API process.
pub struct TestApp {
    pub redis: TestRedis,
    pub prefix: String,
    pub token: String,
    pub api: DraasProcess,
    pub client: reqwest::Client,
    /// Data dir of this test's workers.
    pub data: tempfile::TempDir,
    /// First and last port this test's workers may allocate.
    pub ports: (u16, u16),
    /// Environment every `draas` process of this test gets on top (see [`TestApp::env`]).
    pub extra_env: Vec<(String, String)>,
}

/// Ports per test, so parallel tests in one binary never allocate the same port.
const PORTS_PER_TEST: u16 = 40;

fn next_port_range() -> (u16, u16) {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 400;
    let start = 21000 + slot * PORTS_PER_TEST;
    (start, start + PORTS_PER_TEST - 1)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        kill_processes_under(self.data.path());
    }
}

/// SIGKILL every process whose working directory is under `dir` (the drasi-servers of a test).
pub fn kill_processes_under(dir: &std::path::Path) {
    for pid in processes_under(dir) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Live processes whose working directory is under `dir`.
pub fn processes_under(dir: &std::path::Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
                .unwrap_or(true);
            !zombie && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Start Redis and one `draas up` (API, worker on node `node-a` and reconciler in one
/// process, as a user runs draas) for a test: the worker settings of
/// [`TestApp::start_worker`], no Docker, plus `extra` environment on top.
pub async fn spawn_up(extra: &[(&str, &str)]) -> TestApp {
    let mut app = spawn_app().await;
    let mut more = vec![("DRAAS_DOCKER__ENABLED", "false")];
    more.extend_from_slice(extra);
    let up = DraasProcess::start(&["up"], &app.worker_env("node-a", &more));
    drop(std::mem::replace(&mut app.api, up));
    app
}

/// Run `draas api` with exactly `env` (plus PATH) and return its exit status and stderr: for
/// settings it must refuse, so it must exit by itself within 30 s.
pub async fn api_exit(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let mut cmd = tokio::process::Command::new(bin("draas"));
    cmd.arg("api")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DRAAS_CONFIG_DIR", "/nonexistent")
        .env("DRAAS_LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("draas api should have refused to start, but kept running")
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
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
        client: reqwest::Client::builder().timeout(Duration::from_secs(90)).build().expect("client"),
        data: tempfile::tempdir().expect("data dir"),
        ports: next_port_range(),
        extra_env: Vec::new(),
    }
}

/// Start Redis and one `draas api` whose operator lets configurations choose the server's
/// host (`127.0.0.1`, `0.0.0.0`) and port (9000-9999), which draas replaces otherwise.
pub async fn spawn_permissive_app() -> TestApp {
    let mut app = spawn_app().await;
    app.api.kill();
    app.api = app.start_api(&[
        ("DRAAS_NETWORK__ALLOWED_HOSTS", "127.0.0.1,0.0.0.0"),
        ("DRAAS_NETWORK__ALLOWED_PORTS__START", "9000"),
        ("DRAAS_NETWORK__ALLOWED_PORTS__END", "9999"),
    ]);
    app
}

impl TestApp {
    /// The environment of a `draas api` of this test.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = app_env(&self.redis, &self.prefix, &self.token);
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Let configurations name a port of this test's pool (`network.allowed_ports`), for this
    /// test's API (restarted) and the workers it starts from now on.
    pub fn allow_pool_ports(&mut self) {
        let (start, end) = (self.ports.0.to_string(), self.ports.1.to_string());
        self.extra_env.push(("DRAAS_NETWORK__ALLOWED_PORTS__START".into(), start));
        self.extra_env.push(("DRAAS_NETWORK__ALLOWED_PORTS__END".into(), end));
        self.api.kill();
        self.api = self.start_api(&[]);
    }

    /// Let instances name images matching `patterns` (`policy.images`, comma-separated), for
    /// this test's API (restarted) and the workers it starts from now on.
    pub fn allow_images(&mut self, patterns: &str) {
        self.extra_env.push(("DRAAS_POLICY__IMAGES".into(), patterns.into()));
        self.api.kill();
        self.api = self.start_api(&[]);
    }

    /// This deployment's id (`Store::deployment_id`: made by whoever asks first, a worker or
    /// this test, and kept), as its servers are marked.
    pub async fn deployment_id(&self) -> String {
        let url = secrecy::SecretString::from(self.redis.url.clone());
        let store = draas_jobs::store::Store::open(&url, &self.prefix).expect("store");
        store.deployment_id().await.expect("deployment id")
    }

    /// Start another `draas api` on this test's Redis, with `extra` environment on top.
    pub fn start_api(&self, extra: &[(&str, &str)]) -> DraasProcess {
        let mut env = self.env();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        DraasProcess::start(&["api"], &env)
    }

    /// Start a worker on node `node` with the drasi-server stand-in, fast heartbeats and short
    /// leases, plus `extra` environment on top.
    pub fn start_worker(&self, node: &str, extra: &[(&str, &str)]) -> DraasProcess {
        DraasProcess::start(&["worker"], &self.worker_env(node, extra))
    }

    /// The environment of a worker of this test (see [`TestApp::start_worker`]).
    pub fn worker_env(&self, node: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env();
        let standin = bin("drasi-server-standin");
        let ports = (self.ports.0.to_string(), self.ports.1.to_string());
        for (k, v) in [
            ("DRAAS_NODE_ID", node),
            ("DRAAS_DATA_DIR", self.data.path().to_str().unwrap_or_default()),
            ("DRAAS_PROCESS_EXECUTABLE", standin.to_str().unwrap_or_default()),
            ("DRAAS_PROCESS__PORT_RANGE_START", ports.0.as_str()),
            ("DRAAS_PROCESS__PORT_RANGE_END", ports.1.as_str()),
            ("DRAAS_PROCESS__STOP_GRACE_SECS", "3"),
            ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "10"),
            ("DRAAS_WORKER__HEARTBEAT_SECS", "1"),
            ("DRAAS_WORKER__LEASE_TTL_SECS", "3"),
            ("DRAAS_WORKER__POLL_INTERVAL_MS", "20"),
            ("DRAAS_WORKER__BACKOFF_INITIAL_MS", "100"),
            ("DRAAS_WORKER__BACKOFF_MAX_MS", "1000"),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    }

    /// Submit a lifecycle request (`start`, `stop`, `restart`) and return the operation.
    pub async fn submit(&self, id: &str, action: &str) -> Value {
        let (status, op) =
            self.send_json(Method::POST, &format!("/api/v1/instances/{id}/{action}"), &Value::Null).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{action} {id}: {op}");
        op
    }

    /// Poll an operation until it ends (within `deadline`) and return it.
    pub async fn wait_op(&self, op: &Value, deadline: Duration) -> Value {
        let path = format!("/api/v1/operations/{}", op["id"].as_str().expect("operation id"));
        eventually(&format!("operation {path} to end"), deadline, || async {
            let (_, op) = self.get_json(&path).await;
            let done = matches!(op["status"].as_str(), Some("succeeded" | "failed" | "superseded" | "cancelled"));
            done.then_some(op)
        })
        .await
    }

    /// Poll an instance until `check` holds for it.
    pub async fn wait_instance(
        &self,
        id: &str,
        what: &str,
        deadline: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/v1/instances/{id}");
        eventually(what, deadline, || async {
            let (_, i) = self.get_json(&path).await;
            check(&i).then_some(i)
        })
        .await
    }

    /// The stand-in processes of this test (working directory under its data dir).
    pub fn servers(&self) -> Vec<i32> {
        processes_under(self.data.path())
    }

    /// A request to the test's API with its token.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_to(&self.api, method, path)
    }

    /// A request to a given API process with the test's token.
    pub fn req_to(&self, api: &DraasProcess, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", api.base_url)).bearer_auth(&self.token)
    }

    /// POST a JSON body and return status and JSON answer.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.req(method, path).json(body).send().await.expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Send `body` with `content_type` (a merge patch, YAML, raw bytes) and return the response.
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.req(method, path)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("request")
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
            .send_json(Method::POST, "/api/v1/instances", &serde_json::json!({"name": name, "config": config}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {name}: {body}");
        body
    }

    /// A connection to the test's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        self.redis.connection().await
    }

    /// Every key of this test's prefix with its serialised value: a snapshot to prove that
    /// a rejected request wrote nothing. Leaves out what every API replica writes on its own
    /// schedule: the last decided reconcile tick and the global pass it may queue.
    pub async fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        let mut c = self.redis().await;
        let mut keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{{{}}}*", self.prefix)).query_async(&mut c).await.expect("keys");
        let k = draas_jobs::store::Keys::new(&self.prefix);
        let (ticks, passes) = (k.reconcile_tick(), format!("{}:", k.queue(draas_jobs::queue::RECONCILE_QUEUE).name()));
        keys.retain(|key| *key != ticks && !key.starts_with(&passes));
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let v: Vec<u8> = redis::cmd("DUMP").arg(&k).query_async(&mut c).await.expect("dump");
            out.push((k, v));
        }
        out
    }
}

/// The key every test deployment encrypts its instances' secrets with (`secrets.keys`).
pub const SECRETS_KEY: &str = "oZ3d0MSda9oeq1KyvtB6h66H74hTbeVbkkTyvk8j8MU=";

/// What a test's servers may take from the worker's environment (`process.env_allow`): the
/// defaults, the stand-in's fault switches, the unset variables tests reference to make a
/// server fail, the Postgres settings `postgres::up_with` gives the worker, and the names the
/// configuration tests reference to show that references reach drasi-server untouched.
pub const ENV_ALLOW: &str = "PATH,LANG,LC_ALL,TZ,DRASI_STANDIN_PLUGINS,DRASI_STANDIN_CRASH_AFTER_SECS,\
DRASI_STANDIN_NEVER_HEALTHY,DRASI_STANDIN_IGNORE_SIGINT,DRASI_STANDIN_STARTUP_DELAY_MS,DRASI_STANDIN_LOG_EVERY_MS,\
TEST_UNSET_ID,TEST_NO_SUCH_VAR,PGPORT,PGPASSWORD,DB_PASSWORD,HOST,TOKEN,HOOK_TOKEN,ESCAPED";

/// The Redis key of instance `id`'s secrets under `prefix`.
pub fn secrets_key(prefix: &str, id: &str) -> String {
    draas_jobs::store::Keys::new(prefix).secrets(&id.parse().expect("instance id"))
}

fn app_env(redis: &TestRedis, prefix: &str, token: &str) -> Vec<(String, String)> {
    vec![
        ("DRAAS_REDIS_URL".into(), redis.url.clone()),
        ("DRAAS_KEY_PREFIX".into(), prefix.to_owned()),
        ("DRAAS_API_TOKENS".into(), token.to_owned()),
        ("DRAAS_LISTEN".into(), "127.0.0.1:0".into()),
        ("DRAAS_SECRETS__KEYS".into(), SECRETS_KEY.into()),
        ("DRAAS_PROCESS__ENV_ALLOW".into(), ENV_ALLOW.into()),
        // The load tests submit thousands of operations with the one token: the quotas of a
        // token are tested in `roles.rs`, with the defaults or their own.
        ("DRAAS_QUOTAS__OPS_PER_MINUTE".into(), "1000000".into()),
        ("DRAAS_QUOTAS__MAX_INSTANCES".into(), "1000000".into()),
        ("DRAAS_QUOTAS__MAX_STREAMS".into(), "100000".into()),
    ]
}

/// Status and body of an error answer, checking the one error shape
/// (`application/problem+json` with a string `code` and `message`, and the status repeated).
pub async fn problem(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let ct = res.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(ct.as_deref(), Some("application/problem+json"), "{status}: {body}");
    assert!(body["code"].is_string(), "{status}: {body}");
    assert!(body["message"].is_string(), "{status}: {body}");
    assert_eq!(body["status"], serde_json::json!(status.as_u16()), "{body}");
    (status, body)
}

/// The shell block of the README between `<!-- <name>:start -->` and `<!-- <name>:end -->`.
pub fn readme_block(name: &str) -> String {
    readme_code(name, "bash")
}

/// The ```` ```<lang> ```` block of the README between `<!-- <name>:start -->` and
/// `<!-- <name>:end -->`.
pub fn readme_code(name: &str, lang: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme.find(&format!("<!-- {name}:start -->")).expect("start marker");
    let end = readme.find(&format!("<!-- {name}:end -->")).expect("end marker");
    let body = readme[start..end].split(&format!("```{lang}")).nth(1).expect("code block");
    body.split("\n```").next().expect("end of block").to_owned()
}

/// What a README shell block printed.
#[derive(Debug)]
pub struct BlockRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for BlockRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "success: {}\nstdout:\n{}\nstderr:\n{}", self.success, self.stdout, self.stderr)
    }
}

/// Run the README's shell block `name` with `bash -euo pipefail` in `dir`, with `env` (and no
/// other `DRAAS_*` variable) and `path` ahead of `PATH` (the workspace's binaries are first).
pub fn run_readme_block(
    name: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    path: &[&std::path::Path],
) -> BlockRun {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    let search =
        std::iter::once(bin_dir()).chain(path.iter().map(|p| p.to_path_buf())).chain(std::env::split_paths(&inherited));
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &readme_block(name)])
        .env("PATH", std::env::join_paths(search).expect("PATH"))
        .current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
        bash.env_remove(k);
    }
    let out = bash.envs(env.iter().copied()).output().expect("bash");
    let run = BlockRun {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if verbose() {
        eprintln!("{run}");
    }
    run
}

/// The real drasi-server and its plugins, as `scripts/test` finds them (`DRASI_SERVER_BIN`,
/// `DRASI_PLUGINS_DIR`).
#[derive(Debug, Clone)]
pub struct RealServer {
    pub bin: PathBuf,
    pub plugins: PathBuf,
}

impl RealServer {
    /// The settings of a worker running this server on the process platform: its executable,
    /// its plugins, and a health timeout a loaded machine meets.
    pub fn worker_env(&self) -> [(&str, &str); 3] {
        [
            ("DRAAS_PROCESS_EXECUTABLE", self.bin.to_str().unwrap_or_default()),
            ("DRAAS_PROCESS__PLUGINS_DIR", self.plugins.to_str().unwrap_or_default()),
            ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "30"),
        ]
    }
}

/// The real drasi-server, or `None` after saying loudly that the test calling it is skipped
/// (a clone without the release; CI always has it).
pub fn real_server(test: &str) -> Option<RealServer> {
    let bin = std::env::var_os("DRASI_SERVER_BIN").map(PathBuf::from).filter(|p| p.is_file());
    let plugins = std::env::var_os("DRASI_PLUGINS_DIR").map(PathBuf::from).filter(|p| p.is_dir());
    match (bin, plugins) {
        (Some(bin), Some(plugins)) => Some(RealServer { bin, plugins }),
        _ => {
            eprintln!(
                "\n*** SKIPPED {test}: no real drasi-server (set DRASI_SERVER_BIN and DRASI_PLUGINS_DIR; \
                 scripts/test does when it finds a drasi-server release) ***\n"
            );
            None
        }
    }
}

/// A Server-Sent Events stream, open (its answer's headers came).
pub struct SseStream {
    url: String,
    res: reqwest::Response,
    seen: String,
}

impl SseStream {
    /// Open the stream at `url`, within `deadline`.
    pub async fn open(url: &str, deadline: Duration) -> Self {
        Self::request(reqwest::Client::new().get(url), deadline).await
    }

    /// Open the stream `req` answers (it must answer 2xx), within `deadline`.
    pub async fn request(req: RequestBuilder, deadline: Duration) -> Self {
        let res = Self::answer(req, deadline).await;
        let url = res.url().to_string();
        assert!(res.status().is_success(), "{url}: {}", res.status());
        Self { url, res, seen: String::new() }
    }

    /// The answer to a stream request, whatever its status, within `deadline`.
    pub async fn answer(req: RequestBuilder, deadline: Duration) -> reqwest::Response {
        tokio::time::timeout(deadline, req.send())
            .await
            .unwrap_or_else(|_| panic!("no answer within {deadline:?}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Read until the server ends the stream, within `deadline` (panics if it does not).
    pub async fn ended(&mut self, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(end, self.res.chunk()).await {
                Ok(Ok(Some(c))) => self.seen.push_str(&String::from_utf8_lossy(&c)),
                Ok(Ok(None) | Err(_)) => return,
                Err(_) => panic!("{} did not end within {deadline:?}; it sent:\n{}", self.url, self.seen),
            }
        }
    }

    /// Everything the stream sent so far.
    pub fn seen(&self) -> &str {
        &self.seen
    }

    /// Read until `wanted` holds for one `data:` payload (returned) or `deadline` passes
    /// (panics, showing what came).
    pub async fn until(&mut self, deadline: Duration, wanted: impl Fn(&str) -> bool) -> String {
        let end = tokio::time::Instant::now() + deadline;
        let url = &self.url;
        loop {
            let complete = &self.seen[..self.seen.rfind('\n').map_or(0, |i| i + 1)];
            if let Some(data) =
                complete.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).find(|d| wanted(d))
            {
                return data.to_owned();
            }
            let chunk = match tokio::time::timeout_at(end, self.res.chunk()).await {
                Ok(Ok(Some(c))) => c,
                Ok(Ok(None)) => panic!("{url} ended; it sent:\n{}", self.seen),
                Ok(Err(e)) => panic!("{url}: {e}; it sent:\n{}", self.seen),
                Err(_) => panic!("no wanted event from {url} within {deadline:?}; it sent:\n{}", self.seen),
            };
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A start job of a new instance and operation, as the submit script lays one out.
pub fn sample_job() -> draas_jobs::queue::InstanceJob {
    draas_jobs::queue::InstanceJob {
        schema_version: draas_jobs::queue::SCHEMA_VERSION,
        kind: draas_jobs::domain::operation::OperationKind::Start,
        instance_id: draas_jobs::domain::ids::InstanceId::generate(),
        operation_id: draas_jobs::domain::ids::OperationId::generate(),
        target_generation: 1,
        correlation_id: "test".into(),
        platform: None,
    }
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
