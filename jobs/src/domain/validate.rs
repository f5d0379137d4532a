//! Parsing and validating a drasi-server configuration before anything is stored.
//!
//! Every problem is reported with a stable code and the JSON pointer of the faulty field, so
//! a client can show it next to the right input.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::config::{ComponentKind, DrasiConfig};

/// One thing wrong with a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Stable code, e.g. `invalid_port`, `unknown_source`, `duplicate_id`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// JSON pointer (RFC 6901) of the faulty field; empty for the whole document.
    pub pointer: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(code: &str, message: impl Into<String>, pointer: impl Into<String>) -> Self {
        Self { code: code.to_owned(), message: message.into(), pointer: pointer.into() }
    }
}

/// A configuration that failed to parse or validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .0.first().map(|e| e.message.as_str()).unwrap_or("unknown error"))]
pub struct ConfigError(pub Vec<FieldError>);

/// Check an instance's runtime options; pointers are relative to the options object.
pub fn validate_runtime(r: &super::model::RuntimeOptions) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    if let Some(image) = &r.image {
        let ok = !image.is_empty()
            && image.len() <= 255
            && !image.starts_with(['-', '.', '/', ':'])
            && image.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
        if !ok {
            errors.push(FieldError::new(
                "invalid_image",
                "image must be a container image reference: 1-255 characters of [A-Za-z0-9._/:@-]",
                "/image",
            ));
        }
    }
    if let Some(m) = &r.memory
        && !r.memory_bytes().is_some_and(|b| (4 << 20..=1 << 50).contains(&b))
    {
        errors.push(FieldError::new(
            "invalid_memory",
            format!("memory '{}' must be bytes or a quantity like 512Mi or 2Gi, between 4Mi and 1Pi", m.escape_debug()),
            "/memory",
        ));
    }
    if let Some(c) = r.cpus
        && !(0.01..=64.0).contains(&c)
    {
        errors.push(FieldError::new("invalid_cpus", "cpus must be between 0.01 and 64", "/cpus"));
    }
    if errors.is_empty() { Ok(()) } else { Err(ConfigError(errors)) }
}

/// Parse a JSON document into a configuration and validate it, within the bounds of a
/// stored document ([`super::limits`]).
pub fn parse_config(value: Value) -> Result<DrasiConfig, ConfigError> {
    super::limits::check(&value).map_err(|e| ConfigError(vec![e]))?;
    let config: DrasiConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let pointer = pointer_of(e.path());
        ConfigError(vec![serde_error(&pointer, &e.into_inner().to_string())])
    })?;
    validate_config(&config)?;
    Ok(config)
}

/// An object key as one token of a JSON pointer (RFC 6901: `~` as `~0`, `/` as `~1`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Convert a serde path (`queries[0].sources[1].sourceId`) into a JSON pointer.
pub fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        out.push('/');
        match seg {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => out.push_str(&pointer_token(key)),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

fn serde_error(pointer: &str, message: &str) -> FieldError {
    let (code, message) = if message.starts_with("unknown field") {
        ("unknown_field", message.to_owned())
    } else if message.starts_with("missing field") {
        ("missing_field", message.to_owned())
    } else if message.starts_with("component id") {
        ("invalid_component_id", message.to_owned())
    } else if message.starts_with("kind must") {
        ("invalid_kind", message.to_owned())
    } else if pointer == "/port" {
        ("invalid_port", message.to_owned())
    } else if pointer == "/logLevel" {
        ("invalid_log_level", "logLevel must be one of trace, debug, info, warn, error".to_owned())
    } else {
        ("invalid_field", message.to_owned())
    };
    FieldError::new(code, message, pointer)
}

/// Cross-field rules: unique ids per kind, queries name existing sources, reactions name
/// existing queries, the server's own fields are sane.
pub fn validate_config(config: &DrasiConfig) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    if let Some(host) = &config.host
        && (host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        errors.push(FieldError::new(
            "invalid_host",
            "host must be a non-empty address or host name without whitespace",
            "/host",
        ));
    }
    if let Some(id) = &config.id
        && id.parse::<super::ids::ComponentId>().is_err()
        && !is_env_reference(id)
    {
        errors.push(FieldError::new("invalid_server_id", "id must be 1-63 characters of [A-Za-z0-9_.-]", "/id"));
    }
    unique_ids(ComponentKind::Sources, config.sources.iter().map(|s| s.id.as_str()), &mut errors);
    unique_ids(ComponentKind::Queries, config.queries.iter().map(|q| q.id.as_str()), &mut errors);
    unique_ids(ComponentKind::Reactions, config.reactions.iter().map(|r| r.id.as_str()), &mut errors);

    let sources: HashSet<&str> = config.sources.iter().map(|s| s.id.as_str()).collect();
    for (qi, q) in config.queries.iter().enumerate() {
        if q.query.trim().is_empty() {
            errors.push(FieldError::new("empty_query", "query text must not be empty", format!("/queries/{qi}/query")));
        }
        for (si, s) in q.sources.iter().enumerate() {
            if !sources.contains(s.source_id.as_str()) && !is_builtin_source(s.source_id.as_str()) {
                errors.push(FieldError::new(
                    "unknown_source",
                    format!("query '{}' names source '{}', which does not exist", q.id, s.source_id),
                    format!("/queries/{qi}/sources/{si}/sourceId"),
                ));
            }
        }
    }
    let queries: HashSet<&str> = config.queries.iter().map(|q| q.id.as_str()).collect();
    for (ri, r) in config.reactions.iter().enumerate() {
        for (qi, q) in r.queries.iter().enumerate() {
            if !queries.contains(q.as_str()) {
                errors.push(FieldError::new(
                    "unknown_query",
                    format!("reaction '{}' names query '{q}', which does not exist", r.id),
                    format!("/reactions/{ri}/queries/{qi}"),
                ));
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ConfigError(errors)) }
}

/// Sources drasi-server provides without configuration.
pub fn is_builtin_source(id: &str) -> bool {
    id == "__component_graph__"
}

/// A drasi-server `${VAR}` reference, resolved by the server, not by draas.
pub fn is_env_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && s.len() > 3
}

