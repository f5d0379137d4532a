//! The Redis key schema, in one place.
//!
//! Every key starts with `{<prefix>}`: the braces are a Redis Cluster hash tag, so all of a
//! deployment's keys live in one slot and multi-key transactions (MULTI/EXEC, Lua) stay legal
//! on a cluster. draas' state is small; one slot holds it comfortably.

use crate::domain::ids::{InstanceId, OperationId};

/// Builds the keys of one deployment (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

impl Keys {
    /// Keys under `prefix` (checked by `Settings`).
    pub fn new(prefix: &str) -> Self {
        Self { tag: format!("{{{prefix}}}") }
    }

    /// The hash-tagged prefix, e.g. `{draas}`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// HASH `data`, `version`: the desired side of an instance.
    pub fn instance(&self, id: &InstanceId) -> String {
        format!("{}{id}", self.instance_prefix())
    }

    /// HASH `data`, `version`: an instance's drasi-server configuration.
    pub fn config(&self, id: &InstanceId) -> String {
        format!("{}:config:{id}", self.tag)
    }

    /// HASH secret name → sealed value (JSON of [`crate::vault::Sealed`]), and `#rev`: a
    /// counter every set and removal bumps (part of the spec hash, so a changed secret is
    /// drift). The instance's secrets.
    pub fn secrets(&self, id: &InstanceId) -> String {
        format!("{}:secrets:{id}", self.tag)
    }

    /// HASH `data`, `version`: what workers last observed.
    pub fn observed(&self, id: &InstanceId) -> String {
        format!("{}:observed:{id}", self.tag)
    }

    /// LIST (JSON, newest first, capped): an instance's status transitions.
    pub fn history(&self, id: &InstanceId) -> String {
        format!("{}:history:{id}", self.tag)
    }

    /// STREAM (capped): every status transition, for recent-changes and SSE.
    pub fn changes(&self) -> String {
        format!("{}:changes", self.tag)
    }

    /// HASH failures, next_at_ms, gave_up: an instance's crash-loop record.
    pub fn crash_loop(&self, id: &InstanceId) -> String {
        format!("{}:crashloop:{id}", self.tag)
    }

    /// STRING with a short expiry: a worker claimed the platform's report that the instance's
    /// server died (every worker sees the event; one acts on it).
    pub fn exit_seen(&self, id: &InstanceId) -> String {
        format!("{}:exit:{id}", self.tag)
    }

    /// HASH `data` (JSON): the last health probe of an instance.
    pub fn probe(&self, id: &InstanceId) -> String {
        format!("{}:probe:{id}", self.tag)
    }

    /// STRING counter (expiring): how many times a reconcile pass ran for a tick and scope.
    pub fn reconcile_pass(&self, task_id: &str) -> String {
        format!("{}:reconcile:pass:{task_id}", self.tag)
    }

    /// STRING with an expiry: a reconcile pass in progress for a scope (global or a node).
    pub fn reconcile_lock(&self, scope: &str) -> String {
        format!("{}:reconcile:lock:{scope}", self.tag)
    }

    /// STREAM of `l` (a line of the server's output) and `c` (where the shipper read it): the
    /// last lines of an instance's drasi-server, shipped by a worker.
    pub fn logs(&self, id: &InstanceId) -> String {
        format!("{}:logs:{id}", self.tag)
    }

    /// STRING with an expiry: the worker shipping an instance's logs.
    pub fn log_shipper(&self, id: &InstanceId) -> String {
        format!("{}:logs:shipper:{id}", self.tag)
    }

    /// STRING: the last cron tick whose global reconcile pass was decided (queued or not), so
    /// every producer decides each tick once.
    pub fn reconcile_tick(&self) -> String {
        format!("{}:reconcile:tick", self.tag)
    }

    /// STRING with an expiry: the last maintenance sweep's claim (one sweep per period).
    pub fn maintenance(&self) -> String {
        format!("{}:reconcile:maintenance", self.tag)
    }

    /// Prefix of the instance hashes (`<prefix><id>`), for scripts that walk them.
    pub fn instance_prefix(&self) -> String {
        format!("{}:instance:", self.tag)
    }

    /// Prefix of the sets of instance ids each token created (`<prefix><token name>`).
    pub fn owned_prefix(&self) -> String {
        format!("{}:owned:", self.tag)
    }

    /// SET of the ids of the instances a token created that still exist (its instance quota).
    pub fn owned(&self, token: &str) -> String {
        format!("{}{token}", self.owned_prefix())
    }

    /// STRING counter expiring after its minute: operations a token submitted in a minute
    /// (`unix seconds / 60`).
    pub fn ops_window(&self, token: &str, minute: i64) -> String {
        format!("{}:rate:{token}:{minute}", self.tag)
    }

    /// ZSET stream id → expiry (unix ms): the streams a token holds on every API replica,
    /// each renewed while it runs (a crashed replica's lapse).
    pub fn streams_of(&self, token: &str) -> String {
        format!("{}:streams:{token}", self.tag)
    }

    /// HASH name → id: the unique-name index.
    pub fn names(&self) -> String {
        format!("{}:names", self.tag)
    }

