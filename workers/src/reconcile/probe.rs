//! Health probes: the platform's own view (process alive by pid and start time) plus
//! drasi-server's HTTP health endpoint, with latency.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use draas_jobs::domain::config::ComponentKind::{self, Queries, Reactions, Sources};
use draas_jobs::domain::model::{ComponentStatus, Exit, InstanceState, ObservedRecord, ProbeRecord};
use draas_jobs::store::StoreError;

use crate::context::Ctx;

/// What one probe saw.
#[derive(Debug, Clone)]
pub struct Probe {
    pub at: DateTime<Utc>,
    /// The platform says the server is there.
    pub alive: bool,
    /// `/health` answered 200.
    pub healthy: bool,
    pub latency: Duration,
    /// Why not healthy, or how the process ended.
    pub message: Option<String>,
    /// How the server ended, when it ended by itself.
    pub exit: Option<Exit>,
    /// Spec hash of what runs, when the platform records it.
    pub spec_hash: Option<String>,
    /// The server's sources, queries and reactions, when it answered for them.
    pub components: Option<Vec<ComponentStatus>>,
}

impl Probe {
    fn down(at: DateTime<Utc>, latency: Duration, message: Option<String>) -> Self {
        Self { at, alive: false, healthy: false, latency, message, exit: None, spec_hash: None, components: None }
    }
}

/// Probe an instance: the platform's own view, then drasi-server's health endpoint.
pub async fn probe(ctx: &Ctx, s: &InstanceState, http: &reqwest::Client) -> Probe {
    let at = Utc::now();
    let observed = s.observed.as_ref().map(|o| &o.value);
    let id = &s.instance.value.id;
    let started = Instant::now();
    let inspection = match ctx.platform(s.instance.value.platform) {
        Ok(p) => p.inspect(id, &observed.map(|o| o.runtime.clone()).unwrap_or_default()).await,
        Err(e) => return Probe::down(at, started.elapsed(), Some(e.message)),
    };
    let alive = inspection.alive;
    let url = inspection.endpoint.or_else(|| endpoint(observed));
    let platform_health = inspection.healthy.filter(|_| alive);
    let ((healthy, message), components) = match &url {
        Some(url) if alive => read(ctx, s, http, url, platform_health).await,
        _ => ((platform_health.unwrap_or(false), None), None),
    };
    let message = if alive { message.or(inspection.message) } else { inspection.message };
    let latency = started.elapsed();
    let (exit, spec_hash) = (inspection.exit, inspection.spec_hash);
    Probe { at, alive, healthy, latency, message, exit, spec_hash, components }
}

/// What the server at `url` says of its health and its components. With component health on,
/// one read of its instance snapshot says both when it answers and nothing has failed; else
/// `/health` (unless the platform has already said) and the component lists (which carry error
/// messages) are asked at once, and the lists count only when the server is healthy.
async fn read(
    ctx: &Ctx,
    s: &InstanceState,
    http: &reqwest::Client,
    url: &str,
    platform_health: Option<bool>,
) -> ((bool, Option<String>), Option<Vec<ComponentStatus>>) {
    let component_health = ctx.settings.reconcile.component_health;
    if component_health
        && platform_health != Some(false)
        && let Ok(components) = draas_jobs::drasi::snapshot(http, url, &server_id(s)).await
        && !components.iter().any(ComponentStatus::failed)
    {
        return ((true, None), Some(components));
    }
    let health = async {
        match platform_health {
            Some(h) => (h, None),
            None => match http.get(format!("{url}/health")).send().await {
                Ok(r) if r.status().is_success() => (true, None),
                Ok(r) => (false, Some(format!("health endpoint answered {}", r.status()))),
                Err(e) => (false, Some(format!("health endpoint unreachable: {}", short(&e)))),
            },
        }
    };
    let listed = async {
        match component_health {
            true => draas_jobs::drasi::components(http, url).await,
            false => None,
        }
    };
    let ((healthy, message), components) = tokio::join!(health, listed);
    ((healthy, message), components.filter(|_| healthy))
}

/// The id drasi-server knows its instance by: the configuration's `id` as the running server
/// got it, else as desired, else the instance's (what rendering fills in).
fn server_id(s: &InstanceState) -> String {
    let applied = s.observed.as_ref().and_then(|o| o.value.applied.as_ref()).and_then(|c| c.id.clone());
    applied.or_else(|| s.config.value.id.clone()).unwrap_or_else(|| s.id().to_string())
}

/// The collection of a recorded component's `kind` (`source`, `query`, `reaction`).
pub(crate) fn collection(kind: &str) -> Option<ComponentKind> {
    [Sources, Queries, Reactions].into_iter().find(|c| c.singular() == kind)
}

fn endpoint(observed: Option<&ObservedRecord>) -> Option<String> {
    observed?.runtime.endpoint.clone()
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

/// Store the last probe of many instances in one pipelined round trip.
pub async fn record(ctx: &Ctx, probes: &[(InstanceState, Probe)]) -> Result<(), StoreError> {
    let records: Vec<_> = probes
        .iter()
        .map(|(s, p)| {
            let record = ProbeRecord {
                at: p.at,
                ok: p.alive && p.healthy,
                latency_ms: (p.latency.as_secs_f64() * 10_000.0).round() / 10.0,
                message: p.message.clone(),
            };
            (s.id().clone(), record)
        })
        .collect();
    ctx.store.instances().record_probes(&records).await
}
