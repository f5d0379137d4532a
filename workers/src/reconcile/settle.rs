//! Turning what a probe saw into observed status, and drift into repairs. Repairs go through
//! the same operations as user requests (`Submitter`), so they show in the API.

use std::time::Duration;

use chrono::Utc;
use draas_jobs::domain::config::ComponentKind::{Queries, Reactions, Sources};
use draas_jobs::domain::model::{Cause, DesiredState, Exit, InstanceState, ObservedRecord, RuntimeFacts, Status};
use draas_jobs::domain::operation::OperationKind;
use draas_jobs::domain::render::{self, Ports};
use draas_jobs::queue::submit::{Request, SubmitError};
use draas_jobs::store::StoreError;
use draas_jobs::store::crashloops::Verdict;
use draas_jobs::store::leases::Lease;

use super::probe::Probe;
use crate::context::Ctx;

/// Probes in a row a live but unhealthy server may fail before it counts as down.
const UNHEALTHY_AFTER: u32 = 3;

/// What the probe means for the observed record: the new record and why it changed.
pub fn judge(before: &ObservedRecord, p: &Probe) -> (ObservedRecord, &'static str) {
    let mut o = before.clone();
    let reason = if p.alive && p.healthy {
        if let Some(components) = &p.components {
            o.components = components.clone();
        }
        let failing: Vec<String> = o
            .components
            .iter()
            .filter(|c| c.failed())
            .map(|c| match &c.error {
                Some(e) => format!("{} '{}' is in error: {e}", c.kind, c.id),
                None => format!("{} '{}' is in error", c.kind, c.id),
            })
            .collect();
        o.probe_failures = 0;
        if failing.is_empty() {
            o.status = Status::Running;
            o.message = None;
            "healthy"
        } else {
            o.status = Status::Degraded;
            o.message = Some(failing.join("; "));
            "degraded"
        }
    } else if p.alive {
        o.probe_failures = before.probe_failures + 1;
        if o.probe_failures >= UNHEALTHY_AFTER {
            o.status = Status::Error;
            o.message = Some(format!("unhealthy: {}", p.message.clone().unwrap_or_default()));
        }
        "unhealthy"
    } else {
        o.probe_failures = 0;
        if matches!(
            before.status,
            Status::Running | Status::Degraded | Status::Starting | Status::Stopping | Status::Unknown
        ) {
            let how = p.message.clone().unwrap_or_else(|| "the process is gone".into());
            let clean = p.exit == Some(Exit::Code { code: 0 });
            o.status = if clean { Status::Stopped } else { Status::Error };
            o.message = Some(how);
            o.exit = p.exit;
            o.runtime = RuntimeFacts::default();
            o.components.clear();
            if clean { "exited" } else { "crashed" }
        } else {
            ""
        }
    };
    // After live applies the platform still shows the hash the server started with; any other
    // hash means another server runs now.
    if p.alive
        && let Some(h) = &p.spec_hash
        && o.started_hash.as_ref() != Some(h)
    {
        o.spec_hash = Some(h.clone());
        o.started_hash = None;
    }
    o.observed_at = Some(p.at);
    (o, reason)
}

/// Does `after` say anything `before` did not (status, message, probe count, node, what runs,
/// components, a refusal)? The probe's time alone is not worth a write.
pub fn changed(before: &ObservedRecord, after: &ObservedRecord) -> bool {
    after.status != before.status
        || after.message != before.message
        || after.probe_failures != before.probe_failures
        || after.node != before.node
        || after.spec_hash != before.spec_hash
        || after.components != before.components
        || after.rejected != before.rejected
}

/// Record `after` when it differs from `before` (status, message or probe count), only if
/// the observed record is still the one `s` was read with. Returns `false` when `s` is stale:
/// a worker or another pass wrote since, so nothing may be decided from `s`.
pub async fn record(
    ctx: &Ctx,
    s: &InstanceState,
    before: &ObservedRecord,
    after: &ObservedRecord,
    reason: &str,
    lease: Option<&Lease>,
) -> Result<bool, StoreError> {
    let version = s.observed_version();
    let instances = ctx.store.instances();
    if changed(before, after) {
        let cause = Cause { source: "reconciler", reason, by: "" };
        return instances.observe(s.id(), after, cause, lease.map(Lease::value), Some(version)).await;
    }
    // Nothing to write: still make sure nobody wrote since the read before acting on it.
    Ok(instances.observed_version(s.id()).await? == version)
}

