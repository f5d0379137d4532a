//! A configuration change applied to a running drasi-server through its own API: the steps
//! from the configuration it runs to the new one, in dependency order, or why it cannot be
//! done live (a top-level change needs a new server).
//!
//! drasi-server changes components at runtime: create, `PUT` (sources and reactions), delete.
//! Queries have no `PUT`, so a changed query is deleted and created again; so is a changed
//! source (drasi-server 0.2.2 answers a source's `PUT` with 200 but the queries reading it get
//! no more data). The server refuses to delete a query that reactions follow, or a source that
//! queries read, so those are taken down first and put back after. The order: reactions,
//! queries, sources come down; sources, queries, reactions go up; a changed reaction is
//! replaced in place.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::config::{ComponentKind as Collection, DrasiConfig, Kind, Query, Reaction, Source};

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `DELETE /api/v1/<collection>/<id>`.
    Delete,
    /// `POST /api/v1/<collection>` with the component.
    Create,
    /// `PUT /api/v1/<collection>/<id>` with the component (reactions).
    Replace,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Create => "create",
            Self::Replace => "replace",
        }
    }
}

/// One call to the server's API.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub action: Action,
    pub collection: Collection,
    pub id: String,
    /// The component as the server's configuration file would hold it (create and replace).
    pub body: Option<Value>,
}

impl Step {
    /// `create reaction out`.
    pub fn describe(&self) -> String {
        format!("{} {} {}", self.action.as_str(), self.collection.singular(), self.id)
    }
}

/// How a new configuration reaches a running server.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Through its API, these steps in this order (none: it already runs this configuration).
    Live(Vec<Step>),
    /// Only a new server can take it: why.
    Restart(String),
}

/// The plan from `running` to `desired` (both as drasi-server gets them).
pub fn plan(running: &DrasiConfig, desired: &DrasiConfig) -> Plan {
    let changed = top_level_changes(running, desired);
    if !changed.is_empty() {
        return Plan::Restart(format!("top_level_changed: {}", changed.join(", ")));
    }
    let sources = diff(&running.sources, &desired.sources, |s| s.id.as_str());
    let queries = diff(&running.queries, &desired.queries, |q| q.id.as_str());
    let reactions = diff(&running.reactions, &desired.reactions, |r| r.id.as_str());

    // A changed source is deleted and created again, with the queries that read it (and their
    // reactions): drasi-server 0.2's `PUT` of a source answers 200 but leaves the queries that
    // read it without data.
    let source_recreated: BTreeSet<&str> = sources
        .changed
        .iter()
        .map(|(old, _)| old.id.as_str())
        .chain(sources.removed.iter().map(|s| s.id.as_str()))
        .collect();
    // Queries come down when they change or go, or when a source they read comes down.
    let mut query_down: BTreeSet<&str> = queries.removed.iter().map(|q| q.id.as_str()).collect();
    query_down.extend(queries.changed.iter().map(|(old, _)| old.id.as_str()));
    for q in &running.queries {
        if q.sources.iter().any(|s| source_recreated.contains(s.source_id.as_str())) {
            query_down.insert(q.id.as_str());
        }
    }
    // Reactions come down when they go, when they change kind, or when a query they follow
    // comes down.
    let mut reaction_down: BTreeSet<&str> = reactions.removed.iter().map(|r| r.id.as_str()).collect();
    reaction_down.extend(reactions.changed.iter().filter(|(o, n)| o.kind != n.kind).map(|(o, _)| o.id.as_str()));
    for r in &running.reactions {
        if r.queries.iter().any(|q| query_down.contains(q.as_str())) {
            reaction_down.insert(r.id.as_str());
        }
    }

    let mut steps = Vec::new();
    let down = |collection, id: &str| Step { action: Action::Delete, collection, id: id.to_owned(), body: None };
    steps.extend(reaction_down.iter().map(|id| down(Collection::Reactions, id)));
    steps.extend(query_down.iter().map(|id| down(Collection::Queries, id)));
    steps.extend(source_recreated.iter().map(|id| down(Collection::Sources, id)));

    let running_ids = |ids: Vec<&str>| -> BTreeSet<String> { ids.into_iter().map(str::to_owned).collect() };
    let source_ids = running_ids(running.sources.iter().map(|s| s.id.as_str()).collect());
    for s in &desired.sources {
        let id = s.id.as_str();
        if !source_ids.contains(id) || source_recreated.contains(id) {
            steps.push(up(Action::Create, Collection::Sources, id, s));
        }
    }
    let query_ids = running_ids(running.queries.iter().map(|q| q.id.as_str()).collect());
    for q in &desired.queries {
        let id = q.id.as_str();
        if !query_ids.contains(id) || query_down.contains(id) {
            steps.push(up(Action::Create, Collection::Queries, id, q));
        }
    }
    let reaction_ids = running_ids(running.reactions.iter().map(|r| r.id.as_str()).collect());
    for r in &desired.reactions {
        let id = r.id.as_str();
        let old = running.reactions.iter().find(|o| o.id == r.id);
        if !reaction_ids.contains(id) || reaction_down.contains(id) {
            steps.push(up(Action::Create, Collection::Reactions, id, r));
        } else if old.is_some_and(|o| o != r) {
            steps.push(up(Action::Replace, Collection::Reactions, id, r));
        }
    }
    Plan::Live(steps)
}

