//! JSON in the original's dialect: bodies read leniently (property names and JSON Patch paths
//! matched case-insensitively, `null` members dropped, as the original's Newtonsoft binding
//! did), and the original `Configuration` shape mapped onto ours (`queryText` ⇄ `query`).

use axum::http::StatusCode;
use draas_jobs::domain::config::DrasiConfig;
use draas_jobs::domain::validate::parse_config;
use serde_json::{Map, Value};

use super::error::CompatError;
use crate::auth::Caller;
use crate::extract::{MediaType, RawBody, decode_json};

/// Top-level keys of the original `Configuration`.
pub const CONFIG_KEYS: &[&str] = &["host", "port", "logLevel", "sources", "queries", "reactions"];
/// Keys of the original `ServerConfiguration`.
pub const SERVER_KEYS: &[&str] = &["host", "port", "logLevel"];
const SOURCE_KEYS: &[&str] = &["kind", "id", "autoStart"];
const QUERY_KEYS: &[&str] = &["id", "queryText", "query", "sources"];
const QUERY_SOURCE_KEYS: &[&str] = &["sourceId"];
const REACTION_KEYS: &[&str] = &["kind", "id", "queries"];
/// Every key a JSON Patch path over the original `Configuration` may name.
pub const ALL_CONFIG_KEYS: &[&str] = &[
    "host",
    "port",
    "logLevel",
    "sources",
    "queries",
    "reactions",
    "kind",
    "id",
    "autoStart",
    "queryText",
    "query",
    "sourceId",
];

/// The body as JSON, or `None` when it is empty. JSON (or, with `patch`, JSON Patch) only.
pub fn body(body: &RawBody, patch: bool) -> Result<Option<Value>, CompatError> {
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match body.media {
        None | Some(MediaType::Json) => {}
        Some(MediaType::JsonPatch) if patch => {}
        _ => {
            let expected = if patch { "application/json-patch+json or application/json" } else { "application/json" };
            return Err(CompatError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be {expected}"),
            ));
        }
    }
    Ok(Some(decode_json::<Value>(&body.bytes)?))
}

/// An object body with its known keys spelled as `known` (unknown keys are kept).
pub fn object(v: Value, known: &[&str]) -> Result<Map<String, Value>, CompatError> {
    let Value::Object(mut obj) = v else {
        return Err(CompatError::bad_request("the request body must be a JSON object"));
    };
    canonical_keys(&mut obj, known);
    Ok(obj)
}

/// Rename keys that match one of `known` case-insensitively to its spelling.
pub fn canonical_keys(obj: &mut Map<String, Value>, known: &[&str]) {
    let renames: Vec<(String, &str)> = obj
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .filter_map(|k| known.iter().find(|n| n.eq_ignore_ascii_case(k)).map(|n| (k.clone(), *n)))
        .collect();
    for (old, new) in renames {
        if !obj.contains_key(new)
            && let Some(v) = obj.remove(&old)
        {
            obj.insert(new.to_owned(), v);
        }
    }
}

fn tidy(obj: &mut Map<String, Value>, known: &[&str]) {
    canonical_keys(obj, known);
    obj.retain(|k, v| !(v.is_null() && known.contains(&k.as_str())));
}

fn each(obj: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        items.iter_mut().filter_map(Value::as_object_mut).for_each(&mut f);
    }
}

/// drasi-server's log levels are lowercase; the original passed any spelling through.
pub fn lower_log_level(obj: &mut Map<String, Value>) {
    if let Some(Value::String(level)) = obj.get_mut("logLevel") {
        *level = level.to_ascii_lowercase();
    }
}

/// An original `Configuration` (or ours) as our configuration document. `before` is the
/// document a patch was applied to: it tells which of `query`/`queryText` the client edited.
pub fn config_in(mut v: Value, before: Option<&Value>) -> Value {
    let Some(obj) = v.as_object_mut() else { return v };
    tidy(obj, CONFIG_KEYS);
    lower_log_level(obj);
    each(obj, "sources", |s| tidy(s, SOURCE_KEYS));
    each(obj, "reactions", |r| tidy(r, REACTION_KEYS));
    let old = before.and_then(|b| b.get("queries")).and_then(Value::as_array);
    each(obj, "queries", |q| {
        tidy(q, QUERY_KEYS);
        each(q, "sources", |s| tidy(s, QUERY_SOURCE_KEYS));
        query_text(q, old);
    });
    v
}

