//! Reconcile ticks, produced wherever draas runs: every API replica and every worker turns
//! apalis-cron ticks into reconcile jobs with deterministic task ids (`reconcile-<tick>` and
//! `reconcile-<tick>-<node>`), so each tick is reconciled at most once however many replicas
//! produce it (the first push of a tick wins, later ones are ignored: apalis-cron alone would
//! run a tick once per replica).
//!
//! The global pass needs a shared worker, and shared workers may be scaled to zero, so the API
//! produces it too, and its push is decided once per tick by one script (`Queues::tick`): it
//! is queued while the shared queue holds work or an instance is desired running, and never
//! while an earlier pass still waits. With no worker, ticks therefore leave at most one pass
//! waiting (which wakes a scaler when there is something to watch) instead of one per tick;
//! with nothing to watch and no work, ticks queue nothing and a scaled-down deployment stays
//! at zero. A node's own pass is pushed by that node's workers only: they host its processes
//! and always run.

use std::str::FromStr;
use std::time::Duration;

use apalis_cron::CronScheduler;
use futures::StreamExt;

use super::{ReconcileJob, SCHEMA_VERSION};
use crate::store::Store;
use crate::store::queues::Tick;

/// The cron expression for an interval (checked by `Settings`).
pub fn cron_expr(interval_secs: u64) -> String {
    if interval_secs < 60 {
        format!("*/{interval_secs} * * * * *")
    } else {
        format!("0 */{} * * * *", interval_secs / 60)
    }
}

/// Produce the reconcile jobs of every tick: the global pass, and node `node`'s own pass when
/// given. Runs until the process ends.
pub async fn produce(store: Store, interval_secs: u64, node: Option<String>) {
    let expr = cron_expr(interval_secs);
    let schedule = match cron::Schedule::from_str(&expr) {
        Ok(s) => s,
        Err(e) => return tracing::error!(%expr, error = %e, "invalid reconcile schedule"),
    };
    // apalis-cron's stream fails every poll once it fell behind its schedule ("tick out of
    // range", e.g. after the process was suspended or a push hung on an unreachable Redis);
    // a fresh stream starts from now.
    loop {
        let mut ticks = Box::pin(CronScheduler::new(schedule.clone()).into_stream());
        while let Some(tick) = ticks.next().await {
            let tick = match tick {
                Ok(t) => t.get_timestamp(),
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile schedule fell behind; restarting it");
                    break;
                }
            };
            on_tick(&store, tick, node.as_deref()).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Queue tick `tick`'s passes.
async fn on_tick(store: &Store, tick: u64, node: Option<&str>) {
    let global = ReconcileJob { schema_version: SCHEMA_VERSION, tick, node: None, operation_id: None };
    match global.queue_tick(store).await {
        Ok(Tick::Busy | Tick::Watch) => tracing::trace!(tick, "global pass queued"),
        Ok(outcome) => tracing::trace!(tick, ?outcome, "global pass not queued"),
        Err(e) => tracing::warn!(error = %e, "could not queue a reconcile tick"),
    }
    if let Some(node) = node {
        let job = ReconcileJob { node: Some(node.to_owned()), ..global };
        if let Err(e) = job.push(store).await {
            tracing::warn!(error = %e, "could not queue a reconcile tick");
        }
    }
}
