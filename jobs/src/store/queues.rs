//! The apalis-redis queues as Redis holds them: pushing a job (laid out as apalis' own push
//! lays it out, plus a wake-up), how deep a queue is, and sweeping what apalis keeps forever.
//!
//! apalis-redis 1.0 keeps per queue `q` (with `lock_tasks(false)`, as draas runs it):
//! `q:scheduled` (ZSET by run-at seconds; every push lands here, so a due member is waiting),
//! `q:active` (LIST of ids ready to fetch: waiting), `q:inflight:<worker>` (SET per worker of
//! ids fetched and not yet acknowledged: running), `q:workers` (ZSET of worker names),
//! `q:done` and `q:dead` (SETs of finished tasks; dead = apalis gave up, e.g. a panic or a
//! state store failure on every delivery). Its own `ListQueues` and `Metrics` answer errors
//! or zeros, so the figures are read here. draas' own outcome of a job is its operation
//! record; these are the transport's figures.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Store, StoreError, scripts};

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

/// The unfinished tasks of some queues, read at one instant: what workers of those queues
/// still have to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Due and not yet fetched.
    pub waiting: u64,
    /// To run later (a retry backing off).
    pub scheduled: u64,
    /// Fetched by a worker and not yet acknowledged.
    pub running: u64,
}

impl Backlog {
    /// Every unfinished task: none of them finishes without a worker.
    pub fn pending(&self) -> u64 {
        self.waiting + self.scheduled + self.running
    }
}

/// What became of a cron tick's global reconcile pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Queued: the shared queue holds work (a worker is awake for it anyway).
    Busy,
    /// Queued: an instance is desired running and is watched every tick.
    Watch,
    /// Not queued: nothing for a worker to do.
    Idle,
    /// Not queued: a pass still waits and serves this tick too.
    Coalesced,
    /// Not queued here: another producer decided this tick (or a later one).
    Decided,
}

/// Most finished tasks one sweep call forgets per set.
const SWEEP_BATCH: u64 = 1000;

/// The queues.
pub struct Queues<'a> {
    pub(super) store: &'a Store,
}

