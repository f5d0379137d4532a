//! What a platform runs for this deployment that no instance owns: servers of deleted (or
//! moved) instances on this host, which the node pass kills; containers and Kubernetes objects,
//! which the global pass reports and, with `reconcile.remove_orphans`, removes.

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::store::StoreError;

use crate::context::Ctx;
use crate::platform::Platform;

/// Kill servers of this deployment on this host whose instance is gone or lives on another
/// node.
pub async fn kill_processes(ctx: &Ctx) -> Result<(), StoreError> {
    for (id, p) in ctx.process.deployment_processes() {
        let Ok(id) = id.parse::<InstanceId>() else { continue };
        let owned = match ctx.store.instances().load(&id).await? {
            None => false,
            Some(s) => s.placed_on(&ctx.node) || ctx.store.leases().is_held(&id).await?,
        };
        if !owned {
            tracing::warn!(instance = %id, pid = p.pid, "killing a drasi-server no instance on this node owns");
            ctx.process.kill(&p);
        }
    }
    Ok(())
}

/// Report (and, when the settings say so, remove) what a shared platform runs for this
/// deployment that no instance owns.
pub async fn on_shared(ctx: &Ctx, platform: &dyn Platform) -> Result<(), StoreError> {
    let managed = match platform.managed().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(platform = platform.kind().as_str(), error = %e, "cannot list managed objects");
            return Ok(());
        }
    };
    for m in managed {
        let owned = match m.instance.parse::<InstanceId>() {
            Ok(id) => ctx.store.instances().load(&id).await?.is_some() || ctx.store.leases().is_held(&id).await?,
            Err(_) => false,
        };
        if owned {
            continue;
        }
        let remove = ctx.settings.reconcile.remove_orphans;
        tracing::warn!(platform = platform.kind().as_str(), instance = %m.instance, handle = %m.handle, remove,
            "found a draas-managed object no instance owns");
        if remove && let Err(e) = platform.remove(&m).await {
            tracing::warn!(handle = %m.handle, error = %e, "could not remove an orphan");
        }
    }
    Ok(())
}
