//! Log shipping. The API never touches a platform, so the servers' output reaches it through
//! the store: every few seconds each worker looks for instances whose output it can read (the
//! process instances of its node; docker and kubernetes ones when it reaches that platform)
//! and that have a server (not `created` or `stopped`), takes the instance's shipper lock, and
//! follows the output into the instance's capped log stream (`logs.keep_lines`) until the
//! server is gone or the lock is lost. Each line keeps where it was read, so a shipper that
//! takes over (a restarted worker, another replica) goes on after the last line shipped.
//! Every known secret value of the instance is masked (`***`) before a line is written, so the
//! store and `GET …/logs` never hold one; the secrets are read again on each check.
//!
//! Cost: one pass over the instances per scan (`SCAN`), reading only each one's platform and
//! observed record (two reads, no configuration), and per followed instance a stat every
//! 250 ms (process) or an open log stream (docker, kubernetes).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{Platform as Kind, Status};
use draas_jobs::store::instances::Placement;
use draas_jobs::store::leases::Lease;
use futures::StreamExt;

use crate::context::Ctx;

/// How often a worker looks for instances to ship.
const SCAN: Duration = Duration::from_secs(2);
/// How long a shipper's lock lives without renewal.
const LOCK_TTL: Duration = Duration::from_secs(15);
/// How often lines read are written out, and the lock renewed and the instance looked at.
const FLUSH: Duration = Duration::from_millis(250);
const CHECK_EVERY: u32 = 12;
/// Most lines written in one round trip.
const BATCH: usize = 200;
/// Instances read per page of a scan.
const PAGE: usize = 500;

/// Ship the logs this worker can read, until the process ends.
pub async fn ship(ctx: Arc<Ctx>) {
    if ctx.settings.logs.keep_lines == 0 {
        return;
    }
    let mut following: HashMap<InstanceId, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        following.retain(|_, task| !task.is_finished());
        for (id, kind) in candidates(&ctx).await {
            if following.contains_key(&id) {
                continue;
            }
            if let Ok(Some(lease)) = ctx.store.leases().try_lock_logs(&id, &ctx.worker, LOCK_TTL).await {
                following.insert(id.clone(), tokio::spawn(follow(ctx.clone(), id, kind, lease)));
            }
        }
        tokio::time::sleep(SCAN).await;
    }
}

/// Instances with a server whose output this worker can read.
async fn candidates(ctx: &Ctx) -> Vec<(InstanceId, Kind)> {
    let mut found = Vec::new();
    let mut cursor: Option<InstanceId> = None;
    loop {
        let Ok(ids) = ctx.store.instances().ids_after(cursor.as_ref(), PAGE).await else { return found };
        let Some(last) = ids.last().cloned() else { return found };
        let Ok(placements) = ctx.store.instances().placements(&ids).await else { return found };
        found.extend(
            ids.iter()
                .zip(placements)
                .filter_map(|(id, p)| p.filter(|p| shipped_here(ctx, p)).map(|p| (id.clone(), p.platform))),
        );
        if ids.len() < PAGE {
            return found;
        }
        cursor = Some(last);
    }
}

/// Does the instance placed at `p` have a server whose output this worker reads?
fn shipped_here(ctx: &Ctx, p: &Placement) -> bool {
    let observed = p.observed.as_ref();
    let has_server = observed.is_some_and(|o| !matches!(o.status, Status::Created | Status::Stopped));
    let reachable = match p.platform {
        Kind::Process => observed.and_then(|o| o.node.as_deref()) == Some(ctx.node.as_str()),
        other => ctx.platform(other).is_ok(),
    };
    has_server && reachable
}

/// Follow one instance's output into its log stream while it has a server here and the lock
/// is ours; the last lines are written out before it lets go.
async fn follow(ctx: Arc<Ctx>, id: InstanceId, kind: Kind, lease: Lease) {
    let keep = ctx.settings.logs.keep_lines;
    let since = ctx.store.logs().cursor(&id).await.ok().flatten();
    let stream = match ctx.platform(kind) {
        Ok(p) => p.logs(&id, since).await,
        Err(_) => None,
    };
    if let Some(mut stream) = stream {
        let mut masker = crate::secrets::masker(&ctx, &id).await.unwrap_or_default();
        let mut batch: Vec<(String, String)> = Vec::new();
        let mut tick = tokio::time::interval(FLUSH);
        let mut ticks = 0_u32;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(item) => {
                        batch.push((masker.mask(&item.line), item.cursor));
                        if batch.len() >= BATCH {
                            flush(&ctx, &id, &mut batch, keep).await;
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    flush(&ctx, &id, &mut batch, keep).await;
                    ticks += 1;
                    if ticks.is_multiple_of(CHECK_EVERY) {
                        if !still_shipping(&ctx, &id, &lease).await {
                            break;
                        }
                        if let Some(m) = crate::secrets::masker(&ctx, &id).await {
                            masker = m;
                        }
                    }
                }
            }
        }
        flush(&ctx, &id, &mut batch, keep).await;
    }
    let _ = ctx.store.leases().release(&lease).await;
}

async fn flush(ctx: &Ctx, id: &InstanceId, batch: &mut Vec<(String, String)>, keep: usize) {
    if batch.is_empty() {
        return;
    }
    match ctx.store.logs().append(id, batch, keep).await {
        Ok(()) => batch.clear(),
        // Kept for the next flush; a store away for long drops the oldest.
        Err(e) if batch.len() > keep => {
            tracing::debug!(instance = %id, error = %e, "log lines dropped: the store does not answer");
            let extra = batch.len() - keep;
            batch.drain(..extra);
        }
        Err(_) => {}
    }
}

/// Renew the lock; is the instance still one whose output this worker ships?
async fn still_shipping(ctx: &Ctx, id: &InstanceId, lease: &Lease) -> bool {
    if !matches!(ctx.store.leases().renew(lease, LOCK_TTL).await, Ok(true)) {
        return false;
    }
    match ctx.store.instances().placements(std::slice::from_ref(id)).await.map(|mut p| p.pop().flatten()) {
        Ok(Some(p)) => shipped_here(ctx, &p),
        Ok(None) => false,
        Err(_) => true,
    }
}
