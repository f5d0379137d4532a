//! The original API's wire models (ORIGINAL.md §2), built from draas' own records:
//! `DrasiInstance`, `InstanceRuntimeInfo`, `ServerConfiguration`, `StatusChangeRecord`, and the
//! `InstanceStatus` / `PlatformType` enums. Enums are written as the original's integers (what
//! its code sent) and read from integers or case-insensitive names (what it accepted).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::model::InstanceState;
use draas_jobs::domain::model::StatusChange;
use draas_jobs::domain::model::{DesiredState, Platform, Status};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// An enum of the original: an integer on the wire, or one of its names on input.
pub trait OriginalEnum: Copy + 'static {
    /// Every variant.
    const ALL: &'static [Self];
    /// The original's integer.
    fn code(self) -> u8;
    /// Names accepted on input (the first is the original's).
    fn names(self) -> &'static [&'static str];

    /// Parse an integer (`"1"`) or a name, case-insensitively.
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        match raw.parse::<u8>() {
            Ok(n) => Self::ALL.iter().copied().find(|v| v.code() == n),
            Err(_) => Self::ALL.iter().copied().find(|v| v.names().iter().any(|n| n.eq_ignore_ascii_case(raw))),
        }
    }

    /// Parse a JSON integer or string.
    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()).and_then(|n| Self::parse(&n.to_string())),
            Value::String(s) => Self::parse(s),
            _ => None,
        }
    }
}

/// `InstanceStatus`: Created=0, Running=1, Stopped=2, Error=3, ConfigurationChanged=4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Created = 0,
    Running = 1,
    Stopped = 2,
    Error = 3,
    ConfigurationChanged = 4,
}

impl OriginalEnum for InstanceStatus {
    const ALL: &'static [Self] =
        &[Self::Created, Self::Running, Self::Stopped, Self::Error, Self::ConfigurationChanged];

    fn code(self) -> u8 {
        self as u8
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Created => &["Created"],
            Self::Running => &["Running"],
            Self::Stopped => &["Stopped"],
            Self::Error => &["Error"],
            Self::ConfigurationChanged => &["ConfigurationChanged"],
        }
    }
}

impl InstanceStatus {
    /// The closest original status of ours: a server being started or stopped still has a
    /// process (the original called a spawned process Running, with no health phase); an
    /// instance that cannot be observed is in error (as the original's untracked processes).
    pub fn from_status(s: Status) -> Self {
        match s {
            Status::Created => Self::Created,
            Status::Starting | Status::Running | Status::Degraded | Status::Stopping => Self::Running,
            Status::Stopped => Self::Stopped,
            Status::Error | Status::Unknown | Status::Corrupt => Self::Error,
        }
    }

    /// Our status for an original one; `ConfigurationChanged` has none (draas derives it).
    pub fn to_status(self) -> Option<Status> {
        match self {
            Self::Created => Some(Status::Created),
            Self::Running => Some(Status::Running),
            Self::Stopped => Some(Status::Stopped),
            Self::Error => Some(Status::Error),
            Self::ConfigurationChanged => None,
        }
    }
}

/// `PlatformType`: Process=0, Docker=1, AKS=2 (our `kubernetes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformType {
    Process = 0,
    Docker = 1,
    Aks = 2,
}

impl OriginalEnum for PlatformType {
    const ALL: &'static [Self] = &[Self::Process, Self::Docker, Self::Aks];

    fn code(self) -> u8 {
        self as u8
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Self::Process => &["Process"],
            Self::Docker => &["Docker"],
            Self::Aks => &["AKS", "Kubernetes"],
        }
    }
}

impl PlatformType {
    /// The original platform of ours.
    pub fn from_platform(p: Platform) -> Self {
        match p {
            Platform::Process => Self::Process,
            Platform::Docker => Self::Docker,
            Platform::Kubernetes => Self::Aks,
        }
    }

    /// Our platform.
    pub fn to_platform(self) -> Platform {
        match self {
            Self::Process => Platform::Process,
            Self::Docker => Platform::Docker,
            Self::Aks => Platform::Kubernetes,
        }
    }
}

macro_rules! serialize_as_code {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8(self.code())
            }
        }
    )*};
}
serialize_as_code!(InstanceStatus, PlatformType);

/// The original status of an instance: its observed status, or `ConfigurationChanged` while
/// it runs a configuration older than the stored one (changed, not yet applied); `Error` when
/// a record of it cannot be read.
pub fn status_of(s: &InstanceState) -> InstanceStatus {
    if s.unreadable.is_some() {
        return InstanceStatus::Error;
    }
    let Some(o) = s.observed.as_ref().map(|o| &o.value) else {
        return InstanceStatus::Created;
    };
    let i = &s.instance.value;
    let stale = o.status == Status::Running
        && i.desired_state == DesiredState::Running
        && o.observed_generation.is_some_and(|g| g < i.generation);
    if stale { InstanceStatus::ConfigurationChanged } else { InstanceStatus::from_status(o.status) }
}