impl Queues<'_> {
    /// Push `job` (JSON) as task `task_id` into queue `name` and wake its workers. A task id
    /// that exists is ignored: pushing the same job twice is harmless. Returns whether it was
    /// new.
    pub async fn push(&self, name: &str, task_id: &str, job: &str) -> Result<bool, StoreError> {
        let (k, q) = (self.store.keys(), self.store.keys().queue(name));
        let pushed: i32 = scripts::push()
            .key(q.data())
            .key(q.scheduled())
            .key(q.active())
            .arg(task_id)
            .arg(job)
            .arg(chrono::Utc::now().timestamp())
            .arg(q.meta_prefix())
            .arg(k.events())
            .arg(name)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(pushed == 1)
    }

    /// The unfinished tasks of queues `names` together, read in one step (so each task is
    /// counted once, wherever apalis moves it meanwhile).
    pub async fn backlog(&self, names: &[&str]) -> Result<Backlog, StoreError> {
        let mut script = scripts::backlog().prepare_invoke();
        script.arg(chrono::Utc::now().timestamp());
        for q in names.iter().map(|n| self.store.keys().queue(n)) {
            outstanding_args(&mut script, &q);
        }
        let counts: Vec<u64> = script.invoke_async(&mut self.store.conn()).await?;
        Ok(counts.chunks(3).fold(Backlog::default(), |b, c| Backlog {
            waiting: b.waiting + c.first().copied().unwrap_or_default(),
            scheduled: b.scheduled + c.get(1).copied().unwrap_or_default(),
            running: b.running + c.get(2).copied().unwrap_or_default(),
        }))
    }

    /// Queue a cron tick's global pass `job` (task `task_id`) into queue `name` if a worker
    /// has something to do and no pass waits already, deciding each tick once across every
    /// producer (the rules: `store::scripts::tick`). `shared` is the queue whose work keeps
    /// workers awake.
    pub async fn tick(
        &self,
        name: &str,
        shared: &str,
        tick: u64,
        task_id: &str,
        job: &str,
    ) -> Result<Tick, StoreError> {
        let k = self.store.keys();
        let q = k.queue(name);
        let mut script = scripts::tick().prepare_invoke();
        script
            .key(k.reconcile_tick())
            .key(q.data())
            .key(q.scheduled())
            .key(q.active())
            .key(k.instances())
            .arg(tick)
            .arg(task_id)
            .arg(job)
            .arg(chrono::Utc::now().timestamp())
            .arg(q.meta_prefix())
            .arg(k.events())
            .arg(name);
        outstanding_args(&mut script, &k.queue(shared));
        script.arg(k.instance_prefix());
        let outcome: String = script.invoke_async(&mut self.store.conn()).await?;
        match outcome.as_str() {
            "busy" => Ok(Tick::Busy),
            "watch" => Ok(Tick::Watch),
            "idle" => Ok(Tick::Idle),
            "coalesced" => Ok(Tick::Coalesced),
            "decided" => Ok(Tick::Decided),
            other => Err(StoreError::Protocol(format!("tick: unexpected reply {other}"))),
        }
    }

    /// Jobs waiting in queue `name` (due and scheduled).
    pub async fn depth(&self, name: &str) -> Result<u64, StoreError> {
        let q = self.store.keys().queue(name);
        let (active, scheduled): (u64, u64) =
            redis::pipe().llen(q.active()).zcard(q.scheduled()).query_async(&mut self.store.conn()).await?;
        Ok(active + scheduled)
    }

    /// The depth of every queue of `names`, in two pipelined round trips.
    pub async fn depths(&self, names: &[String]) -> Result<Vec<QueueDepth>, StoreError> {
        let k = self.store.keys();
        let now = chrono::Utc::now().timestamp();
        let mut pipe = redis::pipe();
        for q in names.iter().map(|n| k.queue(n)) {
            pipe.llen(q.active())
                .zcount(q.scheduled(), "-inf", now)
                .zcount(q.scheduled(), format!("({now}"), "+inf")
                .scard(q.done())
                .scard(q.dead())
                .zrange(q.workers(), 0, -1);
        }
        let rows: Vec<(u64, u64, u64, u64, u64, Vec<String>)> =
            if names.is_empty() { Vec::new() } else { pipe.query_async(&mut self.store.conn()).await? };
        let mut inflight = redis::pipe();
        let mut workers = 0;
        for (name, row) in names.iter().zip(&rows) {
            for worker in &row.5 {
                inflight.scard(k.queue(name).inflight(worker));
                workers += 1;
            }
        }
        let counts: Vec<u64> =
            if workers == 0 { Vec::new() } else { inflight.query_async(&mut self.store.conn()).await? };
        let mut counts = counts.into_iter();
        Ok(names
            .iter()
            .zip(rows)
            .map(|(name, (ready, due, later, done, dead, workers))| QueueDepth {
                key: k.queue(name).name().to_owned(),
                name: name.clone(),
                waiting: ready + due,
                active: counts.by_ref().take(workers.len()).sum(),
                scheduled: later,
                done,
                failed: dead,
            })
            .collect())
    }

    /// Forget finished tasks of `names` older than `retention` (apalis-redis keeps them
    /// forever, apalis-redis#10), and expired ids in the global operation index. Returns how
    /// many entries went.
    pub async fn sweep(&self, names: &[String], retention: Duration) -> Result<u64, StoreError> {
        let k = self.store.keys();
        let cutoff = chrono::Utc::now().timestamp() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let mut removed = 0;
        for q in names.iter().map(|n| k.queue(n)) {
            let n: u64 = scripts::vacuum()
                .key(q.data())
                .key(q.done())
                .key(q.dead())
                .arg(q.meta_prefix())
                .arg(cutoff)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut self.store.conn())
                .await?;
            removed += n;
        }
        let n: u64 = scripts::trim()
            .key(k.all_operations())
            .arg(k.operation_prefix())
            .arg(SWEEP_BATCH)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(removed + n)
    }

    /// How many tasks of queue `name` finished (`q:done`); tests and benches count these.
    pub async fn done(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.store.conn().scard(self.store.keys().queue(name).done()).await?)
    }
}

/// The arguments of `outstanding` for queue `q`: its scheduled set, ready list, workers set
/// and in-flight prefix.
fn outstanding_args(script: &mut redis::ScriptInvocation<'_>, q: &super::keys::QueueKeys) {
    let inflight = q.inflight("");
    script.arg(q.scheduled()).arg(q.active()).arg(q.workers()).arg(inflight.trim_end_matches(':'));
}
