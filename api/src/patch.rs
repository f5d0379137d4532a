//! JSON Patch (RFC 6902) over a stored configuration, shared by the v1 and the original API:
//! applied one operation at a time within the bounds of a stored document (a `copy` doubles
//! what it copies, so a short patch could otherwise build a document of any size or depth),
//! and kept off secrets for callers who may not see them.

use draas_jobs::domain::limits::{self, MAX_BYTES, MAX_DEPTH};
use draas_jobs::domain::redact::{is_secret_key, redact};
use json_patch::PatchOperation;
use serde_json::Value;

use crate::auth::Caller;

/// Why operation `index` of a patch was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Position of the operation in the patch.
    pub index: usize,
    /// `patch_failed`, `patch_test_failed`, `config_too_deep`, `config_too_large` or
    /// `secret_path_forbidden`.
    pub code: &'static str,
    pub message: String,
}

/// Refuse, for a caller who may not see secrets, an operation that would show one: a `copy`
/// or `move` from a secret (the value lands under a key that is not redacted), and a `test`
/// of a secret or of anything holding one (its 200 or 422 answers a guess). Judged on the
/// document as the operations before it left it.
fn guard(doc: &Value, index: usize, op: &PatchOperation, caller: &Caller) -> Result<(), Failure> {
    let (pointer, what) = match op {
        _ if caller.is_admin() => return Ok(()),
        PatchOperation::Copy(o) => (&o.from, "copy from"),
        PatchOperation::Move(o) => (&o.from, "move from"),
        PatchOperation::Test(o) => (&o.path, "test of"),
        _ => return Ok(()),
    };
    let tested_secret = matches!(op, PatchOperation::Test(_)) && holds_secret(doc.pointer(pointer.as_str()));
    if tested_secret || pointer.tokens().any(|t| is_secret_key(&t.decoded())) {
        return Err(Failure {
            index,
            code: "secret_path_forbidden",
            message: format!(
                "patch operation {index}: a {what} '{pointer}' touches a secret; only an admin token may do that"
            ),
        });
    }
    Ok(())
}

/// Does `v` hold a value redaction would hide?
fn holds_secret(v: Option<&Value>) -> bool {
    v.is_some_and(|v| {
        let mut hidden = v.clone();
        redact(&mut hidden);
        hidden != *v
    })
}

/// Apply `ops` to `doc` in order for `caller`; the first that fails, that [`guard`] refuses,
/// or that would make the document deeper or larger than a stored configuration may be, stops
/// the patch (the caller discards `doc`).
pub fn apply(doc: &mut Value, ops: &[PatchOperation], caller: &Caller) -> Result<(), Failure> {
    let mut size = limits::json_len(doc);
    for (index, op) in ops.iter().enumerate() {
        guard(doc, index, op, caller)?;
        let grows = match op {
            PatchOperation::Add(o) => Some((&o.path, limits::depth(&o.value), limits::json_len(&o.value))),
            PatchOperation::Replace(o) => Some((&o.path, limits::depth(&o.value), limits::json_len(&o.value))),
            PatchOperation::Copy(o) => {
                doc.pointer(o.from.as_str()).map(|v| (&o.path, limits::depth(v), limits::json_len(v)))
            }
            PatchOperation::Move(o) => doc.pointer(o.from.as_str()).map(|v| (&o.path, limits::depth(v), 0)),
            PatchOperation::Remove(_) | PatchOperation::Test(_) => None,
        };
        if let Some((path, depth, bytes)) = grows {
            if path.count() + depth > MAX_DEPTH {
                return Err(bounds(index, limits::too_deep(path.as_str())));
            }
            size += bytes;
            if size > MAX_BYTES {
                return Err(bounds(index, limits::too_large(size)));
            }
        }
        json_patch::patch(doc, std::slice::from_ref(op)).map_err(|e| Failure {
            index,
            code: match e.kind {
                json_patch::PatchErrorKind::TestFailed => "patch_test_failed",
                _ => "patch_failed",
            },
            message: format!("patch operation {index} at '{}' failed: {}", e.path, e.kind),
        })?;
    }
    Ok(())
}

fn bounds(index: usize, e: draas_jobs::domain::validate::FieldError) -> Failure {
    let code = if e.code == "config_too_deep" { "config_too_deep" } else { "config_too_large" };
    Failure { index, code, message: format!("patch operation {index}: {}", e.message) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ops(v: Value) -> Vec<PatchOperation> {
        serde_json::from_value(v).expect("patch")
    }

    #[test]
    fn copies_that_double_the_document_stop_at_the_size_bound() {
        let mut doc = json!({"a": "x".repeat(1000)});
        let doubling: Vec<Value> =
            (0..20).map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")})).collect();
        let e = apply(&mut doc, &ops(Value::Array(doubling)), &Caller::admin("admin")).expect_err("too large");
        assert_eq!(e.code, "config_too_large");
    }

    #[test]
    fn secrets_cannot_be_copied_or_tested_without_admin() {
        let doc = json!({"sources": [{"id": "db", "password": "hunter2", "user": "u"}]});
        let user = Caller { name: "user".into(), role: draas_jobs::auth::Role::Operate, quota: Default::default() };
        for op in [
            json!([{"op": "copy", "from": "/sources/0/password", "path": "/sources/0/x"}]),
            json!([{"op": "test", "path": "/sources/0/password", "value": "hunter2"}]),
            json!([{"op": "test", "path": "/sources/0", "value": {"id": "db", "password": "hunter2", "user": "u"}}]),
            json!([{"op": "copy", "from": "/sources/0", "path": "/z"}, {"op": "test", "path": "/z", "value": 1}]),
        ] {
            let e = apply(&mut doc.clone(), &ops(op), &user).expect_err("refused");
            assert_eq!(e.code, "secret_path_forbidden");
        }
        let fine = ops(json!([{"op": "test", "path": "/sources/0/user", "value": "u"}]));
        assert!(apply(&mut doc.clone(), &fine, &user).is_ok());
        let copy = ops(json!([{"op": "copy", "from": "/sources/0/password", "path": "/sources/0/x"}]));
        assert!(apply(&mut doc.clone(), &copy, &Caller::admin("admin")).is_ok());
    }
}
