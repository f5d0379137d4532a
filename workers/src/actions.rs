//! What each operation does to an instance, under its lease: converge the platform to the
//! desired state, record the steps on the way (`starting`, `stopping`), and hand back what to
//! record as the operation ends (the handler writes it with the outcome, in one step).

use chrono::Utc;
use draas_jobs::domain::config::Port;
use draas_jobs::domain::model::{Cause, InstanceState, ObservedRecord, Platform as PlatformKind, RuntimeFacts, Status};
use draas_jobs::domain::render;
use draas_jobs::store::leases::Lease;
use draas_jobs::store::operations::Allocated;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::platform::{ErrorCode, Platform, PlatformError, StartSpec};

/// Port drasi-server listens on inside a pod when its config names none.
const DEFAULT_PORT: u16 = 8080;

/// One attempt of an operation, under the instance's lease.
pub struct Attempt<'a> {
    pub lease: &'a Lease,
    /// The instance as the attempt began.
    pub state: &'a InstanceState,
    /// The port `begin` allocated, when it was asked to.
    pub port: Option<Allocated>,
    /// Cancelled when a newer operation on the instance arrives.
    pub superseded: CancellationToken,
    /// A delete that removes the records even when the platform cannot be reached.
    pub force: bool,
}

/// What an action leaves: the operation's result, and what to record as observed as it ends
/// (with the reason of a status change).
#[derive(Debug, Default)]
pub struct Done {
    pub facts: RuntimeFacts,
    pub observed: Option<(ObservedRecord, &'static str)>,
}

/// Record an intermediate observation while our lease holds.
async fn observe(ctx: &Ctx, a: &Attempt<'_>, observed: &ObservedRecord, reason: &str) -> Result<(), PlatformError> {
    let source = format!("worker:{}", ctx.worker);
    let cause = Cause { source: &source, reason };
    let wrote = ctx.store.instances().observe(a.state.id(), observed, cause, Some(a.lease.value()), None).await?;
    if wrote { Ok(()) } else { Err(PlatformError::new(ErrorCode::LeaseLost, "another worker took over this instance")) }
}

/// Make the instance run with its current configuration, starting from `observed`.
pub async fn start(ctx: &Ctx, a: &Attempt<'_>, mut observed: ObservedRecord) -> Result<Done, PlatformError> {
    let instance = &a.state.instance.value;
    let platform = ctx.platform(instance.platform)?;
    assert!(!ctx.settings.worker.inject_panic, "fault injection: start panics (worker.inject_panic)");
    let port = port(ctx, a, platform).await?;
    let rendered = render::render(a.state, &ctx.settings.process.host, Some(port))
        .map_err(|e| PlatformError::new(ErrorCode::RenderFailed, e.to_string()).caused_by(e))?;
    let host = a.state.config.value.host.clone().unwrap_or_else(|| ctx.settings.process.host.clone());
    observed.node = (instance.platform == PlatformKind::Process).then(|| ctx.node.clone());
    observed.port = Some(port);
    observed.status = Status::Starting;
    observed.message = None;
    observed.exit = None;
    observed.observed_at = Some(Utc::now());
    observe(ctx, a, &observed, "start").await?;
    let spec = StartSpec {
        instance_id: instance.id.clone(),
        yaml: rendered.yaml,
        spec_hash: rendered.spec_hash.clone(),
        host,
        port,
        runtime: instance.runtime.clone(),
        superseded: a.superseded.clone(),
    };
    let facts = platform.start(&spec).await?;
    observed.status = Status::Running;
    observed.spec_hash = Some(rendered.spec_hash);
    observed.observed_generation = Some(instance.generation);
    observed.runtime = facts.clone();
    observed.observed_at = Some(Utc::now());
    Ok(Done { facts, observed: Some((observed, "start")) })
}

/// The instance's port: the one `begin` allocated from the platform's pool, or (for a job
/// that did not say its platform) one allocated now; platforms without host ports use the
/// configuration's port.
async fn port(ctx: &Ctx, a: &Attempt<'_>, platform: &dyn Platform) -> Result<u16, PlatformError> {
    let wanted = a.state.config.value.port.map(Port::get);
    let Some(pool) = platform.port_pool(&ctx.node) else { return Ok(wanted.unwrap_or(DEFAULT_PORT)) };
    let allocated = match a.port {
        Some(allocated) => allocated,
        None => {
            let id = a.state.id();
            let busy = platform.busy_ports(id, pool.range);
            ctx.store.ports().allocate(&pool.name, id, pool.range, wanted, &busy).await?
        }
    };
    match allocated {
        Allocated::Port(p) => Ok(p),
        Allocated::Taken => Err(PlatformError::new(
            ErrorCode::PortTaken,
            format!(
                "port {} is already allocated to another instance in pool '{}'",
                wanted.unwrap_or_default(),
                pool.name
            ),
        )),
        Allocated::Exhausted => Err(PlatformError::new(
            ErrorCode::PortsExhausted,
            format!("no free port left in {}-{} in pool '{}'", pool.range.0, pool.range.1, pool.name),
        )),
    }
}

/// Make the instance not run, starting from `observed`.
pub async fn stop(ctx: &Ctx, a: &Attempt<'_>, mut observed: ObservedRecord) -> Result<Done, PlatformError> {
    let platform = ctx.platform(a.state.instance.value.platform)?;
    let was_running = observed.status != Status::Created;
    if was_running {
        observed.status = Status::Stopping;
        observed.observed_at = Some(Utc::now());
        observe(ctx, a, &observed, "stop").await?;
    }
    platform.stop(a.state.id()).await?;
    observed.status = if was_running { Status::Stopped } else { Status::Created };
    observed.message = None;
    observed.exit = None;
    observed.runtime = RuntimeFacts::default();
    observed.observed_at = Some(Utc::now());
    Ok(Done { facts: RuntimeFacts::on_node(&ctx.node), observed: Some((observed, "stop")) })
}

/// Stop and start again, always with a new server.
pub async fn restart(ctx: &Ctx, a: &Attempt<'_>) -> Result<Done, PlatformError> {
    let stopped = stop(ctx, a, a.state.observed_or_default()).await?;
    let observed = stopped.observed.map(|(o, _)| o).unwrap_or_default();
    observe(ctx, a, &observed, "stop").await?;
    start(ctx, a, observed).await
}

/// Stop, remove files, release the port, remove every record. Forced, the records go even
/// when the platform cannot be reached (the reconciler reports what may remain there).
pub async fn delete(ctx: &Ctx, a: &Attempt<'_>) -> Result<Done, PlatformError> {
    let id = a.state.id();
    let removed = match ctx.platform(a.state.instance.value.platform) {
        Ok(platform) => platform.delete(id).await,
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if a.force => {
            tracing::warn!(instance = %id, error = %e, "forced delete: removing the records although the platform refused");
        }
        other => other?,
    }
    ctx.store.instances().delete(id).await?;
    Ok(Done::default())
}

/// What to record when an operation left the instance in error.
pub fn errored(s: &InstanceState, e: &PlatformError) -> ObservedRecord {
    let mut observed = s.observed_or_default();
    observed.status = Status::Error;
    observed.message = Some(format!("{}: {}", e.code, e.message));
    observed.observed_at = Some(Utc::now());
    observed
}
