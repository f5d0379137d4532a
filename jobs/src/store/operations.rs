//! Operation records, and the three steps of an operation's life: `submit` (the API or the
//! reconciler: desired state, operation and job in one step), `begin` (a worker: operation,
//! instance, lease and port in one step; apalis' fetch runs it for most kinds, the handler for
//! the rest) and its end (observed state, outcome and lease release in one step, run by apalis'
//! acknowledgement with `finish_args`: `store::deliveries`).
//!
//! An operation is a hash: `spec` (the JSON of what never changes once submitted), and one
//! field per thing that does: `status`, `attempt`, `startedAt`, `finishedAt`, `worker`,
//! `error` and `result` (JSON). So no step rewrites the whole record, and a script can move it
//! along without decoding it. Records expire `operation_ttl` after their last change.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::instances::now;
use super::leases::Lease;
use super::{Store, StoreError, scripts, to_json};
use crate::domain::ids::{InstanceId, OperationId};
use crate::domain::model::{Cause, DesiredState, InstanceState, ObservedRecord};
use crate::domain::operation::{Operation, OperationError, OperationKind, OperationStatus};

/// The part of an operation that never changes once submitted.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    id: OperationId,
    kind: OperationKind,
    instance_id: Option<InstanceId>,
    max_attempts: u32,
    created_at: DateTime<Utc>,
    target_generation: u64,
    correlation_id: String,
    reason: String,
    queue: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous_desired: Option<DesiredState>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_by: Option<String>,
}

impl From<&Operation> for Spec {
    fn from(o: &Operation) -> Self {
        Self {
            id: o.id.clone(),
            kind: o.kind,
            instance_id: o.instance_id.clone(),
            max_attempts: o.max_attempts,
            created_at: o.created_at,
            target_generation: o.target_generation,
            correlation_id: o.correlation_id.clone(),
            reason: o.reason.clone(),
            queue: o.queue.clone(),
            previous_desired: o.previous_desired,
            force: o.force,
            requested_by: o.requested_by.clone(),
        }
    }
}

/// An operation from its hash fields (`None` for a record that expired).
fn parse(key: &str, fields: &HashMap<String, String>) -> Result<Option<Operation>, StoreError> {
    let corrupt = |source| StoreError::Corrupt { key: key.to_owned(), source };
    if let Some(data) = fields.get("data") {
        // A record written before operations became hashes: one JSON document, with the
        // fields written since on top.
        let mut op: Operation = serde_json::from_str(data).map_err(corrupt)?;
        live(&mut op, fields).map_err(corrupt)?;
        return Ok(Some(op));
    }
    let Some(spec) = fields.get("spec") else { return Ok(None) };
    let spec: Spec = serde_json::from_str(spec).map_err(corrupt)?;
    let mut op = Operation {
        id: spec.id,
        kind: spec.kind,
        instance_id: spec.instance_id,
        status: OperationStatus::Queued,
        attempt: 0,
        max_attempts: spec.max_attempts,
        error: None,
        created_at: spec.created_at,
        started_at: None,
        finished_at: None,
        result: Default::default(),
        target_generation: spec.target_generation,
        correlation_id: spec.correlation_id,
        reason: spec.reason,
        queue: spec.queue,
        previous_desired: spec.previous_desired,
        worker: None,
        force: spec.force,
        requested_by: spec.requested_by,
    };
    live(&mut op, fields).map_err(corrupt)?;
    Ok(Some(op))
}

/// The changing parts of an operation, from its fields where they are set.
fn live(op: &mut Operation, fields: &HashMap<String, String>) -> Result<(), serde_json::Error> {
    let time =
        |f: &str| fields.get(f).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    if let Some(s) = fields.get("status").and_then(|s| OperationStatus::parse(s)) {
        op.status = s;
    }
    if let Some(a) = fields.get("attempt").and_then(|a| a.parse().ok()) {
        op.attempt = a;
    }
    op.started_at = time("startedAt").or(op.started_at);
    op.finished_at = time("finishedAt").or(op.finished_at);
    op.worker = fields.get("worker").cloned().or(op.worker.take());
    if let Some(e) = field_json(fields, "error")? {
        op.error = Some(e);
    }
    if let Some(r) = field_json(fields, "result")? {
        op.result = r;
    }
    Ok(())
}

