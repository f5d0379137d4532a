//! Domain records of an instance as the state store keeps them: the desired side
//! (`InstanceRecord`, written by the API) and the observed side (`ObservedRecord`, written by
//! workers). They are storage types; the API has its own DTOs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{InstanceId, InstanceName};

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
    /// Running, but one of its sources, queries or reactions is in error.
    Degraded,
    /// A stop is in progress.
    Stopping,
    /// Not running, as desired or after a stop.
    Stopped,
    /// Failed; see the status message.
    Error,
    /// Cannot be observed (for example, its node is gone).
    Unknown,
    /// A record of the instance cannot be read (never stored: the API reports it).
    Corrupt,
}

impl Status {
    /// Wire name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Degraded => "degraded",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Error => "error",
            Status::Unknown => "unknown",
            Status::Corrupt => "corrupt",
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
    /// The name of the token that created it; absent on instances created before draas
    /// recorded it (they count against nobody's instance quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The name of the token that last changed it (its configuration, name, description or
    /// runtime options; lifecycle requests are recorded on their operations instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
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
    #[serde(default, skip_serializing_if = "RuntimeFacts::is_empty")]
    pub runtime: RuntimeFacts,
    /// Consecutive failed health probes of a live server.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probe_failures: u32,
    /// How the last server ended, when the platform saw it end by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    /// Ports allocated to the components that listen (`sources/<id>` → port).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub component_ports: std::collections::BTreeMap<String, u16>,
    /// A configuration the worker refused to run (the server kept running the one before), until
    /// the configuration changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Condition>,
    /// The server's sources, queries and reactions as the last probe saw them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<ComponentStatus>,
    /// The configuration the running server has (as drasi-server got it): what a live apply
    /// diffs the new one against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<crate::domain::config::DrasiConfig>,
    /// After live applies: the spec hash the server was started with, which the platform
    /// still shows (a label, an annotation); `spec_hash` is what it runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_hash: Option<String>,
}

/// Something wrong with an instance that is not its status: what, why, and where in the
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Stable code, e.g. `config_rejected`, `plugin_missing`.
    pub code: String,
    pub message: String,
    /// JSON pointer into the configuration, when it is about one field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Spec hash of the configuration it is about.
    pub spec_hash: String,
    pub at: DateTime<Utc>,
}

/// One of a server's sources, queries or reactions, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// `source`, `query` or `reaction`.
    pub kind: String,
    pub id: String,
    /// As drasi-server says it: `Running`, `Stopped`, `Starting`, `Error`, ...
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ComponentStatus {
    /// Is the component failing?
    pub fn failed(&self) -> bool {
        self.status.eq_ignore_ascii_case("error") || self.status.eq_ignore_ascii_case("failed")
    }
}

impl ObservedRecord {
    /// Did the server stop by itself, cleanly (exit code 0)?
    pub fn exited_cleanly(&self) -> bool {
        self.status == Status::Stopped && self.exit == Some(Exit::Code { code: 0 })
    }
}

/// What a platform reports about a running server: stored on the observed record and as a
/// successful operation's `result`. Each platform fills in its own fields.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFacts {
    /// Process id (process platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Start time of the process in clock ticks since boot: with the pid, names it uniquely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    /// Node that runs the server (process platform), or that ran the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Port drasi-server listens on, as reached from draas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Where the components that listen answer (`sources/<id>` → URL).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub listeners: std::collections::BTreeMap<String, String>,
    /// Where drasi-server answers, e.g. `http://127.0.0.1:8101`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The configuration file the server reads (process platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub config_file: Option<std::path::PathBuf>,
    /// The file the server logs to (process platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub log_file: Option<std::path::PathBuf>,
    /// Container id (docker platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Container name (docker platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// Image the container runs (docker platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Namespace of the objects (kubernetes platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Deployment name (kubernetes platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Service name (kubernetes platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The pod that answered (kubernetes platform).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// How a reconfigure reached the server (its operation's result only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Applied>,
}

/// How a reconfigure operation brought the server to its new configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// `live` (through the server's API, the same server), `restart` (a new server) or
    /// `unchanged` (it ran that configuration already).
    pub how: String,
    /// The server's API calls, in order (`create reaction out`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Why it restarted (`top_level_changed: logLevel`, `live_apply_failed: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RuntimeFacts {
    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Facts of an operation that ran on `node` and started nothing.
    pub fn on_node(node: &str) -> Self {
        Self { node: Some(node.to_owned()), ..Self::default() }
    }
}

/// How a server ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Exit {
    /// It exited with this code.
    Code { code: i32 },
    /// A signal killed it.
    Signal { signal: i32 },
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code { code } => write!(f, "exited with code {code}"),
            Exit::Signal { signal } => write!(f, "killed by signal {signal}"),
        }
    }
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

/// A record and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Everything stored about one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceState {
    pub instance: Versioned<InstanceRecord>,
    pub config: Versioned<crate::domain::config::DrasiConfig>,
    /// Absent until a worker observes the instance.
    pub observed: Option<Versioned<ObservedRecord>>,
    /// The last health probe, once the reconciler probed it.
    pub probe: Option<ProbeRecord>,
    /// Why a record of the instance could not be read (its key and the decoding error), when
    /// one could not: the configuration then reads as empty and the observed record as
    /// absent. Such an instance is listed as `corrupt`, skipped by reconcile passes, never
    /// started, and may be deleted or given a whole new configuration.
    pub unreadable: Option<String>,
    /// How many times the instance's secrets changed (0: never had any): part of the spec
    /// hash, since a server gets its secrets when it starts.
    pub secrets_rev: u64,
    /// The names of the instance's secrets (what its `${NAME}` references may name).
    pub secret_names: std::collections::BTreeSet<String>,
}

impl InstanceState {
    /// The instance's id.
    pub fn id(&self) -> &InstanceId {
        &self.instance.value.id
    }

    /// The observed record, or a fresh one when nothing was observed yet.
    pub fn observed_or_default(&self) -> ObservedRecord {
        self.observed.as_ref().map(|o| o.value.clone()).unwrap_or_default()
    }

    /// The version of the observed record (0: none yet).
    pub fn observed_version(&self) -> u64 {
        self.observed.as_ref().map_or(0, |o| o.version)
    }

    /// The node a process instance is placed on, if any.
    pub fn node(&self) -> Option<&str> {
        self.observed.as_ref().and_then(|o| o.value.node.as_deref())
    }

    /// Is this a process instance placed on `node`?
    pub fn placed_on(&self, node: &str) -> bool {
        self.instance.value.platform == Platform::Process && self.node() == Some(node)
    }
}

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
    /// Who asked for the operation that made the change (its `requestedBy`); absent for what
    /// was observed without one (a crash the reconciler saw, a status push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Who records a change, and why.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub source: &'a str,
    pub reason: &'a str,
    /// Who asked for the operation that made it ('' = no operation).
    pub by: &'a str,
}