fn unique_ids<'a>(kind: ComponentKind, ids: impl Iterator<Item = &'a str>, errors: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            errors.push(FieldError::new(
                "duplicate_id",
                format!("{} id '{id}' is used more than once", kind.key()),
                format!("/{}/{i}/id", kind.key()),
            ));
        }
    }
}

/// Ids of the components that depend on `id` of `kind`: the queries that read a source, the
/// reactions that follow a query.
pub fn dependants(config: &DrasiConfig, kind: ComponentKind, id: &str) -> Vec<String> {
    match kind {
        ComponentKind::Sources => config
            .queries
            .iter()
            .filter(|q| q.sources.iter().any(|s| s.source_id.as_str() == id))
            .map(|q| format!("queries/{}", q.id))
            .collect(),
        ComponentKind::Queries => config
            .reactions
            .iter()
            .filter(|r| r.queries.iter().any(|q| q.as_str() == id))
            .map(|r| format!("reactions/{}", r.id))
            .collect(),
        ComponentKind::Reactions => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn codes(v: Value) -> Vec<(String, String)> {
        match parse_config(v) {
            Ok(_) => vec![],
            Err(ConfigError(es)) => es.into_iter().map(|e| (e.code, e.pointer)).collect(),
        }
    }

    #[test]
    fn ports_out_of_range_are_rejected_at_the_port_pointer() {
        for p in [json!(0), json!(70000), json!(-1), json!("80")] {
            assert_eq!(codes(json!({"port": p})), vec![("invalid_port".into(), "/port".into())]);
        }
        assert!(codes(json!({"port": 65535})).is_empty());
    }

    #[test]
    fn unknown_top_level_fields_are_rejected() {
        assert_eq!(codes(json!({"bogus": 1})), vec![("unknown_field".into(), "/bogus".into())]);
    }

    #[test]
    fn queries_must_name_existing_sources() {
        let c = json!({"queries": [{"id": "q", "query": "MATCH (n) RETURN n", "sources": [{"sourceId": "nope"}]}]});
        assert_eq!(codes(c), vec![("unknown_source".into(), "/queries/0/sources/0/sourceId".into())]);
    }

    #[test]
    fn kind_specific_properties_survive_parsing() {
        let c = parse_config(
            json!({"sources": [{"kind": "postgres", "id": "db", "password": "${DB_PASSWORD}", "tables": ["a"]}]}),
        )
        .expect("valid");
        assert_eq!(c.sources[0].properties["password"], json!("${DB_PASSWORD}"));
        assert_eq!(c.sources[0].properties["tables"], json!(["a"]));
    }

    #[test]
    fn duplicate_ids_and_dangling_reactions_are_reported() {
        let c = json!({
            "sources": [{"kind": "mock", "id": "s"}, {"kind": "mock", "id": "s"}],
            "reactions": [{"kind": "log", "id": "r", "queries": ["missing"]}]
        });
        assert_eq!(
            codes(c),
            vec![
                ("duplicate_id".into(), "/sources/1/id".into()),
                ("unknown_query".into(), "/reactions/0/queries/0".into())
            ]
        );
    }
}
