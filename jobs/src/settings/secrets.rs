//! Settings of the instances' secrets (`secrets` section): the keys their values are
//! encrypted with, and how many and how large they may be.

use secrecy::SecretString;
use serde::Deserialize;

use crate::vault::{Vault, VaultError};

/// Instance secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SecretSettings {
    /// Keys (base64 of 32 random bytes, `DRAAS_SECRETS__KEYS` comma-separated): the first
    /// encrypts, every one decrypts. Rotation: put a new key first, keep the old ones until
    /// `draas secret rewrap` rewrote every value, then drop them. None: the secret routes
    /// answer 503 `secrets_disabled` (`draas up` makes `<data dir>/secrets.key` when none is
    /// configured).
    pub keys: Vec<SecretString>,
    /// Largest value of one secret.
    pub max_value_bytes: usize,
    /// Most secrets an instance may have.
    pub max_per_instance: usize,
}

impl Default for SecretSettings {
    fn default() -> Self {
        Self { keys: Vec::new(), max_value_bytes: 64 * 1024, max_per_instance: 100 }
    }
}

impl SecretSettings {
    /// The vault of these keys; `None` when no key is configured.
    pub fn vault(&self) -> Result<Option<Vault>, VaultError> {
        if self.keys.is_empty() { Ok(None) } else { Vault::new(&self.keys).map(Some) }
    }
}
