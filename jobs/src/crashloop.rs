//! Crash-loop bookkeeping: consecutive failed repairs of an instance, when the next repair may
//! run (exponential backoff), and whether the reconciler gave up until a user acts.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use crate::ids::InstanceId;
use crate::store::{Keys, StoreError};

/// Where an instance stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrashLoop {
    /// Consecutive repairs so far.
    pub failures: u32,
    /// Unix ms before which no repair runs.
    pub next_at_ms: i64,
    /// The reconciler gave up; only a user's request resumes repairs.
    pub gave_up: bool,
}

/// What the reconciler may do now about a failed instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Repair now (this is repair number `attempt`).
    Repair { attempt: u32 },
    /// Wait: still backing off.
    Wait,
    /// Give up now (the limit was just reached).
    GiveUp,
    /// Already given up.
    GaveUp,
}

/// Crash-loop records.
#[derive(Clone)]
pub struct CrashLoops {
    conn: ConnectionManager,
    keys: Keys,
}

impl CrashLoops {
    /// Records under `keys`.
    pub fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }

    /// Read the record of `id`.
    pub async fn get(&self, id: &InstanceId) -> Result<CrashLoop, StoreError> {
        let (f, n, g): (Option<u32>, Option<i64>, Option<u8>) =
            self.conn.clone().hmget(self.keys.crash_loop(id), &["failures", "next_at_ms", "gave_up"]).await?;
        Ok(CrashLoop { failures: f.unwrap_or(0), next_at_ms: n.unwrap_or(0), gave_up: g.unwrap_or(0) == 1 })
    }

    /// Decide about a failed instance at `now_ms` and record the decision.
    pub async fn decide(
        &self,
        id: &InstanceId,
        now_ms: i64,
        backoff: (Duration, Duration),
        max_failures: u32,
    ) -> Result<Verdict, StoreError> {
        let c = self.get(id).await?;
        if c.gave_up {
            return Ok(Verdict::GaveUp);
        }
        if now_ms < c.next_at_ms {
            return Ok(Verdict::Wait);
        }
        let key = self.keys.crash_loop(id);
        if c.failures >= max_failures {
            let _: () = self.conn.clone().hset(&key, "gave_up", 1).await?;
            return Ok(Verdict::GiveUp);
        }
        let attempt = c.failures + 1;
        let wait = backoff.0.saturating_mul(1u32 << (attempt - 1).min(20)).min(backoff.1);
        let next = now_ms + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        let _: () = redis::pipe()
            .hset_multiple(&key, &[("failures", i64::from(attempt)), ("next_at_ms", next)])
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Verdict::Repair { attempt })
    }

    /// Forget the record (a user acted, or the instance has been healthy long enough).
    pub async fn reset(&self, id: &InstanceId) -> Result<(), StoreError> {
        let _: () = self.conn.clone().del(self.keys.crash_loop(id)).await?;
        Ok(())
    }
}