/// `DrasiInstance`: the instance's metadata.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrasiInstance {
    pub id: String,
    pub name: String,
    pub description: String,
    pub platform_type: PlatformType,
    pub created_at: DateTime<Utc>,
    pub last_modified_at: Option<DateTime<Utc>>,
    pub status: InstanceStatus,
    pub metadata: BTreeMap<String, String>,
}

impl DrasiInstance {
    /// The original view of an instance.
    pub fn of(s: &InstanceState) -> Self {
        let i = &s.instance.value;
        let observed_at = s.observed.as_ref().and_then(|o| o.value.observed_at);
        Self {
            id: i.id.to_string(),
            name: i.name.to_string(),
            description: i.description.clone(),
            platform_type: PlatformType::from_platform(i.platform),
            created_at: i.created_at,
            last_modified_at: Some(observed_at.map_or(i.updated_at, |o| o.max(i.updated_at))),
            status: status_of(s),
            metadata: BTreeMap::new(),
        }
    }
}

/// `InstanceRuntimeInfo`: what runs, from the observed record and the status history.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRuntimeInfo {
    pub instance_id: String,
    pub status: InstanceStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub container_id: Option<String>,
    pub process_id: Option<String>,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub runtime_metadata: BTreeMap<String, String>,
    pub error_message: Option<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl InstanceRuntimeInfo {
    /// Runtime info of `s`; `history` is its transitions, newest first.
    pub fn of(s: &InstanceState, history: &[StatusChange]) -> Self {
        let observed = s.observed.as_ref().map(|o| o.value.clone()).unwrap_or_default();
        let status = status_of(s);
        let started_at = history.iter().find(|c| c.to == Status::Running).map(|c| c.at);
        let stopped_at = history
            .iter()
            .find(|c| matches!(c.to, Status::Stopped | Status::Error))
            .map(|c| c.at)
            .filter(|t| started_at.is_none_or(|s| *t >= s));
        let facts = &observed.runtime;
        // The original kept every runtime fact as text in one map; so do we.
        let all = match serde_json::to_value(facts) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let mut metadata: BTreeMap<String, String> = all.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        if let Some(node) = &observed.node {
            metadata.entry("node".into()).or_insert_with(|| node.clone());
        }
        if let Some(port) = observed.port {
            metadata.entry("port".into()).or_insert_with(|| port.to_string());
        }
        let platform = PlatformType::from_platform(s.instance.value.platform);
        metadata.insert("PlatformType".into(), platform.names()[0].to_owned());
        Self {
            instance_id: s.instance.value.id.to_string(),
            status,
            started_at,
            stopped_at,
            container_id: facts.container_id.clone(),
            process_id: facts.pid.map(|p| p.to_string()),
            pod_name: facts.pod_name.clone(),
            namespace: facts.namespace.clone(),
            runtime_metadata: metadata,
            error_message: observed.message.filter(|_| status == InstanceStatus::Error),
        }
    }
}

/// `ServerConfiguration`: the server's own fields of the configuration (`null` = draas chooses).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerConfiguration {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub log_level: Option<String>,
}

impl ServerConfiguration {
    /// The projection of a stored configuration.
    pub fn of(c: &DrasiConfig) -> Self {
        let log_level = c.log_level.and_then(|l| serde_json::to_value(l).ok()).as_ref().map(text);
        Self { host: c.host.clone(), port: c.port.map(|p| p.get()), log_level }
    }
}

/// `StatusChangeRecord`: one transition of the global history.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChangeRecord {
    pub instance_id: String,
    pub old_status: InstanceStatus,
    pub new_status: InstanceStatus,
    pub source: String,
    pub timestamp: DateTime<Utc>,
    pub metadata: BTreeMap<String, String>,
}

impl StatusChangeRecord {
    /// The original record of a transition; `None` when both ends map to the same status
    /// (the original recorded a change only when the status differed).
    pub fn of(c: StatusChange) -> Option<Self> {
        let (old, new) = (InstanceStatus::from_status(c.from), InstanceStatus::from_status(c.to));
        (old != new).then(|| Self {
            instance_id: c.instance_id,
            old_status: old,
            new_status: new,
            source: c.source,
            timestamp: c.at,
            metadata: BTreeMap::from([("reason".to_owned(), c.reason)]),
        })
    }
}
