//! Health probes: the platform's own view (process alive by pid and start time) plus
//! drasi-server's HTTP health endpoint, with latency.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use draas_jobs::model::{ObservedRecord, Platform};
use draas_jobs::store::InstanceState;

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
    /// Spec hash of what runs, when the platform records it.
    pub spec_hash: Option<String>,
}

/// Probe an instance: the platform's own view, then drasi-server's health endpoint.
pub async fn probe(ctx: &Ctx, s: &InstanceState, http: &reqwest::Client) -> Probe {
    let at = Utc::now();
    let observed = s.observed.as_ref().map(|o| &o.value);
    let id = &s.instance.value.id;
    let started = Instant::now();
    let inspection = match ctx.platform(s.instance.value.platform) {
        Ok(p) => p.inspect(id, observed.map(|o| &o.runtime).unwrap_or(&serde_json::Map::new())).await,
        Err(e) => {
            let message = Some(e.message);
            return Probe { at, alive: false, healthy: false, latency: started.elapsed(), message, spec_hash: None };
        }
    };
    let alive = inspection.alive;
    let url = inspection.endpoint.or_else(|| endpoint(observed));
    let (healthy, message) = match (inspection.healthy, url) {
        (Some(h), _) if alive => (h, None),
        (None, Some(url)) if alive => match http.get(format!("{url}/health")).send().await {
            Ok(r) if r.status().is_success() => (true, None),
            Ok(r) => (false, Some(format!("health endpoint answered {}", r.status()))),
            Err(e) => (false, Some(format!("health endpoint unreachable: {}", short(&e)))),
        },
        _ => (false, None),
    };
    let message = if alive { message.or(inspection.message) } else { inspection.message };
    Probe { at, alive, healthy, latency: started.elapsed(), message, spec_hash: inspection.spec_hash }
}

fn endpoint(observed: Option<&ObservedRecord>) -> Option<String> {
    observed?.runtime.get("endpoint")?.as_str().map(str::to_owned)
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

/// Is this instance one a node pass of `node` looks after?
pub fn placed_on(s: &InstanceState, node: &str) -> bool {
    s.instance.value.platform == Platform::Process
        && s.observed.as_ref().and_then(|o| o.value.node.as_deref()) == Some(node)
}

/// Store the probe facts of many instances in one pipelined round trip.
pub async fn record(
    ctx: &Ctx,
    probes: &[(draas_jobs::ids::InstanceId, Probe)],
) -> Result<(), draas_jobs::store::StoreError> {
    if probes.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (id, p) in probes {
        let key = ctx.store.keys().probe(id);
        let record = draas_jobs::model::ProbeRecord {
            at: p.at,
            ok: p.alive && p.healthy,
            latency_ms: (p.latency.as_secs_f64() * 10_000.0).round() / 10.0,
            message: p.message.clone(),
        };
        pipe.hset(&key, "data", serde_json::to_string(&record).unwrap_or_default()).ignore();
    }
    let _: () = pipe.query_async(&mut ctx.store.connection()).await.map_err(draas_jobs::store::StoreError::from)?;
    Ok(())
}