/// Fold the original's `queryText` into our `query`.
fn query_text(q: &mut Map<String, Value>, old: Option<&Vec<Value>>) {
    let Some(text) = q.remove("queryText") else { return };
    let Some(now) = q.get("query").cloned() else {
        q.insert("query".into(), text);
        return;
    };
    if now == text {
        return;
    }
    let id = q.get("id");
    let edited_query =
        old.is_none_or(|old| old.iter().filter(|o| o.get("id") == id).all(|o| o.get("query") != Some(&now)));
    if !edited_query {
        q.insert("query".into(), text);
    }
}

/// [`config_out`] as `caller` may see it: secrets shown to an admin token only (the original
/// API had no redaction; its clients that need secrets back hold an admin token).
pub fn config_shown(c: &DrasiConfig, caller: &Caller) -> Result<Value, CompatError> {
    Ok(crate::secrets::shown(config_out(c)?, caller.is_admin()))
}

/// Our configuration in the original's shape: ours, with the server's own fields always
/// present (`null` = draas chooses; so a JSON Patch `replace` finds them), plus each query's
/// text as `queryText`.
pub fn config_out(c: &DrasiConfig) -> Result<Value, CompatError> {
    let mut v = serde_json::to_value(c).map_err(|e| CompatError::internal(&e))?;
    if let Some(obj) = v.as_object_mut() {
        for key in SERVER_KEYS {
            obj.entry(*key).or_insert(Value::Null);
        }
        each(obj, "queries", |q| {
            if let Some(text) = q.get("query").cloned() {
                q.insert("queryText".into(), text);
            }
        });
    }
    Ok(v)
}

/// Validate an original `Configuration` as ours.
pub fn parse_original_config(v: Value, before: Option<&Value>) -> Result<DrasiConfig, CompatError> {
    Ok(parse_config(config_in(v, before))?)
}

/// A JSON Patch document, with operation names lowercased and path segments naming `known`
/// keys spelled as ours (the original's JSON Patch matched them case-insensitively).
pub fn patch(v: Option<Value>, known: &[&str]) -> Result<json_patch::Patch, CompatError> {
    let ops = match v {
        None | Some(Value::Null) => return Err(CompatError::bad_request("Patch document is required")),
        Some(Value::Array(ops)) => ops,
        Some(_) => return Err(CompatError::bad_request("invalid JSON Patch document: it must be an array")),
    };
    let ops = ops.into_iter().map(|op| patch_op(op, known)).collect();
    serde_json::from_value(Value::Array(ops))
        .map_err(|e| CompatError::bad_request(format!("invalid JSON Patch document: {e}")))
}

fn patch_op(mut op: Value, known: &[&str]) -> Value {
    if let Some(o) = op.as_object_mut() {
        canonical_keys(o, &["op", "path", "from", "value"]);
        if let Some(Value::String(name)) = o.get_mut("op") {
            *name = name.to_ascii_lowercase();
        }
        for key in ["path", "from"] {
            if let Some(Value::String(p)) = o.get_mut(key) {
                *p = p
                    .split('/')
                    .map(|seg| known.iter().find(|k| k.eq_ignore_ascii_case(seg)).copied().unwrap_or(seg))
                    .collect::<Vec<_>>()
                    .join("/");
            }
        }
    }
    op
}

/// Apply a JSON Patch for `caller` (see [`crate::patch::apply`]); a failing operation is a
/// 400 naming it, one that touches a secret a 403.
pub fn apply_patch(doc: &mut Value, p: &json_patch::Patch, caller: &Caller) -> Result<(), CompatError> {
    crate::patch::apply(doc, p, caller).map_err(|e| {
        let status = if e.code == "secret_path_forbidden" { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
        CompatError::new(status, e.message)
    })
}
