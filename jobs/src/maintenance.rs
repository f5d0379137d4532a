//! Housekeeping nothing else does: apalis-redis keeps every finished task forever
//! (apalis-redis#10), and the operation indexes keep ids whose records expired.

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::jobs::queue_name;
use crate::store::{Keys, StoreError};

static VACUUM_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
/// Forget finished tasks of a queue older than a cutoff: their data, meta and set membership.
/// KEYS: data hash, done set, dead set. ARGV: meta prefix, cutoff (unix s), max per call.
const VACUUM: &str = r"
local removed = 0
for _, set in ipairs({KEYS[2], KEYS[3]}) do
  local ids = redis.call('SRANDMEMBER', set, tonumber(ARGV[3]))
  for _, id in ipairs(ids) do
    local meta = ARGV[1] .. ':' .. id
    local done_at = tonumber(redis.call('HGET', meta, 'done_at') or '0')
    if done_at <= tonumber(ARGV[2]) then
      redis.call('HDEL', KEYS[1], id)
      redis.call('DEL', meta)
      redis.call('SREM', set, id)
      removed = removed + 1
    end
  end
end
return removed
";

static TRIM_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
/// Drop the oldest ids of an operation index whose records expired (ids are time-ordered).
/// KEYS: index. ARGV: record key prefix, max per call.
const TRIM: &str = r"
local removed = 0
local ids = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ARGV[1] .. id) == 1 then break end
  redis.call('ZREM', KEYS[1], id)
  removed = removed + 1
end
return removed
";

/// Remove finished tasks older than `retention` from `queues`, and expired ids from the global
/// operation index. Returns how many entries went.
pub async fn sweep(
    conn: &ConnectionManager,
    keys: &Keys,
    queues: &[String],
    retention: Duration,
) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now().timestamp() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let mut removed = 0;
    for queue in queues {
        let q = queue_name(keys, queue);
        let n: u64 = crate::store::scripts::cached(&VACUUM_SCRIPT, VACUUM)
            .key(format!("{q}:data"))
            .key(format!("{q}:done"))
            .key(format!("{q}:dead"))
            .arg(format!("{q}:meta"))
            .arg(cutoff)
            .arg(1000)
            .invoke_async(&mut conn.clone())
            .await?;
        removed += n;
    }
    let n: u64 = crate::store::scripts::cached(&TRIM_SCRIPT, TRIM)
        .key(keys.all_operations())
        .arg(format!("{}:op:", keys.tag()))
        .arg(1000)
        .invoke_async(&mut conn.clone())
        .await?;
    Ok(removed + n)
}