/// The configuration a server that runs `applied` has once its components are the ones it
/// reports (`present`, by collection and id): components it lost are taken as absent (so they
/// are created again), components it has that `applied` lacks as unknown ones (so a plan
/// deletes them; their bodies do not matter).
pub fn as_found(applied: &DrasiConfig, present: &[(Collection, String)]) -> DrasiConfig {
    let has = |c: Collection, id: &str| present.iter().any(|(pc, pid)| *pc == c && pid == id);
    let mut found = applied.clone();
    found.sources.retain(|s| has(Collection::Sources, s.id.as_str()));
    found.queries.retain(|q| has(Collection::Queries, q.id.as_str()));
    found.reactions.retain(|r| has(Collection::Reactions, r.id.as_str()));
    for (c, id) in present {
        let Ok(cid) = id.parse::<super::ids::ComponentId>() else { continue };
        match c {
            Collection::Sources if !applied.sources.iter().any(|s| s.id == cid) => found.sources.push(Source {
                kind: Kind::unknown(),
                id: cid,
                auto_start: None,
                properties: Default::default(),
            }),
            Collection::Queries if !applied.queries.iter().any(|q| q.id == cid) => found.queries.push(Query {
                id: cid,
                query: String::new(),
                query_language: None,
                auto_start: None,
                sources: Vec::new(),
                properties: Default::default(),
            }),
            Collection::Reactions if !applied.reactions.iter().any(|r| r.id == cid) => {
                found.reactions.push(Reaction {
                    kind: Kind::unknown(),
                    id: cid,
                    queries: Vec::new(),
                    auto_start: None,
                    properties: Default::default(),
                });
            }
            _ => {}
        }
    }
    found
}

fn up<T: Serialize>(action: Action, collection: Collection, id: &str, component: &T) -> Step {
    Step { action, collection, id: id.to_owned(), body: serde_json::to_value(component).ok() }
}

struct Diff<'a, T> {
    removed: Vec<&'a T>,
    changed: Vec<(&'a T, &'a T)>,
}

fn diff<'a, T: PartialEq>(old: &'a [T], new: &'a [T], id: impl Fn(&T) -> &str) -> Diff<'a, T> {
    let removed = old.iter().filter(|o| !new.iter().any(|n| id(n) == id(o))).collect();
    let changed =
        old.iter().filter_map(|o| new.iter().find(|n| id(n) == id(o)).filter(|n| *n != o).map(|n| (o, n))).collect();
    Diff { removed, changed }
}

