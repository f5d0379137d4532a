//! Instance secrets as the domain sees them: their names (environment variable names), the
//! `${NAME}` references of a configuration, which may name only the instance's own secrets
//! and the operator's allow-list (`process.env_allow`), and the masking of known secret values
//! in whatever text the server wrote.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::config::DrasiConfig;
use super::validate::{FieldError, pointer_token};

/// Longest secret name.
pub const MAX_NAME_LEN: usize = 64;
/// What a masked secret value reads as.
pub const MASK: &str = "***";
/// Names draas gives its servers itself.
pub const RESERVED_PREFIX: &str = "DRAAS_";

/// A secret's name: an environment variable name `[A-Z_][A-Z0-9_]*`, at most 64 characters,
/// not starting with `DRAAS_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a secret name is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

impl FromStr for SecretName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        if !is_variable_name(s) || s.len() > MAX_NAME_LEN {
            return Err(NameError(format!(
                "secret name must be 1-{MAX_NAME_LEN} characters of [A-Z0-9_], not starting with a digit"
            )));
        }
        if s.starts_with(RESERVED_PREFIX) {
            return Err(NameError(format!("secret names starting with {RESERVED_PREFIX} are draas' own")));
        }
        Ok(Self(s.to_owned()))
    }
}

fn is_variable_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every `${NAME}` and `${NAME:-default}` reference in `s` (drasi-server's forms; names of
/// `[A-Za-z_][A-Za-z0-9_]*`).
pub fn references(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let len = after
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphanumeric() || c == '_') || (i == 0 && c.is_ascii_digit()))
            .map_or(after.len(), |(i, _)| i);
        let tail = &after[len..];
        if len > 0 && (tail.starts_with('}') || tail.starts_with(":-")) {
            out.push(&after[..len]);
        }
        rest = after;
    }
    out
}

/// Check every `${NAME}` of `config` names one of `secrets` or `allowed`, or was in the
/// configuration `before` already (what was stored stays editable): the first that does not
/// is refused (`unknown_variable`, at its JSON pointer).
pub fn check_references(
    config: &DrasiConfig,
    before: Option<&DrasiConfig>,
    secrets: &BTreeSet<String>,
    allowed: &[String],
) -> Result<(), FieldError> {
    let mut known: BTreeSet<String> = BTreeSet::new();
    if let Some(before) = before {
        let doc = serde_json::to_value(before).unwrap_or_default();
        walk(&doc, &mut String::new(), &mut |_, s| known.extend(references(s).into_iter().map(str::to_owned)));
    }
    let doc = serde_json::to_value(config).unwrap_or_default();
    let mut found = None;
    walk(&doc, &mut String::new(), &mut |pointer, s| {
        if found.is_some() {
            return;
        }
        let unknown = |n: &&str| !secrets.contains(*n) && !known.contains(*n) && !allowed.iter().any(|a| a == n);
        if let Some(name) = references(s).into_iter().find(unknown) {
            found = Some(FieldError::new(
                "unknown_variable",
                format!(
                    "${{{name}}} names neither a secret of this instance (PUT …/secrets/{name}) nor a variable the operator allows (process.env_allow)"
                ),
                pointer.to_owned(),
            ));
        }
    });
    found.map_or(Ok(()), Err)
}

fn walk(v: &Value, pointer: &mut String, f: &mut impl FnMut(&str, &str)) {
    match v {
        Value::String(s) => f(pointer, s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{i}"));
                walk(item, pointer, f);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&pointer_token(k));
                walk(item, pointer, f);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// The known secret values of an instance, to mask wherever the server's output or an error
/// might repeat them.
#[derive(Clone, Default)]
pub struct Masker {
    values: Vec<SecretString>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

impl Masker {
    /// A masker of `values` (empty ones are ignored: there is nothing to hide).
    pub fn new(values: impl IntoIterator<Item = SecretString>) -> Self {
        let mut values: Vec<SecretString> = values.into_iter().filter(|v| !v.expose_secret().is_empty()).collect();
        // Longest first, so a value that contains another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.expose_secret().len()));
        Self { values }
    }

    /// Nothing to mask?
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every occurrence of a known value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for v in &self.values {
            let v = v.expose_secret();
            if out.contains(v) {
                out = out.replace(v, MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_config;
    use serde_json::json;

    #[test]
    fn names_are_environment_variable_names_outside_draas_own() {
        for ok in ["PG_PASSWORD", "_X", "A1"] {
            assert!(ok.parse::<SecretName>().is_ok(), "{ok}");
        }
        for bad in ["", "pg", "1A", "A-B", "DRAAS_X", "A B", &"A".repeat(65)] {
            assert!(bad.parse::<SecretName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn references_are_found_in_both_forms_and_anywhere_in_a_string() {
        assert_eq!(references("${A}"), ["A"]);
        assert_eq!(references("postgres://u:${PW}@h/${DB:-app}"), ["PW", "DB"]);
        assert!(references("$A ${} ${1X} ${A B} $${").is_empty());
    }

    #[test]
    fn a_reference_to_neither_a_secret_nor_an_allowed_variable_is_refused_at_its_pointer() {
        let config = parse_config(json!({"id": "${HOME}", "sources": [{"kind": "mock", "id": "s", "x": "${PW}"}]}))
            .expect("config");
        let secrets: BTreeSet<String> = ["PW".to_owned()].into();
        let e = check_references(&config, None, &secrets, &[]).expect_err("HOME");
        assert_eq!((e.code.as_str(), e.pointer.as_str()), ("unknown_variable", "/id"));
        assert!(check_references(&config, None, &secrets, &["HOME".into()]).is_ok());
        assert!(check_references(&config, Some(&config), &BTreeSet::new(), &[]).is_ok(), "stored before");
    }

    #[test]
    fn masking_replaces_every_occurrence_longest_first() {
        let m = Masker::new(["ab".into(), "abcd".into(), String::new()].map(SecretString::from));
        assert_eq!(m.mask("x abcd y ab"), "x *** y ***");
    }
}
