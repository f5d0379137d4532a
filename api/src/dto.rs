//! Wire types of the v1 API: requests and responses, converted from and to domain records.

use chrono::{DateTime, Utc};
use draas_jobs::domain::model::InstanceState;
use draas_jobs::domain::model::{
    ComponentStatus, Condition, DesiredState, Platform, ProbeRecord, RuntimeFacts, RuntimeOptions, Status,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Server-generated id.
    pub id: String,
    /// Unique name.
    pub name: String,
    pub description: String,
    pub platform: Platform,
    /// What the user wants.
    pub desired_state: DesiredState,
    /// What was last observed.
    pub status: Status,
    /// Why the status is what it is.
    pub status_message: Option<String>,
    /// Increments on every change of desired state or configuration.
    pub generation: u64,
    /// Generation the running instance was started with.
    pub observed_generation: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the status was observed.
    pub observed_at: Option<DateTime<Utc>>,
    /// The last health probe (time, latency, message), once the reconciler probed it.
    pub last_probe: Option<ProbeRecord>,
    /// Container image and resource limits (docker and kubernetes platforms).
    #[serde(default, skip_serializing_if = "RuntimeOptions::is_empty")]
    pub runtime: RuntimeOptions,
    /// Where drasi-server answers, while it runs.
    pub endpoint: Option<String>,
    /// The node running it (process platform).
    pub node: Option<String>,
    /// What the platform reported when it started: pid, container id or pod, the endpoints of
    /// the components that listen.
    pub runtime_facts: RuntimeFacts,
    /// The server's sources, queries and reactions as the last probe saw them.
    pub components: Vec<ComponentStatus>,
    /// How many components there are, and how many are in error.
    pub components_summary: ComponentsSummary,
    /// What is wrong besides the status, e.g. a configuration change the worker refused
    /// (`config_rejected`, `plugin_missing`) while the server kept running the one before.
    pub conditions: Vec<Condition>,
    /// The name of the token that created it; absent on instances created before draas
    /// recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The name of the token that last changed its configuration, name, description or
    /// runtime options; absent until one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

/// Component counts of an instance.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ComponentsSummary {
    pub total: usize,
    pub running: usize,
    pub failing: usize,
}

impl From<&InstanceState> for Instance {
    fn from(s: &InstanceState) -> Self {
        let i = &s.instance.value;
        let o = s.observed.as_ref().map(|o| &o.value);
        Self {
            id: i.id.to_string(),
            name: i.name.to_string(),
            description: i.description.clone(),
            platform: i.platform,
            desired_state: i.desired_state,
            status: if s.unreadable.is_some() { Status::Corrupt } else { o.map_or(Status::Created, |o| o.status) },
            status_message: match &s.unreadable {
                Some(_) => Some(CORRUPT_MESSAGE.to_owned()),
                None => o.and_then(|o| o.message.clone()),
            },
            generation: i.generation,
            observed_generation: o.and_then(|o| o.observed_generation),
            created_at: i.created_at,
            updated_at: i.updated_at,
            observed_at: o.and_then(|o| o.observed_at),
            last_probe: s.probe.clone(),
            runtime: i.runtime.clone(),
            endpoint: o.and_then(|o| o.runtime.endpoint.clone()),
            node: o.and_then(|o| o.node.clone()),
            runtime_facts: o.map(|o| o.runtime.clone()).unwrap_or_default(),
            components: o.map(|o| o.components.clone()).unwrap_or_default(),
            components_summary: o.map_or_else(ComponentsSummary::default, |o| ComponentsSummary {
                total: o.components.len(),
                running: o.components.iter().filter(|c| c.status.eq_ignore_ascii_case("running")).count(),
                failing: o.components.iter().filter(|c| c.failed()).count(),
            }),
            conditions: o.and_then(|o| o.rejected.clone()).into_iter().collect(),
            created_by: i.created_by.clone(),
            updated_by: i.updated_by.clone(),
        }
    }
}

/// Body of `POST /api/v1/instances`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInstance {
    /// 1-63 characters of `[a-z0-9-]`, starting and ending with a letter or digit; unique.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Default from settings.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// drasi-server configuration; default: empty sources, queries and reactions.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Container image and resource limits (docker and kubernetes platforms).
    #[serde(default)]
    pub runtime: Option<RuntimeOptions>,
    /// The instance's first secrets, name → value (write-only, like `PUT …/secrets/{name}`),
    /// so a configuration that references them is accepted in the same request.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub secrets: Option<std::collections::BTreeMap<String, secrecy::SecretString>>,
}

/// Body of `PUT /api/v1/instances/{id}/secrets/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecret {
    /// The value (never shown again by any route).
    #[schema(value_type = String)]
    pub value: secrecy::SecretString,
}

/// A secret as the API shows it: its name and when it was set, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    pub name: String,
    pub updated_at: DateTime<Utc>,
}

/// An instance's secrets, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretInfo>,
}

/// What `POST /api/v1/secrets/rewrap` did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rewrapped {
    /// Values sealed anew with the first key.
    pub rewrapped: u64,
    /// Values no configured key opens (they stay as they are; see the log).
    pub failed: u64,
    /// Id of the key every other value is now sealed with.
    pub key_id: String,
}

/// Body of `PATCH /api/v1/instances/{id}`: the fields to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateInstance {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Replaces the runtime options (a new generation: a running instance is redeployed).
    pub runtime: Option<RuntimeOptions>,
}

/// Filters and paging of `GET /api/v1/instances`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListInstances {
    pub platform: Option<Platform>,
    pub status: Option<Status>,
    /// Page size, 1-500 (default 100).
    pub limit: Option<usize>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of instances.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancePage {
    pub items: Vec<Instance>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Health and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The status message of an instance with a record that cannot be read (the decoding error
/// itself is logged, not shown).
pub const CORRUPT_MESSAGE: &str =
    "a record of this instance cannot be read; replace its configuration (PUT …/config) or delete it";

/// Max description length.
pub const MAX_DESCRIPTION: usize = 1024;