/// The top-level keys (everything but the three collections) whose values differ.
fn top_level_changes(a: &DrasiConfig, b: &DrasiConfig) -> Vec<String> {
    let strip = |c: &DrasiConfig| {
        let mut v = serde_json::to_value(c).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            for k in ["sources", "queries", "reactions"] {
                m.remove(k);
            }
        }
        v.as_object().cloned().unwrap_or_default()
    };
    let (a, b) = (strip(a), strip(b));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> DrasiConfig {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({
            "port": 8100,
            "sources": [{"kind": "mock", "id": "s", "intervalMs": 100}],
            "queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "s"}]}],
            "reactions": [{"kind": "log", "id": "r", "queries": ["q"]}]
        })
    }

    fn described(plan: Plan) -> Vec<String> {
        match plan {
            Plan::Live(steps) => steps.iter().map(Step::describe).collect(),
            Plan::Restart(why) => vec![format!("restart: {why}")],
        }
    }

    #[test]
    fn the_same_configuration_needs_nothing() {
        assert_eq!(plan(&config(base()), &config(base())), Plan::Live(vec![]));
    }

    #[test]
    fn an_added_reaction_is_created() {
        let mut new = base();
        new["reactions"].as_array_mut().unwrap().push(json!({"kind": "sse", "id": "out", "queries": ["q"]}));
        assert_eq!(described(plan(&config(base()), &config(new))), ["create reaction out"]);
    }

    #[test]
    fn a_changed_reaction_is_replaced_in_place() {
        let mut new = base();
        new["reactions"][0]["extra"] = json!(true);
        assert_eq!(described(plan(&config(base()), &config(new))), ["replace reaction r"]);
    }

    #[test]
    fn a_changed_source_is_recreated_with_what_reads_it_whatever_changed() {
        let mut properties = base();
        properties["sources"][0]["intervalMs"] = json!(500);
        let mut kind = base();
        kind["sources"][0] = json!({"kind": "http", "id": "s"});
        for new in [properties, kind] {
            assert_eq!(
                described(plan(&config(base()), &config(new))),
                [
                    "delete reaction r",
                    "delete query q",
                    "delete source s",
                    "create source s",
                    "create query q",
                    "create reaction r"
                ]
            );
        }
    }

    #[test]
    fn a_changed_query_is_recreated_with_the_reactions_following_it() {
        let mut new = base();
        new["queries"][0]["query"] = json!("MATCH (n) RETURN n.id");
        assert_eq!(
            described(plan(&config(base()), &config(new))),
            ["delete reaction r", "delete query q", "create query q", "create reaction r"]
        );
    }

    #[test]
    fn removals_go_reactions_first_and_additions_sources_first() {
        let old = config(base());
        let empty = config(json!({"port": 8100}));
        assert_eq!(described(plan(&old, &empty)), ["delete reaction r", "delete query q", "delete source s"]);
        assert_eq!(described(plan(&empty, &old)), ["create source s", "create query q", "create reaction r"]);
    }

    #[test]
    fn a_top_level_change_needs_a_restart() {
        let mut new = base();
        new["logLevel"] = json!("debug");
        new["port"] = json!(8101);
        assert_eq!(described(plan(&config(base()), &config(new))), ["restart: top_level_changed: logLevel, port"]);
    }

    #[test]
    fn components_changed_behind_draas_back_are_put_back() {
        let applied = config(base());
        // The server lost reaction r and gained a query nobody configured.
        let present = [
            (Collection::Sources, "s".to_owned()),
            (Collection::Queries, "q".to_owned()),
            (Collection::Queries, "extra".to_owned()),
        ];
        let found = as_found(&applied, &present);
        assert_eq!(described(plan(&found, &applied)), ["delete query extra", "create reaction r"]);
    }
}
