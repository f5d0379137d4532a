//! Instances no live node looks after: process instances placed on a node whose heartbeat
//! expired (marked `unknown`, and with `reconcile.failover` started on a live node), and
//! process instances never placed (started when they should run).

use draas_jobs::domain::model::{Cause, DesiredState, InstanceState, RuntimeFacts, Status};
use draas_jobs::domain::operation::{OperationError, OperationStatus};
use draas_jobs::queue::node_queue;
use draas_jobs::store::StoreError;

use super::settle;
use crate::context::Ctx;

/// An instance whose node is `lost` (or that has none): mark it unknown, fail it over when the
/// settings allow, start it when it should run.
pub async fn unowned(ctx: &Ctx, s: &InstanceState, lost: Option<&str>) -> Result<(), StoreError> {
    let before = s.observed_or_default();
    let mut after = before.clone();
    if let Some(node) = lost {
        after.status = Status::Unknown;
        after.message = Some(format!("node '{node}' stopped heartbeating"));
        let failover = ctx.settings.reconcile.failover && s.instance.value.desired_state == DesiredState::Running;
        if failover {
            after.node = None;
            after.runtime = RuntimeFacts::default();
        }
        let reason = if failover { "failover" } else { "node-lost" };
        fail_stranded(ctx, s, node).await?;
        if after != before {
            let cause = Cause { source: "reconciler", reason, by: "" };
            ctx.store.instances().observe(s.id(), &after, cause, None, None).await?;
        }
        if !failover {
            return Ok(());
        }
    }
    let mut moved = s.clone();
    if let Some(o) = moved.observed.as_mut() {
        o.value = after.clone();
    }
    settle::repair(ctx, &moved, &after).await
}

/// Operations queued for a lost node will never run there: end them `failed` (`node_lost`), so
/// the instance is not left waiting on them.
async fn fail_stranded(ctx: &Ctx, s: &InstanceState, node: &str) -> Result<(), StoreError> {
    let queue = node_queue(node);
    let ops = ctx.store.operations();
    let (latest, _) = ops.list(Some(s.id()), None, 20).await?;
    for op in latest.into_iter().filter(|o| o.queue == queue && o.status == OperationStatus::Queued) {
        let error = OperationError {
            code: crate::platform::ErrorCode::NodeLost.as_str().to_owned(),
            message: format!("node '{node}' stopped heartbeating before the operation ran"),
            detail: None,
            pointer: None,
        };
        ops.fail_queued(&op.id, &error).await?;
    }
    Ok(())
}
