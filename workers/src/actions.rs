//! What each job does to an instance, under its lease: converge the platform to the desired
//! state and record what was observed.

use chrono::Utc;
use draas_jobs::drasi::Port;
use draas_jobs::lease::Lease;
use draas_jobs::model::{ObservedRecord, Platform, Status};
use draas_jobs::ports::PortError;
use draas_jobs::render;
use draas_jobs::store::InstanceState;
use draas_jobs::store::history::Cause;
use serde_json::{Map, Value};

use crate::context::Ctx;
use crate::platform::{PlatformError, StartSpec};

/// Port drasi-server listens on inside a pod when its config names none.
const DEFAULT_PORT: u16 = 8080;

/// Outcome facts of a successful action (the operation's `result`).
pub type Facts = Map<String, Value>;

/// Record observed state while our lease holds; `reason` explains a status change.
pub async fn observe(
    ctx: &Ctx,
    lease: &Lease,
    s: &InstanceState,
    observed: ObservedRecord,
    reason: &str,
) -> Result<(), PlatformError> {
    let source = format!("worker:{}", ctx.worker);
    let cause = Cause { source: &source, reason };
    ctx.store
        .observe(&s.instance.value.id, &observed, &cause, Some(lease))
        .await
        .map_err(|e| PlatformError::new("store_unavailable", e.to_string()))?
        .then_some(())
        .ok_or_else(|| PlatformError::new("lease_lost", "another worker took over this instance"))
}

/// Current observed record, or a fresh one.
pub fn observed_of(s: &InstanceState) -> ObservedRecord {
    s.observed.as_ref().map(|o| o.value.clone()).unwrap_or_default()
}

/// Make the instance run with its current configuration.
pub async fn start(ctx: &Ctx, lease: &Lease, s: &InstanceState) -> Result<Facts, PlatformError> {
    let instance = &s.instance.value;
    let platform = ctx.platform(instance.platform)?;
    assert!(!ctx.settings.worker.inject_panic, "fault injection: start panics (worker.inject_panic)");
    let wanted = s.config.value.port.map(Port::get);
    let port = match platform.port_pool(&ctx.node) {
        Some(pool) => {
            let busy = platform.busy_ports(&instance.id, pool.range);
            ctx.ports
                .allocate(&pool.name, &instance.id, pool.range, wanted, &busy)
                .await
                .map_err(|e| port_error(&pool.name, e))?
        }
        None => wanted.unwrap_or(DEFAULT_PORT),
    };
    let rendered = render::render(s, &ctx.settings.process.host, Some(port))
        .map_err(|e| PlatformError::new("render_failed", e.to_string()))?;
    let host = s.config.value.host.clone().unwrap_or_else(|| ctx.settings.process.host.clone());
    let mut observed = observed_of(s);
    observed.node = (instance.platform == Platform::Process).then(|| ctx.node.clone());
    observed.port = Some(port);
    observed.status = Status::Starting;
    observed.message = None;
    observed.observed_at = Some(Utc::now());
    observe(ctx, lease, s, observed.clone(), "start").await?;
    let spec = StartSpec {
        instance_id: instance.id.clone(),
        yaml: rendered.yaml,
        spec_hash: rendered.spec_hash.clone(),
        host,
        port,
        runtime: instance.runtime.clone(),
    };
    let runtime = platform.start(&spec).await?;
    observed.status = Status::Running;
    observed.spec_hash = Some(rendered.spec_hash);
    observed.observed_generation = Some(instance.generation);
    observed.runtime = runtime.facts.clone();
    observed.observed_at = Some(Utc::now());
    observe(ctx, lease, s, observed, "start").await?;
    Ok(runtime.facts)
}

fn port_error(pool: &str, e: PortError) -> PlatformError {
    match e {
        PortError::Taken(p) => PlatformError::new(
            "port_taken",
            format!("port {p} is already allocated to another instance in pool '{pool}'"),
        ),
        PortError::Exhausted(a, b) => {
            PlatformError::new("ports_exhausted", format!("no free port left in {a}-{b} in pool '{pool}'"))
        }
        PortError::Store(e) => PlatformError::new("store_unavailable", e.to_string()),
    }
}

/// Make the instance not run.
pub async fn stop(ctx: &Ctx, lease: &Lease, s: &InstanceState) -> Result<Facts, PlatformError> {
    let instance = &s.instance.value;
    let platform = ctx.platform(instance.platform)?;
    let mut observed = observed_of(s);
    let was_running = observed.status != Status::Created;
    if was_running {
        observed.status = Status::Stopping;
        observed.observed_at = Some(Utc::now());
        observe(ctx, lease, s, observed.clone(), "stop").await?;
    }
    platform.stop(&instance.id).await?;
    observed.status = if was_running { Status::Stopped } else { Status::Created };
    observed.message = None;
    observed.runtime = Map::new();
    observed.observed_at = Some(Utc::now());
    observe(ctx, lease, s, observed, "stop").await?;
    let mut facts = Map::new();
    facts.insert("node".into(), Value::String(ctx.node.clone()));
    Ok(facts)
}

/// Stop and start again, always with a new process.
pub async fn restart(ctx: &Ctx, lease: &Lease, s: &InstanceState) -> Result<Facts, PlatformError> {
    stop(ctx, lease, s).await?;
    let fresh = ctx
        .store
        .load(&s.instance.value.id)
        .await
        .map_err(|e| PlatformError::new("store_unavailable", e.to_string()))?
        .ok_or_else(|| PlatformError::new("instance_not_found", "the instance was deleted"))?;
    start(ctx, lease, &fresh).await
}

/// Stop, remove files, release the port, remove every record.
pub async fn delete(ctx: &Ctx, s: &InstanceState) -> Result<Facts, PlatformError> {
    let id = &s.instance.value.id;
    ctx.platform(s.instance.value.platform)?.delete(id).await?;
    let store = |e: draas_jobs::store::StoreError| PlatformError::new("store_unavailable", e.to_string());
    ctx.ports.release(id).await.map_err(store)?;
    ctx.store.delete_instance(id).await.map_err(store)?;
    Ok(Map::new())
}

/// Record that an operation left the instance in error.
pub async fn record_error(ctx: &Ctx, lease: &Lease, s: &InstanceState, e: &PlatformError) {
    let mut observed = observed_of(s);
    observed.status = Status::Error;
    observed.message = Some(format!("{}: {}", e.code, e.message));
    observed.observed_at = Some(Utc::now());
    if let Err(err) = observe(ctx, lease, s, observed, e.code).await {
        tracing::warn!(error = %err, "could not record the error status");
    }
}
