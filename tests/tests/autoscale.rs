//! Scaling from zero and back, against real processes: an autoscaler reading the ScaledObject's
//! signal (`GET /api/v1/queues/backlog`) starts and stops real `draas worker` processes between
//! 0 and 4 while a burst submitted with no worker runs; every operation ends once, the workers
//! go back to zero, and ticks alone never wake them. Also: ticks keep coming from the API with
//! no worker (one pass waiting, not one per tick), and `worker.exit_when_idle_secs`. Observed
//! from outside: HTTP in, Redis records, processes and their logs out. Timings are the bench's
//! (`draas-autoscale`), never asserted here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use draas_tests::autoscale::{
    Autoscaler, Outcome, Policy, TICK_EVERY_SECOND, all_ended, create_instances, spawn_ticking_app, store_of,
    submit_all, worker_env,
};
use draas_tests::{TestApp, eventually, spawn_app};
use serde_json::Value;

const OPS: usize = 500;
const LONG: Duration = Duration::from_secs(300);
const FAST: (&str, &str) = TICK_EVERY_SECOND;
const POLICY: Policy = Policy { target: 8, max: 4, cooldown: Duration::from_secs(1), poll: Duration::from_millis(100) };

async fn backlog(app: &TestApp) -> Value {
    let (status, b) = app.get_json("/api/v1/queues/backlog").await;
    assert!(status.is_success(), "{status}: {b}");
    b
}

/// The last tick whose global pass was decided (by any producer).
async fn decided_tick(app: &TestApp) -> u64 {
    let key = format!("{{{}}}:reconcile:tick", app.prefix);
    let v: Option<u64> = redis::cmd("GET").arg(key).query_async(&mut app.redis().await).await.unwrap();
    v.unwrap_or_default()
}