/// What the reconciler would do about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Submit this operation for this reason.
    Submit(OperationKind, &'static str),
    /// A failed instance: repair it, subject to the crash-loop backoff.
    CrashRepair(&'static str),
}

/// Compare observed with desired (no I/O): the repair, if any.
pub fn plan(ctx: &Ctx, s: &InstanceState, observed: &ObservedRecord) -> Option<Plan> {
    let r = &ctx.settings.reconcile;
    match (s.instance.value.desired_state, observed.status) {
        (DesiredState::Running, Status::Running | Status::Degraded) => {
            let want = desired_hash(ctx, s, observed);
            if observed.spec_hash.is_some() && want.is_some() && observed.spec_hash != want {
                return (!refused(observed, &want))
                    .then_some(Plan::Submit(OperationKind::Reconfigure, "config-changed"));
            }
            (r.component_health && changed_behind_our_back(observed))
                .then_some(Plan::Submit(OperationKind::Reconfigure, "server-drift"))
        }
        // A configuration refused before it ran: nothing to repair until it changes.
        (DesiredState::Running, Status::Error) if refused(observed, &desired_hash(ctx, s, observed)) => None,
        (DesiredState::Running, Status::Error) if r.repair_error => Some(Plan::CrashRepair("crashed")),
        (DesiredState::Running, Status::Stopped) if observed.exited_cleanly() && r.repair_stopped => {
            Some(Plan::CrashRepair("exited"))
        }
        // Stopped by itself, and the settings leave such instances alone.
        (DesiredState::Running, Status::Stopped) if observed.exited_cleanly() => None,
        (DesiredState::Running, Status::Created | Status::Stopped | Status::Unknown) => {
            Some(Plan::Submit(OperationKind::Start, "not-running"))
        }
        (DesiredState::Stopped, Status::Running) => Some(Plan::Submit(OperationKind::Stop, "drift")),
        _ => None,
    }
}

/// Does the server have other sources, queries or reactions than the configuration it was
/// given (someone used its API directly)? A server that never listed its components (an
/// empty record) is not judged: drift would be seen on every tick and nothing repaired.
fn changed_behind_our_back(observed: &ObservedRecord) -> bool {
    let Some(applied) = observed.applied.as_ref().filter(|_| !observed.components.is_empty()) else {
        return false;
    };
    let mut given: Vec<(&str, &str)> = applied
        .sources
        .iter()
        .map(|c| (Sources.singular(), c.id.as_str()))
        .chain(applied.queries.iter().map(|c| (Queries.singular(), c.id.as_str())))
        .chain(applied.reactions.iter().map(|c| (Reactions.singular(), c.id.as_str())))
        .collect();
    let mut has: Vec<(&str, &str)> = observed.components.iter().map(|c| (c.kind.as_str(), c.id.as_str())).collect();
    given.sort_unstable();
    has.sort_unstable();
    given != has
}

/// The spec hash of the desired configuration, with the ports the instance has.
fn desired_hash(ctx: &Ctx, s: &InstanceState, observed: &ObservedRecord) -> Option<String> {
    let policy = ctx.settings.network.policy();
    render::render(s, &ctx.settings.process.host, &Ports::observed(Some(observed)), policy).ok().map(|r| r.spec_hash)
}

/// Was the configuration of spec hash `want` refused already?
fn refused(observed: &ObservedRecord, want: &Option<String>) -> bool {
    observed.rejected.as_ref().is_some_and(|c| Some(&c.spec_hash) == want.as_ref())
}

/// A refusal of a configuration the instance no longer has (the user fixed or reverted it)
/// is no longer a condition of the instance.
pub fn forget_stale_refusal(ctx: &Ctx, s: &InstanceState, observed: &mut ObservedRecord) {
    if observed.rejected.is_some() && !refused(observed, &desired_hash(ctx, s, observed)) {
        observed.rejected = None;
    }
}

/// Compare observed with desired and submit the repair, if any (and none is pending).
pub async fn repair(ctx: &Ctx, s: &InstanceState, observed: &ObservedRecord) -> Result<(), StoreError> {
    let Some(plan) = plan(ctx, s, observed) else { return Ok(()) };
    if ctx.store.operations().has_pending(s.id()).await? {
        return Ok(());
    }
    match plan {
        Plan::Submit(kind, reason) => submit(ctx, s, kind, reason).await,
        Plan::CrashRepair(reason) => crash_repair(ctx, s, observed, reason).await,
    }
}

/// Repair a failed instance unless it is backing off or the reconciler gave up on it.
async fn crash_repair(ctx: &Ctx, s: &InstanceState, observed: &ObservedRecord, reason: &str) -> Result<(), StoreError> {
    let r = &ctx.settings.reconcile;
    let backoff = (Duration::from_millis(r.backoff_initial_ms), Duration::from_millis(r.backoff_max_ms));
    let id = s.id();
    match ctx.store.crash_loops().decide(id, Utc::now().timestamp_millis(), backoff, r.max_failures).await? {
        Verdict::Repair { attempt } => {
            tracing::info!(instance = %id, attempt, reason, "repairing");
            submit(ctx, s, OperationKind::Restart, reason).await
        }
        Verdict::GiveUp => {
            let mut gave_up = observed.clone();
            gave_up.status = Status::Error;
            let last = observed.message.clone().unwrap_or_default();
            gave_up.message = Some(format!("crash loop: gave up after {} repairs; last: {last}", r.max_failures));
            tracing::warn!(instance = %id, "crash loop: giving up until a user acts");
            ctx.store
                .instances()
                .observe(id, &gave_up, Cause { source: "reconciler", reason: "crash-loop", by: "" }, None, None)
                .await?;
            Ok(())
        }
        Verdict::Wait | Verdict::GaveUp => Ok(()),
    }
}

async fn submit(ctx: &Ctx, s: &InstanceState, kind: OperationKind, reason: &str) -> Result<(), StoreError> {
    let id = s.id();
    let correlation = format!("reconcile:{reason}");
    let mut request = Request::new(kind, Some(id), reason, &correlation);
    request.seen_generation = Some(s.instance.value.generation);
    match ctx.submitter.submit(request).await {
        Ok(op) => {
            tracing::info!(instance = %id, operation = %op.id, ?kind, reason, "repair submitted");
            Ok(())
        }
        Err(SubmitError::Store(e)) => Err(e),
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "repair not submitted");
            Ok(())
        }
    }
}

/// A healthy instance that has stayed up longer than the longest backoff is out of its crash
/// loop: its count starts again from zero.
pub async fn forget_old_crashes(ctx: &Ctx, s: &InstanceState) -> Result<(), StoreError> {
    let loops = ctx.store.crash_loops();
    let c = loops.get(s.id()).await?;
    let calm = i64::try_from(ctx.settings.reconcile.backoff_max_ms).unwrap_or(i64::MAX);
    if c.failures > 0 && !c.gave_up && Utc::now().timestamp_millis() > c.next_at_ms.saturating_add(calm) {
        loops.reset(s.id()).await?;
    }
    Ok(())
}
