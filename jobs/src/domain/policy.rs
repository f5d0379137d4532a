//! What users may run: the operator's limits on an instance's runtime options (image, CPUs,
//! memory) and on the server settings of its configuration that reach past the instance
//! (where plugins come from and whether they are checked; files outside the instance's own
//! directory). An admin token is exempt; every other caller is held to the policy on every
//! write path, and a refusal names the field.

use serde_json::Value;

use super::config::DrasiConfig;
use super::model::RuntimeOptions;
use super::validate::{ConfigError, FieldError, pointer_token};

/// Server settings only an admin may write: they decide which code a server loads and whether
/// it is verified, so a user could otherwise run a plugin of their choosing as the worker's
/// user.
pub const ADMIN_ONLY_KEYS: &[&str] =
    &["pluginRegistry", "autoInstallPlugins", "plugins", "verifyPlugins", "trustedIdentities", "hotReloadPlugins"];

/// Settings whose values (or whose objects' `path`-like properties) name files of the host or
/// container: they must stay inside the instance's own directory.
const PATH_KEYS: &[&str] = &["solutionsDir", "stateStore", "secretStore"];

/// The operator's limits, as the check needs them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits<'a> {
    /// Image patterns a user may name: exact references, or a prefix ending in `*`.
    pub images: &'a [String],
    /// The platform's own image, always allowed.
    pub own_image: Option<&'a str>,
    /// Most cores an instance may ask for.
    pub max_cpus: Option<f64>,
    /// Most memory an instance may ask for, in bytes.
    pub max_memory: Option<u64>,
}

/// Does `image` match `pattern` (exact, or a prefix when the pattern ends in `*`)?
pub fn image_matches(pattern: &str, image: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => pattern == image,
    }
}

/// Check runtime options against `limits`; pointers are relative to the options object.
pub fn check_runtime(r: &RuntimeOptions, limits: Limits<'_>) -> Result<(), ConfigError> {
    let mut errors = Vec::new();
    if let Some(image) = &r.image
        && limits.own_image != Some(image.as_str())
        && !limits.images.iter().any(|p| image_matches(p, image))
    {
        errors.push(FieldError::new(
            "image_not_allowed",
            format!(
                "image '{}' is not on this deployment's allow-list (policy.images); leave it out to run the platform's own",
                image.escape_debug()
            ),
            "/image",
        ));
    }
    if let (Some(c), Some(max)) = (r.cpus, limits.max_cpus)
        && c > max
    {
        errors.push(FieldError::new(
            "cpus_over_limit",
            format!("cpus {c} is more than this deployment allows ({max})"),
            "/cpus",
        ));
    }
    if let (Some(bytes), Some(max)) = (r.memory_bytes(), limits.max_memory)
        && bytes > max
    {
        errors.push(FieldError::new(
            "memory_over_limit",
            format!(
                "memory '{}' is more than this deployment allows ({max} bytes)",
                r.memory.as_deref().unwrap_or_default().escape_debug()
            ),
            "/memory",
        ));
    }
    if errors.is_empty() { Ok(()) } else { Err(ConfigError(errors)) }
}

/// Check the server settings of `config` a user may not write: admin-only keys, and paths
/// that leave the instance's directory (absolute, `..`, `~`, or a `${VAR}` that could be
/// anything). What `before` (the stored configuration) already holds at the same place is
/// not the user's doing (an admin wrote it) and passes. Pointers are relative to the
/// configuration.
pub fn check_config(config: &DrasiConfig, before: Option<&DrasiConfig>) -> Result<(), ConfigError> {
    let doc = serde_json::to_value(config).unwrap_or(Value::Null);
    let old = before.and_then(|b| serde_json::to_value(b).ok());
    let mut errors = Vec::new();
    if let Value::Object(top) = &doc {
        for key in ADMIN_ONLY_KEYS {
            if top.contains_key(*key) {
                errors.push(FieldError::new(
                    "admin_only_setting",
                    format!("'{key}' decides which plugins a server loads and how they are checked; only an admin token may set it"),
                    format!("/{key}"),
                ));
            }
        }
    }
    paths(&doc, "", false, &mut errors);
    errors.retain(|e| old.as_ref().is_none_or(|o| o.pointer(&e.pointer) != doc.pointer(&e.pointer)));
    if errors.is_empty() { Ok(()) } else { Err(ConfigError(errors)) }
}

