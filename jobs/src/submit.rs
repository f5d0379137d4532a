//! Submitting a lifecycle operation, shared by the API (user requests) and the reconciler
//! (repairs): record the new desired state, create the operation, enqueue its job. Both go
//! through here, so a repair is as visible in the API as a user's request.

use chrono::Utc;

use crate::ids::{InstanceId, OperationId};
use crate::jobs::{EnqueueError, Enqueuer, InstanceJob, JobKind, NODE_QUEUE_PREFIX, SCHEMA_VERSION, SHARED_QUEUE};
use crate::model::{DesiredState, Platform};
use crate::ops::{Operation, OperationError, OperationKind, OperationStatus, Operations};
use crate::settings::Settings;
use crate::store::{InstanceState, Store, StoreError};

/// Why an operation was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("instance not found")]
    NotFound,
    #[error("the instance is being deleted")]
    Deleting,
    #[error("the instance changed since it was read (generation {seen}, now {now})")]
    Stale { seen: u64, now: u64 },
    #[error("queue '{queue}' holds {depth} jobs; retry later")]
    QueueFull { queue: String, depth: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

/// The queue that runs jobs of an instance: its node's queue for a placed process instance,
/// the shared queue otherwise.
pub fn queue_for(s: &InstanceState) -> String {
    match (s.instance.value.platform, s.observed.as_ref().and_then(|o| o.value.node.as_deref())) {
        (Platform::Process, Some(node)) => format!("{NODE_QUEUE_PREFIX}{node}"),
        _ => SHARED_QUEUE.to_owned(),
    }
}

fn job_kind(kind: OperationKind) -> JobKind {
    match kind {
        OperationKind::Start => JobKind::StartInstance,
        OperationKind::Stop => JobKind::StopInstance,
        OperationKind::Restart => JobKind::RestartInstance,
        OperationKind::Delete => JobKind::DeleteInstance,
        OperationKind::Reconcile => JobKind::Reconcile,
    }
}

fn desired_after(kind: OperationKind, current: DesiredState) -> DesiredState {
    match kind {
        OperationKind::Start | OperationKind::Restart => DesiredState::Running,
        OperationKind::Stop => DesiredState::Stopped,
        OperationKind::Delete => DesiredState::Deleted,
        OperationKind::Reconcile => current,
    }
}

/// Submits operations.
#[derive(Clone)]
pub struct Submitter {
    pub store: Store,
    pub ops: Operations,
    pub enqueuer: Enqueuer,
    max_attempts: u32,
    max_depth: u64,
}

impl Submitter {
    /// A submitter over `store`'s connection.
    pub fn new(store: Store, settings: &Settings) -> Self {
        let conn = store.connection();
        let keys = store.keys().clone();
        let ttl = std::time::Duration::from_secs(settings.operations.ttl_secs);
        Self {
            ops: Operations::new(conn.clone(), keys.clone(), ttl),
            enqueuer: Enqueuer::new(conn, keys),
            store,
            max_attempts: settings.worker.max_attempts,
            max_depth: settings.operations.max_queue_depth,
        }
    }

    /// Record the intent of `kind` on instance `id`, create its operation and enqueue its job.
    /// `reason` is `user` for requests, the reconciler's reason for repairs.
    pub async fn submit(
        &self,
        id: &InstanceId,
        kind: OperationKind,
        reason: &str,
        correlation_id: &str,
    ) -> Result<Operation, SubmitError> {
        self.submit_if(id, kind, reason, correlation_id, None).await
    }

    /// [`Submitter::submit`], and only while the instance is still at generation `seen`: a
    /// repair planned from an older read never overrides a newer request.
    pub async fn submit_if(
        &self,
        id: &InstanceId,
        kind: OperationKind,
        reason: &str,
        correlation_id: &str,
        seen: Option<u64>,
    ) -> Result<Operation, SubmitError> {
        let before = self.store.load(id).await?.ok_or(SubmitError::NotFound)?;
        let queue = queue_for(&before);
        let depth = self.enqueuer.depth(&queue).await.map_err(StoreError::from)?;
        if depth >= self.max_depth {
            return Err(SubmitError::QueueFull { queue, depth });
        }
        let (after, previous) = self
            .store
            .update(id, |s| {
                let current = s.instance.value.desired_state;
                if let Some(seen) = seen
                    && s.instance.value.generation != seen
                {
                    return Err(SubmitError::Stale { seen, now: s.instance.value.generation });
                }
                if current == DesiredState::Deleted && kind != OperationKind::Delete {
                    return Err(SubmitError::Deleting);
                }
                s.instance.value.desired_state = desired_after(kind, current);
                Ok(current)
            })
            .await
            .map_err(|e| match e {
                SubmitError::Store(StoreError::NotFound) => SubmitError::NotFound,
                e => e,
            })?;
        let op = Operation {
            id: OperationId::generate(),
            kind,
            instance_id: Some(id.clone()),
            status: OperationStatus::Queued,
            attempt: 0,
            max_attempts: self.max_attempts,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            result: serde_json::Map::new(),
            target_generation: after.instance.value.generation,
            correlation_id: correlation_id.to_owned(),
            reason: reason.to_owned(),
            queue: queue.clone(),
            previous_desired: Some(previous),
            worker: None,
        };
        self.ops.create(&op).await?;
        if reason == "user" {
            // A user acted: a crash loop that gave up may be repaired again.
            crate::crashloop::CrashLoops::new(self.store.connection(), self.store.keys().clone()).reset(id).await?;
        }
        let job = InstanceJob {
            schema_version: SCHEMA_VERSION,
            kind: job_kind(kind),
            instance_id: id.clone(),
            operation_id: op.id.clone(),
            target_generation: op.target_generation,
            correlation_id: correlation_id.to_owned(),
        };
        if let Err(e) = self.enqueuer.push(&queue, job).await {
            let mut failed = op.clone();
            failed.status = OperationStatus::Failed;
            failed.finished_at = Some(Utc::now());
            failed.error = Some(OperationError { code: "enqueue_failed".into(), message: e.to_string(), detail: None });
            let _ = self.ops.transition(&failed, &[OperationStatus::Queued]).await;
            return Err(e.into());
        }
        tracing::info!(instance = %id, operation = %op.id, kind = ?kind, %queue, reason, correlation_id, "operation submitted");
        Ok(op)
    }

    /// Is a lifecycle operation (not a reconcile) of the instance still queued or running?
    pub async fn has_pending(&self, id: &InstanceId) -> Result<bool, StoreError> {
        let (latest, _) = self.ops.list(Some(id), None, 5).await?;
        Ok(latest.iter().any(|o| o.kind != OperationKind::Reconcile && !o.status.is_final()))
    }
}
