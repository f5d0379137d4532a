//! The servers' output: a worker that can read an instance's logs (the process platform's log
//! file, the container's or the pod's logs) ships each line, colour codes stripped, into a
//! capped Redis stream per instance, so any API replica serves them without touching a
//! platform. Each entry keeps where the shipper read it (`c`: a file offset, a timestamp), so a
//! shipper that takes over goes on from there instead of sending lines twice.

use redis::AsyncCommands;
use redis::streams::{StreamMaxlen, StreamRangeReply};

use super::{Store, StoreError};
use crate::domain::ids::InstanceId;

/// One shipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The stream entry id: lines after it are newer.
    pub id: String,
    pub line: String,
}

/// The per-instance log streams.
pub struct Logs<'a> {
    pub(super) store: &'a Store,
}

impl Logs<'_> {
    /// Append `lines` (each with the cursor after it), keeping about the newest `keep`.
    pub async fn append(&self, id: &InstanceId, lines: &[(String, String)], keep: usize) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let key = self.store.keys().logs(id);
        let mut pipe = redis::pipe();
        for (line, cursor) in lines {
            pipe.xadd_maxlen(&key, StreamMaxlen::Approx(keep), "*", &[("l", line), ("c", cursor)]).ignore();
        }
        let () = pipe.query_async(&mut self.store.conn()).await?;
        Ok(())
    }

    /// Where the last shipped line was read (`c` of the newest entry).
    pub async fn cursor(&self, id: &InstanceId) -> Result<Option<String>, StoreError> {
        let reply: StreamRangeReply =
            self.store.conn().xrevrange_count(self.store.keys().logs(id), "+", "-", 1).await?;
        Ok(reply.ids.first().and_then(|e| e.get::<String>("c")))
    }

    /// The newest `n` lines, oldest first.
    pub async fn tail(&self, id: &InstanceId, n: usize) -> Result<Vec<LogLine>, StoreError> {
        let reply: StreamRangeReply =
            self.store.conn().xrevrange_count(self.store.keys().logs(id), "+", "-", n).await?;
        let mut lines = lines(reply);
        lines.reverse();
        Ok(lines)
    }

    /// Up to `n` lines after entry `after`, oldest first.
    pub async fn after(&self, id: &InstanceId, after: &str, n: usize) -> Result<Vec<LogLine>, StoreError> {
        let reply: StreamRangeReply =
            self.store.conn().xrange_count(self.store.keys().logs(id), format!("({after}"), "+", n).await?;
        Ok(lines(reply))
    }
}

fn lines(reply: StreamRangeReply) -> Vec<LogLine> {
    reply.ids.into_iter().map(|e| LogLine { line: e.get("l").unwrap_or_default(), id: e.id }).collect()
}
