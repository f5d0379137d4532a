//! Secrets in configurations: values under keys named like `password`, `token`, `secret` or
//! `key` are shown as `***` unless an admin asks to see them. `${VAR}` references are not
//! secrets (drasi-server resolves them) and pass through untouched. A client that writes a
//! redacted document back does not overwrite the secrets it never saw.

use serde_json::Value;

use super::validate::is_env_reference;

/// What a redacted value reads as.
pub const MARKER: &str = "***";

/// Does a key name a secret? (`password`, `dbPassword`, `apiKey`, `accessToken`, `clientSecret`.)
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "token", "secret", "key"].iter().any(|s| k.ends_with(s))
}

fn hides(key: &str, v: &Value) -> bool {
    is_secret_key(key) && (v.is_number() || v.as_str().is_some_and(|s| !is_env_reference(s)))
}

/// Replace every secret value in `v` by the marker.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if hides(k, val) {
                    *val = Value::String(MARKER.to_owned());
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Put back, from `old`, every secret that `new` carries only as the marker. Objects match by
/// key; array items by their `id` when they have one, else by position.
pub fn restore(new: &mut Value, old: &Value) {
    match (new, old) {
        (Value::Object(n), Value::Object(o)) => {
            for (k, val) in n.iter_mut() {
                match o.get(k) {
                    Some(prev) if is_secret_key(k) && val.as_str() == Some(MARKER) => *val = prev.clone(),
                    Some(prev) => restore(val, prev),
                    None => {}
                }
            }
        }
        (Value::Array(n), Value::Array(o)) => {
            for (i, item) in n.iter_mut().enumerate() {
                let by_id = item.get("id").and_then(|id| o.iter().find(|p| p.get("id") == Some(id)));
                if let Some(prev) = by_id.or_else(|| o.get(i)) {
                    restore(item, prev);
                }
            }
        }
        _ => {}
    }
}

/// Does `v` still hold a marker where a secret goes (nothing to restore it from)?
pub fn has_marker(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.iter().any(|(k, val)| is_secret_key(k) && val.as_str() == Some(MARKER) || has_marker(val))
        }
        Value::Array(items) => items.iter().any(has_marker),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_hidden_and_references_kept() {
        let mut v = json!({"sources": [{"id": "db", "password": "hunter2", "user": "u", "apiKey": "k1",
            "auth": {"accessToken": "t", "clientSecret": "s"}, "ref": {"password": "${DB_PASSWORD}"}}]});
        redact(&mut v);
        let s = &v["sources"][0];
        assert_eq!(
            (s["password"].as_str(), s["apiKey"].as_str(), s["user"].as_str()),
            (Some("***"), Some("***"), Some("u"))
        );
        assert_eq!(s["auth"], json!({"accessToken": "***", "clientSecret": "***"}));
        assert_eq!(s["ref"]["password"], "${DB_PASSWORD}");
    }

    #[test]
    fn a_redacted_document_written_back_keeps_the_secrets() {
        let old = json!({"sources": [{"id": "a", "password": "p1"}, {"id": "b", "password": "p2"}]});
        let mut new = old.clone();
        redact(&mut new);
        new["sources"].as_array_mut().expect("array").reverse();
        restore(&mut new, &old);
        assert_eq!(new["sources"][0]["password"], "p2");
        assert_eq!(new["sources"][1]["password"], "p1");
        assert!(!has_marker(&new));
    }
}
