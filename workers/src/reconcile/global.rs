//! The global pass: what no live node looks after (unplaced process instances and those of
//! lost nodes), every instance of a shared platform (docker, kubernetes) this worker reaches,
//! probed and repaired like a node pass does, then the platforms' orphans; the count of
//! instances by platform and status for every replica's `/metrics`; and every five minutes
//! (the first pass after the last sweep's claim expired), the sweep of finished apalis tasks
//! and expired operation ids.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use draas_jobs::domain::model::{InstanceState, Platform, Status};
use draas_jobs::store::StoreError;

use super::{Batches, PassStats, failover, orphans, probe_and_settle};
use crate::context::Ctx;

/// How often a global pass also sweeps finished tasks and expired ids.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(300);

/// One global pass.
pub async fn pass(ctx: &Ctx) -> Result<PassStats, StoreError> {
    let started = Instant::now();
    let platforms = reachable_platforms(ctx).await;
    let mut alive = HashMap::new();
    let (mut instances, mut touched) = (0, 0);
    // Just back from a Redis outage: every node's key may have expired meanwhile. Nodes get
    // one heartbeat expiry to renew before any of them counts as lost.
    let judge_nodes = !ctx.recently_cut_off();
    if !judge_nodes {
        tracing::info!("Redis was unreachable recently; no node is judged lost in this pass");
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut batches = Batches::new(ctx);
    while let Some(batch) = batches.next().await? {
        instances += batch.len();
        for s in &batch {
            let status = s.observed.as_ref().map_or(Status::Created, |o| o.value.status);
            *counts.entry(format!("{}|{}", s.instance.value.platform.as_str(), status.as_str())).or_default() += 1;
        }
        let (process, shared): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|s| s.instance.value.platform == Platform::Process);
        for s in process {
            let node = s.node().map(str::to_owned);
            let live = match &node {
                Some(_) if !judge_nodes => true,
                Some(n) => match alive.get(n) {
                    Some(v) => *v,
                    None => {
                        let v = ctx.store.nodes().is_alive(n).await?;
                        alive.insert(n.clone(), v);
                        v
                    }
                },
                None => false,
            };
            if !live && !ctx.store.leases().is_held(s.id()).await? {
                touched += 1;
                failover::unowned(ctx, &s, node.as_deref()).await?;
            }
        }
        let reachable: Vec<InstanceState> =
            shared.into_iter().filter(|s| platforms.iter().any(|p| p.kind() == s.instance.value.platform)).collect();
        touched += reachable.len();
        probe_and_settle(ctx, reachable).await?;
    }
    for platform in &platforms {
        orphans::on_shared(ctx, platform.as_ref()).await?;
    }
    ctx.store.passes().write_counts(&counts).await?;
    if ctx.store.passes().claim_maintenance(&ctx.worker, MAINTENANCE_EVERY).await? {
        maintain(ctx).await;
    }
    Ok(PassStats { instances, probed: touched, elapsed: started.elapsed() })
}

/// The shared platforms that answer now; the instances of the others are left as they are
/// (judging them from an engine that does not answer would call every one of them crashed).
async fn reachable_platforms(ctx: &Ctx) -> Vec<Arc<dyn crate::platform::Platform>> {
    let mut up = Vec::new();
    for p in &ctx.shared {
        match p.reachable().await {
            Ok(()) => up.push(p.clone()),
            Err(e) => tracing::debug!(platform = p.kind().as_str(), error = %e, "platform unreachable; not reconciled"),
        }
    }
    up
}

/// Sweep every queue of this deployment.
async fn maintain(ctx: &Ctx) {
    match draas_jobs::queue::maintenance::sweep(&ctx.store).await {
        Ok(n) => tracing::info!(removed = n, "swept finished tasks and expired operation ids"),
        Err(e) => tracing::warn!(error = %e, "sweep failed"),
    }
}
