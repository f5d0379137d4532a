//! The `draas` client commands, run as a user runs them (the built binary, as a subprocess)
//! against a real API, worker and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use draas_tests::{TestApp, bin, bin_dir, eventually, free_port, readme_block, spawn_app};
use reqwest::Method;
use serde_json::{Value, json};

const SENSORS: &str = "\
logLevel: info
sources:
  - {kind: mock, id: sensors, dataType: sensor, intervalMs: 1000}
queries:
  - id: hot
    query: MATCH (s:Sensor) WHERE s.value > 30 RETURN s.id
    sources: [{sourceId: sensors}]
reactions:
  - {kind: log, id: out, queries: [hot]}
";

const MINIMAL: &str = "{\"sources\": [], \"queries\": [], \"reactions\": []}\n";

/// What one `draas` run did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Run {
    /// Assert exit 0 and return stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "{self}");
        &self.stdout
    }

    /// Assert exit 0 and parse stdout as JSON.
    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    /// Assert exit `code` with exactly one line on stderr, and return that line.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "{self}");
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one error line: {self}");
        lines[0]
    }
}

/// The client's world: a home and working directory of its own, a clean `DRAAS_*` environment
/// plus `env`.
struct Cli {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Cli {
    /// Pointed at `app` through `DRAAS_SERVER` and `DRAAS_TOKEN`.
    fn for_app(app: &TestApp) -> Self {
        let mut cli = Self::bare();
        cli.env = vec![("DRAAS_SERVER".into(), app.api.base_url.clone()), ("DRAAS_TOKEN".into(), app.token.clone())];
        cli
    }

