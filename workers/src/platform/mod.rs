//! Platforms run drasi-server somewhere. Each is level-triggered: `start` adopts a matching
//! running server instead of starting a second one; `stop` and `delete` of something already
//! gone succeed.
//!
//! The process platform is node-local: its instances are placed on one node, whose worker
//! and node reconcile pass look after them. The others (docker, kubernetes) are shared: any
//! worker may act on them and the global reconcile pass probes them.

pub mod docker;
pub mod kubernetes;
pub mod process;

use draas_jobs::ids::InstanceId;
use draas_jobs::model::{self, RuntimeOptions};
use serde_json::{Map, Value};

/// What a platform needs to start an instance.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub instance_id: InstanceId,
    /// The exact YAML drasi-server gets.
    pub yaml: String,
    pub spec_hash: String,
    /// Address and port the server binds (and is probed on).
    pub host: String,
    pub port: u16,
    /// Image and resource limits (container platforms).
    pub runtime: RuntimeOptions,
}

/// The platform's own view of one instance, without asking drasi-server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The server is there and running (process alive, container running, replica available).
    pub alive: bool,
    /// Spec hash of what runs, when the platform records it (label, annotation, environment).
    pub spec_hash: Option<String>,
    /// Why it is not alive (`exited with code 1`, `OOM-killed`, `missing`), or a note.
    pub message: Option<String>,
    /// Where drasi-server answers, when the platform knows better than the recorded facts.
    pub endpoint: Option<String>,
    /// drasi-server's health as the platform itself sees it (Kubernetes readiness probes), or
    /// `None`: the reconciler asks `/health` at the endpoint.
    pub healthy: Option<bool>,
}

/// Something a platform runs for this deployment, found by its marks (environment, labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    /// The instance id it is marked with (not yet validated: orphans may carry anything).
    pub instance: String,
    pub spec_hash: Option<String>,
    /// The platform's handle: pid, container id, object name.
    pub handle: String,
}

/// One platform. Implementations are level-triggered and safe to call again after a crash.
#[async_trait::async_trait]
pub trait Platform: Send + Sync {
    /// Which platform this is.
    fn kind(&self) -> model::Platform;

    /// The pool host ports are allocated from (`None`: the platform needs no host port).
    fn port_pool(&self, node: &str) -> Option<PortPool>;

    /// Can this worker reach the platform now? The reconciler leaves the instances of an
    /// unreachable platform alone rather than judging them from nothing.
    async fn reachable(&self) -> Result<(), PlatformError> {
        Ok(())
    }

    /// Ports in `range` that something other than instance `id` listens on, so the allocator
    /// skips them even when its table says they are free.
    fn busy_ports(&self, _id: &InstanceId, _range: (u16, u16)) -> Vec<u16> {
        Vec::new()
    }

    /// Start (or adopt) the server of `spec` and return once drasi-server is healthy.
    async fn start(&self, spec: &StartSpec) -> Result<Runtime, PlatformError>;

    /// Stop the instance's server (gracefully, then by force); gone already is fine.
    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError>;

    /// Stop and remove everything the platform keeps for the instance.
    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError>;

    /// What the platform sees of the instance; `facts` are the recorded runtime facts.
    async fn inspect(&self, id: &InstanceId, facts: &Map<String, Value>) -> Inspection;

    /// Everything of this deployment the platform runs (for orphans and drift).
    async fn managed(&self) -> Result<Vec<Managed>, PlatformError>;

    /// Remove something no instance owns.
    async fn remove(&self, m: &Managed) -> Result<(), PlatformError>;

    /// The last lines the server wrote, for errors (empty when unknown).
    async fn log_tail(&self, id: &InstanceId) -> String;

    /// Send the instance id (as labelled) of every server of this deployment that dies, as
    /// the platform reports it (an event stream), for as long as `tx` is open. Platforms
    /// without events return at once; the reconcile ticks see every death anyway.
    async fn watch_exits(&self, _tx: tokio::sync::mpsc::Sender<String>) {}
}

/// Host ports of one pool: every worker allocating from the same pool name shares its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPool {
    /// Pool name: the node for processes, the engine for containers.
    pub name: String,
    /// First and last port.
    pub range: (u16, u16),
}

/// What a platform reports about a running instance: stored as the observed runtime facts.
#[derive(Debug, Clone, Default)]
pub struct Runtime {
    pub facts: Map<String, Value>,
}

/// A platform failure, classified once: transient ones are retried, permanent ones fail the
/// operation at once.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PlatformError {
    /// Stable code: `executable_not_found`, `config_rejected`, `health_timeout`, ...
    pub code: &'static str,
    pub message: String,
    /// Context such as the tail of the server's log.
    pub detail: Option<String>,
}

impl PlatformError {
    /// A failure with a code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), detail: None }
    }

    /// Attach detail (a log tail).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let d = detail.into();
        self.detail = (!d.is_empty()).then_some(d);
        self
    }

    /// The one place that decides: is trying again worth it?
    pub fn is_transient(&self) -> bool {
        !matches!(
            self.code,
            "executable_not_found"
                | "config_rejected"
                | "port_taken"
                | "ports_exhausted"
                | "platform_unavailable"
                | "render_failed"
                | "kube_unauthorized"
                | "kube_forbidden"
                | "kube_invalid"
                | "kube_not_found"
                | "image_pull_failed"
                | "crash_loop"
                | "oom_killed"
                | "container_config_error"
                | "image_missing"
                | "docker_rejected"
                | "docker_misconfigured"
        )
    }
}
