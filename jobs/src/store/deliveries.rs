//! The lifecycle queues as draas' apalis workers take from them: apalis-redis' own key layout
//! (so depths, backlogs, the sweep and apalis' producers see the same queues), with the
//! operation's first step folded into the fetch and its last into the acknowledgement:
//! `take` is apalis' fetch plus `begin` of each job, `ack` is apalis' acknowledgement plus
//! `finish`. A job then costs the worker no round trip of its own beyond apalis' two (and
//! those two are shared by a batch). The worker-side glue is `queue::backend`.

use std::time::Duration;

use chrono::Utc;

use super::instances::now;
use super::operations::Begun;
use super::{Store, StoreError, scripts};
use crate::domain::ids::{InstanceId, OperationId};
use crate::queue::{InstanceJob, SCHEMA_VERSION};

/// What `begin` needs beyond the job, the same for every job a worker takes.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The draas worker's name: the lease holder.
    pub name: String,
    /// Its node.
    pub node: String,
    pub lease_ttl: Duration,
}

/// One job taken.
#[derive(Debug)]
pub struct Taken {
    pub task_id: String,
    /// The job (`None`: it does not decode).
    pub job: Option<InstanceJob>,
    /// Deliveries so far (apalis' count).
    pub attempts: u32,
    /// What beginning its operation found (`None`: not begun, the worker begins it: a kind
    /// that needs a port, or a job this version cannot read).
    pub begun: Option<Begun>,
}

/// One job to acknowledge.
#[derive(Debug, Clone)]
pub struct Ack {
    pub task_id: String,
    /// apalis' status of the delivery (`Done`, `Failed`, …).
    pub status: String,
    pub attempt: usize,
    /// apalis' result JSON.
    pub result: String,
    /// The operation to end, its instance and the arguments of `finish` (see
    /// `Operations::finish_args`).
    pub finish: Option<(OperationId, InstanceId, Vec<String>)>,
}

/// One job given back: its task id and, when `take` began it, its operation, instance and
/// lease value.
#[derive(Debug, Clone)]
pub struct GiveBack {
    pub task_id: String,
    pub begun: Option<(OperationId, InstanceId, String)>,
}

/// The lifecycle queues.
pub struct Deliveries<'a> {
    pub(super) store: &'a Store,
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or_default()
}

