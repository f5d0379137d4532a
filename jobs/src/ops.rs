//! Operation records: the client-facing truth about a submitted job (apalis' own task status
//! is not trusted, see shared/APALIS.md §3.3). Kept in Redis with a TTL; listed newest first.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{InstanceId, OperationId};
use crate::model::DesiredState;
use crate::store::{Keys, StoreError};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    Start,
    Stop,
    Restart,
    Delete,
    Reconcile,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationStatus {
    /// Waiting for a worker (also between attempts).
    Queued,
    /// A worker is acting on it.
    Running,
    Succeeded,
    Failed,
    /// A newer change of the instance made it moot; it did not act.
    Superseded,
    /// Cancelled by a client before a worker took it.
    Cancelled,
}

impl OperationStatus {
    /// Has the operation ended?
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why an operation failed (or why its last attempt did).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperationError {
    /// Stable code, e.g. `executable_not_found`, `config_rejected`, `health_timeout`.
    pub code: String,
    pub message: String,
    /// More context, e.g. the tail of drasi-server's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A submitted lifecycle operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[schema(value_type = String)]
    pub id: OperationId,
    pub kind: OperationKind,
    #[schema(value_type = Option<String>)]
    pub instance_id: Option<InstanceId>,
    pub status: OperationStatus,
    /// Attempts made so far.
    pub attempt: u32,
    pub max_attempts: u32,
    pub error: Option<OperationError>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Runtime facts: pid, container id or pod, node, endpoint URL.
    #[schema(value_type = Object)]
    pub result: serde_json::Map<String, serde_json::Value>,
    /// Instance generation the operation was submitted for.
    pub target_generation: u64,
    /// Request id of the request that caused it.
    pub correlation_id: String,
    /// Why: `user`, or the reconciler's reason (`crashed`, `config-changed`, ...).
    pub reason: String,
    /// Queue the job went to.
    pub queue: String,
    /// Desired state before the submit, restored when a queued operation is cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_desired: Option<DesiredState>,
    /// Worker that ran the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// Move an operation from one of the allowed statuses to a new record, atomically.
/// KEYS[1] op hash. ARGV: ttl secs, new status, new data, allowed statuses...
static TRANSITION_SCRIPT: std::sync::OnceLock<redis::Script> = std::sync::OnceLock::new();
const TRANSITION: &str = r"
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 0 end
for i = 4, #ARGV do
  if cur == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'data', ARGV[3])
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    return 1
  end
end
return 0
";

/// Operation records in Redis.
#[derive(Clone)]
pub struct Operations {
    conn: ConnectionManager,
    keys: Keys,
    ttl: Duration,
}

fn json(op: &Operation) -> String {
    serde_json::to_string(op).unwrap_or_default()
}

impl Operations {
    /// Records under `keys`, kept for `ttl` after their last change.
    pub fn new(conn: ConnectionManager, keys: Keys, ttl: Duration) -> Self {
        Self { conn, keys, ttl }
    }

    /// Store a new operation and index it (globally and per instance).
    pub async fn create(&self, op: &Operation) -> Result<(), StoreError> {
        let key = self.keys.operation(&op.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(&key, &[("status", op.status.as_str()), ("data", &json(op))])
            .expire(&key, self.ttl.as_secs() as i64)
            .zadd(self.keys.all_operations(), op.id.as_str(), 0)
            .ignore();
        if let Some(i) = &op.instance_id {
            pipe.zadd(self.keys.instance_operations(i), op.id.as_str(), 0).ignore();
        }
        let _: () = pipe.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Read an operation.
    pub async fn get(&self, id: &OperationId) -> Result<Option<Operation>, StoreError> {
        let key = self.keys.operation(id);
        let data: Option<String> = self.conn.clone().hget(&key, "data").await?;
        data.map(|d| serde_json::from_str(&d).map_err(|source| StoreError::Corrupt { key, source })).transpose()
    }

    /// Replace the record with `op` if its status is one of `from`. Returns whether it did.
    pub async fn transition(&self, op: &Operation, from: &[OperationStatus]) -> Result<bool, StoreError> {
        let script = crate::store::scripts::cached(&TRANSITION_SCRIPT, TRANSITION);
        let mut inv = script.key(self.keys.operation(&op.id));
        inv.arg(self.ttl.as_secs()).arg(op.status.as_str()).arg(json(op));
        for s in from {
            inv.arg(s.as_str());
        }
        let done: i32 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done == 1)
    }

    /// Newest first, after `cursor` (an operation id), at most `limit`; expired ids are skipped
    /// and dropped from the index.
    pub async fn list(
        &self,
        instance: Option<&InstanceId>,
        cursor: Option<&OperationId>,
        limit: usize,
    ) -> Result<(Vec<Operation>, Option<OperationId>), StoreError> {
        let index = instance.map_or_else(|| self.keys.all_operations(), |i| self.keys.instance_operations(i));
        let max = cursor.map_or_else(|| "+".to_owned(), |c| format!("({c}"));
        let mut out = Vec::new();
        let mut max_bound = max;
        loop {
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                .arg(&index)
                .arg(&max_bound)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut self.conn.clone())
                .await?;
            let fetched = ids.len();
            for raw in &ids {
                max_bound = format!("({raw}");
                let Ok(id) = raw.parse::<OperationId>() else { continue };
                match self.get(&id).await? {
                    Some(op) => out.push(op),
                    None => {
                        let _: () = self.conn.clone().zrem(&index, raw).await?;
                    }
                }
                if out.len() == limit {
                    return Ok((out, Some(id)));
                }
            }
            if fetched < limit {
                return Ok((out, None));
            }
        }
    }
}
