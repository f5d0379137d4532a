//! Operations: the client-facing truth about a submitted job (apalis' own task status is not
//! trusted: apalis-redis records timeouts and panics as `Running` and retries up to 25 times
//! whatever the policy). An operation is queued, runs, and ends once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{InstanceId, OperationId};
use super::model::{DesiredState, RuntimeFacts};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    // The aliases read jobs queued by versions whose payloads named the kind of job.
    #[serde(alias = "startInstance")]
    Start,
    #[serde(alias = "stopInstance")]
    Stop,
    #[serde(alias = "restartInstance")]
    Restart,
    #[serde(alias = "deleteInstance")]
    Delete,
    Reconcile,
    /// Bring a running server to its new configuration: live through its API when only
    /// components changed, else (or when a live step fails) by a restart, with the reason.
    Reconfigure,
}

impl OperationKind {
    /// Wire name (also the metrics label and the original API's verb).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Delete => "delete",
            Self::Reconcile => "reconcile",
            Self::Reconfigure => "reconfigure",
        }
    }
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

    /// The status of a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed, Self::Superseded, Self::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
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
    /// JSON pointer into the instance's configuration, when one field is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
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
    #[serde(default)]
    pub result: RuntimeFacts,
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
    /// A delete that removes the records even when the platform cannot be reached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Who asked for it: the name of the caller's token, or `system` for what draas submits
    /// itself (repairs, fail-over, scheduled passes). Absent on operations recorded before
    /// draas recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

impl Operation {
    /// A new queued operation of `kind` on `instance`, submitted for `target_generation`.
    pub fn queued(kind: OperationKind, instance: Option<InstanceId>, max_attempts: u32) -> Self {
        Self {
            id: OperationId::generate(),
            kind,
            instance_id: instance,
            status: OperationStatus::Queued,
            attempt: 0,
            max_attempts,
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            result: RuntimeFacts::default(),
            target_generation: 0,
            correlation_id: String::new(),
            reason: String::new(),
            queue: String::new(),
            previous_desired: None,
            worker: None,
            force: false,
            requested_by: None,
        }
    }
}
