//! The history observed writes leave: every status transition goes to the instance's capped
//! list and to a global capped stream (whose ids let an SSE client resume).

use redis::AsyncCommands;

use super::{Store, StoreError};
use crate::domain::ids::InstanceId;
use crate::domain::model::StatusChange;

/// Status transitions.
pub struct History<'a> {
    pub(super) store: &'a Store,
}

impl History<'_> {
    /// An instance's transitions, newest first.
    pub async fn of(&self, id: &InstanceId) -> Result<Vec<StatusChange>, StoreError> {
        let raw: Vec<String> = self.store.conn().lrange(self.store.keys().history(id), 0, -1).await?;
        Ok(raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }

    /// Id of the newest global transition, if any.
    pub async fn latest_id(&self) -> Result<Option<String>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            self.store.conn().xrevrange_count(self.store.keys().changes(), "+", "-", 1).await?;
        Ok(reply.ids.into_iter().next().map(|e| e.id))
    }

    /// Global transitions after stream id `after` (exclusive; `None` = from the start of the
    /// buffer), oldest first, at most `count`.
    pub async fn after(&self, after: Option<&str>, count: usize) -> Result<Vec<StatusChange>, StoreError> {
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let reply: redis::streams::StreamRangeReply =
            self.store.conn().xrange_count(self.store.keys().changes(), start, "+", count).await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|entry| {
                let data: String = entry.get("data")?;
                let mut change: StatusChange = serde_json::from_str(&data).ok()?;
                change.id = Some(entry.id);
                Some(change)
            })
            .collect())
    }
}
