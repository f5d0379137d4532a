//! Reconcile ticks: every replica turns apalis-cron ticks into reconcile jobs with
//! deterministic task ids (`reconcile-<tick>` and `reconcile-<tick>-<node>`), so each tick is
//! reconciled once however many workers run (the first push of a tick wins, later ones are
//! ignored: apalis-cron alone would run a tick once per replica).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use apalis_cron::CronScheduler;
use draas_jobs::queue::{ReconcileJob, SCHEMA_VERSION};
use futures::StreamExt;

use crate::context::Ctx;

/// The cron expression for an interval (checked by `Settings`).
pub fn cron_expr(interval_secs: u64) -> String {
    if interval_secs < 60 {
        format!("*/{interval_secs} * * * * *")
    } else {
        format!("0 */{} * * * *", interval_secs / 60)
    }
}

/// Push this replica's reconcile jobs for every tick.
pub async fn produce(ctx: Arc<Ctx>) {
    let expr = cron_expr(ctx.settings.reconcile.interval_secs);
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
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile schedule fell behind; restarting it");
                    break;
                }
            };
            for node in [None, Some(ctx.node.clone())] {
                let job = ReconcileJob {
                    schema_version: SCHEMA_VERSION,
                    tick: tick.get_timestamp(),
                    node,
                    operation_id: None,
                };
                if let Err(e) = job.push(&ctx.store).await {
                    tracing::warn!(error = %e, "could not queue a reconcile tick");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