/// Walk `v` (at `pointer`); inside a path setting (`within`), every string that names a file
/// must be confined.
fn paths(v: &Value, pointer: &str, within: bool, errors: &mut Vec<FieldError>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{pointer}/{}", pointer_token(k));
                let setting = PATH_KEYS.contains(&k.as_str());
                if let (true, Value::String(s)) = (setting || within && is_path_key(k), child)
                    && !confined(s)
                {
                    errors.push(outside(&p, s));
                    continue;
                }
                paths(child, &p, within || setting, errors);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                paths(child, &format!("{pointer}/{i}"), within, errors);
            }
        }
        _ => {}
    }
}

fn is_path_key(k: &str) -> bool {
    let lower = k.to_ascii_lowercase();
    ["path", "dir", "directory", "file", "folder"].iter().any(|s| lower == *s || lower.ends_with(s))
}

/// A relative path that stays below where it starts.
pub fn confined(s: &str) -> bool {
    let p = std::path::Path::new(s);
    !s.is_empty()
        && !s.contains("${")
        && !s.starts_with('~')
        && p.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir))
}

fn outside(pointer: &str, s: &str) -> FieldError {
    FieldError::new(
        "path_outside_instance",
        format!(
            "'{}' leaves the instance's directory: give a relative path without '..' (it is resolved inside the instance's own directory)",
            s.escape_debug()
        ),
        pointer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validate::parse_config;
    use serde_json::json;

    fn codes(v: Value) -> Vec<(String, String)> {
        let c = parse_config(v).unwrap();
        check_config(&c, None).err().map(|e| e.0.into_iter().map(|f| (f.code, f.pointer)).collect()).unwrap_or_default()
    }

    #[test]
    fn plugin_sources_are_admin_only() {
        let found = codes(json!({"pluginRegistry": "http://evil", "autoInstallPlugins": true, "verifyPlugins": false}));
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found.iter().all(|(c, _)| c == "admin_only_setting"));
        assert!(found.contains(&("admin_only_setting".into(), "/verifyPlugins".into())));
    }

    #[test]
    fn paths_stay_inside_the_instance() {
        let found = codes(
            json!({"solutionsDir": "/etc", "stateStore": {"kind": "redb", "path": "/root/.ssh/authorized_keys"}}),
        );
        assert_eq!(
            found,
            vec![
                ("path_outside_instance".into(), "/solutionsDir".into()),
                ("path_outside_instance".into(), "/stateStore/path".into())
            ]
        );
        assert_eq!(codes(json!({"stateStore": {"kind": "redb", "path": "../x"}})).len(), 1);
        assert_eq!(codes(json!({"stateStore": {"kind": "redb", "path": "${HOME}/x"}})).len(), 1);
        assert!(
            codes(json!({"solutionsDir": "solutions", "stateStore": {"kind": "redb", "path": "./data/state.redb"}}))
                .is_empty()
        );
    }

    #[test]
    fn images_and_limits_follow_the_allow_list() {
        let images = vec!["ghcr.io/drasi-project/*".to_owned()];
        let limits =
            Limits { images: &images, own_image: Some("mine:1"), max_cpus: Some(4.0), max_memory: Some(8 << 30) };
        let ok = RuntimeOptions { image: Some("ghcr.io/drasi-project/drasi-server:0.2".into()), ..Default::default() };
        assert!(check_runtime(&ok, limits).is_ok());
        let own = RuntimeOptions { image: Some("mine:1".into()), ..Default::default() };
        assert!(check_runtime(&own, limits).is_ok());
        let bad = RuntimeOptions {
            image: Some("docker.io/attacker/anything".into()),
            cpus: Some(64.0),
            memory: Some("1024Ti".into()),
        };
        let e = check_runtime(&bad, limits).unwrap_err();
        let codes: Vec<_> = e.0.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes, ["image_not_allowed", "cpus_over_limit", "memory_over_limit"]);
    }
}
