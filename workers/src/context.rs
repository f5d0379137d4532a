//! What every job handler of a worker process shares. Nothing here is state of its own:
//! all of it is handles to the shared Redis and this node's platform.

use std::sync::Arc;
use std::time::Duration;

use draas_jobs::jobs::Enqueuer;
use draas_jobs::lease::Leases;
use draas_jobs::nodes::Nodes;
use draas_jobs::ops::Operations;
use draas_jobs::ports::Ports;
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use draas_jobs::submit::Submitter;

use crate::platform::docker::DockerPlatform;
use crate::platform::process::ProcessPlatform;
use crate::platform::{Platform, PlatformError};

/// Shared handles of one worker process.
pub struct Ctx {
    pub store: Store,
    pub ops: Operations,
    pub leases: Leases,
    pub ports: Ports,
    pub nodes: Nodes,
    pub enqueuer: Enqueuer,
    /// Submits repairs like the API submits requests.
    pub submitter: Submitter,
    /// Client of the health probes.
    pub http: reqwest::Client,
    pub settings: Arc<Settings>,
    /// This host's node id.
    pub node: String,
    /// Unique name of this worker process (node + random suffix).
    pub worker: String,
    pub process: ProcessPlatform,
    /// Shared platforms (docker, kubernetes) this worker can reach.
    pub shared: Vec<Arc<dyn Platform>>,
    /// When this worker last failed to heartbeat (Redis unreachable).
    pub heartbeat_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Ctx {
    /// Handles over `store`'s connection.
    pub fn new(store: Store, settings: Settings, node: String, worker: String) -> Arc<Self> {
        let conn = store.connection();
        let keys = store.keys().clone();
        let ttl = Duration::from_secs(settings.operations.ttl_secs);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.reconcile.probe_timeout_ms.max(1)))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            submitter: Submitter::new(store.clone(), &settings),
            http,
            ops: Operations::new(conn.clone(), keys.clone(), ttl),
            leases: Leases::new(conn.clone(), keys.clone()),
            ports: Ports::new(conn.clone(), keys.clone()),
            nodes: Nodes::new(conn.clone(), keys.clone()),
            enqueuer: Enqueuer::new(conn, keys),
            process: ProcessPlatform::new(
                settings.process.clone(),
                &settings.data_dir,
                node.clone(),
                settings.key_prefix.clone(),
            ),
            shared: shared_platforms(&settings),
            heartbeat_failed_at: std::sync::Mutex::new(None),
            store,
            settings: Arc::new(settings),
            node,
            worker,
        })
    }

    /// The platform of `kind`, when this worker can reach it.
    pub fn platform(&self, kind: draas_jobs::model::Platform) -> Result<&dyn Platform, PlatformError> {
        if kind == draas_jobs::model::Platform::Process {
            return Ok(&self.process);
        }
        self.shared.iter().find(|p| p.kind() == kind).map(|p| p.as_ref()).ok_or_else(|| {
            PlatformError::new(
                "platform_unavailable",
                format!("the {} platform is not available on this worker", kind.as_str()),
            )
        })
    }

    /// How long a node's heartbeat key lives without renewal.
    pub fn heartbeat_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.worker.heartbeat_secs.max(1)) * 3
    }

    /// Did this worker fail to heartbeat within the last heartbeat expiry (and a period)? Then
    /// Redis was out recently, every other worker was cut off too, and a missing node key
    /// means "has not heartbeated again yet", not "lost".
    pub fn recently_cut_off(&self) -> bool {
        let grace = self.heartbeat_ttl() + Duration::from_secs(self.settings.worker.heartbeat_secs.max(1));
        self.heartbeat_failed_at.lock().map(|t| t.is_some_and(|t| t.elapsed() < grace)).unwrap_or(true)
    }

    /// Lease expiry.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.worker.lease_ttl_secs.max(1))
    }
}

/// The shared platforms the settings enable. A misconfigured one is left out (and logged):
/// its jobs fail with `platform_unavailable` rather than the worker refusing to run.
fn shared_platforms(settings: &Settings) -> Vec<Arc<dyn Platform>> {
    let mut shared: Vec<Arc<dyn Platform>> = Vec::new();
    if settings.docker.enabled {
        match DockerPlatform::new(settings.docker.clone(), settings.key_prefix.clone()) {
            Ok(p) => shared.push(Arc::new(p)),
            Err(e) => tracing::error!(error = %e, "docker platform disabled: invalid settings"),
        }
    }
    shared
}
