//! Secrets in configurations, shown as `***` unless an admin asks to see them: every value
//! under a key that names a secret (`password`, `pwd`, `pass`, `token`, `secret`, `key`, and
//! their plurals such as `apiKeys`), however it nests (`token: {value: …}`, `apiKeys: […]`);
//! the password of a URL in any string (`postgres://user:pw@host`); and `password=`/`pwd=`
//! pairs of a connection string. `${VAR}` references are not secrets (drasi-server resolves
//! them) and pass through untouched. A client that writes a redacted document back does not
//! overwrite the secrets it never saw.

use serde_json::Value;

use super::validate::is_env_reference;

/// What a redacted value reads as.
pub const MARKER: &str = "***";

/// Does a key name a secret? (`password`, `dbPassword`, `apiKey`, `apiKeys`, `accessToken`,
/// `clientSecret`, `pwd`, `db_pass`.)
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let suffixes = ["password", "passwd", "pwd", "token", "secret", "key", "credential"];
    // Plurals of the words that only ever name secrets; `keys` alone (a join's, a postgres
    // source's `tableKeys`) names columns, so only the kinds of key that are secrets count.
    let plurals =
        ["passwords", "tokens", "secrets", "credentials", "apikeys", "accesskeys", "privatekeys", "secretkeys"];
    suffixes.iter().any(|s| k.ends_with(s))
        || plurals.iter().any(|p| k.ends_with(p))
        || last_word(key).eq_ignore_ascii_case("pass")
}

/// The last word of a camelCase, snake_case, kebab-case or dotted key.
fn last_word(key: &str) -> &str {
    let start = key
        .char_indices()
        .filter(|&(i, c)| i > 0 && (c.is_ascii_uppercase() || matches!(c, '_' | '-' | '.')))
        .map(|(i, c)| if c.is_ascii_uppercase() { i } else { i + 1 })
        .next_back()
        .unwrap_or(0);
    &key[start..]
}

/// Does the value under `key` hold a connection string (`password=…;host=…`)?
fn is_connection_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("connection") || k.ends_with("dsn")
}

/// Replace every secret value in `v` by the marker.
pub fn redact(v: &mut Value) {
    walk(v, Context::Plain);
}

#[derive(Clone, Copy, PartialEq)]
enum Context {
    Plain,
    Connection,
    Secret,
}

fn walk(v: &mut Value, ctx: Context) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let inner = match ctx {
                    Context::Secret => Context::Secret,
                    _ if is_secret_key(k) => Context::Secret,
                    _ if is_connection_key(k) => Context::Connection,
                    _ => Context::Plain,
                };
                walk(val, inner);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, ctx)),
        Value::Number(_) if ctx == Context::Secret => *v = Value::String(MARKER.to_owned()),
        Value::String(s) if ctx == Context::Secret && !is_env_reference(s) => *v = Value::String(MARKER.to_owned()),
        Value::String(_) if ctx == Context::Secret => {}
        Value::String(s) => {
            let masked = mask_text(s, ctx == Context::Connection);
            if masked != *s {
                *s = masked;
            }
        }
        _ => {}
    }
}

/// `s` with the passwords of its URLs, and with `connection` its secret `k=v` pairs, masked.
fn mask_text(s: &str, connection: bool) -> String {
    let s = mask_url_passwords(s);
    if !connection || !s.contains('=') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    for part in s.split_inclusive([';', ' ']) {
        let (body, sep) = part.split_at(part.trim_end_matches([';', ' ']).len());
        match body.split_once('=') {
            Some((k, v)) if is_secret_key(k.trim()) && !v.is_empty() && !is_env_reference(v) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MARKER);
            }
            _ => out.push_str(body),
        }
        out.push_str(sep);
    }
    out
}

/// `s` with the password of every `scheme://user:password@host` in it masked.
fn mask_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority = &tail[..tail.find(['/', '?', '#', ' ', '"', '\'']).unwrap_or(tail.len())];
        match authority.rfind('@').and_then(|a| authority[..a].find(':').map(|c| (c, a))) {
            Some((colon, at)) if !is_env_reference(&authority[colon + 1..at]) => {
                out.push_str(&authority[..=colon]);
                out.push_str(MARKER);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority.len()..];
    }
    out.push_str(rest);
    out
}

