//! What each operation does to an instance, under its lease: converge the platform to the
//! desired state, record the steps on the way (`starting`, `stopping`), and hand back what to
//! record as the operation ends (the handler writes it with the outcome, in one step).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use draas_jobs::domain::config::Port;
use draas_jobs::domain::live::{self, Plan};
use draas_jobs::domain::model::{
    Applied, Cause, Condition, DesiredState, InstanceState, ObservedRecord, Platform as PlatformKind, RuntimeFacts,
    Status,
};
use draas_jobs::domain::plugins;
use draas_jobs::domain::render::{self, Ports};
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
    /// Its secrets, opened.
    pub secrets: &'a crate::secrets::Opened,
    /// The port `begin` allocated, when it was asked to.
    pub port: Option<Allocated>,
    /// Who held the instance's ports as `begin` allocated it.
    pub port_owners: Option<&'a [String]>,
    /// Cancelled when a newer operation on the instance arrives.
    pub superseded: CancellationToken,
    /// A delete that removes the records even when the platform cannot be reached.
    pub force: bool,
    /// Who asked for the operation ('' = unknown), recorded with the changes it makes.
    pub requested_by: &'a str,
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
    let cause = Cause { source: &source, reason, by: a.requested_by };
    let wrote = ctx.store.instances().observe(a.state.id(), observed, cause, Some(a.lease.value()), None).await?;
    if wrote { Ok(()) } else { Err(PlatformError::new(ErrorCode::LeaseLost, "another worker took over this instance")) }
}

/// A start ready to go: the ports allocated and the configuration rendered and checked.
pub struct Prepared {
    pub spec: StartSpec,
    pub ports: Ports,
    /// The configuration drasi-server gets.
    pub config: draas_jobs::domain::config::DrasiConfig,
}

/// Allocate the instance's ports, render its configuration and check it against what the
/// platform provides, changing nothing that runs.
pub async fn prepare(ctx: &Ctx, a: &Attempt<'_>, platform: &dyn Platform) -> Result<Prepared, PlatformError> {
    let instance = &a.state.instance.value;
    // A record stored before the network policy, or under a looser one, may still name them.
    let mut state = a.state.clone();
    let policy = draas_jobs::domain::network::Policy {
        own_host: Some(render::default_host(instance.platform, &ctx.settings.process.host)),
        own_port: state.observed.as_ref().and_then(|o| o.value.port),
        ..ctx.settings.network.policy()
    };
    draas_jobs::domain::network::confine(&mut state.config.value, policy);
    let config = &state.config.value;
    let server = port(ctx, a, platform, config.port.map(Port::get)).await?;
    let ports = Ports { server: Some(server), components: component_ports(ctx, a, platform, server).await? };
    if let Some(catalog) = platform.catalog()
        && let Some(lacking) = plugins::missing(config, &catalog).into_iter().next()
    {
        let whose = if instance.platform == PlatformKind::Process {
            format!("node '{}'", ctx.node)
        } else {
            format!("the {} platform", instance.platform.as_str())
        };
        return Err(PlatformError::new(
            ErrorCode::PluginMissing,
            format!("{whose} has no plugin {} (needed by {})", lacking.plugin, lacking.component),
        )
        .at(lacking.pointer)
        .before_change());
    }
    let rendered = render::render(&state, &ctx.settings.process.host, &ports, ctx.settings.network.policy())
        .map_err(|e| PlatformError::new(ErrorCode::RenderFailed, e.to_string()).caused_by(e))?;
    let host = config.host.clone().unwrap_or_else(|| ctx.settings.process.host.clone());
    let runs_as = a
        .state
        .observed
        .as_ref()
        .map(|o| &o.value)
        .filter(|o| o.spec_hash.as_ref() == Some(&rendered.spec_hash))
        .and_then(|o| o.started_hash.clone());
    let listeners = ports.components.iter().map(|(name, p)| (name.clone(), *p)).collect();
    let spec = StartSpec {
        instance_id: instance.id.clone(),
        yaml: rendered.yaml,
        spec_hash: rendered.spec_hash,
        host,
        port: server,
        runtime: ctx.settings.policy.with_defaults(&instance.runtime),
        listeners,
        plugins: plugins::needed(config).into_iter().map(|n| n.plugin).collect(),
        runs_as,
        superseded: a.superseded.clone(),
        secrets: a.secrets.env.clone(),
    };
    Ok(Prepared { spec, ports, config: rendered.config })
}