impl Deliveries<'_> {
    /// Register apalis worker `worker` on `queue`, putting back what a dead one of that name
    /// left in flight; refused while one of that name heartbeated within `threshold`.
    pub async fn register(&self, queue: &str, worker: &str, threshold: Duration) -> Result<u64, StoreError> {
        let q = self.store.keys().queue(queue);
        let back: u64 = scripts::register_worker()
            .key(q.workers())
            .key(q.active())
            .key(q.inflight(worker))
            .arg(unix_now())
            .arg(worker)
            .arg(threshold.as_secs())
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(back)
    }

    /// Heartbeat of apalis worker `worker`, handing the jobs of workers silent for `orphaned`
    /// back to the ready list; how many it handed back.
    pub async fn heartbeat(&self, queue: &str, worker: &str, orphaned: Duration) -> Result<u64, StoreError> {
        let q = self.store.keys().queue(queue);
        let now = unix_now();
        let moved: u64 = scripts::heartbeat()
            .key(q.workers())
            .key(q.active())
            .arg(now)
            .arg(worker)
            .arg(now.saturating_sub(orphaned.as_secs()))
            .arg(q.inflight_prefix())
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(moved)
    }

    /// Forget apalis worker `worker` (it stopped).
    pub async fn unregister(&self, queue: &str, worker: &str) -> Result<(), StoreError> {
        let q = self.store.keys().queue(queue);
        let _: u64 = redis::cmd("ZREM").arg(q.workers()).arg(worker).query_async(&mut self.store.conn()).await?;
        Ok(())
    }

    /// Take up to `n` jobs of `queue` for apalis worker `worker`, beginning their operations
    /// for `holder` (see `scripts::take`).
    pub async fn take(&self, queue: &str, worker: &str, n: usize, holder: &Holder) -> Result<Vec<Taken>, StoreError> {
        let (k, q) = (self.store.keys(), self.store.keys().queue(queue));
        let ttl = self.store.limits().operation_ttl.as_secs().max(1);
        let reply: Vec<redis::Value> = scripts::take()
            .key(q.workers())
            .key(q.active())
            .key(q.inflight(worker))
            .key(q.data())
            .key(q.scheduled())
            .arg(unix_now())
            .arg(n.max(1))
            .arg(worker)
            .arg(q.meta_prefix())
            .arg(k.tag())
            .arg(SCHEMA_VERSION)
            .arg(&holder.name)
            .arg(holder.lease_ttl.as_millis().max(1) as u64)
            .arg(now())
            .arg(&holder.node)
            .arg(k.node_prefix())
            .arg(ttl)
            .arg(k.events())
            .invoke_async(&mut self.store.conn())
            .await?;
        reply.into_iter().map(|one| self.taken(one)).collect()
    }

    fn taken(&self, one: redis::Value) -> Result<Taken, StoreError> {
        let protocol = |e: redis::ParsingError| StoreError::Protocol(format!("take: {e}"));
        let (task_id, job, attempts, begun): (String, String, String, redis::Value) =
            redis::from_redis_value(one).map_err(protocol)?;
        let job: Option<InstanceJob> = serde_json::from_str(&job).ok();
        let begun = match (begun, &job) {
            (redis::Value::Nil, _) => None,
            (reply, Some(job)) => {
                let reply: Vec<redis::Value> = redis::from_redis_value(reply).map_err(protocol)?;
                Some(self.store.operations().begun(&job.operation_id, &job.instance_id, reply)?)
            }
            (_, None) => return Err(StoreError::Protocol("take: a job begun that does not decode".into())),
        };
        Ok(Taken { task_id, job, attempts: attempts.parse().unwrap_or_default(), begun })
    }

    /// Acknowledge jobs apalis worker `worker` ran, ending the operations it ended (see
    /// `scripts::ack`); how many were still its own.
    pub async fn ack(&self, queue: &str, worker: &str, acks: &[Ack]) -> Result<u64, StoreError> {
        if acks.is_empty() {
            return Ok(0);
        }
        let (k, q) = (self.store.keys(), self.store.keys().queue(queue));
        let mut inv = scripts::ack().prepare_invoke();
        inv.key(q.inflight(worker)).key(q.done()).key(q.dead()).key(q.scheduled());
        inv.arg(q.meta_prefix()).arg(unix_now()).arg(k.tag());
        for a in acks {
            inv.arg(&a.task_id).arg(&a.status).arg(a.attempt).arg(&a.result);
            match &a.finish {
                Some((op, instance, args)) => {
                    inv.arg(op.as_str()).arg(instance.as_str()).arg(args.len());
                    for arg in args {
                        inv.arg(arg);
                    }
                }
                None => {
                    inv.arg("").arg("").arg(0);
                }
            }
        }
        Ok(inv.invoke_async(&mut self.store.conn()).await?)
    }

    /// Give back jobs apalis worker `worker` took but will not run (see `scripts::give_back`).
    pub async fn give_back(&self, queue: &str, worker: &str, jobs: &[GiveBack]) -> Result<u64, StoreError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let (k, q) = (self.store.keys(), self.store.keys().queue(queue));
        let mut inv = scripts::give_back().prepare_invoke();
        inv.key(q.inflight(worker)).key(q.active()).arg(k.tag()).arg(k.events());
        for j in jobs {
            match &j.begun {
                Some((op, instance, lease)) => inv.arg(&j.task_id).arg(op.as_str()).arg(instance.as_str()).arg(lease),
                None => inv.arg(&j.task_id).arg("").arg("").arg(""),
            };
        }
        Ok(inv.invoke_async(&mut self.store.conn()).await?)
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::ids::{InstanceId, OperationId};
    use crate::store::Keys;

    /// `scripts::instance_keys` names keys in Lua: they must be the keys `Keys` names.
    #[test]
    fn the_scripts_name_keys_as_keys_does() {
        let k = Keys::new("draas");
        let (id, op): (InstanceId, OperationId) = ("inst-1".parse().unwrap(), OperationId::generate());
        let t = k.tag();
        assert_eq!(k.operation(&op), format!("{t}:op:{op}"));
        assert_eq!(k.instance(&id), format!("{t}:instance:{id}"));
        for (key, kind) in [
            (k.config(&id), "config"),
            (k.observed(&id), "observed"),
            (k.probe(&id), "probe"),
            (k.lease(&id), "lease"),
            (k.fence(&id), "fence"),
            (k.port_owners(&id), "port-owners"),
            (k.secrets(&id), "secrets"),
            (k.history(&id), "history"),
            (k.crash_loop(&id), "crashloop"),
        ] {
            assert_eq!(key, format!("{t}:{kind}:{id}"));
        }
        assert_eq!(k.ports(), format!("{t}:ports"));
        assert_eq!(k.port_by_instance(), format!("{t}:port-by-instance"));
        assert_eq!(k.changes(), format!("{t}:changes"));
        let q = k.queue("shared");
        assert_eq!(q.inflight("w"), format!("{}:w", q.inflight_prefix()));
    }
}
