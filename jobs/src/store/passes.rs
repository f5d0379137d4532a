//! What reconcile passes keep: how often a tick's pass ran (to show each tick runs once),
//! claims on a platform's report that a server died (every worker sees it; one acts) and on
//! the periodic maintenance sweep, and the
//! count of instances by platform and status that every replica's `/metrics` shows.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncCommands;

use super::{Store, StoreError};
use crate::domain::ids::InstanceId;

/// How long a tick's pass counter is kept.
const COUNTER_TTL_SECS: i64 = 3600;

/// Reconcile bookkeeping.
pub struct Passes<'a> {
    pub(super) store: &'a Store,
}

impl Passes<'_> {
    /// Count one run of the pass of `task_id` (tests read it to prove a tick ran once).
    pub async fn count_run(&self, task_id: &str) -> Result<(), StoreError> {
        let key = self.store.keys().reconcile_pass(task_id);
        let _: () = redis::pipe()
            .incr(&key, 1)
            .ignore()
            .expire(&key, COUNTER_TTL_SECS)
            .ignore()
            .query_async(&mut self.store.conn())
            .await?;
        Ok(())
    }

    /// Claim the report that `id`'s server died for `holder`, for `ttl`; false when another
    /// worker claimed it first.
    pub async fn claim_exit(&self, id: &InstanceId, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.claim(&self.store.keys().exit_seen(id), holder, ttl).await
    }

    /// Claim the maintenance sweep for `every`: true at most once per `every` across all
    /// workers. Time-based, not tick-based: global passes are queued only while there is
    /// work, so a tick at a fixed boundary may never get one.
    pub async fn claim_maintenance(&self, holder: &str, every: Duration) -> Result<bool, StoreError> {
        self.claim(&self.store.keys().maintenance(), holder, every).await
    }

    async fn claim(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.store.conn())
            .await?;
        Ok(taken.is_some())
    }

    /// Replace the instance counts (`platform|status` → n).
    pub async fn write_counts(&self, counts: &BTreeMap<String, u64>) -> Result<(), StoreError> {
        let key = self.store.keys().instance_counts();
        let mut pipe = redis::pipe();
        pipe.atomic().del(&key).ignore();
        for (field, n) in counts {
            pipe.hset(&key, field, n).ignore();
        }
        let _: () = pipe.query_async(&mut self.store.conn()).await?;
        Ok(())
    }

    /// The instance counts the last global pass wrote.
    pub async fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(self.store.conn().hgetall(self.store.keys().instance_counts()).await?)
    }
}
