//! Bounds on a configuration document as it will be stored: how deep it nests and how large
//! its JSON is. They hold for the stored document whatever route built it (a body, a patch,
//! one component spliced into the rest), so every record draas writes can be read back:
//! serde_json refuses documents nested deeper than 128 levels, and a component sits three
//! levels down its configuration, which sits a level down an observed record.

use std::io::Write;

use serde_json::Value;

use super::validate::{FieldError, pointer_token};

/// Deepest nesting of objects and arrays a stored configuration may have (the document
/// itself is level 1).
pub const MAX_DEPTH: usize = 64;
/// Largest stored configuration, in bytes of compact JSON.
pub const MAX_BYTES: usize = 1 << 20;

/// How many objects and arrays nest in `v` (0 for a scalar).
pub fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Bytes of `v` as compact JSON, counted without building the text.
pub fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The error for a document nested deeper than [`MAX_DEPTH`], at `pointer`.
pub fn too_deep(pointer: impl Into<String>) -> FieldError {
    FieldError::new(
        "config_too_deep",
        format!("the configuration nests deeper than {MAX_DEPTH} levels of objects and arrays"),
        pointer,
    )
}

/// The error for a document larger than [`MAX_BYTES`].
pub fn too_large(bytes: usize) -> FieldError {
    FieldError::new(
        "config_too_large",
        format!("the configuration would be {bytes} bytes of JSON; at most {MAX_BYTES} are stored"),
        "",
    )
}

/// Check both bounds on the document about to be stored.
pub fn check(doc: &Value) -> Result<(), FieldError> {
    if let Some(pointer) = deeper_than(doc, MAX_DEPTH) {
        return Err(too_deep(pointer));
    }
    match json_len(doc) {
        n if n > MAX_BYTES => Err(too_large(n)),
        _ => Ok(()),
    }
}

/// The pointer of the first object or array nested more than `budget` levels deep.
fn deeper_than(v: &Value, budget: usize) -> Option<String> {
    let children: Box<dyn Iterator<Item = (String, &Value)>> = match v {
        Value::Object(m) => Box::new(m.iter().map(|(k, v)| (pointer_token(k), v))),
        Value::Array(a) => Box::new(a.iter().enumerate().map(|(i, v)| (i.to_string(), v))),
        _ => return None,
    };
    if budget == 0 {
        return Some(String::new());
    }
    for (key, child) in children {
        if let Some(rest) = deeper_than(child, budget - 1) {
            return Some(format!("/{key}{rest}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!((depth(&json!(1)), depth(&json!({})), depth(&json!({"a": [1]}))), (0, 1, 2));
        assert_eq!(depth(&nested(10)), 10);
    }

    #[test]
    fn the_first_level_past_the_limit_is_named() {
        assert!(check(&nested(MAX_DEPTH)).is_ok());
        let e = check(&json!({"sources": [nested(MAX_DEPTH)]})).expect_err("too deep");
        assert_eq!(e.code, "config_too_deep");
        assert_eq!(e.pointer, format!("/sources/0{}", "/a".repeat(MAX_DEPTH - 2)));
    }

    #[test]
    fn size_is_the_compact_json_length() {
        let v = json!({"a": [1, "x"]});
        assert_eq!(json_len(&v), v.to_string().len());
        let big = json!({ "s": "x".repeat(MAX_BYTES) });
        assert_eq!(check(&big).expect_err("too large").code, "config_too_large");
    }
}
