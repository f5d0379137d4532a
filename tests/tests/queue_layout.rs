//! draas lays out the jobs it pushes (in the scripts that submit an operation and its job in
//! one step) exactly as apalis-redis' own push does, so apalis' fetch, acknowledgement and
//! orphan recovery treat them as its own. Checked against the apalis-redis in Cargo.lock: an
//! upgrade that changes its layout fails here first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use apalis::prelude::*;
use apalis_redis::RedisStorage;
use draas_jobs::queue::{InstanceJob, queue_config, queue_name, task_id};
use draas_jobs::store::Store;
use draas_tests::TestRedis;
use secrecy::SecretString;

#[tokio::test]
async fn a_job_draas_pushes_is_laid_out_as_apalis_lays_out_its_own() {
    let redis = TestRedis::start();
    let store = Store::open(&SecretString::from(redis.url.clone()), "layout").unwrap();
    let job = draas_tests::sample_job();
    let id = task_id(&job.operation_id).to_string();

    let config = queue_config(store.keys(), "theirs", Duration::from_secs(5), 3);
    let mut apalis = RedisStorage::<InstanceJob>::new(store.connection()).with_config(config);
    apalis.push_task(TaskBuilder::new(job.clone()).task_id(task_id(&job.operation_id)).build()).await.unwrap();
    assert!(job.push(&store, "ours").await.unwrap(), "pushed");
    assert!(!job.push(&store, "ours").await.unwrap(), "a second push of the task is ignored");

    let mut c = redis.connection().await;
    let (theirs, ours) = (queue_name(store.keys(), "theirs"), queue_name(store.keys(), "ours"));
    let data = |q: String| {
        let mut c = c.clone();
        let id = id.clone();
        async move {
            let v: Vec<u8> = redis::cmd("HGET").arg(format!("{q}:data")).arg(&id).query_async(&mut c).await.unwrap();
            v
        }
    };
    let (d1, d2) = (data(theirs.clone()).await, data(ours.clone()).await);
    assert_eq!(serde_json::from_slice::<InstanceJob>(&d1).unwrap(), job);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&d1).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&d2).unwrap()
    );
    let meta = |q: &str| format!("{q}:meta:{id}");
    let m1: HashMap<String, String> = redis::cmd("HGETALL").arg(meta(&theirs)).query_async(&mut c).await.unwrap();
    let m2: HashMap<String, String> = redis::cmd("HGETALL").arg(meta(&ours)).query_async(&mut c).await.unwrap();
    assert_eq!(m1, m2, "the task's meta hash");
    let s1: Option<f64> =
        redis::cmd("ZSCORE").arg(format!("{theirs}:scheduled")).arg(&id).query_async(&mut c).await.unwrap();
    let s2: Option<f64> =
        redis::cmd("ZSCORE").arg(format!("{ours}:scheduled")).arg(&id).query_async(&mut c).await.unwrap();
    assert!((s1.unwrap() - s2.unwrap()).abs() <= 1.0, "scheduled at now: {s1:?} {s2:?}");
}

#[tokio::test]
async fn an_apalis_worker_runs_and_acknowledges_a_job_draas_pushed() {
    let redis = TestRedis::start();
    let store = Store::open(&SecretString::from(redis.url.clone()), "layout").unwrap();
    let job = draas_tests::sample_job();
    job.push(&store, "run").await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<InstanceJob>(1);
    let config = queue_config(store.keys(), "run", Duration::from_secs(1), 3);
    let backend = RedisStorage::<InstanceJob>::new(store.connection()).with_config(config);
    let worker = WorkerBuilder::new(format!("layout-{}", ulid::Ulid::new()))
        .backend(backend.poll_with_interval(Duration::from_millis(20)))
        .data(tx)
        .build(|j: InstanceJob, tx: Data<tokio::sync::mpsc::Sender<InstanceJob>>| async move {
            tx.send(j).await.unwrap();
            Ok::<(), BoxDynError>(())
        });
    let running = tokio::spawn(worker.run());
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert_eq!(got, job);
    draas_tests::eventually("apalis to acknowledge it", Duration::from_secs(10), || async {
        (store.queues().done("run").await.unwrap() == 1).then_some(())
    })
    .await;
    running.abort();
}

/// Workers are told of a push only when the queue had nothing due: a worker waits for a word
/// only after a fetch that found nothing, and the push that ended that emptiness said so.
#[tokio::test]
async fn a_push_is_announced_only_into_a_queue_with_nothing_due() {
    use futures::StreamExt;

    let redis = TestRedis::start();
    let store = Store::open(&SecretString::from(redis.url.clone()), "announce").unwrap();
    let channel = store.keys().events();
    let mut pubsub = redis::Client::open(redis.url.clone()).unwrap().get_async_pubsub().await.unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut c = redis.connection().await;
    let mut next = async || -> String {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next()).await.unwrap().unwrap();
        m.get_payload().unwrap()
    };
    // A marker published after a push comes after whatever that push published.
    let marker = async |c: &mut redis::aio::MultiplexedConnection, m: &str| {
        let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg(m).query_async(c).await.unwrap();
    };

    assert!(draas_tests::sample_job().push(&store, "q").await.unwrap());
    marker(&mut c, "marker-1").await;
    assert_eq!(next().await, "w|q", "the first job into an empty queue is announced");
    assert_eq!(next().await, "marker-1");

    assert!(draas_tests::sample_job().push(&store, "q").await.unwrap());
    marker(&mut c, "marker-2").await;
    assert_eq!(next().await, "marker-2", "a job behind one still due is not announced");

    // The queue drained (as a fetch leaves it): the next push is announced again.
    let q = store.keys().queue("q");
    let _: i64 = redis::cmd("DEL").arg(q.scheduled()).arg(q.active()).query_async(&mut c).await.unwrap();
    assert!(draas_tests::sample_job().push(&store, "q").await.unwrap());
    marker(&mut c, "marker-3").await;
    assert_eq!(next().await, "w|q");
    assert_eq!(next().await, "marker-3");
}
