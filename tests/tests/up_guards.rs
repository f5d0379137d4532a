//! `draas up` on one machine: it binds its listener before it announces anything and exits
//! non-zero with the reason when it cannot; it locks its data directory, so a second `up` there
//! refuses and never starts a second Redis on the live one's socket and AOF.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use draas_tests::{DraasProcess, bin, eventually};

/// The environment of an all-in-one `draas up` on `data` with its own private Redis.
fn up_env(data: &Path, listen: &str) -> Vec<(String, String)> {
    [
        ("DRAAS_DATA_DIR", data.to_str().unwrap()),
        ("DRAAS_LISTEN", listen),
        ("DRAAS_API_TOKENS", "tok-up-guards"),
        ("DRAAS_DOCKER__ENABLED", "false"),
        ("DRAAS_PROCESS_EXECUTABLE", bin("drasi-server-standin").to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Run `draas up` to its end (killed after `within`: `None`).
fn run_up(env: &[(String, String)], within: Duration) -> Option<Output> {
    let mut cmd = Command::new(bin("draas"));
    cmd.arg("up").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRAAS_")) {
        cmd.env_remove(k);
    }
    cmd.env("DRAAS_CONFIG_DIR", "/nonexistent").env("RUST_LOG", "info").envs(env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().unwrap();
    let end = Instant::now() + within;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// redis-server processes whose command line names `socket`.
fn redis_servers_on(socket: &Path) -> usize {
    let needle = socket.to_str().unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("redis-server") && c.contains(needle))
        .count()
}

#[test]
fn up_exits_non_zero_with_the_reason_when_its_port_is_taken_and_announces_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = up_env(data.path(), &taken.local_addr().unwrap().to_string());
    let out = run_up(&env, Duration::from_secs(30)).expect("draas up kept running on a port it could not bind");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "exit {:?}", out.status);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    assert!(!stdout.contains("draas is up"), "{stdout}");
    assert_eq!(redis_servers_on(&data.path().join("redis").join("redis.sock")), 0);
}

#[tokio::test]
async fn a_second_up_on_the_same_data_directory_refuses_and_starts_no_second_redis() {
    let data = tempfile::tempdir().unwrap();
    let first = DraasProcess::start(&["up"], &up_env(data.path(), "127.0.0.1:0"));
    let socket = data.path().join("redis").join("redis.sock");
    let ready = format!("{}/readyz", first.base_url);
    eventually("the first up to be ready on its private Redis", Duration::from_secs(30), || async {
        let res = reqwest::get(&ready).await.ok()?;
        res.status().is_success().then_some(())
    })
    .await;
    assert_eq!(redis_servers_on(&socket), 1);

    let out = run_up(&up_env(data.path(), "127.0.0.1:0"), Duration::from_secs(30)).expect("the second up kept running");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit {:?}", out.status);
    assert!(stderr.contains("another `draas up` is running on the data directory"), "{stderr}");
    assert_eq!(redis_servers_on(&socket), 1, "a second redis-server was started");
    assert!(socket.exists(), "the live one's socket was removed");
    let res = reqwest::get(&ready).await.unwrap();
    assert!(res.status().is_success(), "the first up is still ready");
}