/// Put back, from `old`, every secret that `new` carries only as redacted: a value equal to
/// what redacting the old value gives (and which redaction changed). Objects match by key;
/// array items by their `id` when they have one, else by position.
pub fn restore(new: &mut Value, old: &Value) {
    if let (Value::Object(n), Value::Object(o)) = (&mut *new, old) {
        for (k, val) in n.iter_mut() {
            if let Some(prev) = o.get(k) {
                let mut shown = serde_json::json!({ k.clone(): prev.clone() });
                redact(&mut shown);
                if shown[k.as_str()] == *val && shown[k.as_str()] != *prev {
                    *val = prev.clone();
                } else {
                    restore(val, prev);
                }
            }
        }
    } else if let (Value::Array(n), Value::Array(o)) = (&mut *new, old) {
        for (i, item) in n.iter_mut().enumerate() {
            let by_id = item.get("id").and_then(|id| o.iter().find(|p| p.get("id") == Some(id)));
            if let Some(prev) = by_id.or_else(|| o.get(i)) {
                restore(item, prev);
            }
        }
    }
}

/// Does `v` still hold a marker (in a secret's place, a URL or a connection string)?
pub fn has_marker(v: &Value) -> bool {
    match v {
        Value::Object(map) => map.values().any(has_marker),
        Value::Array(items) => items.iter().any(has_marker),
        Value::String(s) => s.contains(MARKER),
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
    fn nested_plural_and_short_secret_keys_are_hidden() {
        let mut v = json!({"apiKeys": ["a", "b"], "token": {"value": "t", "n": 7}, "pwd": "p", "db_pass": "q",
            "dbPass": "r", "bypass": "open", "compass": "north", "keys": [{"label": "A", "property": "id"}],
            "tableKeys": [{"table": "t", "keyColumns": ["id"]}]});
        redact(&mut v);
        assert_eq!(v["apiKeys"], json!(["***", "***"]));
        assert_eq!(v["token"], json!({"value": "***", "n": "***"}));
        assert_eq!(
            (v["pwd"].as_str(), v["db_pass"].as_str(), v["dbPass"].as_str()),
            (Some("***"), Some("***"), Some("***"))
        );
        assert_eq!((v["bypass"].as_str(), v["compass"].as_str()), (Some("open"), Some("north")));
        assert_eq!(v["keys"], json!([{"label": "A", "property": "id"}]));
        assert_eq!(v["tableKeys"], json!([{"table": "t", "keyColumns": ["id"]}]));
    }

    #[test]
    fn passwords_in_urls_and_connection_strings_are_hidden() {
        let mut v = json!({"url": "postgres://user:pw@db:5432/app", "plain": "http://db:80/x",
            "connectionString": "Host=db;Username=u;Password=pw;Port=5432", "dsn": "host=db password=pw user=u",
            "ref": "postgres://u:${PW}@db/app"});
        redact(&mut v);
        assert_eq!(v["url"], "postgres://user:***@db:5432/app");
        assert_eq!(v["plain"], "http://db:80/x");
        assert_eq!(v["connectionString"], "Host=db;Username=u;Password=***;Port=5432");
        assert_eq!(v["dsn"], "host=db password=*** user=u");
        assert_eq!(v["ref"], "postgres://u:${PW}@db/app");
    }

    #[test]
    fn a_redacted_document_written_back_keeps_the_secrets() {
        let old = json!({"sources": [{"id": "a", "password": "p1", "url": "pg://u:s1@h"},
            {"id": "b", "password": "p2", "apiKeys": ["k"]}]});
        let mut new = old.clone();
        redact(&mut new);
        new["sources"].as_array_mut().expect("array").reverse();
        restore(&mut new, &old);
        assert_eq!(new["sources"][0]["password"], "p2");
        assert_eq!(new["sources"][0]["apiKeys"], json!(["k"]));
        assert_eq!(new["sources"][1]["password"], "p1");
        assert_eq!(new["sources"][1]["url"], "pg://u:s1@h");
        assert!(!has_marker(&new));
    }
}
