//! Submitting an operation, for every caller: the API (user requests, status pushes, on-demand
//! reconciles, the original API's verbs) and the reconciler (repairs). One script checks the
//! instance, records the new desired state, creates the operation and queues its job, or does
//! none of it (the rules: `store::scripts::submit`); so a repair is as visible in the API as a
//! user's request, and an operation never exists without its job.

use chrono::Utc;

use super::{RECONCILE_QUEUE, ReconcileJob, SCHEMA_VERSION, json, task_id};
use crate::domain::ids::{InstanceId, OperationId};
use crate::domain::operation::{Operation, OperationKind};
use crate::settings::Settings;
use crate::settings::tokens::SYSTEM;
use crate::store::operations::{PassSubmission, Submission, Submitted};
use crate::store::{Store, StoreError};

/// Why an operation was not submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("instance not found")]
    NotFound,
    #[error("the instance is being deleted")]
    Deleting,
    #[error("the instance changed since it was read (generation {seen}, now {now})")]
    Stale { seen: u64, now: u64 },
    #[error("the instance is at version {current}, not the one asked for")]
    Precondition { current: u64 },
    #[error("queue '{queue}' holds {depth} jobs; retry later")]
    QueueFull { queue: String, depth: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to submit.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub kind: OperationKind,
    /// The instance; `None` with `Reconcile` is a pass over every instance.
    pub instance: Option<&'a InstanceId>,
    /// `user` for requests, the reconciler's reason for repairs.
    pub reason: &'a str,
    /// The request id of the HTTP request that caused it.
    pub correlation_id: &'a str,
    /// Only while the instance is still at this generation: a repair planned from an older
    /// read never overrides a newer request.
    pub seen_generation: Option<u64>,
    /// Only while the instance record is at this version (`If-Match`).
    pub expected_version: Option<u64>,
    /// A delete that removes the records even when the platform cannot be reached.
    pub force: bool,
    /// Who asked: the caller's token name; `system` (the default) for what draas submits itself.
    pub requested_by: &'a str,
    /// The new operation's id, when the caller chose it (to wait for its end before it
    /// exists); `None`: a new one.
    pub id: Option<&'a OperationId>,
}

impl<'a> Request<'a> {
    /// A request of `kind` on `instance` with no conditions.
    pub fn new(
        kind: OperationKind,
        instance: Option<&'a InstanceId>,
        reason: &'a str,
        correlation_id: &'a str,
    ) -> Self {
        Self {
            kind,
            instance,
            reason,
            correlation_id,
            seen_generation: None,
            expected_version: None,
            force: false,
            requested_by: SYSTEM,
            id: None,
        }
    }

    /// The same request, asked for by `name`.
    pub fn by(self, name: &'a str) -> Self {
        Self { requested_by: name, ..self }
    }
}

/// Submits operations.
#[derive(Clone)]
pub struct Submitter {
    store: Store,
    max_attempts: u32,
    max_depth: u64,
}

impl Submitter {
    /// A submitter over `store`.
    pub fn new(store: Store, settings: &Settings) -> Self {
        Self { store, max_attempts: settings.worker.max_attempts, max_depth: settings.operations.max_queue_depth }
    }

    /// The store it submits to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Record the intent, create the operation and queue its job, in one step.
    pub async fn submit(&self, r: Request<'_>) -> Result<Operation, SubmitError> {
        let op = match r.instance {
            Some(id) => self.on_instance(id, &r).await?,
            None => self.pass(&r).await?,
        };
        tracing::info!(instance = ?op.instance_id.as_ref().map(InstanceId::as_str), operation = %op.id,
            kind = op.kind.as_str(), queue = %op.queue, reason = r.reason, correlation_id = r.correlation_id,
            requested_by = r.requested_by,
            "operation submitted");
        Ok(op)
    }

    async fn on_instance(&self, id: &InstanceId, r: &Request<'_>) -> Result<Operation, SubmitError> {
        let mut op = self.operation(r, "");
        op.instance_id = Some(id.clone());
        let task = task_id(&op.id).to_string();
        let submission = Submission {
            op: &op.id,
            kind: r.kind,
            instance: id,
            reason: r.reason,
            correlation_id: r.correlation_id,
            requested_by: r.requested_by,
            created_at: op.created_at,
            max_attempts: op.max_attempts,
            force: r.force,
            max_depth: self.max_depth,
            expected_version: r.expected_version,
            seen_generation: r.seen_generation,
            reset_crash_loop: r.reason == "user",
            schema_version: SCHEMA_VERSION,
            task_id: &task,
        };
        match self.store.operations().submit(&submission).await? {
            Submitted::Done { queue, target_generation, previous } => {
                op.queue = queue;
                op.target_generation = target_generation;
                op.previous_desired = Some(previous);
                Ok(op)
            }
            Submitted::NotFound => Err(SubmitError::NotFound),
            Submitted::Precondition { current } => Err(SubmitError::Precondition { current }),
            Submitted::Stale { now } => Err(SubmitError::Stale { seen: r.seen_generation.unwrap_or_default(), now }),
            Submitted::Deleting => Err(SubmitError::Deleting),
            Submitted::QueueFull { queue, depth } => Err(SubmitError::QueueFull { queue, depth }),
        }
    }

    /// A reconcile pass over every instance: the global pass (which ends the operation) and one
    /// pass per live node.
    async fn pass(&self, r: &Request<'_>) -> Result<Operation, SubmitError> {
        let op = self.operation(r, RECONCILE_QUEUE);
        let tick = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
        let global =
            ReconcileJob { schema_version: SCHEMA_VERSION, tick, node: None, operation_id: Some(op.id.clone()) };
        let submission =
            PassSubmission { op: &op, task_id: &global.task_id(), job: &json(&global), max_depth: self.max_depth };
        if let Some(depth) = self.store.operations().submit_pass(&submission).await? {
            return Err(SubmitError::QueueFull { queue: RECONCILE_QUEUE.to_owned(), depth });
        }
        for node in self.store.nodes().live().await? {
            ReconcileJob { schema_version: SCHEMA_VERSION, tick, node: Some(node), operation_id: None }
                .push(&self.store)
                .await?;
        }
        Ok(op)
    }

    fn operation(&self, r: &Request<'_>, queue: &str) -> Operation {
        let max_attempts = if r.instance.is_some() { self.max_attempts } else { 1 };
        let mut op = Operation::queued(r.kind, None, max_attempts);
        if let Some(id) = r.id {
            op.id = id.clone();
        }
        op.correlation_id = r.correlation_id.to_owned();
        op.reason = r.reason.to_owned();
        op.queue = queue.to_owned();
        op.force = r.force;
        op.requested_by = Some(r.requested_by.to_owned());
        op
    }
}
