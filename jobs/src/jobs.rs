//! Job payloads, queue names and enqueueing.
//!
//! A job carries ids and intent, never a copy of the configuration: the worker reads the
//! desired state from the store when it runs, so a late or duplicated job acts on what is
//! current (or ends `superseded`). The apalis task id derives from the operation id, so pushing
//! the same operation twice is a no-op (apalis-redis skips an existing id).

use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, RedisStorage};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use crate::ids::{InstanceId, OperationId};
use crate::store::Keys;

/// Version of the job payload schema; a worker refuses newer payloads it cannot understand.
pub const SCHEMA_VERSION: u32 = 1;

/// Queue of jobs any worker may run: Docker and Kubernetes instances, and process instances
/// not yet placed on a node.
pub const SHARED_QUEUE: &str = "shared";
/// Prefix of the per-node queues: a process instance's jobs run on the node that owns it.
pub const NODE_QUEUE_PREFIX: &str = "node-";
/// Queue of reconciliation passes.
pub const RECONCILE_QUEUE: &str = "reconcile";

/// Prefix of the per-node reconcile queues (a node's own process instances).
pub const RECONCILE_NODE_QUEUE_PREFIX: &str = "reconcile-node-";

/// One reconciliation pass: global (shared platforms, lost nodes, unplaced instances) or a
/// node's own process instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileJob {
    pub schema_version: u32,
    /// The cron tick (unix seconds) this pass is for.
    pub tick: u64,
    /// `None` for the global pass, else the node whose instances to reconcile.
    pub node: Option<String>,
    /// Operation to settle when the pass ends (on-demand passes).
    pub operation_id: Option<OperationId>,
}

impl ReconcileJob {
    /// The queue of this pass.
    pub fn queue(&self) -> String {
        match &self.node {
            None => RECONCILE_QUEUE.to_owned(),
            Some(n) => format!("{RECONCILE_NODE_QUEUE_PREFIX}{n}"),
        }
    }

    /// Deterministic task id: every replica pushes the same id for a tick, so it runs once.
    pub fn task_id(&self) -> String {
        let op = self.operation_id.as_ref().map(|o| format!("-{o}")).unwrap_or_default();
        match &self.node {
            None => format!("reconcile-{}{op}", self.tick),
            Some(n) => format!("reconcile-{}-{n}{op}", self.tick),
        }
    }
}

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JobKind {
    StartInstance,
    StopInstance,
    RestartInstance,
    DeleteInstance,
    Reconcile,
}

/// A lifecycle job: ids and intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceJob {
    pub schema_version: u32,
    pub kind: JobKind,
    pub instance_id: InstanceId,
    pub operation_id: OperationId,
    /// The instance generation this job was submitted for; older than current → superseded.
    pub target_generation: u64,
    /// Request id of the HTTP request that caused the job.
    pub correlation_id: String,
}

/// The full Redis name of queue `name` under `keys`' hash tag, e.g. `{draas}:q:shared`.
pub fn queue_name(keys: &Keys, name: &str) -> String {
    format!("{}:q:{name}", keys.tag())
}

/// apalis-redis configuration of a queue, as workers and producers share it.
pub fn queue_config(keys: &Keys, name: &str, heartbeat: Duration, missed_heartbeats: usize) -> Config {
    Config::default()
        .queue(queue_name(keys, name))
        .lock_tasks(false)
        .emit_events(false)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(missed_heartbeats)
}

/// The apalis task id of an operation. Not the bare id: apalis parses a task id that looks like
/// a ULID back as one and prints it in upper case, so its acknowledgement would name another id.
pub fn task_id(op: &OperationId) -> TaskId {
    TaskId::from_string(format!("op-{op}"))
}

/// Pushes jobs into queues.
#[derive(Clone)]
pub struct Enqueuer {
    conn: ConnectionManager,
    keys: Keys,
}

/// A job could not be enqueued.
#[derive(Debug, thiserror::Error)]
#[error("cannot enqueue job: {0}")]
pub struct EnqueueError(String);

impl Enqueuer {
    /// Producer over `conn`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Push `job` into `queue` with the operation id as task id (a second push of the same
    /// operation is ignored by apalis-redis).
    pub async fn push(&self, queue: &str, job: InstanceJob) -> Result<(), EnqueueError> {
        let mut storage: RedisStorage<InstanceJob> = RedisStorage::new(self.conn.clone()).with_config(queue_config(
            &self.keys,
            queue,
            Duration::from_secs(30),
            2,
        ));
        let task = TaskBuilder::new(job.clone()).task_id(task_id(&job.operation_id)).build();
        storage.push_task(task).await.map_err(|e| EnqueueError(e.to_string()))
    }

    /// Push a reconcile pass under its deterministic task id (a duplicate is ignored).
    pub async fn push_reconcile(&self, job: ReconcileJob) -> Result<(), EnqueueError> {
        let mut storage: RedisStorage<ReconcileJob> = RedisStorage::new(self.conn.clone()).with_config(queue_config(
            &self.keys,
            &job.queue(),
            Duration::from_secs(30),
            2,
        ));
        let task = TaskBuilder::new(job.clone()).task_id(TaskId::from_string(job.task_id())).build();
        storage.push_task(task).await.map_err(|e| EnqueueError(e.to_string()))
    }

    /// Jobs waiting in `queue` (due and scheduled): the depth admission control compares.
    pub async fn depth(&self, queue: &str) -> Result<u64, redis::RedisError> {
        let q = queue_name(&self.keys, queue);
        let (active, scheduled): (u64, u64) = redis::pipe()
            .llen(format!("{q}:active"))
            .zcard(format!("{q}:scheduled"))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(active + scheduled)
    }
}
