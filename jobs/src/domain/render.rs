//! The exact YAML a platform hands to drasi-server, and its spec hash.
//!
//! Rendering fills in what draas decides (server id, bind host, allocated ports for the server
//! and for the components that listen, no config write-back, explicit query defaults) and
//! serialises with serde: never a string template, so any value survives a round trip.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::config::{DrasiConfig, LogLevel, Port};
use super::model::{InstanceState, ObservedRecord, Platform};
use super::network::{self, Policy};

/// Components that open a port of their own (collection, kind): the http source and the sse
/// reaction, both with `host` and `port` properties.
const LISTENING: &[(&str, &str)] = &[("sources", "http"), ("reactions", "sse")];

/// A component that listens on a port of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `sources/<id>` or `reactions/<id>`: the component's name in port tables and endpoints.
    pub name: String,
    /// The port its configuration names, when it names one.
    pub port: Option<u16>,
}

/// The components of `config` that listen.
pub fn listeners(config: &DrasiConfig) -> Vec<Listener> {
    let port_of = |p: &Map<String, Value>| p.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
    let sources = config.sources.iter().map(|s| ("sources", s.kind.as_str(), s.id.as_str(), &s.properties));
    let reactions = config.reactions.iter().map(|r| ("reactions", r.kind.as_str(), r.id.as_str(), &r.properties));
    sources
        .chain(reactions)
        .filter(|(collection, kind, _, _)| LISTENING.contains(&(collection, kind)))
        .map(|(collection, _, id, props)| Listener { name: format!("{collection}/{id}"), port: port_of(props) })
        .collect()
}

/// The ports draas allocated to an instance: the server's and its listening components'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ports {
    pub server: Option<u16>,
    /// By listener name (`sources/<id>`).
    pub components: BTreeMap<String, u16>,
}

impl Ports {
    /// The ports an instance was started with.
    pub fn observed(o: Option<&ObservedRecord>) -> Self {
        o.map_or_else(Self::default, |o| Self { server: o.port, components: o.component_ports.clone() })
    }
}

/// What the platform knows at render time.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// Used as the server id when the config names none.
    pub instance_id: &'a str,
    /// Bind address when the config names none (127.0.0.1 for processes, 0.0.0.0 in containers).
    pub default_host: &'a str,
    /// Ports allocated by draas, used where the config names none.
    pub ports: &'a Ports,
    /// The server `host` and `port` a configuration may name.
    pub policy: Policy<'a>,
}

/// The configuration drasi-server is given: the stored one plus draas' defaults, and the
/// server port draas allocated whatever the stored one says.
pub fn effective(config: &DrasiConfig, ctx: &RenderContext<'_>) -> DrasiConfig {
    let mut c = config.clone();
    let own = Policy { own_host: Some(ctx.default_host), own_port: ctx.ports.server, ..ctx.policy };
    network::confine(&mut c, own);
    c.id.get_or_insert_with(|| ctx.instance_id.to_owned());
    c.host.get_or_insert_with(|| ctx.default_host.to_owned());
    // The port draas allocated is the one the server binds (and the one it is probed on).
    if let Some(p) = ctx.ports.server.and_then(|p| Port::try_from(i64::from(p)).ok()) {
        c.port = Some(p);
    }
    let listening = |collection: &str, kind: &str| LISTENING.contains(&(collection, kind));
    let fill = |props: &mut Map<String, Value>, name: String| {
        if let Some(port) = ctx.ports.components.get(&name) {
            props.entry("port").or_insert_with(|| Value::from(*port));
        }
        props.entry("host").or_insert_with(|| Value::from(ctx.default_host));
    };
    for s in c.sources.iter_mut().filter(|s| listening("sources", s.kind.as_str())) {
        fill(&mut s.properties, format!("sources/{}", s.id));
    }
    for r in c.reactions.iter_mut().filter(|r| listening("reactions", r.kind.as_str())) {
        fill(&mut r.properties, format!("reactions/{}", r.id));
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
    hex::encode(&digest[..16])
}

/// Bind address drasi-server gets on `platform` when its config names none: the node's
/// loopback-ish host for processes, every interface inside a container or pod.
pub fn default_host(platform: Platform, process_host: &str) -> &str {
    match platform {
        Platform::Process => process_host,
        Platform::Docker | Platform::Kubernetes => "0.0.0.0",
    }
}

/// The YAML of an instance, the configuration it holds, and its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub yaml: String,
    pub spec_hash: String,
    /// The configuration drasi-server gets (draas' defaults filled in).
    pub config: DrasiConfig,
}

