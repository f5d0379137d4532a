//! What every job handler of a worker process shares. Nothing here is state of its own: the
//! store (the shared Redis), the submitter (repairs go in like requests), and this node's
//! platforms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use draas_jobs::queue::submit::Submitter;
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;

use crate::platform::docker::DockerPlatform;
use crate::platform::kubernetes::KubernetesPlatform;
use crate::platform::process::ProcessPlatform;
use crate::platform::{Deployment, ErrorCode, Platform, PlatformError};

/// Shared handles of one worker process.
pub struct Ctx {
    pub store: Store,
    /// Submits repairs like the API submits requests.
    pub submitter: Submitter,
    /// Client of the health probes.
    pub http: reqwest::Client,
    pub settings: Arc<Settings>,
    /// This host's node id.
    pub node: String,
    /// Unique name of this worker process (node + random suffix).
    pub worker: String,
    /// The deployment this worker belongs to, as its servers are marked.
    pub deployment: Deployment,
    /// This node's processes.
    pub process: ProcessPlatform,
    /// Shared platforms (docker, kubernetes) this worker can reach.
    pub shared: Vec<Arc<dyn Platform>>,
    /// Whether a job runs, and since when none has (`worker.exit_when_idle_secs`).
    pub activity: Arc<crate::idle::Activity>,
    /// When this worker last failed to heartbeat (Redis unreachable).
    heartbeat_failed_at: Mutex<Option<Instant>>,
}

impl Ctx {
    /// The context of worker `worker` on `node` of `deployment`, with the shared platforms the
    /// settings enable.
    pub async fn new(
        store: Store,
        settings: Settings,
        node: String,
        worker: String,
        deployment: Deployment,
    ) -> Arc<Self> {
        let shared = shared_platforms(&settings, &deployment).await;
        Self::with_platforms(store, settings, node, worker, deployment, shared)
    }

    /// The context with the given shared platforms.
    pub fn with_platforms(
        store: Store,
        settings: Settings,
        node: String,
        worker: String,
        deployment: Deployment,
        shared: Vec<Arc<dyn Platform>>,
    ) -> Arc<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.reconcile.probe_timeout_ms.max(1)))
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            submitter: Submitter::new(store.clone(), &settings),
            http,
            process: ProcessPlatform::new(
                settings.process.clone(),
                &settings.data_dir,
                node.clone(),
                deployment.clone(),
                settings.verify_plugins,
            ),
            deployment,
            shared,
            activity: Arc::default(),
            heartbeat_failed_at: Mutex::new(None),
            store,
            settings: Arc::new(settings),
            node,
            worker,
        })
    }

    /// The platform of `kind`, when this worker can reach it.
    pub fn platform(&self, kind: draas_jobs::domain::model::Platform) -> Result<&dyn Platform, PlatformError> {
        if kind == draas_jobs::domain::model::Platform::Process {
            return Ok(&self.process);
        }
        self.shared.iter().find(|p| p.kind() == kind).map(|p| p.as_ref()).ok_or_else(|| {
            PlatformError::new(
                ErrorCode::PlatformUnavailable,
                format!("the {} platform is not available on this worker", kind.as_str()),
            )
        })
    }

    /// How long a node's heartbeat key lives without renewal.
    pub fn heartbeat_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.worker.heartbeat_secs.max(1)) * 3
    }

    /// Note that a heartbeat failed now.
    pub fn heartbeat_failed(&self) {
        if let Ok(mut t) = self.heartbeat_failed_at.lock() {
            *t = Some(Instant::now());
        }
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

/// The shared platforms the settings enable. A misconfigured or unreachable one is left out
/// (and logged): its jobs fail with `platform_unavailable` rather than the worker refusing to
/// run.
async fn shared_platforms(settings: &Settings, deployment: &Deployment) -> Vec<Arc<dyn Platform>> {
    let mut shared: Vec<Arc<dyn Platform>> = Vec::new();
    if settings.docker.enabled {
        match DockerPlatform::new(settings.docker.clone(), deployment.clone(), settings.verify_plugins) {
            Ok(p) => shared.push(Arc::new(p)),
            Err(e) => tracing::error!(error = %e, "docker platform disabled: invalid settings"),
        }
    }
    if settings.kubernetes.enabled {
        match KubernetesPlatform::connect(&settings.kubernetes, deployment, settings.verify_plugins).await {
            Ok(k) => {
                tracing::info!(namespace = %settings.kubernetes.namespace, "kubernetes platform enabled");
                shared.push(Arc::new(k));
            }
            Err(e) => tracing::error!(error = %e, "kubernetes platform unavailable on this worker"),
        }
    }
    shared
}
