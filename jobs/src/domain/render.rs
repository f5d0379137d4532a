//! The exact YAML a platform hands to drasi-server, and its spec hash.
//!
//! Rendering fills in what draas decides (server id, bind host, allocated port, no config
//! write-back, explicit query defaults) and serialises with serde: never a string template,
//! so any value survives a round trip.

use sha2::{Digest, Sha256};

use super::config::{DrasiConfig, LogLevel, Port};
use super::model::InstanceState;
use super::model::Platform;

/// What the platform knows at render time.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// Used as the server id when the config names none.
    pub instance_id: &'a str,
    /// Bind address when the config names none (127.0.0.1 for processes, 0.0.0.0 in containers).
    pub default_host: &'a str,
    /// Port allocated by draas, used when the config names none.
    pub allocated_port: Option<u16>,
}

/// The configuration drasi-server is given: the stored one plus draas' defaults.
pub fn effective(config: &DrasiConfig, ctx: &RenderContext<'_>) -> DrasiConfig {
    let mut c = config.clone();
    c.id.get_or_insert_with(|| ctx.instance_id.to_owned());
    c.host.get_or_insert_with(|| ctx.default_host.to_owned());
    if c.port.is_none() {
        c.port = ctx.allocated_port.and_then(|p| Port::try_from(i64::from(p)).ok());
    }
    c.log_level.get_or_insert(LogLevel::Info);
    c.persist_config.get_or_insert(false);
    for q in &mut c.queries {
        q.query_language.get_or_insert_with(|| "Cypher".to_owned());
        q.auto_start.get_or_insert(true);
    }
    c
}

/// Serialise a configuration as YAML.
pub fn to_yaml(config: &DrasiConfig) -> Result<String, serde_norway::Error> {
    serde_norway::to_string(config)
}

/// Stable hash of a rendered YAML document: 32 hex characters, short enough for a Docker or
/// Kubernetes label value.
pub fn spec_hash(yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Bind address drasi-server gets on `platform` when its config names none: the node's
/// loopback-ish host for processes, every interface inside a container or pod.
pub fn default_host(platform: Platform, process_host: &str) -> &str {
    match platform {
        Platform::Process => process_host,
        Platform::Docker | Platform::Kubernetes => "0.0.0.0",
    }
}

/// The YAML of an instance and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub yaml: String,
    pub spec_hash: String,
}

/// Render what `state`'s platform hands to drasi-server, with `port` allocated by draas.
pub fn render(state: &InstanceState, process_host: &str, port: Option<u16>) -> Result<Rendered, serde_norway::Error> {
    let instance = &state.instance.value;
    let ctx = RenderContext {
        instance_id: instance.id.as_str(),
        default_host: default_host(instance.platform, process_host),
        allocated_port: port,
    };
    let yaml = to_yaml(&effective(&state.config.value, &ctx))?;
    // Runtime options (image, limits) change what runs, so they are part of the hash.
    let spec_hash = if instance.runtime.is_empty() || instance.platform == Platform::Process {
        spec_hash(&yaml)
    } else {
        spec_hash(&format!("{yaml}\n# runtime: {}", serde_json::to_string(&instance.runtime).unwrap_or_default()))
    };
    Ok(Rendered { yaml, spec_hash })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_config;
    use serde_json::json;

    #[test]
    fn hostile_strings_survive_a_yaml_round_trip() {
        let config = parse_config(json!({
            "sources": [{"kind": "mock", "id": "s", "note": "a: b # c 'd' \"e\"\nnext line", "yes": "no", "n": "~"}],
            "queries": [{"id": "q", "query": "MATCH (n)\nWHERE n.x = 'a: b'\nRETURN n", "sources": [{"sourceId": "s"}]}]
        }))
        .expect("valid");
        let yaml = to_yaml(&config).expect("yaml");
        let back: DrasiConfig = serde_norway::from_str(&yaml).expect("parse back");
        assert_eq!(back, config);
    }

    #[test]
    fn effective_config_fills_in_draas_defaults_only_where_absent() {
        let config = parse_config(json!({"port": 9000, "queries": [{"id": "q", "query": "MATCH (n) RETURN n"}]}))
            .expect("valid");
        let ctx = RenderContext { instance_id: "abc", default_host: "127.0.0.1", allocated_port: Some(8100) };
        let e = effective(&config, &ctx);
        assert_eq!(e.id.as_deref(), Some("abc"));
        assert_eq!(e.port.map(Port::get), Some(9000));
        assert_eq!(e.persist_config, Some(false));
        assert_eq!(e.queries[0].query_language.as_deref(), Some("Cypher"));
        assert_eq!(e.queries[0].auto_start, Some(true));
    }

    #[test]
    fn spec_hash_is_short_and_stable() {
        assert_eq!(spec_hash("a"), spec_hash("a"));
        assert_ne!(spec_hash("a"), spec_hash("b"));
        assert_eq!(spec_hash("a").len(), 32);
    }
}
