//! An instance's secrets as a worker uses them: opened with the configured keys for the
//! server's environment, and known so that no error or shipped log line repeats one.

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::secrets::Masker;
use draas_jobs::store::secrets::Stored;
use secrecy::SecretString;

use crate::context::Ctx;
use crate::platform::{ErrorCode, PlatformError};

/// The opened secrets of one instance.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// Changes of the set so far (part of the spec hash).
    pub rev: u64,
    /// Name → value, as the server's environment gets them.
    pub env: Vec<(String, SecretString)>,
    /// Masks every value.
    pub masker: Masker,
}

/// Open the secrets of instance `id`.
pub async fn open(ctx: &Ctx, id: &InstanceId) -> Result<Opened, PlatformError> {
    open_stored(ctx, id, &ctx.store.secrets().load(id).await?)
}

/// Open the secrets of instance `id` as they were read (`stored`).
pub fn open_stored(ctx: &Ctx, id: &InstanceId, stored: &Stored) -> Result<Opened, PlatformError> {
    if stored.sealed.is_empty() {
        return Ok(Opened { rev: stored.rev, ..Opened::default() });
    }
    let unavailable = |m: String| PlatformError::new(ErrorCode::SecretsUnavailable, m);
    let vault = ctx.settings.secrets.vault().map_err(|e| unavailable(e.to_string()))?.ok_or_else(|| {
        unavailable("the instance has secrets and this worker has no secrets.keys to open them".into())
    })?;
    let mut env = Vec::with_capacity(stored.sealed.len());
    for (name, sealed) in &stored.sealed {
        let value = vault.open(id, name, sealed).map_err(|e| unavailable(format!("secret {name}: {e}")))?;
        env.push((name.to_string(), value));
    }
    let masker = Masker::new(env.iter().map(|(_, v)| v.clone()));
    Ok(Opened { rev: stored.rev, env, masker })
}

/// The masker of instance `id`'s secrets as they are now (empty when they cannot be read:
/// the caller keeps the one it had).
pub async fn masker(ctx: &Ctx, id: &InstanceId) -> Option<Masker> {
    open(ctx, id).await.ok().map(|o| o.masker)
}