fn field_json<T: serde::de::DeserializeOwned>(
    fields: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, serde_json::Error> {
    fields.get(name).map(|v| serde_json::from_str(v)).transpose()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What `submit` is asked: an operation of `kind` on an instance.
pub struct Submission<'a> {
    pub op: &'a OperationId,
    pub kind: OperationKind,
    pub instance: &'a InstanceId,
    pub reason: &'a str,
    pub correlation_id: &'a str,
    /// Who asked (`Operation::requested_by`).
    pub requested_by: &'a str,
    pub created_at: DateTime<Utc>,
    pub max_attempts: u32,
    pub force: bool,
    /// No submit while the queue holds this many jobs.
    pub max_depth: u64,
    /// Only while the instance record is at this version.
    pub expected_version: Option<u64>,
    /// Only while the instance is at this generation.
    pub seen_generation: Option<u64>,
    /// Forget the instance's crash loop (a user acted).
    pub reset_crash_loop: bool,
    /// Version of the job payload.
    pub schema_version: u32,
    /// apalis task id of the job.
    pub task_id: &'a str,
}

/// How a submit went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Written: the job went to `queue`, for `target_generation`; the instance was meant to be
    /// `previous` before.
    Done {
        queue: String,
        target_generation: u64,
        previous: DesiredState,
    },
    NotFound,
    /// The instance record is at another version than expected.
    Precondition {
        current: u64,
    },
    /// The instance is at another generation than seen.
    Stale {
        now: u64,
    },
    /// The instance is being deleted.
    Deleting,
    /// The queue holds this many jobs.
    QueueFull {
        queue: String,
        depth: u64,
    },
}

/// What `submit_pass` writes: an operation on no instance and its job.
pub struct PassSubmission<'a> {
    pub op: &'a Operation,
    pub task_id: &'a str,
    pub job: &'a str,
    pub max_depth: u64,
}

/// What `begin` is asked.
pub struct Begin<'a> {
    pub op: &'a OperationId,
    pub instance: &'a InstanceId,
    /// Name of the worker: the lease holder.
    pub holder: &'a str,
    pub lease_ttl: Duration,
    pub target_generation: u64,
    /// The lease already held (a later attempt of the same delivery).
    pub held: Option<&'a Lease>,
    /// This worker's node, and whether to report a process instance placed elsewhere.
    pub node: &'a str,
    pub check_placement: bool,
    /// Allocate the instance's port from this pool.
    pub port: Option<PortRequest<'a>>,
}

/// A port to allocate while beginning a start.
pub struct PortRequest<'a> {
    /// Pool name: a node for processes, the engine for containers.
    pub pool: &'a str,
    pub range: (u16, u16),
    /// Ports something else on the host listens on.
    pub skip: &'a [u16],
}

/// The outcome of a port allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocated {
    Port(u16),
    /// The port the configuration names belongs to another instance.
    Taken,
    /// The pool has no free port.
    Exhausted,
}

/// What `begin` found.
#[derive(Debug)]
pub enum Begun {
    /// The operation expired or never existed.
    Gone,
    /// The operation has ended (a duplicate delivery).
    Final(OperationStatus),
    /// The instance no longer exists.
    NoInstance,
    /// A newer change made the job moot; the operation ended `superseded`.
    Superseded,
    /// The instance is a process on another node; `alive` says whether that node heartbeats.
    Foreign { node: String, alive: bool },
    /// Another worker holds the instance's lease.
    Busy,
    /// The lease this worker held is gone.
    LeaseLost,
    /// Go ahead: the operation is `running` under `lease`.
    Ready(Box<Ready>),
}

