//! Fault tests with figures (issue 7): a worker SIGKILLed mid-job, a Redis outage, contention
//! from many clients (and the reconciler race it exposes, reduced to one deterministic
//! interleaving), and drasi-server misbehaving (crash at start, port already taken, crash later,
//! never healthy, ignores the stop signal). Each test prints `figures:` lines that RELIABILITY.md
//! quotes; run with `--nocapture` to see them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use draas_tests::{TestApp, TestRedis, eventually, problem, processes_under, spawn_app};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);
/// Lease expiry of the harness' workers (`DRAAS_WORKER__LEASE_TTL_SECS`).
const LEASE_TTL: Duration = Duration::from_secs(3);
/// How long Redis stays down in the outage test.
const OUTAGE: Duration = Duration::from_secs(4);
/// Stop grace of the harness' workers (`DRAAS_PROCESS__STOP_GRACE_SECS`).
const STOP_GRACE: Duration = Duration::from_secs(3);

fn minimal() -> Value {
    json!({"logLevel": "info", "sources": [], "queries": [], "reactions": []})
}

fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "superseded" | "cancelled")
}

async fn create_instances(app: &TestApp, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(app.create_instance(&format!("{prefix}{i}"), minimal()).await["id"].as_str().unwrap().to_owned());
    }
    ids
}

async fn get_op(app: &TestApp, op: &Value) -> Value {
    app.get_json(&format!("/api/v1/operations/{}", op["id"].as_str().unwrap())).await.1
}

/// Seconds between two RFC 3339 fields of an operation.
fn secs_between(op: &Value, from: &str, to: &str) -> f64 {
    let at = |k: &str| op[k].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()).unwrap();
    (at(to) - at(from)).num_milliseconds() as f64 / 1000.0
}

async fn healthy(port: u64) -> bool {
    reqwest::get(format!("http://127.0.0.1:{port}/health")).await.is_ok_and(|r| r.status().is_success())
}

/// Live stand-ins per instance id: processes whose working directory is `<data>/instances/<id>`.
fn servers_by_instance(data: &Path) -> HashMap<String, usize> {
    let root = data.join("instances");
    let mut out = HashMap::new();
    for pid in processes_under(&root) {
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else { continue };
        let Ok(rest) = cwd.strip_prefix(&root) else { continue };
        let Some(first) = rest.components().next() else { continue };
        let id = first.as_os_str().to_string_lossy();
        let id = id.strip_suffix(" (deleted)").unwrap_or(&id).to_owned();
        *out.entry(id).or_insert(0) += 1;
    }
    out
}

/// Samples the stand-ins per instance every 50 ms on a thread and keeps the maximum seen.
struct ServerSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(HashMap<String, usize>, usize)>,
}