    /// ZSET (score 0) of instance ids: lexical order = creation order (ids are ULIDs).
    pub fn instances(&self) -> String {
        format!("{}:instances", self.tag)
    }

    /// ZSET (score 0) of every operation id: lexical order = creation order (ULIDs).
    pub fn all_operations(&self) -> String {
        format!("{}:ops", self.tag)
    }

    /// STRING: the lease on an instance (`<fence>:<holder>`), with an expiry.
    pub fn lease(&self, id: &InstanceId) -> String {
        format!("{}:lease:{id}", self.tag)
    }

    /// STRING counter: the fencing token of an instance's leases.
    pub fn fence(&self, id: &InstanceId) -> String {
        format!("{}:fence:{id}", self.tag)
    }

    /// HASH `<node>|<port>` → instance id: allocated ports.
    pub fn ports(&self) -> String {
        format!("{}:ports", self.tag)
    }

    /// HASH owner (an instance id, or `<id>/<component>`) → `<node>|<port>`.
    pub fn port_by_instance(&self) -> String {
        format!("{}:port-by-instance", self.tag)
    }

    /// SET of the port owners of an instance besides itself (its listening components).
    pub fn port_owners(&self, id: &InstanceId) -> String {
        format!("{}:port-owners:{id}", self.tag)
    }

    /// STRING (JSON) with an expiry: a live node's heartbeat.
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.tag)
    }

    /// STRING: this deployment's id, made once by whoever asks first (see
    /// [`super::Store::deployment_id`]).
    pub fn deployment(&self) -> String {
        format!("{}:deployment", self.tag)
    }

    /// SET of node ids ever seen.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.tag)
    }

    /// Hash `platform|status` → instance count, written by each global reconcile pass.
    pub fn instance_counts(&self) -> String {
        format!("{}:stats:instances", self.tag)
    }

    /// HASH (data, status): an operation record.
    pub fn operation(&self, id: &OperationId) -> String {
        format!("{}:op:{id}", self.tag)
    }

    /// ZSET (score 0) of an instance's operation ids.
    pub fn instance_operations(&self, id: &InstanceId) -> String {
        format!("{}:ops:{id}", self.tag)
    }

    /// Prefix of every operation hash (`<prefix><operation id>`).
    pub fn operation_prefix(&self) -> String {
        format!("{}:op:", self.tag)
    }

    /// Prefix of every node heartbeat key (`<prefix><node id>`).
    pub fn node_prefix(&self) -> String {
        format!("{}:node:", self.tag)
    }

    /// HASH scope → JSON: the plugin catalogs workers publish.
    pub fn plugins(&self) -> String {
        format!("{}:plugins", self.tag)
    }

    /// Pub/sub channel of the deployment's notifications (not a key): job pushes, ended
    /// operations, generation bumps and released leases.
    pub fn events(&self) -> String {
        format!("{}:events", self.tag)
    }

    /// Prefix of every queue's name (`<prefix><short name>`), for the script that chooses one.
    pub fn queue_prefix(&self) -> String {
        format!("{}:q:", self.tag)
    }

    /// The keys of apalis-redis queue `name`, e.g. `{draas}:q:shared`.
    pub fn queue(&self, name: &str) -> QueueKeys {
        QueueKeys { config: apalis_redis::Config::default().queue(format!("{}{name}", self.queue_prefix())) }
    }
}

/// The keys apalis-redis keeps for one queue, named by apalis' own `Config` (so an upgrade that
/// renames them is followed here).
#[derive(Debug, Clone)]
pub struct QueueKeys {
    config: apalis_redis::Config,
}

impl QueueKeys {
    /// The queue's full name, as apalis' `Config::queue` is given it.
    pub fn name(&self) -> &str {
        self.config.queue.as_ref()
    }

    /// HASH task id → encoded job.
    pub fn data(&self) -> String {
        self.config.job_data_hash()
    }

    /// Prefix of the per-task HASHes (`<prefix>:<task id>`): attempts, status, result.
    pub fn meta_prefix(&self) -> String {
        self.config.job_meta_hash()
    }

    /// ZSET task id by run-at (unix seconds): every push lands here first.
    pub fn scheduled(&self) -> String {
        self.config.scheduled_jobs_set()
    }

    /// LIST of task ids ready to fetch.
    pub fn active(&self) -> String {
        self.config.active_jobs_list()
    }

    /// ZSET of worker names by last heartbeat.
    pub fn workers(&self) -> String {
        self.config.workers_set()
    }

    /// SET of the task ids a worker fetched and has not acknowledged.
    pub fn inflight(&self, worker: &str) -> String {
        format!("{}:{worker}", self.inflight_prefix())
    }

    /// Prefix of the in-flight SETs (`<prefix>:<worker>`).
    pub fn inflight_prefix(&self) -> String {
        self.config.inflight_jobs_set()
    }

    /// SET of finished tasks.
    pub fn done(&self) -> String {
        self.config.done_jobs_set()
    }

    /// SET of tasks apalis gave up on.
    pub fn dead(&self) -> String {
        self.config.dead_jobs_set()
    }
}
