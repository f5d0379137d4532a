//! Bearer-token authentication. Tokens are compared in constant time (as SHA-256 digests, so
//! neither content nor length leaks through timing) and never logged. Each token has a name
//! (recorded as `requestedBy` of what it asks for), a role and a quota (`settings::tokens`).

use std::sync::Arc;

use subtle::ConstantTimeEq;

use crate::settings::Settings;
pub use crate::settings::tokens::{Quota, Role};
use crate::settings::tokens::{TokenEntry, digest};

/// The accepted tokens, or none at all in dev mode.
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<Vec<TokenEntry>>,
    disabled: bool,
}

/// Who is calling, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub name: Arc<str>,
    pub role: Role,
    pub quota: Quota,
}

/// The caller of dev mode (no authentication).
pub const DEV: &str = "dev";

impl Caller {
    /// May see secrets (`?reveal=true`) and is exempt from the policy: an admin token, or dev
    /// mode.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// An admin without quotas named `name` (dev mode, tests).
    pub fn admin(name: &str) -> Self {
        Self { name: name.into(), role: Role::Admin, quota: Quota::default() }
    }
}

impl Auth {
    /// The tokens of `settings` (`dev`: no authentication at all). Settings that loaded have
    /// valid tokens; any others accept no token at all (fail closed).
    pub fn from_settings(settings: &Settings) -> Self {
        let tokens = settings.token_entries().unwrap_or_else(|e| {
            tracing::error!(error = %e, "no token is accepted");
            Vec::new()
        });
        Self { tokens: Arc::new(tokens), disabled: settings.dev }
    }

    /// The caller an `Authorization` header value makes, or `None` when it is not ours.
    pub fn caller(&self, authorization: Option<&[u8]>) -> Option<Caller> {
        if self.disabled {
            return Some(Caller::admin(DEV));
        }
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = authorization
            .and_then(|h| h.split_at_checked(7))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token)?;
        let d = digest(token);
        // Compares with every token, without an early exit; digests are distinct (checked at
        // load), so at most one matches.
        let mut found = None;
        for t in self.tokens.iter() {
            if bool::from(t.digest.ct_eq(&d)) {
                found = Some(t);
            }
        }
        found.map(|t| Caller { name: t.name.as_str().into(), role: t.role, quota: t.quota })
    }
}
