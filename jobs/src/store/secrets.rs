//! The instances' secrets, sealed ([`crate::vault`]): one hash per instance, removed with it.
//! The store never sees a plaintext; it keeps the cap on how many an instance has atomic.

use std::collections::BTreeMap;

use redis::AsyncCommands;

use super::{Store, StoreError, scripts, to_json};
use crate::domain::ids::InstanceId;
use crate::domain::secrets::SecretName;
use crate::vault::Sealed;

/// The hash field counting changes of the secret set (not a valid secret name).
pub(crate) const REV: &str = "#rev";

/// What setting a secret did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Created,
    Updated,
    /// The instance has `max_per_instance` secrets already.
    Full,
    /// No such instance.
    NotFound,
}

/// An instance's secrets as stored.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Changes of the set so far (0: never had any).
    pub rev: u64,
    /// Sealed values by name (fields that are not a valid name, or not a sealed value, are
    /// skipped and reported).
    pub sealed: BTreeMap<SecretName, Sealed>,
}

/// Secrets of instances.
pub struct Secrets<'a> {
    pub(super) store: &'a Store,
}

impl Secrets<'_> {
    /// Set secret `name` of instance `id`, unless the instance has `max` others.
    pub async fn set(
        &self,
        id: &InstanceId,
        name: &SecretName,
        sealed: &Sealed,
        max: usize,
    ) -> Result<SetOutcome, StoreError> {
        let k = self.store.keys();
        let reply: String = scripts::secret_set()
            .key(k.instance(id))
            .key(k.secrets(id))
            .arg(name.as_str())
            .arg(to_json(sealed))
            .arg(max)
            .invoke_async(&mut self.store.conn())
            .await?;
        match reply.as_str() {
            "created" => Ok(SetOutcome::Created),
            "updated" => Ok(SetOutcome::Updated),
            "full" => Ok(SetOutcome::Full),
            "not_found" => Ok(SetOutcome::NotFound),
            other => Err(StoreError::Protocol(format!("secret_set: {other}"))),
        }
    }

    /// Remove secret `name`; whether it existed.
    pub async fn remove(&self, id: &InstanceId, name: &SecretName) -> Result<bool, StoreError> {
        let removed: i32 = scripts::secret_remove()
            .key(self.store.keys().secrets(id))
            .arg(name.as_str())
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(removed == 1)
    }

    /// Every secret of instance `id`, sealed.
    pub async fn load(&self, id: &InstanceId) -> Result<Stored, StoreError> {
        let key = self.store.keys().secrets(id);
        let raw: BTreeMap<String, String> = self.store.conn().hgetall(&key).await?;
        Ok(parse(&key, raw))
    }

    /// Replace `old` by `new` (the same value sealed anew), unless the secret changed since it
    /// was read; whether it replaced it.
    pub async fn reseal(
        &self,
        id: &InstanceId,
        name: &SecretName,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool, StoreError> {
        let done: i32 = scripts::secret_reseal()
            .key(self.store.keys().secrets(id))
            .arg(name.as_str())
            .arg(to_json(old))
            .arg(to_json(new))
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(done == 1)
    }
}

/// The secrets in an instance's hash (`key`), as `HGETALL` gives it.
pub(super) fn parse(key: &str, raw: BTreeMap<String, String>) -> Stored {
    let mut out = Stored::default();
    for (field, value) in raw {
        if field == REV {
            out.rev = value.parse().unwrap_or_default();
            continue;
        }
        let parsed = field.parse::<SecretName>().ok().zip(serde_json::from_str::<Sealed>(&value).ok());
        match parsed {
            Some((name, sealed)) => {
                out.sealed.insert(name, sealed);
            }
            None => tracing::error!(key = %key, field = %field, "a stored secret cannot be read; it is skipped"),
        }
    }
    out
}
