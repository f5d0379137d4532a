//! Crash-loop bookkeeping: consecutive failed repairs of an instance, when the next repair may
//! run (exponential backoff), and whether the reconciler gave up until a user acts.

use std::time::Duration;

use redis::AsyncCommands;

use super::{Store, StoreError, scripts};
use crate::domain::ids::InstanceId;

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
pub struct CrashLoops<'a> {
    pub(super) store: &'a Store,
}

impl CrashLoops<'_> {
    /// Read the record of `id`.
    pub async fn get(&self, id: &InstanceId) -> Result<CrashLoop, StoreError> {
        let (f, n, g): (Option<u32>, Option<i64>, Option<u8>) =
            self.store.conn().hmget(self.store.keys().crash_loop(id), &["failures", "next_at_ms", "gave_up"]).await?;
        Ok(CrashLoop { failures: f.unwrap_or(0), next_at_ms: n.unwrap_or(0), gave_up: g.unwrap_or(0) == 1 })
    }

    /// Which of `ids` have a record (one pipelined round trip).
    pub async fn exist(&self, ids: &[&InstanceId]) -> Result<Vec<bool>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.exists(self.store.keys().crash_loop(id));
        }
        Ok(pipe.query_async(&mut self.store.conn()).await?)
    }

    /// Decide about a failed instance at `now_ms` and record the decision (one script).
    pub async fn decide(
        &self,
        id: &InstanceId,
        now_ms: i64,
        backoff: (Duration, Duration),
        max_failures: u32,
    ) -> Result<Verdict, StoreError> {
        let reply: (String, u32) = scripts::decide()
            .key(self.store.keys().crash_loop(id))
            .arg(now_ms)
            .arg(backoff.0.as_millis() as u64)
            .arg(backoff.1.as_millis() as u64)
            .arg(max_failures)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(match (reply.0.as_str(), reply.1) {
            ("repair", attempt) => Verdict::Repair { attempt },
            ("wait", _) => Verdict::Wait,
            ("give_up", _) => Verdict::GiveUp,
            ("gave_up", _) => Verdict::GaveUp,
            other => return Err(StoreError::Protocol(format!("decide answered {other:?}"))),
        })
    }

    /// Forget the record (a user acted, or the instance has been healthy long enough).
    pub async fn reset(&self, id: &InstanceId) -> Result<(), StoreError> {
        let _: () = self.store.conn().del(self.store.keys().crash_loop(id)).await?;
        Ok(())
    }
}