/// A begun attempt.
#[derive(Debug)]
pub struct Ready {
    pub lease: Lease,
    pub op: Operation,
    pub state: InstanceState,
    /// The port, when one was asked for.
    pub port: Option<Allocated>,
    /// Who holds the instance's ports (the server, `id/component`s), read with the port.
    pub port_owners: Option<Vec<String>>,
    /// The instance's secrets, sealed.
    pub secrets: super::secrets::Stored,
}

/// How an operation on an instance ends.
pub struct Finish<'a> {
    /// The operation with its final status, error and result.
    pub op: &'a Operation,
    /// The lease to release (and to fence the observed write with).
    pub lease: Option<&'a Lease>,
    /// What to record as observed, and why.
    pub observed: Option<(&'a ObservedRecord, Cause<'a>)>,
    /// Forget the instance's crash loop (its server came up).
    pub reset_crash_loop: bool,
}

/// Operation records.
pub struct Operations<'a> {
    pub(super) store: &'a Store,
}

impl Operations<'_> {
    fn ttl(&self) -> u64 {
        self.store.limits().operation_ttl.as_secs().max(1)
    }

    /// Submit an operation on an instance and its job, in one step (see `scripts::submit`).
    pub async fn submit(&self, s: &Submission<'_>) -> Result<Submitted, StoreError> {
        let k = self.store.keys();
        let id = s.instance;
        let mut inv = scripts::submit().prepare_invoke();
        inv.key(k.instance(id))
            .key(k.observed(id))
            .key(k.operation(s.op))
            .key(k.all_operations())
            .key(k.instance_operations(id))
            .key(k.crash_loop(id));
        inv.arg(self.ttl())
            .arg(s.op.as_str())
            .arg(s.kind.as_str())
            .arg(s.reason)
            .arg(s.correlation_id)
            .arg(rfc3339(s.created_at))
            .arg(s.max_attempts)
            .arg(if s.force { "1" } else { "0" })
            .arg(s.max_depth)
            .arg(Utc::now().timestamp())
            .arg(k.events())
            .arg(k.queue_prefix())
            .arg(s.expected_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(s.seen_generation.map(|g| g.to_string()).unwrap_or_default())
            .arg(if s.reset_crash_loop { "1" } else { "0" })
            .arg(s.schema_version)
            .arg(s.task_id)
            .arg(now())
            .arg(s.requested_by)
            .arg(id.as_str());
        let reply: Vec<String> = inv.invoke_async(&mut self.store.conn()).await?;
        let at = |i: usize| reply.get(i).map(String::as_str).unwrap_or_default();
        let number = |i: usize| at(i).parse::<u64>().unwrap_or_default();
        Ok(match at(0) {
            "ok" => Submitted::Done {
                queue: at(1).to_owned(),
                target_generation: number(2),
                previous: serde_json::from_value(serde_json::Value::from(at(3)))
                    .map_err(|e| StoreError::Protocol(format!("submit: desired state {}: {e}", at(3))))?,
            },
            "not_found" => Submitted::NotFound,
            "precondition" => Submitted::Precondition { current: number(1) },
            "stale" => Submitted::Stale { now: number(1) },
            "deleting" => Submitted::Deleting,
            "queue_full" => Submitted::QueueFull { queue: at(1).to_owned(), depth: number(2) },
            other => return Err(StoreError::Protocol(format!("submit answered {other:?}"))),
        })
    }

    /// Submit an operation on no instance and its job; `Some(depth)` when the queue is full.
    pub async fn submit_pass(&self, s: &PassSubmission<'_>) -> Result<Option<u64>, StoreError> {
        let k = self.store.keys();
        let q = k.queue(&s.op.queue);
        let mut inv = scripts::submit_pass().prepare_invoke();
        inv.key(k.operation(&s.op.id)).key(k.all_operations()).key(q.data()).key(q.scheduled()).key(q.active());
        inv.arg(self.ttl())
            .arg(to_json(&Spec::from(s.op)))
            .arg(s.op.id.as_str())
            .arg(s.max_depth)
            .arg(s.task_id)
            .arg(s.job)
            .arg(Utc::now().timestamp())
            .arg(k.events())
            .arg(&s.op.queue)
            .arg(q.meta_prefix());
        let reply: Vec<String> = inv.invoke_async(&mut self.store.conn()).await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(None),
            Some("queue_full") => Ok(Some(reply.get(1).and_then(|d| d.parse().ok()).unwrap_or(0))),
            other => Err(StoreError::Protocol(format!("submit_pass answered {other:?}"))),
        }
    }

    /// Begin (or resume) an attempt: see [`Begun`].
    pub async fn begin(&self, b: &Begin<'_>) -> Result<Begun, StoreError> {
        let (k, id) = (self.store.keys(), b.instance);
        let mut inv = scripts::begin().prepare_invoke();
        inv.key(k.operation(b.op))
            .key(k.instance(id))
            .key(k.config(id))
            .key(k.observed(id))
            .key(k.probe(id))
            .key(k.lease(id))
            .key(k.fence(id))
            .key(k.ports())
            .key(k.port_by_instance())
            .key(k.port_owners(id))
            .key(k.secrets(id));
        inv.arg(b.holder)
            .arg(b.lease_ttl.as_millis().max(1) as u64)
            .arg(now())
            .arg(b.target_generation)
            .arg(b.held.map(Lease::value).unwrap_or_default())
            .arg(b.node)
            .arg(k.node_prefix())
            .arg(self.ttl())
            .arg(k.events())
            .arg(b.op.as_str())
            .arg(if b.check_placement { "1" } else { "0" });
        match &b.port {
            Some(p) => inv.arg(p.pool).arg(p.range.0).arg(p.range.1).arg(id.as_str()).arg(p.skip),
            None => inv.arg("").arg(0).arg(0).arg(id.as_str()),
        };
        let reply: Vec<redis::Value> = inv.invoke_async(&mut self.store.conn()).await?;
        self.begun(b.op, b.instance, reply)
    }

    /// What a `begin` reply (of `begin`, or of `take` for one job) says.
    pub(super) fn begun(
        &self,
        op: &OperationId,
        instance: &InstanceId,
        reply: Vec<redis::Value>,
    ) -> Result<Begun, StoreError> {
        let text = |i: usize| -> Option<String> { reply.get(i).and_then(|v| redis::from_redis_value_ref(v).ok()) };
        let tag = text(0).unwrap_or_default();
        Ok(match tag.as_str() {
            "gone" => Begun::Gone,
            "final" => {
                Begun::Final(text(1).as_deref().and_then(OperationStatus::parse).unwrap_or(OperationStatus::Succeeded))
            }
            "no_instance" => Begun::NoInstance,
            "superseded" => Begun::Superseded,
            "foreign" => Begun::Foreign { node: text(1).unwrap_or_default(), alive: text(2).as_deref() == Some("1") },
            "busy" => Begun::Busy,
            "lease_lost" => Begun::LeaseLost,
            "ok" => Begun::Ready(Box::new(self.ready(op, instance, &reply)?)),
            other => return Err(StoreError::Protocol(format!("begin answered {other:?}"))),
        })
    }

    fn ready(
        &self,
        op_id: &OperationId,
        instance_id: &InstanceId,
        reply: &[redis::Value],
    ) -> Result<Ready, StoreError> {
        let k = self.store.keys();
        let at = |i: usize| reply.get(i).unwrap_or(&redis::Value::Nil);
        let protocol = |e: redis::ParsingError| StoreError::Protocol(format!("begin: {e}"));
        let lease_value: String = redis::from_redis_value_ref(at(1)).map_err(protocol)?;
        let port: String = redis::from_redis_value_ref(at(2)).map_err(protocol)?;
        let fields: HashMap<String, String> = redis::from_redis_value_ref(at(3)).map_err(protocol)?;
        let pair = |i: usize| -> Result<(Option<String>, Option<u64>), StoreError> {
            Ok((
                redis::from_redis_value_ref(at(i)).map_err(protocol)?,
                redis::from_redis_value_ref(at(i + 1)).map_err(protocol)?,
            ))
        };
        let instance: super::instances::RawInstance = redis::from_redis_value_ref(at(4)).map_err(protocol)?;
        let probe = (redis::from_redis_value_ref::<Option<String>>(at(9)).map_err(protocol)?, None);
        let state = super::instances::assemble(self.store, instance_id, &instance, [&pair(5)?, &pair(7)?, &probe])?
            .ok_or_else(|| StoreError::Protocol("begin: the instance vanished".into()))?;
        let key = k.operation(op_id);
        let op = parse(&key, &fields)?.ok_or_else(|| StoreError::Protocol("begin: the operation vanished".into()))?;
        let port = match port.as_str() {
            "" => None,
            "-1" => Some(Allocated::Taken),
            "0" => Some(Allocated::Exhausted),
            p => Some(p.parse().map(Allocated::Port).map_err(|_| StoreError::Protocol(format!("begin: port {p}")))?),
        };
        let port_owners = redis::from_redis_value_ref(at(10)).map_err(protocol)?;
        let secrets =
            super::secrets::parse(&k.secrets(instance_id), redis::from_redis_value_ref(at(11)).map_err(protocol)?);
        let lease = Lease::from_value(k.lease(instance_id), lease_value);
        Ok(Ready { lease, op, state, port, port_owners, secrets })
    }

    /// The instance and the arguments with which `ack` ends the operation as `f` says (the
    /// Lua `finish_op`).
    pub fn finish_args(&self, f: &Finish<'_>) -> Result<(InstanceId, Vec<String>), StoreError> {
        let (k, limits) = (self.store.keys(), self.store.limits());
        let Some(instance) = f.op.instance_id.as_ref() else {
            return Err(StoreError::Protocol("finish: an operation on no instance is settled, not finished".into()));
        };
        let (observed, status, cause) = match f.observed {
            Some((o, c)) => (to_json(o), o.status.as_str(), c),
            None => (String::new(), "", Cause { source: "", reason: "", by: "" }),
        };
        let args = vec![
            f.op.status.as_str().to_owned(),
            f.op.finished_at.map(rfc3339).unwrap_or_else(now),
            f.op.error.as_ref().map(to_json).unwrap_or_default(),
            if f.op.result.is_empty() { String::new() } else { to_json(&f.op.result) },
            self.ttl().to_string(),
            f.lease.map(Lease::value).unwrap_or_default().to_owned(),
            observed,
            status.to_owned(),
            instance.to_string(),
            now(),
            cause.source.to_owned(),
            cause.reason.to_owned(),
            limits.history_per_instance.to_string(),
            limits.history_global.to_string(),
            k.events(),
            f.op.id.to_string(),
            if f.reset_crash_loop { "1" } else { "0" }.to_owned(),
            cause.by.to_owned(),
        ];
        Ok((instance.clone(), args))
    }

    /// Move an operation from one of `from` to `to`, setting `fields` (`None` removes one).
    /// A final `to` tells waiters. Returns whether it moved.
    async fn transition(
        &self,
        id: &OperationId,
        from: &[OperationStatus],
        to: OperationStatus,
        fields: &[(&str, Option<String>)],
    ) -> Result<bool, StoreError> {
        let k = self.store.keys();
        let mut inv = scripts::transition().prepare_invoke();
        inv.key(k.operation(id));
        inv.arg(self.ttl())
            .arg(to.as_str())
            .arg(k.events())
            .arg(id.as_str())
            .arg(if to.is_final() { "1" } else { "0" })
            .arg(from.len());
        for s in from {
            inv.arg(s.as_str());
        }
        for (f, v) in fields {
            inv.arg(*f).arg(v.clone().unwrap_or_default());
        }
        let done: i32 = inv.invoke_async(&mut self.store.conn()).await?;
        Ok(done == 1)
    }

    /// A running attempt failed and will be retried: back to `queued`, with its error.
    pub async fn requeue(&self, id: &OperationId, error: &OperationError) -> Result<bool, StoreError> {
        let fields = [("error", Some(to_json(error)))];
        self.transition(id, &[OperationStatus::Running], OperationStatus::Queued, &fields).await
    }

    /// Cancel a queued operation. Returns whether it was still queued.
    pub async fn cancel(&self, id: &OperationId) -> Result<bool, StoreError> {
        let fields = [("finishedAt", Some(now()))];
        self.transition(id, &[OperationStatus::Queued], OperationStatus::Cancelled, &fields).await
    }

    /// End an operation that holds no lease (a global reconcile), unless it has ended.
    pub async fn settle(
        &self,
        id: &OperationId,
        status: OperationStatus,
        error: Option<&OperationError>,
    ) -> Result<bool, StoreError> {
        let fields = [("finishedAt", Some(now())), ("error", error.map(to_json))];
        self.transition(id, &[OperationStatus::Queued, OperationStatus::Running], status, &fields).await
    }

    /// Fail a queued operation that will never run (its node is lost).
    pub async fn fail_queued(&self, id: &OperationId, error: &OperationError) -> Result<bool, StoreError> {
        let fields = [("finishedAt", Some(now())), ("error", Some(to_json(error)))];
        self.transition(id, &[OperationStatus::Queued], OperationStatus::Failed, &fields).await
    }

    /// Read an operation.
    pub async fn get(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
        let key = self.store.keys().operation(id);
        let fields: HashMap<String, String> = self.store.conn().hgetall(&key).await?;
        parse(&key, &fields)
    }

    /// Newest first, after `cursor` (an operation id), at most `limit`; expired ids are skipped
    /// and dropped from the index. Each page is read in one pipelined round trip.
    pub async fn list(
        &self,
        instance: Option<&InstanceId>,
        cursor: Option<&OperationId>,
        limit: usize,
    ) -> Result<(Vec<Operation>, Option<OperationId>), StoreError> {
        let k = self.store.keys();
        let index = instance.map_or_else(|| k.all_operations(), |i| k.instance_operations(i));
        let mut max_bound = cursor.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let mut out = Vec::new();
        loop {
            let ids: Vec<String> =
                self.store.conn().zrevrangebylex_limit(&index, &max_bound, "-", 0, limit as isize).await?;
            let ids: Vec<OperationId> = ids.iter().filter_map(|raw| raw.parse().ok()).collect();
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.hgetall(k.operation(id));
            }
            let records: Vec<HashMap<String, String>> =
                if ids.is_empty() { Vec::new() } else { pipe.query_async(&mut self.store.conn()).await? };
            let mut expired = Vec::new();
            for (id, fields) in ids.iter().zip(&records) {
                max_bound = format!("({id}");
                match parse(&k.operation(id), fields)? {
                    Some(op) => out.push(op),
                    None => expired.push(id.as_str().to_owned()),
                }
                if out.len() == limit {
                    self.forget(&index, &expired).await?;
                    return Ok((out, Some(id.clone())));
                }
            }
            self.forget(&index, &expired).await?;
            if ids.len() < limit {
                return Ok((out, None));
            }
        }
    }

    async fn forget(&self, index: &str, ids: &[String]) -> Result<(), StoreError> {
        if !ids.is_empty() {
            let _: () = self.store.conn().zrem(index, ids).await?;
        }
        Ok(())
    }

    /// Is an operation of the instance other than a reconcile still queued or running?
    pub async fn has_pending(&self, id: &InstanceId) -> Result<bool, StoreError> {
        let (latest, _) = self.list(Some(id), None, 5).await?;
        Ok(latest.iter().any(|o| o.kind != OperationKind::Reconcile && !o.status.is_final()))
    }
}
