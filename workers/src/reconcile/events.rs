//! Deaths reported by a platform as they happen (Docker's event stream): the instance is
//! probed and repaired at once, like a pass would on its next tick. Every worker follows the
//! events; the first to claim one acts on it, and an instance an operation is acting on (our
//! own stop, restart or delete) is left to that operation.

use std::sync::Arc;
use std::time::Duration;

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::store::StoreError;

use crate::context::Ctx;

/// How long a claimed death keeps other workers from acting on the same event.
const CLAIM: Duration = Duration::from_secs(5);

/// Follow every shared platform's deaths until the worker stops.
pub async fn follow(ctx: Arc<Ctx>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    for platform in &ctx.shared {
        let (platform, tx) = (platform.clone(), tx.clone());
        tokio::spawn(async move { platform.watch_exits(tx).await });
    }
    drop(tx);
    while let Some(id) = rx.recv().await {
        if let Err(e) = on_exit(&ctx, &id).await {
            tracing::warn!(instance = %id, error = %e, "could not reconcile a reported death");
        }
    }
}

async fn on_exit(ctx: &Ctx, id: &str) -> Result<(), StoreError> {
    let Ok(id) = id.parse::<InstanceId>() else { return Ok(()) };
    if ctx.store.leases().is_held(&id).await? || !ctx.store.passes().claim_exit(&id, &ctx.worker, CLAIM).await? {
        return Ok(());
    }
    let Some(s) = ctx.store.instances().load(&id).await?.filter(|s| s.unreadable.is_none()) else { return Ok(()) };
    if ctx.platform(s.instance.value.platform).is_err() {
        return Ok(());
    }
    tracing::info!(instance = %id, "the platform reports the server died; reconciling it now");
    super::probe_and_settle(ctx, vec![s]).await
}
