//! `draas-autoscale`: scaling from zero shown with figures (not a test: it prints them, and
//! exits non-zero when an operation was lost or ran twice, or the workers did not go back to
//! zero).
//!
//! Run: `cargo build -p draas -p drasi-server-standin -p draas-tests && target/debug/draas-autoscale`
//! (add `--release` to all three for release figures; needs redis-server).
//!
//! The autoscaler of `draas_tests::autoscale` reads `GET /api/v1/queues/backlog` every 100 ms,
//! as the ScaledObject's metrics-api trigger does every `pollingInterval`, and runs
//! `ceil(pending / 8)` real `draas worker` processes (one job at a time each, so capacity is
//! the number of workers), stopping them with SIGTERM one second after the backlog allows.
//! 1. Cold start, `AUTOSCALE_COLD` times (default 3): one `stop` submitted with no worker;
//!    submit → the scaler starts a worker → the job picked up.
//! 2. For at most 1, 2 and 4 workers, each from zero in a world of its own: `AUTOSCALE_OPS`
//!    (default 500) `stop` operations on never-started instances (no platform work: the job's
//!    own cost) submitted at once; submit → first pickup, throughput from first pickup to last
//!    end, time back to zero workers, lost and duplicated operations. The scale-up curve of
//!    the 4-worker burst is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use draas_tests::autoscale::{
    Autoscaler, Outcome, Policy, TICK_EVERY_SECOND, all_ended, create_instances, spawn_ticking_app, store_of,
    submit_all, worker_env,
};
use draas_tests::eventually;

const DEADLINE: Duration = Duration::from_secs(600);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn policy(max: usize) -> Policy {
    Policy { target: 8, max, cooldown: Duration::from_secs(1), poll: Duration::from_millis(100) }
}

/// One burst of `n` operations from zero with at most `max` workers.
struct Burst {
    outcome: Outcome,
    /// Submit (the first operation's creation) → first pickup.
    cold: Duration,
    /// First submit request → the scaler's decision to start the first worker.
    reaction: Duration,
    /// First pickup → last end.
    busy: Duration,
    /// Last end → no worker left.
    back_to_zero: Duration,
    peak: usize,
    curve: Vec<(f64, u64, usize)>,
}

async fn burst(n: usize, max: usize) -> Burst {
    let app = spawn_ticking_app().await;
    let store = store_of(&app);
    let ids = create_instances(&app, "burst", n).await;
    let scaler = Autoscaler::start(&app, worker_env(&app, &[TICK_EVERY_SECOND]), policy(max));
    let submitted = Instant::now();
    let ops = submit_all(&app, &ids, "stop").await;
    eventually("every operation to end", DEADLINE, || async { all_ended(&store, &ops).await.then_some(()) }).await;
    let ended = Instant::now();
    eventually("no worker left", DEADLINE, || async { (scaler.running() == 0).then_some(()) }).await;
    let back_to_zero = ended.elapsed();
    let outcome = Outcome::of(&store, &ops, &scaler.deliveries()).await;
    let first_created = outcome.first_submit.expect("the operations exist");
    let pickup = outcome.first_pickup.unwrap_or(first_created);
    let span =
        |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| (b - a).to_std().unwrap_or_default();
    let curve = scaler
        .samples()
        .into_iter()
        .filter(|s| s.at >= submitted)
        .map(|s| ((s.at - submitted).as_secs_f64(), s.pending, s.workers))
        .collect();
    let b = Burst {
        cold: span(first_created, pickup),
        reaction: scaler.first_start().map_or(Duration::ZERO, |t| t - submitted),
        busy: span(pickup, outcome.last_end.unwrap_or(pickup)),
        back_to_zero,
        peak: scaler.peak(),
        curve,
        outcome,
    };
    scaler.shutdown().await;
    b
}

/// The readings of the burst, from the first pending job to the last worker gone: each one
/// where the worker count changed, and one every half second between.
fn print_curve(curve: &[(f64, u64, usize)]) {
    println!("  scale-up curve of the 4-worker burst (t from submit, pending, workers):");
    let mut last: Option<(f64, usize)> = None;
    for (t, pending, workers) in curve.iter().skip_while(|(_, p, w)| *p == 0 && *w == 0) {
        let due = last.is_none_or(|(at, w)| w != *workers || t - at >= 0.5);
        if due {
            println!("    {t:>6.2} s  pending {pending:>4}  workers {workers}");
            last = Some((*t, *workers));
        }
        if *pending == 0 && *workers == 0 {
            break;
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let n = env_usize("AUTOSCALE_OPS", 500);
    let cold_runs = env_usize("AUTOSCALE_COLD", 3);
    println!(
        "draas-autoscale: {n} operations per burst, {} build, {} cores, redis on a unix socket",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut ok = true;
    println!("cold start from zero (one operation, at most 4 workers):");
    for i in 1..=cold_runs {
        let b = burst(1, 4).await;
        ok &= b.outcome.lost == 0 && b.outcome.duplicated == 0;
        println!(
            "  run {i}: submit → scaler starts a worker {:>4} ms, submit → pickup {:>4} ms; back to zero {:.1} s",
            b.reaction.as_millis(),
            b.cold.as_millis(),
            b.back_to_zero.as_secs_f64()
        );
    }
    println!("bursts of {n} from zero:");
    let mut base = None;
    for max in [1, 2, 4] {
        let b = burst(n, max).await;
        let o = &b.outcome;
        ok &= o.lost == 0 && o.duplicated == 0 && o.succeeded_first_time == n;
        let rate = n as f64 / b.busy.as_secs_f64().max(0.001);
        let x = rate / *base.get_or_insert(rate);
        println!(
            "  at most {max} worker(s) (peak {}): submit → pickup {:>5} ms, {rate:>6.1} ops/s ({x:.2}x), back to zero {:.1} s; {} lost, {} duplicated",
            b.peak,
            b.cold.as_millis(),
            b.back_to_zero.as_secs_f64(),
            o.lost,
            o.duplicated
        );
        if max == 4 {
            print_curve(&b.curve);
        }
    }
    println!("every operation ended once and the workers went back to zero: {}", if ok { "yes" } else { "NO" });
    if !ok {
        std::process::exit(1);
    }
}
