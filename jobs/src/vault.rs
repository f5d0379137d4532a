//! Encryption of the instances' secrets at rest: XChaCha20-Poly1305 (RustCrypto's
//! `chacha20poly1305`) with a random 24-byte nonce per value, and the instance id and secret
//! name as associated data, so a stored value decrypts only as the secret it was written as.
//! Each sealed value names the key that sealed it (the first 8 hex digits of the key's
//! SHA-256), so keys can rotate: the first key seals, every key opens.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::ids::InstanceId;
use crate::domain::secrets::SecretName;

/// A secret as stored: sealed, with the key that sealed it and when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Id of the key that sealed it ([`Vault::primary_id`]).
    #[serde(rename = "k")]
    pub key_id: String,
    /// The nonce, base64.
    #[serde(rename = "n")]
    pub nonce: String,
    /// Ciphertext and tag, base64.
    #[serde(rename = "c")]
    pub ciphertext: String,
    /// When the value was last set (a rewrap keeps it).
    #[serde(rename = "at")]
    pub updated_at: DateTime<Utc>,
}

/// Keys that cannot be used, or a value that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("secrets.keys[{0}] is not base64 of 32 bytes (make one with `openssl rand -base64 32`)")]
    BadKey(usize),
    #[error("the secret was sealed with key {0}, which is not in secrets.keys")]
    UnknownKey(String),
    #[error("the secret cannot be decrypted (wrong key, or not the secret it was written as)")]
    Undecryptable,
}

/// The configured keys: the first seals, all open. Never printed.
#[derive(Clone)]
pub struct Vault {
    keys: Vec<(String, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("key_ids", &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>()).finish()
    }
}

/// A fresh random key, base64 (what `draas up` writes to `secrets.key`).
pub fn generate_key() -> SecretString {
    let key = chacha20poly1305::Key::generate();
    SecretString::from(B64.encode(key.as_slice()))
}

impl Vault {
    /// A vault over `keys` (at least one; base64 of 32 bytes each).
    pub fn new(keys: &[SecretString]) -> Result<Self, VaultError> {
        let keys = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let raw = B64.decode(k.expose_secret().trim()).map_err(|_| VaultError::BadKey(i))?;
                let cipher = XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| VaultError::BadKey(i))?;
                let digest = Sha256::digest(&raw);
                let id = hex::encode(&digest[..4]);
                Ok((id, cipher))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(VaultError::BadKey(0));
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Seal `value` as secret `name` of instance `id`, written `at`.
    pub fn seal(&self, id: &InstanceId, name: &SecretName, value: &str, at: DateTime<Utc>) -> Sealed {
        let (key_id, cipher) = &self.keys[0];
        let nonce = XNonce::generate();
        let aad = associated(id, name);
        // Encryption into a Vec cannot fail for a message this size (the crate only fails on
        // lengths beyond 2^38 bytes); an empty ciphertext would fail to open, never leak.
        let ciphertext =
            cipher.encrypt(&nonce, Payload { msg: value.as_bytes(), aad: aad.as_bytes() }).unwrap_or_default();
        Sealed {
            key_id: key_id.clone(),
            nonce: B64.encode(nonce.as_slice()),
            ciphertext: B64.encode(ciphertext),
            updated_at: at,
        }
    }

    /// Open `sealed` as secret `name` of instance `id`.
    pub fn open(&self, id: &InstanceId, name: &SecretName, sealed: &Sealed) -> Result<SecretString, VaultError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(k, _)| *k == sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey(sealed.key_id.clone()))?;
        let nonce = B64.decode(&sealed.nonce).map_err(|_| VaultError::Undecryptable)?;
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| VaultError::Undecryptable)?;
        let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| VaultError::Undecryptable)?;
        let aad = associated(id, name);
        let plain = cipher
            .decrypt(&nonce, Payload { msg: &ciphertext, aad: aad.as_bytes() })
            .map_err(|_| VaultError::Undecryptable)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| VaultError::Undecryptable)
    }

    /// `sealed` sealed again with the first key (same value and time), or `None` when it is
    /// sealed with it already.
    pub fn reseal(&self, id: &InstanceId, name: &SecretName, sealed: &Sealed) -> Result<Option<Sealed>, VaultError> {
        if sealed.key_id == self.primary_id() {
            return Ok(None);
        }
        let value = self.open(id, name, sealed)?;
        Ok(Some(self.seal(id, name, value.expose_secret(), sealed.updated_at)))
    }
}

fn associated(id: &InstanceId, name: &SecretName) -> String {
    format!("draas-secret/{id}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> InstanceId {
        s.parse().expect("id")
    }

    #[test]
    fn a_sealed_value_opens_only_as_the_secret_it_was_written_as() {
        let vault = Vault::new(&[generate_key()]).expect("vault");
        let (a, b) = (id("inst-a"), id("inst-b"));
        let name: SecretName = "PG_PASSWORD".parse().expect("name");
        let other: SecretName = "OTHER".parse().expect("name");
        let sealed = vault.seal(&a, &name, "hunter2", Utc::now());
        assert!(!sealed.ciphertext.contains("hunter2"));
        assert_eq!(vault.open(&a, &name, &sealed).expect("open").expose_secret(), "hunter2");
        assert!(vault.open(&b, &name, &sealed).is_err(), "another instance");
        assert!(vault.open(&a, &other, &sealed).is_err(), "another name");
        assert_ne!(vault.seal(&a, &name, "hunter2", Utc::now()).nonce, sealed.nonce, "a fresh nonce each time");
    }

    #[test]
    fn rotation_opens_with_an_old_key_and_reseals_with_the_new_one() {
        let (old, new) = (generate_key(), generate_key());
        let before = Vault::new(std::slice::from_ref(&old)).expect("vault");
        let after = Vault::new(&[new, old]).expect("vault");
        let a = id("inst-a");
        let name: SecretName = "TOKEN".parse().expect("name");
        let sealed = before.seal(&a, &name, "v", Utc::now());
        assert_eq!(after.open(&a, &name, &sealed).expect("open").expose_secret(), "v");
        let resealed = after.reseal(&a, &name, &sealed).expect("reseal").expect("changed");
        assert_eq!(resealed.key_id, after.primary_id());
        assert_eq!(resealed.updated_at, sealed.updated_at);
        assert!(after.reseal(&a, &name, &resealed).expect("reseal").is_none());
        assert!(matches!(before.open(&a, &name, &resealed), Err(VaultError::UnknownKey(_))));
        assert!(Vault::new(&[SecretString::from("c2hvcnQ=")]).is_err());
    }
}