/// Make the instance run with its current configuration, starting from `observed`.
pub async fn start(ctx: &Ctx, a: &Attempt<'_>, observed: ObservedRecord) -> Result<Done, PlatformError> {
    let platform = ctx.platform(a.state.instance.value.platform)?;
    assert!(!ctx.settings.worker.inject_panic, "fault injection: start panics (worker.inject_panic)");
    let prepared = prepare(ctx, a, platform).await?;
    start_prepared(ctx, a, platform, prepared, observed).await
}

async fn start_prepared(
    ctx: &Ctx,
    a: &Attempt<'_>,
    platform: &dyn Platform,
    prepared: Prepared,
    mut observed: ObservedRecord,
) -> Result<Done, PlatformError> {
    let instance = &a.state.instance.value;
    let Prepared { spec, ports, config } = prepared;
    observed.node = (instance.platform == PlatformKind::Process).then(|| ctx.node.clone());
    observed.port = ports.server;
    observed.component_ports = ports.components;
    observed.status = Status::Starting;
    observed.message = None;
    observed.exit = None;
    observed.observed_at = Some(Utc::now());
    observe(ctx, a, &observed, "start").await?;
    let facts = platform.start(&spec).await?;
    // What the server started with, so the instance shows its components from the start on
    // (the reconciler keeps them current).
    if ctx.settings.reconcile.component_health
        && let Some(url) = &facts.endpoint
        && let Ok(Some(components)) =
            tokio::time::timeout(Duration::from_secs(2), draas_jobs::drasi::components(&ctx.http, url)).await
    {
        observed.components = components;
    }
    observed.status = Status::Running;
    observed.spec_hash = Some(spec.spec_hash);
    observed.observed_generation = Some(instance.generation);
    observed.runtime = facts.clone();
    observed.rejected = None;
    observed.applied = Some(config);
    observed.started_hash = None;
    observed.observed_at = Some(Utc::now());
    Ok(Done { facts, observed: Some((observed, "start")) })
}

/// Ports of the components that listen: from the platform's pool (the one the configuration
/// names, else a free one), or on a platform without host ports the configuration's own or
/// the ones after the server's. Ports of components that left the configuration are freed.
async fn component_ports(
    ctx: &Ctx,
    a: &Attempt<'_>,
    platform: &dyn Platform,
    server: u16,
) -> Result<BTreeMap<String, u16>, PlatformError> {
    let id = a.state.id();
    let listeners = render::listeners(&a.state.config.value);
    let mut out = BTreeMap::new();
    let Some(pool) = platform.port_pool(&ctx.node) else {
        for (i, l) in listeners.into_iter().enumerate() {
            let next = server.saturating_add(u16::try_from(i + 1).unwrap_or(u16::MAX));
            out.insert(l.name, l.port.unwrap_or(next));
        }
        return Ok(out);
    };
    let names: Vec<String> = listeners.iter().map(|l| l.name.clone()).collect();
    ctx.store.ports().release_components_except(id, &names, a.port_owners).await?;
    for l in listeners {
        let busy = platform.busy_ports(id, pool.range);
        let allocated =
            ctx.store.ports().allocate_component(&pool.name, id, &l.name, pool.range, l.port, &busy).await?;
        let port = match allocated {
            Allocated::Port(p) => p,
            Allocated::Taken => {
                return Err(PlatformError::new(
                    ErrorCode::PortTaken,
                    format!(
                        "port {} of {} is already allocated in pool '{}'",
                        l.port.unwrap_or_default(),
                        l.name,
                        pool.name
                    ),
                ));
            }
            Allocated::Exhausted => {
                return Err(PlatformError::new(
                    ErrorCode::PortsExhausted,
                    format!(
                        "no free port left for {} in {}-{} in pool '{}'",
                        l.name, pool.range.0, pool.range.1, pool.name
                    ),
                ));
            }
        };
        out.insert(l.name, port);
    }
    Ok(out)
}