/// Render what `state`'s platform hands to drasi-server, with the `ports` draas allocated,
/// under the network `policy`.
pub fn render(
    state: &InstanceState,
    process_host: &str,
    ports: &Ports,
    policy: Policy<'_>,
) -> Result<Rendered, serde_norway::Error> {
    let instance = &state.instance.value;
    let ctx = RenderContext {
        instance_id: instance.id.as_str(),
        default_host: default_host(instance.platform, process_host),
        ports,
        policy,
    };
    let config = effective(&state.config.value, &ctx);
    let yaml = to_yaml(&config)?;
    let spec_hash = instance_hash(&yaml, state);
    Ok(Rendered { yaml, spec_hash, config })
}

/// The spec hash of `yaml` run as `state`'s instance: runtime options (image, limits) change
/// what runs, so on the container platforms they are part of it; so does every change of the
/// instance's secrets (their environment is set when the server starts).
pub fn instance_hash(yaml: &str, state: &InstanceState) -> String {
    let instance = &state.instance.value;
    let mut doc = yaml.to_owned();
    if !instance.runtime.is_empty() && instance.platform != Platform::Process {
        doc = format!("{doc}\n# runtime: {}", serde_json::to_string(&instance.runtime).unwrap_or_default());
    }
    if state.secrets_rev > 0 {
        doc = format!("{doc}\n# secrets: {}", state.secrets_rev);
    }
    spec_hash(&doc)
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
    fn effective_config_fills_in_draas_defaults_where_absent_and_always_the_allocated_port() {
        let config = parse_config(json!({"port": 9000, "queries": [{"id": "q", "query": "MATCH (n) RETURN n"}]}))
            .expect("valid");
        let ports = Ports { server: Some(8100), ..Ports::default() };
        let ctx =
            RenderContext { instance_id: "abc", default_host: "127.0.0.1", ports: &ports, policy: Policy::default() };
        let e = effective(&config, &ctx);
        assert_eq!(e.id.as_deref(), Some("abc"));
        assert_eq!(e.port.map(Port::get), Some(8100));
        assert_eq!(e.persist_config, Some(false));
        assert_eq!(e.queries[0].query_language.as_deref(), Some("Cypher"));
        assert_eq!(e.queries[0].auto_start, Some(true));
    }

    #[test]
    fn listening_components_get_their_allocated_port_and_the_default_host_unless_named() {
        let config = parse_config(json!({
            "sources": [{"kind": "http", "id": "hook"}, {"kind": "mock", "id": "m"}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "m"}]}],
            "reactions": [{"kind": "sse", "id": "s", "queries": ["q"], "port": 9999, "host": "127.0.0.9"}]
        }))
        .expect("valid");
        let names: Vec<(String, Option<u16>)> = listeners(&config).into_iter().map(|l| (l.name, l.port)).collect();
        assert_eq!(names, [("sources/hook".to_owned(), None), ("reactions/s".to_owned(), Some(9999))]);
        let ports = Ports { server: Some(8100), components: [("sources/hook".to_owned(), 8101)].into() };
        let ctx = RenderContext { instance_id: "i", default_host: "0.0.0.0", ports: &ports, policy: Policy::default() };
        let e = effective(&config, &ctx);
        assert_eq!(e.sources[0].properties["port"], json!(8101));
        assert_eq!(e.sources[0].properties["host"], json!("0.0.0.0"));
        assert!(!e.sources[1].properties.contains_key("port"), "a mock source does not listen");
        assert_eq!(
            (e.reactions[0].properties["port"].clone(), e.reactions[0].properties["host"].clone()),
            (json!(9999), json!("127.0.0.9"))
        );
    }

    #[test]
    fn spec_hash_is_short_and_stable() {
        assert_eq!(spec_hash("a"), spec_hash("a"));
        assert_ne!(spec_hash("a"), spec_hash("b"));
        assert_eq!(spec_hash("a").len(), 32);
    }
}
