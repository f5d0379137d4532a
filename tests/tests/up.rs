//! `draas up` as a first-day user meets it: it binds before it announces (a taken port ends it
//! at once, saying so), stays quiet while it runs, and says on exit what it leaves running.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use draas_tests::TestRedis;
use draas_tests::{bin, eventually};

const LONG: Duration = Duration::from_secs(60);

fn up(dir: &std::path::Path, listen: &str, redis: Option<&str>) -> Command {
    let mut cmd = Command::new(bin("draas"));
    cmd.arg("up").current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.env("DRAAS_CONFIG_DIR", "/nonexistent")
        .env("DRAAS_LISTEN", listen)
        .env("DRAAS_DOCKER__ENABLED", "false")
        .env("DRAAS_RECONCILE__INTERVAL_SECS", "1")
        .env("DRAAS_KEY_PREFIX", format!("t{}", ulid::Ulid::new().to_string().to_ascii_lowercase()));
    if let Some(url) = redis {
        cmd.env("DRAAS_REDIS_URL", url);
    }
    cmd
}

#[test]
fn a_taken_port_ends_up_at_once_before_it_announces_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = up(dir.path(), &addr, None).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains(&format!("cannot listen on {addr}")), "the reason: {stderr}");
    assert!(!stdout.contains("draas is up"), "nothing announced: {stdout}");
    assert!(!dir.path().join(".draas/redis").exists(), "no private Redis was started for nothing");
    eprintln!("taken port refused in {:?}", started.elapsed());
}

#[tokio::test]
async fn up_is_quiet_names_its_console_and_says_what_it_leaves_on_exit() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = up(dir.path(), "127.0.0.1:0", Some(&redis.url)).spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let mut banner = Vec::new();
    while !banner.iter().any(|l: &String| l.contains("console:")) {
        banner.push(rx.recv_timeout(Duration::from_secs(30)).expect("the banner"));
    }
    let console = banner.iter().find_map(|l| l.split_whitespace().nth(1).filter(|u| u.ends_with("/board"))).unwrap();
    let base = console.trim_end_matches("/board").to_owned();
    assert!(!base.ends_with(":0"), "the banner shows the port it bound: {banner:?}");
    let url_file = std::fs::read_to_string(dir.path().join(".draas/api-url")).unwrap();
    assert_eq!(url_file.trim(), base, "the client finds it there");
    // A few reconcile passes (one a second) go by.
    let token = std::fs::read_to_string(dir.path().join(".draas/api-token")).unwrap();
    let http = reqwest::Client::new();
    // With no secrets.keys configured it made one of its own, for this user only, and uses it.
    let key = dir.path().join(".draas/secrets.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "secrets.key is the user's alone");
    let body = serde_json::json!({"name": "keyed", "secrets": {"APP_ID": "v"}});
    let res = http.post(format!("{base}/api/v1/instances")).bearer_auth(token.trim()).json(&body).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED, "secrets work out of the box");
    eventually("three reconcile passes", LONG, || async {
        let res = http.get(format!("{base}/metrics")).bearer_auth(token.trim()).send().await.ok()?;
        let text = res.text().await.ok()?;
        let passes: f64 = text
            .lines()
            .filter(|l| l.starts_with("draas_reconcile_pass_duration_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (passes >= 3.0).then_some(())
    })
    .await;

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let (out, err) = (lines.join().unwrap(), errors.join().unwrap());
    assert!(status.success(), "{out:?} {err:?}");
    let noisy: Vec<&String> = err.iter().filter(|l| l.contains(" INFO ") || l.contains("ERROR")).collect();
    assert!(noisy.is_empty(), "quiet by default: {noisy:?}");
    assert!(out.iter().any(|l| l.contains("draas stopped; no drasi-server of it is left running")), "{out:?}");
    assert!(!dir.path().join(".draas/api-url").exists(), "the address goes with it");
}
