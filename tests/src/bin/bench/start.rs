//! Start latency of the real drasi-server: bare (spawn → `/health` 200) beside through draas
//! (`POST …/start?wait=30` → 200 `succeeded`, the server healthy), the same binary and
//! configuration, cycles of start and stop; how long `?wait` trails the operation's end; and
//! the Redis round trips of one start on each side.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use draas_tests::{RealServer, TestRedis};
use serde_json::{Value, json};

use super::summary;

/// What both sides run: an empty pipeline without the web UI (it has no assets here).
fn config(port: Option<u16>) -> Value {
    let mut c = json!({"logLevel": "info", "enableUi": false, "sources": [], "queries": [], "reactions": []});
    if let Some(p) = port {
        c["port"] = json!(p);
        c["host"] = json!("127.0.0.1");
        c["id"] = json!("bare");
        c["persistConfig"] = json!(false);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Spawn the server (with the flags draas passes) and wait for `/health`, `cycles` times.
async fn bare(server: &RealServer, cycles: usize) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("server.yaml");
    std::fs::write(&file, serde_norway::to_string(&config(Some(port))).unwrap()).unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let mut out = Vec::new();
    for _ in 0..cycles {
        let t = Instant::now();
        let mut child = Command::new(&server.bin)
            .arg("--config")
            .arg(&file)
            .arg("--plugins-dir")
            .arg(&server.plugins)
            .arg("--skip-verification")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        out.push(t.elapsed());
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
    }
    out
}

/// Through draas: an in-process API and worker, each with its own store (so each side's round
/// trips are counted apart).
pub async fn figures(redis: &TestRedis, server: &RealServer, cycles: usize) {
    let bare = bare(server, cycles).await;
    let d = super::RealDeployment::start(redis, "start", server).await;
    let (base, api_store, worker_store, http) = (&d.base, &d.api_store, &d.worker_store, &d.http);
    let id = d.create("latency", config(None)).await;
    let call = |verb: &str| {
        let (http, url) = (http.clone(), format!("{base}/api/v1/instances/{id}/{verb}?wait=30"));
        async move {
            let res = http.post(url).send().await.unwrap();
            let at = chrono::Utc::now();
            (res.status(), res.json::<Value>().await.unwrap(), at)
        }
    };
    // One cycle not measured: the first start of a configuration runs drasi-server's
    // `validate` (later ones of the same spec do not).
    call("start").await;
    call("stop").await;
    let (mut through, mut lag, mut rtts) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cycles {
        let (a0, w0) = (api_store.round_trips(), worker_store.round_trips());
        let t = Instant::now();
        let (status, op, answered) = call("start").await;
        through.push(t.elapsed());
        rtts.push((api_store.round_trips() - a0, worker_store.round_trips() - w0));
        assert_eq!((status.as_u16(), op["status"].as_str()), (200, Some("succeeded")), "{op}");
        let finished: chrono::DateTime<chrono::Utc> = op["finishedAt"].as_str().unwrap().parse().unwrap();
        lag.push((answered - finished).to_std().unwrap_or_default());
        let endpoint = op["result"]["endpoint"].as_str().unwrap();
        assert!(http.get(format!("{endpoint}/health")).send().await.unwrap().status().is_success());
        assert_eq!(call("stop").await.1["status"], "succeeded");
    }
    println!("start latency, real drasi-server ({}), {cycles} cycles:", server.bin.display());
    println!("  bare (spawn -> /health 200):              {}", summary(bare.clone()));
    println!("  through draas (POST start?wait -> 200):   {}", summary(through.clone()));
    let p50 = |mut d: Vec<Duration>| {
        d.sort();
        super::ms(super::percentile(&d, 0.5))
    };
    println!("  draas p50 - bare p50:                     {:.1} ms", p50(through) - p50(bare));
    println!("  ?wait answer after the operation's end:   {}", summary(lag));
    rtts.sort();
    let (api, work) = rtts[rtts.len() / 2];
    println!(
        "  Redis round trips of one start?wait (median): API {api}, worker {work} (its acknowledgement and every \
         apalis fetch included: a worker fetches whenever a running job wakes it)"
    );
}
