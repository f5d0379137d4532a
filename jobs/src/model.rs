//! Domain records of an instance as the state store keeps them: the desired side
//! (`InstanceRecord`, written by the API) and the observed side (`ObservedRecord`, written by
//! workers). They are storage types; the API has its own DTOs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{InstanceId, InstanceName};

/// Where an instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// A local OS process on the node that started it.
    #[default]
    Process,
    /// A Docker container.
    Docker,
    /// Kubernetes objects (ConfigMap + Deployment + Service).
    Kubernetes,
}

impl Platform {
    /// Wire name of the platform.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Process => "process",
            Platform::Docker => "docker",
            Platform::Kubernetes => "kubernetes",
        }
    }
}

/// What the user wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// The instance should be running.
    Running,
    /// The instance should not be running.
    #[default]
    Stopped,
    /// The instance is being deleted; it accepts no other operation.
    Deleted,
}

/// What was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Never started.
    #[default]
    Created,
    /// A start is in progress.
    Starting,
    /// Running and healthy.
    Running,
    /// A stop is in progress.
    Stopping,
    /// Not running, as desired or after a stop.
    Stopped,
    /// Failed; see the status message.
    Error,
    /// Cannot be observed (for example, its node is gone).
    Unknown,
}

impl Status {
    /// Wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Error => "error",
            Status::Unknown => "unknown",
        }
    }
}

/// The desired side of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// Server-generated id.
    pub id: InstanceId,
    /// Unique name.
    pub name: InstanceName,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Where it runs.
    pub platform: Platform,
    /// What the user wants.
    pub desired_state: DesiredState,
    /// Increments on every change of desired state or configuration.
    pub generation: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change of this record or the configuration.
    pub updated_at: DateTime<Utc>,
    /// Container image and resource limits (docker and kubernetes platforms).
    #[serde(default, skip_serializing_if = "RuntimeOptions::is_empty")]
    pub runtime: RuntimeOptions,
}

/// Container image and resource limits of an instance on the docker and kubernetes platforms
/// (the process platform ignores them). Part of the spec hash: a change redeploys.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeOptions {
    /// Container image; the platform's setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Memory limit: bytes, or a quantity such as `512Mi` or `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit in cores, 0.01 to 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

impl RuntimeOptions {
    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The memory limit in bytes, when set and valid.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory.as_deref().and_then(parse_memory)
    }
}

/// Bytes of a memory quantity: digits with an optional `K|M|G|T` (powers of 1000) or
/// `Ki|Mi|Gi|Ti` (powers of 1024) suffix.
pub fn parse_memory(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, unit) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The observed side of an instance, written by workers and the reconciler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRecord {
    /// Last observed status.
    pub status: Status,
    /// Why, in a sentence (exit code, probe error, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<DateTime<Utc>>,
    /// Generation of the configuration the running instance was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<u64>,
    /// Spec hash of the configuration the running instance was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// Port the instance listens on, once one is allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Node that runs the instance (process platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Runtime facts: pid, container id, pod, endpoint URL.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub runtime: serde_json::Map<String, serde_json::Value>,
    /// Consecutive failed health probes of a live server.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probe_failures: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The last health probe of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeRecord {
    pub at: DateTime<Utc>,
    /// The server was there and `/health` answered 200.
    pub ok: bool,
    pub latency_ms: f64,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