/// Wait until `n` more ticks were decided, then say whether any of them queued work.
async fn ticks_pass(app: &TestApp, n: u64) -> u64 {
    let from = decided_tick(app).await;
    eventually(&format!("{n} more ticks to be decided"), Duration::from_secs(60), || async {
        (decided_tick(app).await >= from + n).then_some(())
    })
    .await;
    backlog(app).await["pending"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_submitted_with_no_worker_is_scaled_up_to_four_finished_once_and_scaled_back_to_zero() {
    let app = spawn_ticking_app().await;
    let store = store_of(&app);
    let ids = create_instances(&app, "burst", OPS).await;
    let scaler = Autoscaler::start(&app, worker_env(&app, &[FAST]), POLICY);
    assert_eq!(ticks_pass(&app, 2).await, 0, "instances desired stopped: ticks queue nothing");
    assert_eq!(scaler.started(), 0, "nothing woke a worker");

    let ops = submit_all(&app, &ids, "stop").await;
    eventually("every operation to end", LONG, || async { all_ended(&store, &ops).await.then_some(()) }).await;
    let outcome = Outcome::of(&store, &ops, &scaler.deliveries()).await;

    assert_eq!((outcome.lost, outcome.duplicated), (0, 0), "{outcome:?}");
    assert_eq!(outcome.succeeded_first_time, OPS, "{outcome:?}");
    assert!((2..=POLICY.max).contains(&scaler.peak()), "scaled past one worker, never past four: {}", scaler.peak());
    eventually("the workers to be scaled back to zero", LONG, || async { (scaler.running() == 0).then_some(()) }).await;
    let started = scaler.started();
    assert_eq!(ticks_pass(&app, 3).await, 0, "with no worker, ticks queue nothing");
    assert_eq!(scaler.started(), started, "ticks alone woke no worker");
    let exits = scaler.exits();
    assert_eq!(exits.len(), started);
    assert!(exits.iter().all(std::process::ExitStatus::success), "every worker drained and exited 0: {exits:?}");
    scaler.shutdown().await;
}

#[tokio::test]
async fn with_no_worker_two_api_replicas_keep_one_pass_waiting_for_a_running_instance_then_a_worker_runs_each_tick_once()
 {
    let app = spawn_ticking_app().await;
    let _second = app.start_api(&[FAST]);
    let id = app.create_instance("watched", serde_json::json!({"sources": [], "queries": [], "reactions": []})).await;
    let id = id["id"].as_str().unwrap().to_owned();
    let start = app.submit(&id, "start").await;

    // Desired running, no worker: every tick is decided, but the pass queued first still
    // waits and serves them all.
    let pending = ticks_pass(&app, 3).await;
    let b = backlog(&app).await;
    assert_eq!(pending, 2, "the start and one global pass: {b}");
    let queue = format!("{{{}}}:q:reconcile", app.prefix);
    let mut redis = app.redis().await;
    let waiting: u64 = redis::cmd("ZCARD").arg(format!("{queue}:scheduled")).query_async(&mut redis).await.unwrap();
    assert_eq!(waiting, 1, "one pass waiting, not one per tick");

    let _worker = app.start_worker("node-a", &[FAST]);
    let done = app.wait_op(&start, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let runs = eventually("three global passes", Duration::from_secs(60), || async {
        let runs = pass_runs(&app).await;
        (runs.len() >= 3).then_some(runs)
    })
    .await;
    assert!(runs.iter().all(|n| *n == 1), "each tick's pass once: {runs:?}");
}

/// How often each global tick's pass ran.
async fn pass_runs(app: &TestApp) -> Vec<i64> {
    let mut redis = app.redis().await;
    let pattern = format!("{{{}}}:reconcile:pass:reconcile-[0-9]*[0-9]", app.prefix);
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut redis).await.unwrap();
    let mut runs = Vec::new();
    for k in keys {
        runs.push(redis::cmd("GET").arg(&k).query_async(&mut redis).await.unwrap());
    }
    runs
}

#[tokio::test]
async fn an_idle_worker_exits_by_itself_with_code_0_after_finishing_every_job_once() {
    const JOBS: usize = 20;
    let app = spawn_app().await;
    let store = store_of(&app);
    let ids = create_instances(&app, "idle", JOBS).await;
    let ops = submit_all(&app, &ids, "stop").await;
    let mut worker =
        draas_tests::DraasProcess::start(&["worker"], &worker_env(&app, &[("DRAAS_WORKER__EXIT_WHEN_IDLE_SECS", "2")]));

    let status = eventually("the idle worker to exit", Duration::from_secs(120), || {
        let exited = worker.exited();
        async move { exited }
    })
    .await;

    assert!(status.success(), "exit code 0: {status:?}");
    assert!(worker.logged(&["no job for the idle limit"]), "it said why it stopped");
    let deliveries = draas_tests::autoscale::deliveries_in(&worker.log.lock().unwrap());
    let outcome = Outcome::of(&store, &ops, &deliveries).await;
    assert_eq!((outcome.lost, outcome.duplicated, outcome.succeeded_first_time), (0, 0, JOBS), "{outcome:?}");
    assert_eq!(backlog(&app).await["pending"], 0, "nothing left behind");
}

#[tokio::test]
async fn an_idle_worker_stays_while_its_host_runs_a_server_and_leaves_once_that_is_stopped() {
    let app = spawn_app().await;
    let id = create_instances(&app, "hosted", 1).await.remove(0);
    let mut worker =
        draas_tests::DraasProcess::start(&["worker"], &worker_env(&app, &[("DRAAS_WORKER__EXIT_WHEN_IDLE_SECS", "1")]));
    let start = app.submit(&id, "start").await;
    assert_eq!(app.wait_op(&start, Duration::from_secs(60)).await["status"], "succeeded");

    eventually("the idle worker to say it stays", Duration::from_secs(60), || {
        let stays = worker.logged(&["staying to supervise them"]);
        async move { stays.then_some(()) }
    })
    .await;
    assert!(worker.exited().is_none(), "it supervises the server it started");
    assert_eq!(app.servers().len(), 1);

    let stop = app.submit(&id, "stop").await;
    assert_eq!(app.wait_op(&stop, Duration::from_secs(60)).await["status"], "succeeded");
    let status = eventually("the worker to leave", Duration::from_secs(60), || {
        let exited = worker.exited();
        async move { exited }
    })
    .await;
    assert!(status.success(), "exit code 0: {status:?}");
}
