//! A process asked to stop stops, within its shutdown grace, whatever Redis does: a worker and
//! `draas up` whose Redis is gone still exit after SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::{DraasProcess, spawn_app};

/// The grace these tests give (the default is 10 s).
const GRACE_SECS: u64 = 3;

fn assert_stops(process: &mut DraasProcess, what: &str) {
    let t = Instant::now();
    let status = process.terminate(Duration::from_secs(GRACE_SECS + 10));
    assert!(status.is_some(), "{what} was still running {} s after SIGTERM", GRACE_SECS + 10);
    eprintln!("{what} exited {} ms after SIGTERM ({status:?})", t.elapsed().as_millis());
}

#[tokio::test]
async fn a_worker_whose_redis_is_gone_exits_within_its_grace_after_sigterm() {
    let mut app = spawn_app().await;
    let grace = GRACE_SECS.to_string();
    let mut worker = app.start_worker("node-a", &[("DRAAS_SHUTDOWN_GRACE_SECS", &grace)]);
    app.redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await; // let it notice
    assert_stops(&mut worker, "the worker");
}

#[tokio::test]
async fn draas_up_whose_redis_is_gone_exits_within_its_grace_after_sigterm() {
    let mut app = spawn_app().await;
    let data = tempfile::tempdir().unwrap();
    let mut env = app.env();
    env.extend(
        [
            ("DRAAS_DATA_DIR", data.path().to_str().unwrap()),
            ("DRAAS_SHUTDOWN_GRACE_SECS", &GRACE_SECS.to_string()),
            ("DRAAS_DOCKER__ENABLED", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let mut up = DraasProcess::start(&["up"], &env);
    app.redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_stops(&mut up, "draas up");
}

#[tokio::test]
async fn a_worker_with_redis_up_exits_promptly_and_cleanly_after_sigterm() {
    let app = spawn_app().await;
    let mut worker = app.start_worker("node-a", &[]);
    let t = Instant::now();
    let status = worker.terminate(Duration::from_secs(10)).expect("exited");
    assert!(status.success(), "a clean stop: {status:?}");
    assert!(t.elapsed() < Duration::from_secs(GRACE_SECS + 10));
}
