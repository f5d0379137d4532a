//! Per-instance leases with fencing tokens: at most one worker acts on an instance at a time.
//!
//! A lease is `SET key "<fence>:<holder>" NX PX ttl`; the fence comes from a counter that only
//! grows, so a worker that lost its lease (paused past the expiry) can tell, and its late
//! writes are refused (`Store::observe` with the lease).

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::ids::InstanceId;
use crate::store::{Keys, StoreError};

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    key: String,
    value: String,
    /// Fencing token: higher than any lease on this instance before it.
    pub fence: u64,
}

/// KEYS: lease, fence. ARGV: holder, ttl ms. Replies the fence, or 0 when the lease is held.
static ACQUIRE_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence .. ':' .. ARGV[1], 'PX', ARGV[2])
return fence
";

/// KEYS: lease. ARGV: value, ttl ms (0 = release).
static KEEP_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
const KEEP: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

impl Lease {
    /// The lease's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The value that proves the lease is ours (`<fence>:<holder>`).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// Leases on instances.
#[derive(Clone)]
pub struct Leases {
    conn: ConnectionManager,
    keys: Keys,
}

impl Leases {
    /// Leases under `keys`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Take the lease on `id` for `ttl`, unless someone holds it.
    pub async fn try_acquire(&self, id: &InstanceId, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let key = self.keys.lease(id);
        let fence: u64 = crate::store::scripts::cached(&ACQUIRE_SCRIPT, ACQUIRE)
            .key(&key)
            .key(self.keys.fence(id))
            .arg(holder)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok((fence > 0).then(|| Lease { key, value: format!("{fence}:{holder}"), fence }))
    }

    /// Take a lock on any key (no fencing: `fence` is 0), held as `holder` for `ttl`; renewed
    /// and released like an instance lease.
    pub async fn try_lock(&self, key: String, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.map(|_| Lease { key, value: holder.to_owned(), fence: 0 }))
    }

    /// Extend a held lease; false when it was lost.
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<bool, StoreError> {
        self.keep(lease, ttl.as_millis().max(1) as u64).await
    }

    /// Give a lease back (no-op when it was lost).
    pub async fn release(&self, lease: &Lease) -> Result<(), StoreError> {
        self.keep(lease, 0).await.map(|_| ())
    }

    async fn keep(&self, lease: &Lease, ttl_ms: u64) -> Result<bool, StoreError> {
        let ok: i32 = crate::store::scripts::cached(&KEEP_SCRIPT, KEEP)
            .key(&lease.key)
            .arg(&lease.value)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(ok == 1)
    }

    /// Is any lease held on `id`? (Tests and diagnostics.)
    pub async fn is_held(&self, id: &InstanceId) -> Result<bool, StoreError> {
        let n: i32 = redis::cmd("EXISTS").arg(self.keys.lease(id)).query_async(&mut self.conn.clone()).await?;
        Ok(n == 1)
    }
}
