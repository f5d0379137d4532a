//! The queues: job payloads, queue names, the apalis-redis configuration workers and producers
//! share, submitting operations (`submit`), the apalis backend of the lifecycle queues
//! (`backend`: apalis' fetch and acknowledgement also begin and end the operations) and
//! sweeping what apalis keeps (`maintenance`).
//!
//! A job carries ids and intent, never a copy of the configuration: the worker reads the
//! desired state from the store when it runs, so a late or duplicated job acts on what is
//! current (or ends `superseded`). The apalis task id derives from the operation id, so pushing
//! the same operation twice is a no-op (an existing task id is skipped).

pub mod backend;
pub mod maintenance;
pub mod submit;
pub mod ticks;

use std::time::Duration;

use apalis::prelude::TaskId;
use apalis_redis::Config;
use serde::{Deserialize, Serialize};

use crate::domain::ids::{InstanceId, OperationId};
use crate::domain::model::Platform;
use crate::domain::operation::OperationKind;
pub use crate::store::queues::{Backlog, QueueDepth, Tick};
use crate::store::{Keys, Store, StoreError};

/// Version of the job payload schema; a worker refuses newer payloads it cannot understand.
pub const SCHEMA_VERSION: u32 = 1;

/// Queue of jobs any worker may run: Docker and Kubernetes instances, and process instances
/// not yet placed on a node.
pub const SHARED_QUEUE: &str = "shared";
/// Prefix of the per-node queues: a process instance's jobs run on the node that owns it.
pub const NODE_QUEUE_PREFIX: &str = "node-";
/// Queue of the global reconcile passes.
pub const RECONCILE_QUEUE: &str = "reconcile";
/// Prefix of the per-node reconcile queues (a node's own process instances).
pub const RECONCILE_NODE_QUEUE_PREFIX: &str = "reconcile-node-";

/// The queue of node `node`'s jobs.
pub fn node_queue(node: &str) -> String {
    format!("{NODE_QUEUE_PREFIX}{node}")
}

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

    /// Push this pass under its task id (a duplicate of the tick is ignored).
    pub async fn push(&self, store: &Store) -> Result<bool, StoreError> {
        store.queues().push(&self.queue(), &self.task_id(), &json(self)).await
    }

    /// Queue this global pass of a cron tick only if a worker has something to do (see
    /// `ticks`).
    pub async fn queue_tick(&self, store: &Store) -> Result<Tick, StoreError> {
        store.queues().tick(&self.queue(), SHARED_QUEUE, self.tick, &self.task_id(), &json(self)).await
    }
}

/// A lifecycle job: ids and intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceJob {
    pub schema_version: u32,
    pub kind: OperationKind,
    pub instance_id: InstanceId,
    pub operation_id: OperationId,
    /// The instance generation this job was submitted for; older than current → superseded.
    pub target_generation: u64,
    /// Request id of the HTTP request that caused the job.
    pub correlation_id: String,
    /// The instance's platform (it never changes), so a start can ask for its port as it
    /// begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl InstanceJob {
    /// Push this job into `queue` (a job forwarded to the node that owns its instance).
    pub async fn push(&self, store: &Store, queue: &str) -> Result<bool, StoreError> {
        store.queues().push(queue, &task_id(&self.operation_id).to_string(), &json(self)).await
    }
}

/// A job's JSON, as apalis' JSON codec encodes it.
pub(crate) fn json<T: Serialize>(job: &T) -> String {
    serde_json::to_string(job).unwrap_or_default()
}

/// The full Redis name of queue `name` under `keys`' hash tag, e.g. `{draas}:q:shared`.
pub fn queue_name(keys: &Keys, name: &str) -> String {
    keys.queue(name).name().to_owned()
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

/// Every queue of the deployment: shared and reconcile, and the two of every node ever seen.
pub async fn all(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut queues = vec![SHARED_QUEUE.to_owned(), RECONCILE_QUEUE.to_owned()];
    for n in store.nodes().all().await? {
        queues.push(node_queue(&n));
        queues.push(format!("{RECONCILE_NODE_QUEUE_PREFIX}{n}"));
    }
    Ok(queues)
}

/// The queues served by shared workers (any worker, wherever it runs): the shared jobs and the
/// global reconcile passes. Node queues are served by their node's own workers.
pub const SHARED_WORKER_QUEUES: [&str; 2] = [SHARED_QUEUE, RECONCILE_QUEUE];

/// What shared workers still have to do, counted exactly: the signal a scaler of shared workers
/// reads (`GET /api/v1/queues/backlog`).
pub async fn shared_backlog(store: &Store) -> Result<Backlog, StoreError> {
    store.queues().backlog(&SHARED_WORKER_QUEUES).await
}

/// The depth of every queue of the deployment.
pub async fn depths(store: &Store) -> Result<Vec<QueueDepth>, StoreError> {
    store.queues().depths(&all(store).await?).await
}