    /// No server, no token.
    fn bare() -> Self {
        Self { home: tempfile::tempdir().unwrap(), env: Vec::new() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("draas"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
            cmd.env_remove(k);
        }
        cmd.env_remove("XDG_CONFIG_HOME").env("HOME", self.home.path()).current_dir(self.home.path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, "")
    }

    fn run_with(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn draas");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Write `text` to a file in the client's directory; its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.home.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn instances_configuration_and_components_are_managed_from_the_cli() {
    let app = spawn_app().await;
    let cli = Cli::for_app(&app);
    let sensors = cli.file("sensors.yaml", SENSORS);

    let created = cli.run(&["instance", "create", "sensors", "-f", &sensors, "--description", "watcher"]);
    assert!(created.ok().starts_with("instance sensors created (id "), "{created}");
    let list = cli.run(&["instance", "list", "-o", "json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!((list[0]["name"].as_str(), list[0]["status"].as_str()), (Some("sensors"), Some("created")));
    let table = cli.run(&["instance", "list"]);
    assert!(table.ok().lines().next().unwrap().starts_with("ID  "), "{table}");
    let row: Vec<&str> = table.ok().lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1..], ["sensors", "process", "created", "stopped"], "{table}");
    let got: Value = serde_norway::from_str(cli.run(&["instance", "get", "sensors", "-o", "yaml"]).ok()).unwrap();
    assert_eq!(got["description"], "watcher");

    let config = cli.run(&["config", "get", "sensors", "-o", "json"]).json();
    assert_eq!((config["logLevel"].as_str(), config["sources"][0]["id"].as_str()), (Some("info"), Some("sensors")));
    let patch = cli.file("patch.json", r#"[{"op": "replace", "path": "/logLevel", "value": "debug"}]"#);
    assert_eq!(cli.run(&["config", "patch", "sensors", &patch]).ok(), "configuration of sensors patched\n");
    let yaml = cli.run(&["config", "yaml", "sensors"]);
    assert!(yaml.ok().contains("logLevel: debug") && yaml.ok().contains("queryLanguage: Cypher"), "{yaml}");

    let orders = cli.file("orders.yaml", "kind: postgres\nid: orders\nhost: db\npassword: ${DB_PASSWORD}\n");
    assert_eq!(cli.run(&["source", "add", "sensors", &orders]).ok(), "source orders added to sensors\n");
    assert_eq!(ids(&cli.run(&["source", "list", "sensors", "-o", "json"]).json()), ["sensors", "orders"]);
    let table = cli.run(&["source", "list", "sensors"]);
    assert!(table.ok().lines().any(|l| l.split_whitespace().eq(["orders", "postgres"])), "{table}");
    let in_use = cli.run(&["source", "rm", "sensors", "sensors"]);
    assert!(in_use.fails(1).starts_with("error: component_in_use: sources 'sensors' is used by"), "{in_use}");
    cli.run(&["source", "rm", "sensors", "orders"]).ok();
    assert_eq!(ids(&cli.run(&["source", "list", "sensors", "-o", "json"]).json()), ["sensors"]);
    assert_eq!(ids(&cli.run(&["query", "list", "sensors", "-o", "json"]).json()), ["hot"]);
    assert_eq!(ids(&cli.run(&["reaction", "list", "sensors", "-o", "json"]).json()), ["out"]);

    cli.run_with(&["config", "set", "sensors", "-"], MINIMAL).ok();
    let config = cli.run(&["config", "get", "sensors", "-o", "json"]).json();
    assert_eq!(config["sources"], json!([]), "{config}");

    let missing = cli.run(&["instance", "get", "nope"]);
    assert!(missing.fails(1).starts_with("error: instance_not_found: instance 'nope' does not exist"), "{missing}");
    let invalid = cli.file("invalid.json", r#"[{"op": "replace", "path": "/logLevel", "value": "loud"}]"#);
    assert!(cli.run(&["config", "patch", "sensors", &invalid]).fails(1).starts_with("error: "));
    let unreadable = cli.run(&["config", "set", "sensors", "/nonexistent/config.yaml"]);
    assert!(unreadable.fails(2).starts_with("error: cannot read /nonexistent/config.yaml"), "{unreadable}");
}

#[tokio::test]
async fn lifecycle_commands_wait_for_their_operation_and_fail_with_its_error() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[]);
    let cli = Cli::for_app(&app);
    let minimal = cli.file("minimal.json", MINIMAL);
    cli.run(&["instance", "create", "life", "-f", &minimal]).ok();

    let started = cli.run(&["instance", "start", "life", "--wait=60s"]);
    let line = started.ok().trim_end();
    assert!(line.starts_with("instance life started at http://127.0.0.1:"), "{started}");
    let endpoint = line.split(" at ").nth(1).unwrap().split(' ').next().unwrap();
    let health: Value = reqwest::get(format!("{endpoint}/health")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let stopped = cli.run(&["instance", "stop", "life", "--timeout", "60"]);
    assert!(stopped.ok().starts_with("instance life stopped (operation "), "{stopped}");
    assert_eq!(cli.run(&["history", "life", "-o", "json"]).json()[0]["to"], "stopped");
    let ops = cli.run(&["op", "list", "--instance", "life", "-o", "json"]).json();
    let seen: Vec<(&str, &str)> =
        ops.as_array().unwrap().iter().map(|o| (o["kind"].as_str().unwrap(), o["status"].as_str().unwrap())).collect();
    assert_eq!(seen, [("stop", "succeeded"), ("start", "succeeded")], "{ops}");

    // No time to wait: exit 4 naming the operation, which `op wait` then follows to its end.
    let hurried = cli.run(&["instance", "restart", "life", "--timeout", "0"]);
    let line = hurried.fails(4);
    assert!(line.starts_with("error: timeout: operation "), "{hurried}");
    let op = line.split_whitespace().nth(3).unwrap();
    let waited = cli.run(&["op", "wait", op, "--timeout", "60s"]);
    assert!(waited.ok().contains(" restarted "), "{waited}");
    assert_eq!(cli.run(&["op", "get", op, "-o", "json"]).json()["status"], "succeeded");

    let rejected = cli.file("rejected.yaml", "id: ${TEST_UNSET_ID}\nsources: []\n");
    cli.run(&["instance", "create", "rejected", "-f", &rejected]).ok();
    let failed = cli.run(&["instance", "start", "rejected", "--wait"]);
    assert!(failed.fails(3).starts_with("error: config_rejected: instance rejected: "), "{failed}");
    assert!(failed.stdout.is_empty(), "{failed}");

    let deleted = cli.run(&["instance", "delete", "life", "--wait=60s"]);
    assert!(deleted.ok().starts_with("instance life deleted (operation "), "{deleted}");
    assert!(cli.run(&["instance", "get", "life"]).fails(1).starts_with("error: instance_not_found: "));
    assert!(app.servers().is_empty());
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines a child prints on stdout, as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Report status `to` for instance `id` as an external daemon would (one transition).
async fn push(app: &TestApp, id: &str, to: &str, source: &str) {
    let body = json!({"instanceId": id, "status": to, "source": source});
    let (status, answer) = app.send_json(Method::POST, "/api/v1/status/updates", &body).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn events_are_followed_live_and_resumed_after_the_server_went_away() {
    let app = spawn_app().await;
    let id = app.create_instance("watched", json!({})).await["id"].as_str().unwrap().to_owned();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut second = app.start_api(&[("DRAAS_LISTEN", &listen)]);
    let mut cli = Cli::for_app(&app);
    cli.env[0].1 = second.base_url.clone();
    let mut command = cli.command(&["events", "--instance", "watched", "-o", "json"]);
    let mut events =
        KillOnDrop(command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let lines = lines_of(&mut events.0);

    // Connected once a pushed transition comes through.
    let mut flip = ["error", "stopped"].into_iter().cycle();
    let first = eventually("the first event", Duration::from_secs(30), || {
        let to = flip.next().unwrap();
        let (app, id, lines) = (&app, &id, &lines);
        async move {
            push(app, id, to, "test").await;
            lines.recv_timeout(Duration::from_millis(200)).ok()
        }
    })
    .await;
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!((first["instanceId"].as_str(), first["source"].as_str()), (Some(id.as_str()), Some("push:test")));

    // A transition while the stream's server is down arrives once it is back (Last-Event-ID).
    second.kill();
    push(&app, &id, "unknown", "while-down").await;
    let _back = app.start_api(&[("DRAAS_LISTEN", &listen)]);
    let missed = eventually("the missed event", Duration::from_secs(30), || async {
        let line = lines.recv_timeout(Duration::from_millis(200)).ok()?;
        let change: Value = serde_json::from_str(&line).unwrap();
        (change["source"] == "push:while-down").then_some(change)
    })
    .await;
    assert_eq!((missed["to"].as_str(), missed["instanceId"].as_str()), (Some("unknown"), Some(id.as_str())));
}

#[tokio::test]
async fn server_and_token_come_from_flags_environment_a_settings_file_or_draas_up() {
    let app = spawn_app().await;
    let server = app.api.base_url.as_str();

    let cli = Cli::bare();
    let settings = cli.file("elsewhere.yaml", &format!("server: {server}\ntoken: {}\n", app.token));
    cli.run(&["instance", "list", "--config", &settings]).ok();
    cli.file(".config/draas/config.yaml", &format!("server: {server}\ntoken: {}\n", app.token));
    cli.run(&["instance", "list"]).ok();

    let mut cli = Cli::bare();
    cli.env.push(("DRAAS_SERVER".into(), server.to_owned()));
    let unauthorized = cli.run(&["instance", "list"]);
    assert!(
        unauthorized.fails(1).starts_with("error: unauthorized: a valid bearer token is required"),
        "{unauthorized}"
    );
    cli.file(".draas/api-token", &format!("{}\n", app.token));
    cli.run(&["instance", "list"]).ok();
    cli.env.push(("DRAAS_TOKEN".into(), "wrong".into()));
    assert!(cli.run(&["instance", "list"]).fails(1).starts_with("error: unauthorized: "));
    cli.run(&["instance", "list", "--token", &app.token]).ok();

    let unreachable = cli.run(&["instance", "list", "--server", "http://127.0.0.1:1"]);
    assert!(unreachable.fails(5).starts_with("error: cannot reach draas at http://127.0.0.1:1: "), "{unreachable}");
    let help = Cli::bare().run(&["--help"]);
    assert!(help.ok().contains("4  --wait ran out before the operation ended"), "{help}");
}

#[tokio::test]
async fn the_readme_cli_block_runs_against_a_live_draas() {
    let app = spawn_app().await;
    // The real drasi-server and its plugins when the suite has them, else the stand-in (this
    // block reads no results).
    let real = draas_tests::real_server("the README CLI block on the real server (runs on the stand-in)");
    let env: Vec<(&str, &str)> = real.as_ref().map_or_else(Vec::new, |r| {
        vec![
            ("DRAAS_PROCESS_EXECUTABLE", r.bin.to_str().unwrap()),
            ("DRAAS_PROCESS__PLUGINS_DIR", r.plugins.to_str().unwrap()),
            ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "30"),
        ]
    });
    let _worker = app.start_worker("node-a", &env);
    let cli = Cli::for_app(&app);
    let path = std::env::join_paths(
        std::iter::once(bin_dir()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", &readme_block("cli")]).env("PATH", path);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
        bash.env_remove(k);
    }
    let out = bash.envs(cli.env.iter().map(|(k, v)| (k, v))).current_dir(cli.home.path()).output().unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if draas_tests::verbose() {
        eprintln!("{run}");
    }
    let stdout = run.ok();
    assert!(stdout.contains("instance sensors started at http://127.0.0.1:"), "{run}");
    assert!(stdout.contains("instance sensors deleted (operation "), "{run}");
    assert!(stdout.lines().any(|l| l.split_whitespace().eq(["orders", "postgres"])), "{run}");
}