impl ServerSampler {
    fn start(data: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, data): (_, PathBuf) = (stop.clone(), data.to_owned());
        let handle = std::thread::spawn(move || {
            let (mut max, mut samples) = (HashMap::new(), 0);
            while !flag.load(Ordering::Relaxed) {
                for (id, n) in servers_by_instance(&data) {
                    let m = max.entry(id).or_insert(0);
                    *m = (*m).max(n);
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (max, samples)
        });
        Self { stop, handle }
    }

    /// Most stand-ins seen at once per instance, and the number of samples.
    fn finish(self) -> (HashMap<String, usize>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

async fn redis_keys(app: &TestApp, pattern: &str) -> Vec<String> {
    let mut c = app.redis().await;
    redis::cmd("KEYS").arg(format!("{{{}}}:{pattern}", app.prefix)).query_async(&mut c).await.unwrap()
}

async fn redis_hash(app: &TestApp, key: &str) -> HashMap<String, String> {
    let mut c = app.redis().await;
    redis::cmd("HGETALL").arg(format!("{{{}}}:{key}", app.prefix)).query_async(&mut c).await.unwrap()
}

/// Instances whose observed status does not (yet) match their desired state, or whose desired
/// state is not `expected` (when given): `running` ↔ running, `stopped` ↔ stopped or created.
async fn unconverged(app: &TestApp, expected: Option<&HashMap<String, (u64, &str)>>) -> Vec<String> {
    let (_, page) = app.get_json("/api/v1/instances?limit=500").await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| {
            let id = i["id"].as_str().unwrap();
            let (desired, status) = (i["desiredState"].as_str().unwrap(), i["status"].as_str().unwrap());
            let wanted = expected.map_or(desired, |e| e.get(id).map_or("stopped", |(_, d)| *d));
            let ok = desired == wanted
                && match desired {
                    "running" => status == "running",
                    _ => matches!(status, "stopped" | "created"),
                };
            (!ok).then(|| format!("{id}: last desired {wanted}, desiredState {desired}, status {status}"))
        })
        .collect()
}

/// Poll [`unconverged`] until it is empty or `deadline` passed; what was left.
async fn converge(app: &TestApp, expected: Option<&HashMap<String, (u64, &str)>>, deadline: Duration) -> Vec<String> {
    let end = Instant::now() + deadline;
    loop {
        let left = unconverged(app, expected).await;
        if left.is_empty() || Instant::now() > end {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What an unconverged instance looks like: the instance, its newest operations and history, its
/// lease, its servers.
async fn diagnose(app: &TestApp, lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let servers = servers_by_instance(app.data.path());
    for line in lines {
        let id = line.split(':').next().unwrap();
        let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        out.push(format!(
            "{id}: status {} ({}), desired {}, generation {}, servers {}, lease keys {:?}",
            inst["status"],
            inst["statusMessage"],
            inst["desiredState"],
            inst["generation"],
            servers.get(id).copied().unwrap_or(0),
            redis_keys(app, &format!("lease:{id}")).await,
        ));
        let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}&limit=6")).await;
        for o in ops["items"].as_array().unwrap() {
            out.push(format!(
                "  op gen {} {} ({}) {} {} created {} finished {}",
                o["targetGeneration"],
                o["kind"],
                o["reason"],
                o["status"],
                o["error"]["code"],
                o["createdAt"],
                o["finishedAt"]
            ));
        }
        for c in history(app, id).await.iter().rev().take(6) {
            out.push(format!("  history {} {} → {} ({}, {})", c["at"], c["from"], c["to"], c["source"], c["reason"]));
        }
    }
    out
}

/// Is `pid` a live (non-zombie) process?
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// xorshift64*: reproducible randomness without a dependency (the seed is printed).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

// ---------------------------------------------------------------------------------------------
// 1. Worker death
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_worker_killed_mid_start_stop_and_delete_loses_no_operation_and_leaks_no_server_port_or_lease() {
    let app = spawn_app().await;
    // The first worker's servers take 4 s to come up and ignore SIGINT, and it waits 6 s before
    // SIGKILL: its starts, stops and deletes are all still in flight when it dies.
    let mut first = app.start_worker(
        "node-a",
        &[
            ("DRASI_STANDIN_STARTUP_DELAY_MS", "4000"),
            ("DRASI_STANDIN_IGNORE_SIGINT", "1"),
            ("DRAAS_PROCESS__STOP_GRACE_SECS", "6"),
        ],
    );
    let ids = create_instances(&app, "death", 12).await;
    let (starts, rest) = ids.split_at(4);
    let (stops, deletes) = rest.split_at(4);
    let mut prep = Vec::new();
    for id in stops.iter().chain(deletes) {
        prep.push(app.submit(id, "start").await);
    }
    for op in &prep {
        let done = app.wait_op(op, LONG).await;
        assert_eq!(done["status"], "succeeded", "preparing: {done}");
    }

    let sampler = ServerSampler::start(app.data.path());
    let mut ops: Vec<(String, &str, Value)> = Vec::new();
    for id in starts {
        ops.push((id.clone(), "start", app.submit(id, "start").await));
    }
    for id in stops {
        ops.push((id.clone(), "stop", app.submit(id, "stop").await));
    }
    for id in deletes {
        let (status, op) = app.send_json(Method::DELETE, &format!("/api/v1/instances/{id}"), &Value::Null).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{op}");
        ops.push((id.clone(), "delete", op));
    }
    eventually(
        "all twelve operations in flight on the first worker (starts with their server spawned)",
        LONG,
        || async {
            let servers = servers_by_instance(app.data.path());
            for (id, kind, op) in &ops {
                if get_op(&app, op).await["status"] != "running" || (*kind == "start" && !servers.contains_key(id)) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    // The second worker on the same node is up before the first dies, and takes over.
    let _second = app.start_worker("node-a", &[("DRAAS_PROCESS__STOP_GRACE_SECS", "1")]);
    let mut in_flight = 0;
    for (_, _, op) in &ops {
        in_flight += usize::from(get_op(&app, op).await["status"] == "running");
    }
    first.kill();
    let killed = Instant::now();
    assert_eq!(in_flight, ops.len(), "every operation was still running when the worker was killed");

    let mut done = Vec::new();
    for (_, _, op) in &ops {
        done.push(app.wait_op(op, LONG).await);
    }
    let takeover = killed.elapsed();
    let (max_servers, samples) = sampler.finish();
    let finals = done.iter().filter(|d| is_final(d["status"].as_str().unwrap_or_default())).count();
    for d in &done {
        assert_eq!(d["status"], "succeeded", "{d}");
        assert!(d["attempt"].as_u64().unwrap() >= 2, "the second worker ran it again after the kill: {d}");
    }
    let attempts: Vec<u64> = done.iter().map(|d| d["attempt"].as_u64().unwrap()).collect();

    // 0 duplicate servers: never two stand-ins for one instance, and exactly the right ones now.
    let duplicates: Vec<(&String, &usize)> = max_servers.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "two servers of one instance at once: {duplicates:?}");
    let now = servers_by_instance(app.data.path());
    for ((id, kind, _), d) in ops.iter().zip(&done) {
        let n = now.get(id).copied().unwrap_or(0);
        if *kind == "start" {
            assert_eq!(n, 1, "{id} runs exactly one server");
            assert!(healthy(d["result"]["port"].as_u64().unwrap()).await, "{d}");
        } else {
            assert_eq!(n, 0, "{kind} {id} left a server");
        }
    }
    for id in stops {
        let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        assert_eq!(inst["status"], "stopped", "{inst}");
    }
    for id in deletes {
        let (status, _) = app.get_json(&format!("/api/v1/instances/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!app.data.path().join("instances").join(id).exists(), "{id}'s directory is gone");
    }

    // 0 leaked ports: the ports hash holds exactly one port per live instance that ever ran.
    let ports = redis_hash(&app, "ports").await;
    let by_instance = redis_hash(&app, "port-by-instance").await;
    let live: HashSet<&String> = starts.iter().chain(stops).collect();
    let leaked = ports.values().filter(|id| !live.contains(id)).count()
        + by_instance.keys().filter(|id| !live.contains(id)).count();
    assert_eq!(leaked, 0, "ports of deleted instances: {ports:?} / {by_instance:?}");
    assert_eq!(ports.values().collect::<HashSet<_>>(), live, "{ports:?}");
    assert_eq!(ports.len(), live.len(), "one port per instance: {ports:?}");
    for (id, slot) in &by_instance {
        assert_eq!(ports.get(slot), Some(id), "the two port indexes agree: {ports:?} / {by_instance:?}");
    }
    for ((id, _, _), d) in ops.iter().zip(&done).take(starts.len()) {
        assert_eq!(by_instance[id], format!("node-a|{}", d["result"]["port"]), "{d}");
    }

    // 0 stale leases: every lease has an expiry, and none is left once it passed.
    let mut redis = app.redis().await;
    for key in redis_keys(&app, "lease:*").await {
        let pttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut redis).await.unwrap();
        assert!(pttl > 0 || pttl == -2, "{key} has no expiry ({pttl})");
    }
    let settled = Instant::now();
    let stale = loop {
        let left = redis_keys(&app, "lease:*").await;
        if left.is_empty() || settled.elapsed() > LEASE_TTL + Duration::from_secs(1) {
            break left;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(stale.is_empty(), "leases left after their expiry: {stale:?}");

    eprintln!(
        "figures: worker death: {finals}/{} operations final ({in_flight} in flight at the SIGKILL: 4 start, 4 stop, \
         4 delete; all succeeded on attempt {}-{} by the second worker, the last {:.1} s after the kill), {} duplicate servers (max {} per instance over \
         {samples} samples), {leaked} leaked ports ({} held = {} live instances), {} stale leases after the {} s expiry",
        ops.len(),
        attempts.iter().min().unwrap(),
        attempts.iter().max().unwrap(),
        takeover.as_secs_f64(),
        duplicates.len(),
        max_servers.values().max().copied().unwrap_or(0),
        ports.len(),
        live.len(),
        stale.len(),
        LEASE_TTL.as_secs(),
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Redis outage
// ---------------------------------------------------------------------------------------------

/// One request of the load.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    latency: Duration,
    /// None: no answer (transport error or client timeout).
    status: Option<u16>,
    op: Option<String>,
    retry_after: bool,
    problem_shape: bool,
    body: String,
}

impl Sample {
    fn answered(&self) -> Instant {
        self.sent + self.latency
    }
}

/// Clients submitting start/stop on a few instances until stopped.
struct Load {
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(app: &TestApp, ids: &[String], clients: usize, pace: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        // A bounded client: a hang shows up as a missing answer, not as a stuck test.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let tasks = (0..clients)
            .map(|c| {
                let (samples, stop, http, ids) = (samples.clone(), stop.clone(), http.clone(), ids.to_vec());
                let (base, token) = (app.api.base_url.clone(), app.token.clone());
                tokio::spawn(async move {
                    let mut rng = 0x9E37_79B9_7F4A_7C15_u64 ^ (c as u64 + 1);
                    while !stop.load(Ordering::Relaxed) {
                        let r = next_random(&mut rng);
                        let id = &ids[(r % ids.len() as u64) as usize];
                        let action = if r & 0x100 == 0 { "start" } else { "stop" };
                        let sent = Instant::now();
                        let res = http
                            .post(format!("{base}/api/v1/instances/{id}/{action}"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                        let sample = match res {
                            Ok(res) => {
                                let status = res.status().as_u16();
                                let retry_after = res.headers().contains_key(header::RETRY_AFTER);
                                let ct =
                                    res.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
                                let body = res.text().await.unwrap_or_default();
                                let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                                let problem_shape = ct.as_deref() == Some("application/problem+json")
                                    && json["code"].is_string()
                                    && json["message"].is_string()
                                    && json["status"] == json!(status);
                                let op = (status == 202).then(|| json["id"].as_str().unwrap().to_owned());
                                Sample {
                                    sent,
                                    latency: sent.elapsed(),
                                    status: Some(status),
                                    op,
                                    retry_after,
                                    problem_shape,
                                    body,
                                }
                            }
                            Err(e) => Sample {
                                sent,
                                latency: sent.elapsed(),
                                status: None,
                                op: None,
                                retry_after: false,
                                problem_shape: false,
                                body: e.to_string(),
                            },
                        };
                        samples.lock().unwrap().push(sample);
                        tokio::time::sleep(pace).await;
                    }
                })
            })
            .collect();
        Self { samples, stop, tasks }
    }

    fn acked_since(&self, since: Instant) -> usize {
        self.samples.lock().unwrap().iter().filter(|s| s.op.is_some() && s.sent >= since).count()
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.samples.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_redis_outage_answers_503_and_after_the_restart_every_operation_acknowledged_before_it_finishes() {
    let mut app = spawn_app().await;
    // The same test world, on a Redis with AOF `appendfsync everysec`.
    app.api.kill();
    app.redis = TestRedis::start_with_aof();
    app.api = app.start_api(&[]);
    // Reconcile every second, so passes run right after the recovery as well as during the load.
    let fast = [("DRAAS_RECONCILE__INTERVAL_SECS", "1")];
    let w1 = app.start_worker("node-a", &fast);
    let w2 = app.start_worker("node-a", &fast);
    let ids = create_instances(&app, "outage", 6).await;
    let began = Instant::now();
    let load = Load::start(&app, &ids, 4, Duration::from_millis(25));
    eventually("300 acknowledged submits", LONG, || async { (load.acked_since(began) >= 300).then_some(()) }).await;

    // Redis dies hard (SIGKILL: no shutdown, only what everysec already wrote survives).
    let stopped = Instant::now();
    app.redis.kill();
    let some_op = load.samples.lock().unwrap().iter().find_map(|s| s.op.clone()).unwrap();
    let mut probes = Vec::new();
    for (method, path) in [
        (Method::GET, "/readyz".to_owned()),
        (Method::GET, format!("/api/v1/instances/{}", ids[0])),
        (Method::GET, "/api/v1/instances?limit=5".to_owned()),
        (Method::POST, format!("/api/v1/instances/{}/start", ids[0])),
        (Method::DELETE, format!("/api/v1/instances/{}", ids[1])),
        (Method::GET, format!("/api/v1/operations/{some_op}")),
        (Method::GET, "/api/v1/operations?limit=5".to_owned()),
    ] {
        let t = Instant::now();
        let res = app.req(method.clone(), &path).send().await.unwrap();
        let latency = t.elapsed();
        assert!(res.headers().contains_key(header::RETRY_AFTER), "{method} {path}: no Retry-After");
        let (status, body) = problem(res).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}: {body}");
        probes.push(latency);
    }
    // The outage lasts 4 s: longer than the node heartbeat's expiry (3 × 1 s) and the lease (3 s).
    tokio::time::sleep_until((stopped + OUTAGE).into()).await;
    let outage = stopped.elapsed();

    let back = Instant::now();
    let back_wall = Utc::now();
    app.redis.restart();
    let first_ok = eventually("the API to answer again without a restart", LONG, || async {
        let res = app.req(Method::GET, "/api/v1/instances?limit=1").send().await.ok()?;
        (res.status() == StatusCode::OK).then(Instant::now)
    })
    .await;
    eventually("20 submits acknowledged after the restart", LONG, || async {
        (load.acked_since(first_ok) >= 20).then_some(())
    })
    .await;
    let samples = load.finish().await;

    // While Redis was down: 503 + Retry-After + problem+json, in bounded time; never a 500 or a hang.
    let bad: Vec<String> = samples
        .iter()
        .filter(|s| match s.status {
            Some(202 | 429) => false,
            Some(503) => !(s.retry_after && s.problem_shape),
            _ => true,
        })
        .map(|s| format!("{:?} after {} ms: {}", s.status, s.latency.as_millis(), s.body))
        .collect();
    assert!(bad.is_empty(), "answers other than 202/429/503 with Retry-After and problem+json: {bad:#?}");
    let during: Vec<&Sample> = samples.iter().filter(|s| s.sent >= stopped && s.answered() <= first_ok).collect();
    let unavailable = during.iter().filter(|s| s.status == Some(503)).count();
    let slowest = during.iter().map(|s| s.latency).chain(probes.iter().copied()).max().unwrap_or_default();
    assert!(unavailable > 0, "the load saw the outage");
    assert!(slowest < Duration::from_secs(6), "a request during the outage took {slowest:?}");

    // Every operation acknowledged more than 1 s before the stop is still there and finishes.
    let acked: Vec<&Sample> = samples.iter().filter(|s| s.op.is_some()).collect();
    let early: HashSet<&str> = acked
        .iter()
        .filter(|s| s.answered() + Duration::from_secs(1) < stopped)
        .map(|s| s.op.as_deref().unwrap())
        .collect();
    let (mut lost, mut lost_early, mut finished) = (Vec::new(), Vec::new(), Vec::new());
    for s in &acked {
        let id = s.op.as_deref().unwrap();
        let (status, op) = app.get_json(&format!("/api/v1/operations/{id}")).await;
        if status == StatusCode::NOT_FOUND {
            lost.push(id);
            if early.contains(id) {
                lost_early.push(id);
            }
            continue;
        }
        assert_eq!(status, StatusCode::OK, "{op}");
        finished.push(app.wait_op(&op, LONG).await);
    }
    assert!(lost_early.is_empty(), "operations acknowledged > 1 s before the stop are gone: {lost_early:?}");
    for op in &finished {
        let status = op["status"].as_str().unwrap();
        assert!(matches!(status, "succeeded" | "superseded" | "failed"), "{op}");
        if status == "failed" {
            assert!(op["error"]["code"].is_string() && op["error"]["message"].is_string(), "{op}");
        }
    }
    let failed: Vec<String> = finished
        .iter()
        .filter(|o| o["status"] == "failed")
        .map(|o| format!("{} {} (attempt {})", o["kind"], o["error"]["code"], o["attempt"]))
        .collect();
    let mut failed_codes = std::collections::BTreeMap::new();
    for o in finished.iter().filter(|o| o["status"] == "failed") {
        *failed_codes.entry(o["error"]["code"].as_str().unwrap_or_default().to_owned()).or_insert(0) += 1;
    }
    let after_back: Vec<f64> = finished
        .iter()
        .filter_map(|o| o["finishedAt"].as_str()?.parse::<DateTime<Utc>>().ok())
        .filter(|at| *at > back_wall)
        .map(|at| (at - back_wall).num_milliseconds() as f64 / 1000.0)
        .collect();
    let last_final = after_back.iter().copied().fold(0.0, f64::max);

    // Workers reconnected by themselves: both still run, and a new start goes through.
    assert!(alive(w1.pid()) && alive(w2.pid()), "the workers survived the outage");
    let fresh = app.wait_op(&app.submit(&ids[0], "start").await, LONG).await;
    assert_eq!(fresh["status"], "succeeded", "{fresh}");
    eprintln!(
        "figures: redis outage (SIGKILL, AOF everysec, {:.1} s down): {} submits acknowledged ({} more than 1 s \
         before the stop), lost 0/{} of those (all acknowledged: lost {}/{}), {} of them final ({} failed, by \
         code: {failed_codes:?}); during the outage {unavailable} answers 503 + Retry-After + problem+json, 0 other errors, \
         slowest {} ms; Redis back → first 200 in {} ms, → last surviving operation final in {last_final:.1} s; \
         workers reconnected by themselves ({} operations finished after the restart)",
        outage.as_secs_f64(),
        acked.len(),
        early.len(),
        early.len(),
        lost.len(),
        acked.len(),
        finished.len(),
        failed.len(),
        slowest.as_millis(),
        (first_ok - back).as_millis(),
        after_back.len(),
    );

    // The reconciler keeps ticking: node passes of ticks after the restart, and no worker stuck
    // on a tick that passed during the outage.
    let back_tick = u64::try_from(back_wall.timestamp()).unwrap();
    let ticking = Instant::now();
    let resumed = loop {
        let ticks: Vec<u64> = redis_keys(&app, "reconcile:pass:reconcile-*-node-a")
            .await
            .iter()
            .filter_map(|k| k.rsplit(":reconcile-").next()?.split('-').next()?.parse().ok())
            .collect();
        if ticks.iter().any(|t| *t > back_tick + 1) {
            break true;
        }
        if ticking.elapsed() > Duration::from_secs(8) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stuck: Vec<usize> = [&w1, &w2]
        .iter()
        .map(|w| w.log.lock().unwrap().iter().filter(|l| l.contains("cron tick is out of range")).count())
        .collect();
    eprintln!(
        "figures: redis outage, reconciler: node passes resumed after the restart: {resumed}; \"cron tick is out of \
         range\" logged by each worker: {stuck:?} times"
    );
    // Falling behind the schedule during the outage is reported once and the schedule restarted
    // from now; a stuck stream would fail every poll and log it thousands of times.
    assert!(
        resumed && stuck.iter().all(|n| *n <= 2),
        "reconciliation stopped after the outage: node passes resumed: {resumed}; \"cron tick is out of range\" \
         logged by each worker: {stuck:?} times; worker logs:\n{}",
        [&w1, &w2]
            .iter()
            .flat_map(|w| {
                let log = w.log.lock().unwrap();
                let mine: Vec<String> =
                    log.iter().filter(|l| l.contains("draas_workers::reconcile")).cloned().collect();
                let start = mine.len().saturating_sub(40);
                mine[start..].to_vec()
            })
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Node node-a never went away: none of its operations may fail as if it had.
    let node_lost: Vec<&String> = failed.iter().filter(|f| f.contains("node_lost")).collect();
    assert!(node_lost.is_empty(), "operations of a live node failed node_lost after the outage: {node_lost:?}");

    // Every instance converges to its desired state again.
    let left = converge(&app, None, LONG).await;
    let evidence = diagnose(&app, &left).await;
    assert!(left.is_empty(), "instances not in their desired state after the outage: {left:#?}\n{evidence:#?}");
    let converged = back.elapsed();

    // Operations created by requests that were refused (never acknowledged) and left unfinished.
    let known: HashSet<&str> = acked.iter().map(|s| s.op.as_deref().unwrap()).collect();
    let mut dangling = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/operations?limit=500&cursor={c}"),
            None => "/api/v1/operations?limit=500".to_owned(),
        };
        let (_, page) = app.get_json(&path).await;
        for o in page["items"].as_array().unwrap() {
            let id = o["id"].as_str().unwrap();
            if o["kind"] != "reconcile" && !known.contains(id) && !is_final(o["status"].as_str().unwrap()) {
                dangling.push(o.clone());
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    eprintln!(
        "figures: redis outage, state: all {} instances in their desired state {:.1} s after Redis was back; {} \
         refused-request operation records left queued",
        ids.len(),
        converged.as_secs_f64(),
        dangling.len(),
    );
    if !dangling.is_empty() {
        eprintln!("unacknowledged operations left unfinished: {dangling:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Contention
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_thousand_concurrent_submits_over_fifty_instances_end_in_the_last_desired_state() {
    const SUBMITS: usize = 1000;
    const INSTANCES: usize = 50;
    const CLIENTS: usize = 32;
    let app = Arc::new(spawn_app().await);
    // 50 instances need more than the harness' 40 ports per test: a range of our own (below the
    // harness' 21000+ and the ephemeral range).
    let env = [
        ("DRAAS_PROCESS__PORT_RANGE_START", "20500"),
        ("DRAAS_PROCESS__PORT_RANGE_END", "20579"),
        ("DRAAS_RECONCILE__INTERVAL_SECS", "1"),
    ];
    let _a = app.start_worker("node-a", &env);
    let _b = app.start_worker("node-a", &env);
    let ids = Arc::new(create_instances(&app, "busy", INSTANCES).await);
    let seed = u64::try_from(Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1) | 1;

    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (refused, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (app, ids, accepted, refused, other, next) =
            (app.clone(), ids.clone(), accepted.clone(), refused.clone(), other.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= SUBMITS {
                    return;
                }
                let mut rng = seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let r = next_random(&mut rng);
                let id = &ids[(r % INSTANCES as u64) as usize];
                let action = ["start", "stop", "restart"][((r >> 32) % 3) as usize];
                let res = app.req(Method::POST, &format!("/api/v1/instances/{id}/{action}")).send().await.unwrap();
                match res.status() {
                    StatusCode::ACCEPTED => {
                        let op = res.json::<Value>().await.unwrap();
                        accepted.lock().unwrap().push(op);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert!(res.headers().contains_key(header::RETRY_AFTER));
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    s => {
                        let answer = format!("{s}: {}", res.text().await.unwrap_or_default());
                        other.lock().unwrap().push(answer);
                    }
                }
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let submitted = began.elapsed();
    let accepted = accepted.lock().unwrap().clone();
    let refused = refused.load(Ordering::Relaxed);
    let other = other.lock().unwrap().clone();
    assert!(other.is_empty(), "answers other than 202 or 429: {other:?}");
    assert_eq!(accepted.len() + refused, SUBMITS);

    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut done = Vec::new();
    for op in &accepted {
        let d = app.wait_op(op, Duration::from_secs(120)).await;
        let status = d["status"].as_str().unwrap().to_owned();
        assert!(matches!(status.as_str(), "succeeded" | "superseded" | "failed"), "{d}");
        if status == "failed" {
            assert!(d["error"]["code"].is_string() && d["error"]["message"].is_string(), "failed with a reason: {d}");
        }
        *counts.entry(status).or_insert(0) += 1;
        done.push(d);
    }
    let ops_final = began.elapsed();

    // The last desired state of each instance: that of its user operation with the highest
    // generation (the API applied the submits in that order).
    let mut last: HashMap<String, (u64, &str)> = HashMap::new();
    for op in &done {
        let id = op["instanceId"].as_str().unwrap().to_owned();
        let generation = op["targetGeneration"].as_u64().unwrap();
        let desired = if op["kind"] == "stop" { "stopped" } else { "running" };
        let e = last.entry(id).or_insert((0, desired));
        if generation > e.0 {
            *e = (generation, desired);
        }
    }
    let mismatches = converge(&app, Some(&last), Duration::from_secs(30)).await;
    let settled = began.elapsed();
    let running = last.values().filter(|(_, d)| *d == "running").count();
    let servers = servers_by_instance(app.data.path());
    let count = |s: &str| counts.get(s).copied().unwrap_or(0);
    eprintln!(
        "figures: contention (seed {seed:#x}): {SUBMITS} submits from {CLIENTS} clients over {INSTANCES} instances in \
         {:.1} s: {} accepted, {refused} refused with 429, 0 other; operations: {} succeeded, {} superseded, {} \
         failed (all with a code), 0 left unfinished after {:.1} s; {}/{INSTANCES} instances in their last desired \
         state ({running} running, {} stopped) {:.1} s after the first submit; {} servers, {} duplicates",
        submitted.as_secs_f64(),
        accepted.len(),
        count("succeeded"),
        count("superseded"),
        count("failed"),
        ops_final.as_secs_f64(),
        INSTANCES - mismatches.len(),
        INSTANCES - running,
        settled.as_secs_f64(),
        servers.len(),
        servers.values().filter(|n| **n > 1).count(),
    );
    let evidence = diagnose(&app, &mismatches).await;
    assert!(
        mismatches.is_empty(),
        "instances not in their last desired state: {mismatches:#?}\nnewest first: {evidence:#?}"
    );
    assert!(servers.values().all(|n| *n == 1), "one server per instance: {servers:?}");
    assert_eq!(servers.len(), running, "a server for each running instance and no other");
}

fn signal(pid: &Value, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid.as_i64().unwrap()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// The contention above, reduced to one deterministic interleaving: a node pass reads an
/// instance, the user stops it while the pass still probes, and the pass then acts on what it read.
#[tokio::test]
async fn a_reconciler_repair_planned_before_a_user_stop_does_not_undo_the_stop() {
    let app = spawn_app().await;
    let _worker = app.start_worker("node-a", &[("DRAAS_RECONCILE__INTERVAL_SECS", "1")]);
    let ids = create_instances(&app, "race", 2).await;
    let (x, slow) = (&ids[0], &ids[1]);
    let started_x = app.wait_op(&app.submit(x, "start").await, LONG).await;
    let started_slow = app.wait_op(&app.submit(slow, "start").await, LONG).await;
    assert_eq!((started_x["status"].as_str(), started_slow["status"].as_str()), (Some("succeeded"), Some("succeeded")));
    let lock = format!("{{{}}}:reconcile:lock:node-a", app.prefix);
    let pass_running = || async {
        let mut c = app.redis().await;
        redis::cmd("EXISTS").arg(&lock).query_async::<bool>(&mut c).await.unwrap()
    };

    // Between two node passes: X's server dies, and the other server freezes (SIGSTOP), so the
    // next pass waits for its probe to time out (reconcile.probe_timeout_ms, 2 s) before it settles.
    eventually("a moment between two node passes", LONG, || async { (!pass_running().await).then_some(()) }).await;
    signal(&started_x["result"]["pid"], nix::sys::signal::Signal::SIGKILL);
    signal(&started_slow["result"]["pid"], nix::sys::signal::Signal::SIGSTOP);
    eventually("the next node pass to start", LONG, || async { pass_running().await.then_some(()) }).await;
    // The pass read X (no lease on it) within milliseconds; it is now waiting on the frozen probe.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stop = app.wait_op(&app.submit(x, "stop").await, LONG).await;
    assert_eq!(stop["status"], "succeeded", "{stop}");
    let stopped_while_pass_ran = pass_running().await;
    eventually("the frozen pass to end", LONG, || async { (!pass_running().await).then_some(()) }).await;
    eventually("one more node pass", LONG, || async { pass_running().await.then_some(()) }).await;
    eventually("that pass to end", LONG, || async { (!pass_running().await).then_some(()) }).await;

    let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={x}")).await;
    let after: Vec<Value> = ops["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["targetGeneration"].as_u64() > stop["targetGeneration"].as_u64())
        .cloned()
        .collect();
    for op in &after {
        app.wait_op(op, LONG).await;
    }
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{x}")).await;
    let servers = servers_by_instance(app.data.path()).get(x.as_str()).copied().unwrap_or(0);
    let summary: Vec<String> = after
        .iter()
        .map(|o| {
            format!(
                "{} {} ({}) gen {} created {}",
                o["id"], o["kind"], o["reason"], o["targetGeneration"], o["createdAt"]
            )
        })
        .collect();
    eprintln!(
        "figures: reconciler vs user stop: stop succeeded while the pass ran: {stopped_while_pass_ran}; operations \
         after it: {summary:?}; instance desiredState {}, status {}, {servers} servers",
        inst["desiredState"], inst["status"],
    );
    assert!(stopped_while_pass_ran, "the user's stop finished inside the pass's window");
    assert!(after.is_empty(), "the reconciler acted on a state read before the user's stop: {summary:?}");
    assert_eq!((inst["desiredState"].as_str(), inst["status"].as_str()), (Some("stopped"), Some("stopped")), "{inst}");
    assert_eq!(servers, 0, "the stopped instance runs no server");
}

// ---------------------------------------------------------------------------------------------
// 4. drasi-server faults
// ---------------------------------------------------------------------------------------------

/// The instance's history, oldest first.
async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, h) = app.get_json(&format!("/api/v1/instances/{id}/history")).await;
    assert_eq!(status, StatusCode::OK);
    let mut items = h["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

#[tokio::test]
async fn a_server_crashing_at_start_fails_its_operation_with_the_log_tail_and_leaves_the_instance_in_error() {
    let app = spawn_app().await;
    // Repairs off, so what is checked is the operation's own end state, not the reconciler's next move.
    let _worker = app
        .start_worker("node-a", &[("DRASI_STANDIN_CRASH_AFTER_SECS", "0"), ("DRAAS_RECONCILE__REPAIR_ERROR", "false")]);
    let id = create_instances(&app, "crashstart", 1).await.remove(0);
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("failed"), Some("crashed_on_start")));
    assert_eq!(done["attempt"], done["maxAttempts"], "{done}");
    let detail = done["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("panicked") && detail.contains("simulated crash"), "the log tail: {done}");
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "error", "{inst}");
    assert!(inst["statusMessage"].as_str().unwrap().starts_with("crashed_on_start"), "{inst}");
    let h = history(&app, &id).await;
    assert_eq!(h.last().unwrap()["to"], "error", "{h:?}");
    assert!(app.servers().is_empty(), "no server left");
    eprintln!(
        "figures: crash at start: failed crashed_on_start after {}/{} attempts in {:.1} s, log tail ({} bytes) in \
         error.detail, instance error, 0 servers left",
        done["attempt"],
        done["maxAttempts"],
        secs_between(&done, "createdAt", "finishedAt"),
        detail.len(),
    );
}

#[tokio::test]
async fn a_server_that_cannot_bind_its_port_is_not_reported_running_when_another_program_answers_there() {
    let mut app = spawn_app().await;
    // Another program on this host listens on the instance's port (one of the pool, which a
    // configuration may name here) and answers /health.
    app.allow_pool_ports();
    let port = app.ports.1;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let other =
        axum::Router::new().route("/health", axum::routing::get(|| async { axum::Json(json!({"status": "ok"})) }));
    let _other = tokio::spawn(async move { axum::serve(listener, other).await });
    let _worker = app.start_worker("node-a", &[("DRAAS_RECONCILE__REPAIR_ERROR", "false")]);
    let config = json!({"port": port, "sources": [], "queries": [], "reactions": []});
    let id = app.create_instance("squatted", config).await["id"].as_str().unwrap().to_owned();
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    let log =
        std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.log")).unwrap_or_default();
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    let pid_alive = done["result"]["pid"].as_u64().is_some_and(|p| alive(u32::try_from(p).unwrap()));
    eprintln!(
        "figures: port taken by another program: start {} (error {}), recorded pid alive: {pid_alive}, instance {}, \
         server log says bind failed: {}",
        done["status"],
        done["error"]["code"],
        inst["status"],
        log.contains("Failed to bind"),
    );
    assert!(log.contains("Failed to bind"), "the server could not bind:\n{log}");
    assert_eq!(done["status"], "failed", "a server that exited at once is not running: {done}");
    assert!(done["error"]["detail"].as_str().unwrap_or_default().contains("Failed to bind"), "the log tail: {done}");
    assert_eq!(inst["status"], "error", "{inst}");
    assert!(app.servers().is_empty(), "no server left");
}

#[tokio::test]
async fn a_server_crashing_later_is_restarted_by_the_reconciler_then_left_in_error_when_it_keeps_crashing() {
    let app = spawn_app().await;
    let _worker = app.start_worker(
        "node-a",
        &[
            ("DRASI_STANDIN_CRASH_AFTER_SECS", "2"),
            ("DRAAS_RECONCILE__INTERVAL_SECS", "1"),
            ("DRAAS_RECONCILE__MAX_FAILURES", "1"),
        ],
    );
    let id = create_instances(&app, "crashlater", 1).await.remove(0);
    let started = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(started["status"], "succeeded", "{started}");
    let up_at: DateTime<Utc> = started["finishedAt"].as_str().unwrap().parse().unwrap();

    let repair = eventually("a restart with reason crashed", LONG, || async {
        let (_, ops) = app.get_json(&format!("/api/v1/operations?instance={id}")).await;
        ops["items"].as_array()?.iter().find(|o| o["kind"] == "restart" && o["reason"] == "crashed").cloned()
    })
    .await;
    let repaired = app.wait_op(&repair, LONG).await;
    assert_eq!(repaired["status"], "succeeded", "{repaired}");
    assert_ne!(repaired["result"]["pid"], started["result"]["pid"], "a new process");
    let h = history(&app, &id).await;
    let crash = h.iter().find(|c| c["from"] == "running" && c["to"] == "error").expect("running → error");
    assert_eq!((crash["reason"].as_str(), crash["source"].as_str()), (Some("crashed"), Some("reconciler")), "{h:?}");
    let seen_at: DateTime<Utc> = crash["at"].as_str().unwrap().parse().unwrap();

    // It crashes again; with reconcile.max_failures = 1 the reconciler gives up: error, no server.
    let inst = app
        .wait_instance(&id, "the reconciler to give up", LONG, |i| {
            i["statusMessage"].as_str().is_some_and(|m| m.starts_with("crash loop: gave up"))
        })
        .await;
    assert_eq!(inst["status"], "error", "{inst}");
    let message = inst["statusMessage"].as_str().unwrap();
    assert!(message.contains("exited with code 101"), "how it ended: {inst}");
    assert!(app.servers().is_empty(), "no server left");
    let log = std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.log")).unwrap();
    assert_eq!(log.matches("simulated crash").count(), 2, "both crashes are in the server log:\n{log}");
    eprintln!(
        "figures: crash later: running → error (reason crashed, source reconciler) recorded {:.1} s after the start \
         succeeded (crash at 2 s, 1 s ticks), restart (reason crashed) succeeded with a new pid, second crash → gave \
         up: status error, \"{message}\", 0 servers left",
        (seen_at - up_at).num_milliseconds() as f64 / 1000.0,
    );
}

#[tokio::test]
async fn a_server_that_never_becomes_healthy_fails_with_health_timeout_and_is_not_left_running() {
    let app = spawn_app().await;
    let _worker = app.start_worker(
        "node-a",
        &[
            ("DRASI_STANDIN_NEVER_HEALTHY", "1"),
            ("DRAAS_PROCESS__HEALTH_TIMEOUT_SECS", "2"),
            ("DRAAS_RECONCILE__REPAIR_ERROR", "false"),
        ],
    );
    let id = create_instances(&app, "unhealthy", 1).await.remove(0);
    let sampler = ServerSampler::start(app.data.path());
    let done = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert!(app.servers().is_empty(), "the unhealthy server was stopped");
    let (max, _) = sampler.finish();
    assert_eq!((done["status"].as_str(), done["error"]["code"].as_str()), (Some("failed"), Some("health_timeout")));
    assert_eq!(done["attempt"], done["maxAttempts"], "{done}");
    assert!(done["error"]["message"].as_str().unwrap().contains("within 2 s"), "{done}");
    let detail = done["error"]["detail"].as_str().unwrap();
    assert!(detail.contains("Server listening"), "the log tail: {done}");
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "error", "{inst}");
    assert!(inst["statusMessage"].as_str().unwrap().starts_with("health_timeout"), "{inst}");
    eprintln!(
        "figures: never healthy: failed health_timeout after {}/{} attempts of 2 s in {:.1} s, log tail ({} bytes) \
         in error.detail, instance error, at most {} server at a time, 0 servers left",
        done["attempt"],
        done["maxAttempts"],
        secs_between(&done, "createdAt", "finishedAt"),
        detail.len(),
        max.values().max().copied().unwrap_or(0),
    );
}

#[tokio::test]
async fn a_server_hanging_on_the_stop_signal_is_killed_after_the_grace_period_on_restart_and_stop() {
    let app = spawn_app().await;
    // drasi-server stops on SIGINT (it does not handle SIGTERM); "hangs on the stop signal" is a
    // server that ignores SIGINT.
    let _worker = app.start_worker("node-a", &[("DRASI_STANDIN_IGNORE_SIGINT", "1")]);
    let id = create_instances(&app, "stubborn", 1).await.remove(0);
    let started = app.wait_op(&app.submit(&id, "start").await, LONG).await;
    assert_eq!(started["status"], "succeeded", "{started}");

    let restarted = app.wait_op(&app.submit(&id, "restart").await, LONG).await;
    assert_eq!(restarted["status"], "succeeded", "{restarted}");
    assert_ne!(restarted["result"]["pid"], started["result"]["pid"]);
    assert_eq!(app.servers().len(), 1, "the old server was killed, the new one runs");
    let restart_secs = secs_between(&restarted, "startedAt", "finishedAt");

    let stopped = app.wait_op(&app.submit(&id, "stop").await, LONG).await;
    assert_eq!(stopped["status"], "succeeded", "{stopped}");
    let stop_secs = secs_between(&stopped, "startedAt", "finishedAt");
    assert!(app.servers().is_empty(), "SIGKILL after the grace period");
    for secs in [restart_secs, stop_secs] {
        let grace = STOP_GRACE.as_secs_f64();
        assert!(secs >= grace && secs < grace + 5.0, "waited the grace period, then killed: {secs} s");
    }
    let (_, inst) = app.get_json(&format!("/api/v1/instances/{id}")).await;
    assert_eq!(inst["status"], "stopped", "{inst}");
    let log = std::fs::read_to_string(app.data.path().join("instances").join(&id).join("server.log")).unwrap();
    assert_eq!(log.matches("Received SIGINT; ignoring it").count(), 2, "each server saw SIGINT first:\n{log}");
    eprintln!(
        "figures: hangs on the stop signal (ignores SIGINT): restart {restart_secs:.1} s and stop {stop_secs:.1} s \
         (grace {} s, then SIGKILL to the group), both succeeded, 0 servers left",
        STOP_GRACE.as_secs(),
    );
}
