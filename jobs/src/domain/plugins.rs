//! drasi-server plugins: every source, bootstrap provider and reaction kind but the built-in
//! ones is a shared library `libdrasi_<type>_<kind>.so` the server loads from its plugins
//! directory. A catalog is what one place (a node's directory, a Docker worker's directory,
//! the Kubernetes plugins image) provides; a configuration names what it needs.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::config::DrasiConfig;
use super::model::Platform;

/// Kinds the server has without plugins (`type/kind`).
pub const BUILTIN: &[&str] = &["reaction/application"];

/// The plugin (`type/kind`, e.g. `source/postgres`) a file provides, from its name.
pub fn from_file_name(name: &str) -> Option<String> {
    let stem = name.strip_prefix("libdrasi_")?.strip_suffix(".so")?;
    let (kind, rest) = stem.split_once('_')?;
    (!rest.is_empty() && ["source", "reaction", "bootstrap", "identity"].contains(&kind))
        .then(|| format!("{kind}/{rest}"))
}

/// What a plugins directory provides (`None` when there is no such directory).
pub fn scan(dir: &Path) -> Option<Catalog> {
    let entries = std::fs::read_dir(dir).ok()?;
    let kinds = entries.flatten().filter_map(|e| from_file_name(&e.file_name().to_string_lossy())).collect();
    Some(Catalog { kinds })
}

/// The plugins one place provides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// `type/kind`, e.g. `source/postgres`, `reaction/sse`.
    pub kinds: BTreeSet<String>,
}

impl Catalog {
    /// Does it provide `plugin` (built-in kinds always)?
    pub fn provides(&self, plugin: &str) -> bool {
        BUILTIN.contains(&plugin) || self.kinds.contains(plugin)
    }

    /// Everything `self` or `other` provides.
    pub fn union(mut self, other: &Catalog) -> Catalog {
        self.kinds.extend(other.kinds.iter().cloned());
        self
    }
}

/// Where a catalog was published: a node's processes, a Docker worker's directory, or the
/// Kubernetes plugins the settings declare.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Process(String),
    Docker(String),
    Kubernetes,
}

impl Scope {
    /// The scope's name in the store (`process:<node>`, `docker:<node>`, `kubernetes`).
    pub fn key(&self) -> String {
        match self {
            Scope::Process(n) => format!("process:{n}"),
            Scope::Docker(n) => format!("docker:{n}"),
            Scope::Kubernetes => "kubernetes".to_owned(),
        }
    }

    /// The scope of a stored name.
    pub fn parse(key: &str) -> Option<Self> {
        match key.split_once(':') {
            Some(("process", n)) => Some(Scope::Process(n.to_owned())),
            Some(("docker", n)) => Some(Scope::Docker(n.to_owned())),
            None if key == "kubernetes" => Some(Scope::Kubernetes),
            _ => None,
        }
    }
}

/// What an instance on `platform` (placed on `node`, for processes) can count on, from the
/// published catalogs; `None` when nobody published one (then nothing can be checked). An
/// unplaced process instance may run on any node that published.
pub fn for_platform(published: &[(Scope, Catalog)], platform: Platform, node: Option<&str>) -> Option<Catalog> {
    let matching = published.iter().filter(|(scope, _)| match (scope, platform) {
        (Scope::Process(n), Platform::Process) => node.is_none_or(|want| want == n),
        (Scope::Docker(_), Platform::Docker) => true,
        (Scope::Kubernetes, Platform::Kubernetes) => true,
        _ => false,
    });
    matching.fold(None, |acc: Option<Catalog>, (_, c)| Some(acc.unwrap_or_default().union(c)))
}

/// A plugin a configuration needs, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// `type/kind`.
    pub plugin: String,
    /// JSON pointer of the component's `kind`, e.g. `/sources/0/kind`.
    pub pointer: String,
    /// `source 'shop'`, as drasi-server names it.
    pub component: String,
}

/// Every plugin `config` needs (built-in kinds left out), in configuration order.
pub fn needed(config: &DrasiConfig) -> Vec<Needed> {
    let mut out = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        out.push(Needed {
            plugin: format!("source/{}", s.kind.as_str()),
            pointer: format!("/sources/{i}/kind"),
            component: format!("source '{}'", s.id),
        });
        if let Some(kind) = s.properties.get("bootstrapProvider").and_then(|b| b.get("kind")).and_then(|k| k.as_str()) {
            out.push(Needed {
                plugin: format!("bootstrap/{kind}"),
                pointer: format!("/sources/{i}/bootstrapProvider/kind"),
                component: format!("source '{}'", s.id),
            });
        }
    }
    for (i, r) in config.reactions.iter().enumerate() {
        out.push(Needed {
            plugin: format!("reaction/{}", r.kind.as_str()),
            pointer: format!("/reactions/{i}/kind"),
            component: format!("reaction '{}'", r.id),
        });
    }
    out.retain(|n| !BUILTIN.contains(&n.plugin.as_str()));
    out
}

/// What `config` needs that `catalog` lacks.
pub fn missing(config: &DrasiConfig, catalog: &Catalog) -> Vec<Needed> {
    needed(config).into_iter().filter(|n| !catalog.provides(&n.plugin)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_config;
    use serde_json::json;

    #[test]
    fn file_names_name_their_plugin_and_others_are_ignored() {
        assert_eq!(from_file_name("libdrasi_source_postgres.so").as_deref(), Some("source/postgres"));
        assert_eq!(from_file_name("libdrasi_bootstrap_postgres.so").as_deref(), Some("bootstrap/postgres"));
        assert_eq!(from_file_name("libdrasi_reaction_sse.so").as_deref(), Some("reaction/sse"));
        assert_eq!(from_file_name("libfoo.so"), None);
        assert_eq!(from_file_name("libdrasi_source_.so"), None);
        assert_eq!(from_file_name("plugins.lock"), None);
    }

    #[test]
    fn a_config_needs_its_kinds_and_bootstrap_providers_but_not_built_ins() {
        let config = parse_config(json!({
            "sources": [{"kind": "postgres", "id": "shop", "bootstrapProvider": {"kind": "postgres"}}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "shop"}]}],
            "reactions": [{"kind": "sse", "id": "s", "queries": ["q"]}, {"kind": "application", "id": "a", "queries": ["q"]}]
        }))
        .unwrap();
        let plugins: Vec<String> = needed(&config).into_iter().map(|n| format!("{} {}", n.plugin, n.pointer)).collect();
        assert_eq!(
            plugins,
            [
                "source/postgres /sources/0/kind",
                "bootstrap/postgres /sources/0/bootstrapProvider/kind",
                "reaction/sse /reactions/0/kind"
            ]
        );
        let catalog = Catalog { kinds: ["source/postgres".to_owned(), "reaction/sse".to_owned()].into() };
        let lacking: Vec<String> = missing(&config, &catalog).into_iter().map(|n| n.plugin).collect();
        assert_eq!(lacking, ["bootstrap/postgres"]);
    }
}
