//! drasi-server's own configuration, as typed as draas needs it and no more.
//!
//! Top-level keys are drasi-server's (unknown ones are rejected, as the server does). Each
//! source, query and reaction keeps its kind-specific properties in a pass-through map, so
//! whatever a plugin understands reaches the server as written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::ids::ComponentId;

/// A drasi-server configuration file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrasiConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Server id; draas fills in the instance id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Bind address; draas fills in the platform's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Port; draas allocates one at start when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<u16>, minimum = 1, maximum = 65535)]
    pub port: Option<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// draas renders `false` when absent, so the desired config stays draas' own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_config: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persist_index: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_archive: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_ui: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solutions_dir: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_store: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_priority_queue_capacity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_dispatch_buffer_capacity: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_registry: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_install_plugins: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_plugins: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_identities: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_reload_plugins: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot_reload_debounce_ms: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_allowed_origins: Option<Value>,
    #[serde(default)]
    pub sources: Vec<Source>,
    #[serde(default)]
    pub queries: Vec<Query>,
    #[serde(default)]
    pub reactions: Vec<Reaction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_providers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_providers: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<Value>,
}

/// A source: `kind`, `id`, `autoStart`, and the kind's own properties at the same level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub kind: Kind,
    #[schema(value_type = String)]
    pub id: ComponentId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start: Option<bool>,
    /// Kind-specific properties (host, database, tables, ...), passed through untouched.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// A continuous query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    #[schema(value_type = String)]
    pub id: ComponentId,
    /// The query text (Cypher unless `queryLanguage` says otherwise).
    pub query: String,
    /// draas renders `Cypher` when absent (drasi-server itself would assume GQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_language: Option<String>,
    /// draas renders `true` when absent (drasi-server itself would assume false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start: Option<bool>,
    #[serde(default)]
    pub sources: Vec<QuerySource>,
    /// Other query settings (middleware, joins, enableBootstrap, ...), passed through.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// A query's subscription to a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuerySource {
    #[schema(value_type = String)]
    pub source_id: ComponentId,
    /// nodes, relations, pipeline, ... passed through.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// A reaction: `kind`, `id`, the queries it follows, and the kind's own properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub kind: Kind,
    #[schema(value_type = String)]
    pub id: ComponentId,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub queries: Vec<ComponentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_start: Option<bool>,
    /// Kind-specific properties (baseUrl, routes, templates, ...), passed through untouched.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// drasi-server's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A TCP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port(u16);

impl Port {
    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<i64> for Port {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p != 0 => Ok(Port(p)),
            _ => Err(format!("port must be between 1 and 65535, got {n}")),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.0)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n =
            i64::deserialize(d).map_err(|_| serde::de::Error::custom("port must be an integer between 1 and 65535"))?;
        Port::try_from(n).map_err(serde::de::Error::custom)
    }
}

/// A source or reaction kind: a plugin name such as `postgres`, `mock`, `log`, `http`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = String)]
pub struct Kind(String);

impl Kind {
    /// A kind no plugin has: stands for a component draas did not configure (found on a server
    /// that was changed behind draas' back).
    pub fn unknown() -> Self {
        Kind("unknown".to_owned())
    }

    /// The kind as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/'));
        if ok {
            Ok(Kind(s))
        } else {
            Err(serde::de::Error::custom(
                "kind must be 1-63 characters of [A-Za-z0-9_./-], starting with a letter or digit",
            ))
        }
    }
}

/// The three component collections of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Sources,
    Queries,
    Reactions,
}

impl ComponentKind {
    /// The key of the collection in the configuration (`sources`, `queries`, `reactions`).
    pub fn key(self) -> &'static str {
        match self {
            ComponentKind::Sources => "sources",
            ComponentKind::Queries => "queries",
            ComponentKind::Reactions => "reactions",
        }
    }

    /// One of the collection (`source`, `query`, `reaction`).
    pub fn singular(self) -> &'static str {
        match self {
            ComponentKind::Sources => "source",
            ComponentKind::Queries => "query",
            ComponentKind::Reactions => "reaction",
        }
    }
}