/// The instance's port: the one `begin` allocated from the platform's pool, or (for a job
/// that did not say its platform) one allocated now; platforms without host ports use the
/// configuration's port.
async fn port(ctx: &Ctx, a: &Attempt<'_>, platform: &dyn Platform, wanted: Option<u16>) -> Result<u16, PlatformError> {
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
    observed.components.clear();
    observed.observed_at = Some(Utc::now());
    Ok(Done { facts: RuntimeFacts::on_node(&ctx.node), observed: Some((observed, "stop")) })
}

/// Stop and start again, always with a new server; the new configuration is checked first,
/// and a refusal leaves the running server running.
pub async fn restart(ctx: &Ctx, a: &Attempt<'_>) -> Result<Done, PlatformError> {
    let platform = ctx.platform(a.state.instance.value.platform)?;
    let prepared = prepare(ctx, a, platform).await?;
    restart_prepared(ctx, a, platform, prepared).await
}

async fn restart_prepared(
    ctx: &Ctx,
    a: &Attempt<'_>,
    platform: &dyn Platform,
    prepared: Prepared,
) -> Result<Done, PlatformError> {
    platform.preflight(&prepared.spec).await?;
    let stopped = stop(ctx, a, a.state.observed_or_default()).await?;
    let observed = stopped.observed.map(|(o, _)| o).unwrap_or_default();
    observe(ctx, a, &observed, "stop").await?;
    start_prepared(ctx, a, platform, prepared, observed).await
}

/// Bring a running server to its new configuration: through its own API when only sources,
/// queries and reactions changed (the same server keeps running, with its state), else by a
/// restart, recorded with the reason; the new configuration is checked first either way. A
/// server that does not run is started when it should run; one that should not is left alone
/// (it gets the configuration at its next start).
pub async fn reconfigure(ctx: &Ctx, a: &Attempt<'_>) -> Result<Done, PlatformError> {
    let observed = a.state.observed_or_default();
    if !matches!(observed.status, Status::Running | Status::Degraded) {
        return match a.state.instance.value.desired_state {
            DesiredState::Running => start(ctx, a, observed).await,
            _ => Ok(Done { facts: RuntimeFacts::on_node(&ctx.node), observed: None }),
        };
    }
    let platform = ctx.platform(a.state.instance.value.platform)?;
    let prepared = prepare(ctx, a, platform).await?;
    let steps = match live_plan(ctx, a, &observed, &prepared).await {
        Plan::Restart(reason) => return restart_because(ctx, a, platform, prepared, reason).await,
        Plan::Live(steps) => steps,
    };
    let endpoint = observed.runtime.endpoint.clone().unwrap_or_default();
    if steps.is_empty() && observed.spec_hash.as_ref() == Some(&prepared.spec.spec_hash) {
        let mut facts = observed.runtime.clone();
        facts.applied = Some(Applied { how: "unchanged".into(), steps: Vec::new(), reason: None });
        return Ok(Done { facts, observed: None });
    }
    // drasi-server's `validate` (about 90 ms) runs first when the change takes something that
    // runs down: a refusal then leaves the server as it was. Additions and in-place
    // replacements are checked by the server itself as they are sent, and a refused one leaves
    // what runs untouched too (the restart it falls back to validates before it stops anything).
    if steps.iter().any(|s| s.action == live::Action::Delete) {
        platform.preflight(&prepared.spec).await?;
    }
    if let Err(refused) = crate::live::apply(&endpoint, &steps).await {
        return restart_because(ctx, a, platform, prepared, format!("live_apply_failed: {refused}")).await;
    }
    platform.reconfigured(&prepared.spec).await?;
    let mut now = observed.clone();
    now.started_hash = observed.started_hash.clone().or_else(|| observed.spec_hash.clone());
    now.spec_hash = Some(prepared.spec.spec_hash.clone());
    now.observed_generation = Some(a.state.instance.value.generation);
    now.component_ports = prepared.ports.components.clone();
    now.runtime.listeners = prepared
        .ports
        .components
        .iter()
        .filter_map(|(name, p)| Some((name.clone(), listener_url(observed.runtime.endpoint.as_deref()?, *p))))
        .collect();
    now.applied = Some(prepared.config);
    now.rejected = None;
    now.observed_at = Some(Utc::now());
    if ctx.settings.reconcile.component_health
        && let Ok(Some(components)) =
            tokio::time::timeout(Duration::from_secs(2), draas_jobs::drasi::components(&ctx.http, &endpoint)).await
    {
        now.components = components;
    }
    let mut facts = now.runtime.clone();
    facts.applied =
        Some(Applied { how: "live".into(), steps: steps.iter().map(live::Step::describe).collect(), reason: None });
    Ok(Done { facts, observed: Some((now, "reconfigure")) })
}

