//! The node pass: this node's process instances are probed (bounded concurrency), what was
//! seen is recorded and drift repaired; then servers of this deployment that no instance here
//! owns are killed.

use std::time::Instant;

use draas_jobs::domain::model::InstanceState;
use draas_jobs::store::StoreError;

use super::{Batches, PassStats, orphans, probe_and_settle};
use crate::context::Ctx;

/// One pass over this node's instances.
pub async fn pass(ctx: &Ctx) -> Result<PassStats, StoreError> {
    let started = Instant::now();
    let (mut instances, mut probed) = (0, 0);
    let mut batches = Batches::new(ctx);
    while let Some(batch) = batches.next().await? {
        instances += batch.len();
        let mine: Vec<InstanceState> = batch.into_iter().filter(|s| s.placed_on(&ctx.node)).collect();
        probed += mine.len();
        tracing::debug!(instances = mine.len(), "node pass: probing a batch");
        probe_and_settle(ctx, mine).await?;
    }
    tracing::debug!("node pass: looking for orphans");
    orphans::kill_processes(ctx).await?;
    Ok(PassStats { instances, probed, elapsed: started.elapsed() })
}
