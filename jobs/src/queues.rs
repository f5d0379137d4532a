//! Which queues a deployment has, and how deep each is, read straight from apalis-redis' keys
//! (its own `ListQueues` and `Metrics` answer errors or zeros: shared/APALIS.md §0, §5).
//!
//! apalis-redis 1.0 keeps per queue `q` (with `lock_tasks(false)`, as draas runs it):
//! `q:scheduled` (ZSET by run-at seconds; every push lands here, so a due member is waiting),
//! `q:active` (LIST of ids ready to fetch: waiting), `q:inflight:<worker>` (SET per worker of
//! ids fetched and not yet acknowledged: running), `q:workers` (ZSET of worker names),
//! `q:done` and `q:dead` (SETs of finished tasks; dead = apalis gave up, e.g. a panic or a
//! state store failure on every delivery). draas' own outcome of a job is its operation
//! record; these are the transport's figures.

use redis::aio::ConnectionManager;

use crate::jobs::{NODE_QUEUE_PREFIX, RECONCILE_NODE_QUEUE_PREFIX, RECONCILE_QUEUE, SHARED_QUEUE, queue_name};
use crate::store::{Keys, StoreError};

/// How many tasks a queue holds, by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Short name, e.g. `shared` or `node-a`.
    pub name: String,
    /// The Redis key prefix, e.g. `{draas}:q:shared`.
    pub key: String,
    /// Due and not yet fetched (`q:active` plus the due part of `q:scheduled`).
    pub waiting: u64,
    /// Fetched by a worker and not yet acknowledged (every `q:inflight:<worker>`).
    pub active: u64,
    /// To run later (`q:scheduled` with a run-at in the future).
    pub scheduled: u64,
    /// Finished (`q:done`), until the sweep forgets them.
    pub done: u64,
    /// Given up by apalis (`q:dead`).
    pub failed: u64,
}

/// Every queue of the deployment: shared and reconcile, and the two of every node ever seen.
pub async fn all(conn: &ConnectionManager, keys: &Keys) -> Result<Vec<String>, StoreError> {
    let mut nodes: Vec<String> = redis::AsyncCommands::smembers(&mut conn.clone(), keys.nodes()).await?;
    nodes.sort();
    let mut queues = vec![SHARED_QUEUE.to_owned(), RECONCILE_QUEUE.to_owned()];
    for n in nodes {
        queues.push(format!("{NODE_QUEUE_PREFIX}{n}"));
        queues.push(format!("{RECONCILE_NODE_QUEUE_PREFIX}{n}"));
    }
    Ok(queues)
}

/// The depth of every queue of the deployment, in two pipelined round trips.
pub async fn depths(conn: &ConnectionManager, keys: &Keys) -> Result<Vec<QueueDepth>, StoreError> {
    let queues = all(conn, keys).await?;
    let now = chrono::Utc::now().timestamp();
    let mut pipe = redis::pipe();
    for q in queues.iter().map(|q| queue_name(keys, q)) {
        pipe.llen(format!("{q}:active"))
            .zcount(format!("{q}:scheduled"), "-inf", now)
            .zcount(format!("{q}:scheduled"), format!("({now}"), "+inf")
            .scard(format!("{q}:done"))
            .scard(format!("{q}:dead"))
            .zrange(format!("{q}:workers"), 0, -1);
    }
    let rows: Vec<(u64, u64, u64, u64, u64, Vec<String>)> = pipe.query_async(&mut conn.clone()).await?;
    let mut inflight = redis::pipe();
    let mut workers = 0;
    for (q, row) in queues.iter().zip(&rows) {
        let q = queue_name(keys, q);
        for worker in &row.5 {
            inflight.scard(format!("{q}:inflight:{worker}"));
            workers += 1;
        }
    }
    let counts: Vec<u64> = if workers == 0 { Vec::new() } else { inflight.query_async(&mut conn.clone()).await? };
    let mut counts = counts.into_iter();
    let out = queues
        .into_iter()
        .zip(rows)
        .map(|(name, (ready, due, later, done, dead, workers))| QueueDepth {
            key: queue_name(keys, &name),
            name,
            waiting: ready + due,
            active: counts.by_ref().take(workers.len()).sum(),
            scheduled: later,
            done,
            failed: dead,
        })
        .collect();
    Ok(out)
}