/// A change only a new server can take: a restart, recorded with `reason`.
async fn restart_because(
    ctx: &Ctx,
    a: &Attempt<'_>,
    platform: &dyn Platform,
    prepared: Prepared,
    reason: String,
) -> Result<Done, PlatformError> {
    tracing::info!(instance = %a.state.id(), %reason, "the change needs a new server");
    let mut done = restart_prepared(ctx, a, platform, prepared).await?;
    done.facts.applied = Some(Applied { how: "restart".into(), steps: Vec::new(), reason: Some(reason) });
    Ok(done)
}

/// How the change reaches the server: the live steps from what it runs (as it reports its
/// components) to the new configuration, or why a new server is needed.
async fn live_plan(ctx: &Ctx, a: &Attempt<'_>, observed: &ObservedRecord, prepared: &Prepared) -> Plan {
    let Some(applied) = &observed.applied else {
        return Plan::Restart("the configuration the server runs is not recorded".into());
    };
    let Some(endpoint) = &observed.runtime.endpoint else {
        return Plan::Restart("the server's endpoint is not recorded".into());
    };
    // Runtime options (image, limits) are part of the hash on container platforms: the same
    // configuration under another hash means they changed.
    let runs = render::to_yaml(applied).map(|yaml| render::instance_hash(&yaml, a.state)).ok();
    if runs.is_some() && runs != observed.spec_hash {
        return Plan::Restart("runtime_changed".into());
    }
    // A container publishes its ports when it is created: a new listening component needs a
    // new one.
    if a.state.instance.value.platform == PlatformKind::Docker
        && prepared.ports.components.keys().any(|k| !observed.component_ports.contains_key(k))
    {
        return Plan::Restart("a new listening component needs a published port".into());
    }
    // What the server has now (someone may have used its API directly); when it does not say,
    // what draas gave it: a server that answers its health but not its lists is not restarted
    // for that.
    let listed = tokio::time::timeout(Duration::from_secs(5), draas_jobs::drasi::components(&ctx.http, endpoint)).await;
    let running = match listed {
        Ok(Some(components)) => {
            let present: Vec<_> = components
                .iter()
                .filter_map(|c| Some((crate::reconcile::probe::collection(&c.kind)?, c.id.clone())))
                .collect();
            live::as_found(applied, &present)
        }
        _ => applied.clone(),
    };
    live::plan(&running, &prepared.config)
}

/// The URL of a component's port on the host of the server's `endpoint`.
fn listener_url(endpoint: &str, port: u16) -> String {
    match endpoint.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{endpoint}:{port}"),
    }
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

/// What to record when an operation failed: the instance in error; or, when a check refused
/// the configuration before anything changed, what ran before with the refusal as a
/// condition (until the configuration changes, the reconciler does not try it again).
pub fn errored(ctx: &Ctx, s: &InstanceState, e: &PlatformError) -> ObservedRecord {
    let mut observed = s.observed_or_default();
    observed.observed_at = Some(Utc::now());
    if e.before_change {
        let spec_hash = render::render(
            s,
            &ctx.settings.process.host,
            &Ports::observed(s.observed.as_ref().map(|o| &o.value)),
            ctx.settings.network.policy(),
        )
        .map(|r| r.spec_hash)
        .unwrap_or_default();
        observed.rejected = Some(Condition {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            pointer: e.pointer.clone(),
            spec_hash,
            at: Utc::now(),
        });
        if matches!(observed.status, Status::Running | Status::Degraded) {
            return observed;
        }
    }
    observed.status = Status::Error;
    observed.message = Some(format!("{}: {}", e.code, e.message));
    observed
}
