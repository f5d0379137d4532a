//! Observed-status writes and the history they leave: every transition is appended to the
//! instance's capped list and to a global capped stream (whose ids let an SSE client resume).

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError, scripts};
use crate::ids::InstanceId;
use crate::lease::Lease;
use crate::model::{ObservedRecord, Status};

/// One observed status transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// Stream id in the global buffer (`<ms>-<n>`); the SSE event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub at: DateTime<Utc>,
    pub instance_id: String,
    pub from: Status,
    pub to: Status,
    /// Who saw it: `worker:<name>`, `reconciler`, `push:<source>`.
    pub source: String,
    /// Why: `start`, `crashed`, `config-changed`, `node-lost`, ...
    #[serde(default)]
    pub reason: String,
}

/// Who recorded a change, and why.
#[derive(Debug, Clone)]
pub struct Cause<'a> {
    pub source: &'a str,
    pub reason: &'a str,
}

/// Caps of the history buffers.
#[derive(Debug, Clone, Copy)]
pub struct HistoryCaps {
    pub per_instance: usize,
    pub global: usize,
}

impl Store {
    /// Write what was observed; a status change is recorded in the history. With a lease, the
    /// write happens only while that lease is still held (fencing); without one, only while no
    /// worker holds the instance's lease (an operation in flight owns the status). Returns
    /// whether it wrote.
    pub async fn observe(
        &self,
        id: &InstanceId,
        observed: &ObservedRecord,
        cause: &Cause<'_>,
        lease: Option<&Lease>,
    ) -> Result<bool, StoreError> {
        self.observe_fenced(id, observed, cause, lease, None).await
    }

    /// [`Store::observe`], and only if the observed record is still at `expected_version`
    /// (0: none yet): a judgement made from an older read never overwrites a newer one.
    pub async fn observe_fenced(
        &self,
        id: &InstanceId,
        observed: &ObservedRecord,
        cause: &Cause<'_>,
        lease: Option<&Lease>,
        expected_version: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut inv = scripts::observe().prepare_invoke();
        inv.key(self.keys.observed(id)).key(self.keys.history(id)).key(self.keys.changes()).key(self.keys.lease(id));
        inv.arg(serde_json::to_string(observed).unwrap_or_default())
            .arg(observed.status.as_str())
            .arg(id.as_str())
            .arg(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .arg(cause.source)
            .arg(cause.reason)
            .arg(self.caps.per_instance)
            .arg(self.caps.global)
            .arg(lease.map(Lease::value).unwrap_or_default())
            .arg(expected_version.map(|v| v.to_string()).unwrap_or_default());
        let wrote: i32 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(wrote == 1)
    }

    /// An instance's transitions, newest first.
    pub async fn history(&self, id: &InstanceId) -> Result<Vec<StatusChange>, StoreError> {
        let raw: Vec<String> = self.conn.clone().lrange(self.keys.history(id), 0, -1).await?;
        Ok(raw.iter().filter_map(|r| serde_json::from_str(r).ok()).collect())
    }

    /// Id of the newest global transition, if any.
    pub async fn latest_change_id(&self) -> Result<Option<String>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            self.conn.clone().xrevrange_count(self.keys.changes(), "+", "-", 1).await?;
        Ok(reply.ids.into_iter().next().map(|e| e.id))
    }

    /// Global transitions after stream id `after` (exclusive; `None` = from the start of the
    /// buffer), oldest first, at most `count`.
    pub async fn changes_after(&self, after: Option<&str>, count: usize) -> Result<Vec<StatusChange>, StoreError> {
        let start = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let reply: redis::streams::StreamRangeReply =
            self.conn.clone().xrange_count(self.keys.changes(), start, "+", count).await?;
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
