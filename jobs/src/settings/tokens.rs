//! Settings of who may call the API (`tokens`, `quotas`): named tokens with a role, stored as
//! the SHA-256 of the token (never the token itself), and the quotas of tokens that set none.
//! The older `api_tokens` and `admin_tokens` lists still work: each of their entries becomes an
//! `operate` token named `token-<n>` or an `admin` token named `admin-<n>`.

use std::collections::HashSet;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read only: `GET` and `HEAD`.
    Read,
    /// Everything but what is admin-only: lifecycle, configuration, reconciles.
    Operate,
    /// Everything, secrets in plain (`?reveal=true`) included; exempt from the policy and
    /// from the default quotas.
    Admin,
}

impl Role {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Admin => "admin",
        }
    }
}

/// One named token (`tokens` entry; `DRAAS_TOKENS` as a JSON array of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// 1-64 characters of `[A-Za-z0-9._-]`: recorded as `requestedBy` of what it asks for.
    pub name: String,
    pub role: Role,
    /// Lowercase or uppercase hex of the token's SHA-256 (`draas token hash`).
    pub sha256: String,
    /// Instances this token may have created that still exist (default: `quotas`).
    #[serde(default)]
    pub max_instances: Option<u64>,
    /// Operations this token may submit per minute (default: `quotas`).
    #[serde(default)]
    pub ops_per_minute: Option<u64>,
    /// Streams this token may hold open at once on all API replicas (default: `quotas`).
    #[serde(default)]
    pub max_streams: Option<usize>,
}

/// Quotas of tokens that set none of their own; admin tokens have none unless their entry
/// sets one.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct QuotaSettings {
    /// Instances a token may have created that still exist.
    pub max_instances: u64,
    /// Operations a token may submit per minute (a fixed window per clock minute).
    pub ops_per_minute: u64,
    /// Streams a token may hold open at once on all API replicas.
    pub max_streams: usize,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self { max_instances: 1000, ops_per_minute: 600, max_streams: 16 }
    }
}

/// What a token may use up; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    pub max_instances: Option<u64>,
    pub ops_per_minute: Option<u64>,
    pub max_streams: Option<usize>,
}

/// A token as authentication uses it: its name, role, quota and digest.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub quota: Quota,
    pub digest: [u8; 32],
}

/// Longest token name.
pub const MAX_NAME: usize = 64;

/// Name of what the system itself submits (reconciler repairs, fail-over); no token may have it.
pub const SYSTEM: &str = "system";

/// The SHA-256 of a token.
pub fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

/// Is `name` a valid token name?
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != SYSTEM
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(out)
}

impl TokenSettings {
    fn entry(&self, defaults: &QuotaSettings) -> Result<TokenEntry, String> {
        if !valid_name(&self.name) {
            return Err(format!(
                "token name '{}' must be 1-{MAX_NAME} characters of [A-Za-z0-9._-] and not '{SYSTEM}'",
                self.name.escape_debug()
            ));
        }
        let digest = parse_hex(&self.sha256)
            .ok_or_else(|| format!("token '{}': sha256 must be 64 hex digits (draas token hash)", self.name))?;
        let mut quota = Quota::of(self.role, defaults);
        quota.max_instances = self.max_instances.or(quota.max_instances);
        quota.ops_per_minute = self.ops_per_minute.or(quota.ops_per_minute);
        quota.max_streams = self.max_streams.or(quota.max_streams);
        Ok(TokenEntry { name: self.name.clone(), role: self.role, quota, digest })
    }
}

impl Quota {
    /// The default quota of `role`: `defaults`, or none for an admin.
    fn of(role: Role, defaults: &QuotaSettings) -> Self {
        match role {
            Role::Admin => Self::default(),
            Role::Read | Role::Operate => Self {
                max_instances: Some(defaults.max_instances),
                ops_per_minute: Some(defaults.ops_per_minute),
                max_streams: Some(defaults.max_streams),
            },
        }
    }
}

/// The entries of a legacy list: `<prefix>-1`, `<prefix>-2`, ... with `role`.
fn legacy(list: &[SecretString], prefix: &str, role: Role, defaults: &QuotaSettings) -> Vec<TokenEntry> {
    list.iter()
        .enumerate()
        .map(|(i, t)| TokenEntry {
            name: format!("{prefix}-{}", i + 1),
            role,
            quota: Quota::of(role, defaults),
            digest: digest(t.expose_secret().as_bytes()),
        })
        .collect()
}

/// Every accepted token: `tokens`, then the legacy lists; refused when a name is invalid or
/// two entries share a name or a token.
pub fn entries(
    tokens: &[TokenSettings],
    api_tokens: &[SecretString],
    admin_tokens: &[SecretString],
    defaults: &QuotaSettings,
) -> Result<Vec<TokenEntry>, String> {
    let mut out = tokens.iter().map(|t| t.entry(defaults)).collect::<Result<Vec<_>, _>>()?;
    out.extend(legacy(api_tokens, "token", Role::Operate, defaults));
    out.extend(legacy(admin_tokens, "admin", Role::Admin, defaults));
    let (mut names, mut digests) = (HashSet::new(), HashSet::new());
    for e in &out {
        if !names.insert(e.name.as_str()) {
            return Err(format!("two tokens are named '{}'", e.name));
        }
        if !digests.insert(e.digest) {
            return Err(format!("token '{}' is the same token as another entry", e.name));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(name: &str, role: Role, sha: &str) -> TokenSettings {
        TokenSettings {
            name: name.into(),
            role,
            sha256: sha.into(),
            max_instances: None,
            ops_per_minute: None,
            max_streams: None,
        }
    }

    #[test]
    fn legacy_lists_become_named_tokens_after_the_named_ones() {
        let sha = hex::encode(digest(b"x"));
        let e = entries(
            &[token("ci", Role::Read, &sha.to_uppercase())],
            &["a".into(), "b".into()],
            &["c".into()],
            &QuotaSettings::default(),
        )
        .expect("entries");
        let names: Vec<_> = e.iter().map(|e| (e.name.as_str(), e.role)).collect();
        assert_eq!(
            names,
            [("ci", Role::Read), ("token-1", Role::Operate), ("token-2", Role::Operate), ("admin-1", Role::Admin)]
        );
        assert_eq!(e[0].digest, digest(b"x"));
        assert_eq!(e[1].quota.ops_per_minute, Some(600));
        assert_eq!(e[3].quota, Quota::default(), "admins have no default quota");
    }

    #[test]
    fn bad_names_digests_and_duplicates_are_refused() {
        let sha = hex::encode(digest(b"x"));
        let q = QuotaSettings::default();
        for bad in ["", "a b", "system", "é", &"n".repeat(65)] {
            assert!(entries(&[token(bad, Role::Read, &sha)], &[], &[], &q).is_err(), "{bad:?}");
        }
        assert!(entries(&[token("a", Role::Read, "abc")], &[], &[], &q).is_err());
        assert!(
            entries(&[token("a", Role::Read, &sha), token("a", Role::Admin, &hex::encode(digest(b"y")))], &[], &[], &q)
                .is_err()
        );
        assert!(entries(&[token("a", Role::Read, &sha)], &["x".into()], &[], &q).is_err(), "same token twice");
    }
}
