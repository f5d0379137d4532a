//! Per-instance leases with fencing tokens: at most one worker acts on an instance at a time.
//!
//! A lease is the key `{p}:lease:<id>` holding `<fence>:<holder>` with an expiry, taken by the
//! `begin` script; the fence comes from a counter that only grows, so a worker that lost its
//! lease (paused past the expiry) can tell, and its late writes are refused (the observed
//! writes are fenced on the lease value). Passes take plain locks (no fence) the same way.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Store, StoreError, scripts};
use crate::domain::ids::InstanceId;

/// A held lease or lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    key: String,
    value: String,
    /// Fencing token: higher than any lease on this instance before it (0 for locks).
    pub fence: u64,
}

impl Lease {
    /// A lease as `begin` took it: `<fence>:<holder>` under `key`.
    pub(crate) fn from_value(key: String, value: String) -> Self {
        let fence = value.split_once(':').and_then(|(f, _)| f.parse().ok()).unwrap_or(0);
        Self { key, value, fence }
    }

    /// The value that proves the lease is ours (`<fence>:<holder>`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Leases and locks.
pub struct Leases<'a> {
    pub(super) store: &'a Store,
}

impl Leases<'_> {
    /// Take the lock of a reconcile scope (`global` or a node) as `holder` for `ttl`, unless
    /// someone holds it; renewed and released like a lease.
    pub async fn try_lock_pass(&self, scope: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        self.try_lock(self.store.keys().reconcile_lock(scope), holder, ttl).await
    }

    /// Take the lock of shipping an instance's logs as `holder` for `ttl`, unless someone holds
    /// it; renewed and released like a lease.
    pub async fn try_lock_logs(
        &self,
        id: &InstanceId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        self.try_lock(self.store.keys().log_shipper(id), holder, ttl).await
    }

    async fn try_lock(&self, key: String, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.store.conn())
            .await?;
        Ok(taken.map(|_| Lease { key, value: holder.to_owned(), fence: 0 }))
    }

    /// Who holds the lock of a reconcile scope.
    pub async fn pass_holder(&self, scope: &str) -> Result<Option<String>, StoreError> {
        Ok(self.store.conn().get(self.store.keys().reconcile_lock(scope)).await?)
    }

    /// Extend a held lease; false when it was lost.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        self.keep(lease, ttl.as_millis().max(1) as u64, "").await
    }

    /// Give a lease back (no-op when it was lost); a worker waiting for it is told.
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        let message = lease.key.rsplit_once(":lease:").map(|(_, id)| format!("l|{id}")).unwrap_or_default();
        self.keep(lease, 0, &message).await.map(|_| ())
    }

    async fn keep(&self, lease: &Lease, ttl_ms: u64, message: &str) -> Result<bool, StoreError> {
        let ok: i32 = scripts::keep()
            .key(&lease.key)
            .arg(&lease.value)
            .arg(ttl_ms)
            .arg(self.store.keys().events())
            .arg(message)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(ok == 1)
    }

    /// Is any lease held on `id`?
    pub async fn is_held(&self, id: &InstanceId) -> Result<bool, StoreError> {
        Ok(self.store.conn().exists(self.store.keys().lease(id)).await?)
    }

    /// Which of `ids` have a lease held (one pipelined round trip).
    pub async fn held(&self, ids: &[&InstanceId]) -> Result<Vec<bool>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.exists(self.store.keys().lease(id));
        }
        Ok(pipe.query_async(&mut self.store.conn()).await?)
    }
}
