//! Platforms run drasi-server somewhere. Each is level-triggered: `start` adopts a matching
//! running server instead of starting a second one; `stop` and `delete` of something already
//! gone succeed.
//!
//! The process platform is node-local: its instances are placed on one node, whose worker
//! and node reconcile pass look after them. The others (docker, kubernetes) are shared: any
//! worker may act on them and the global reconcile pass probes them.

pub mod docker;
mod error;
pub mod kubernetes;
pub mod process;

use std::time::Duration;

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{self, Exit, RuntimeFacts, RuntimeOptions};
use draas_jobs::domain::plugins::Catalog;
use tokio_util::sync::CancellationToken;

pub use error::{ErrorCode, PlatformError};

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
    /// The components that listen on ports of their own (`sources/<id>`, port), which
    /// container platforms publish beside the server's.
    pub listeners: Vec<(String, u16)>,
    /// The plugins the configuration needs (`type/kind`), which a platform that ships
    /// plugins to the server (docker) ships.
    pub plugins: Vec<String>,
    /// The spec hash a running server of this spec still shows when it took the spec live
    /// (it was started with an earlier one): a start adopts that server as well.
    pub runs_as: Option<String>,
    /// Cancelled when a newer operation on the instance arrives: a start that is only waiting
    /// (for `/health`, for a rollout) gives way, and the newer operation takes over from what
    /// it left (it converges whatever runs).
    pub superseded: CancellationToken,
    /// The instance's secrets, name → value: the server's environment (never printed).
    pub secrets: Vec<(String, secrecy::SecretString)>,
}

impl StartSpec {
    /// The hash a server of this spec shows (a label, an annotation): the one it was started
    /// with when it took this spec live, else this spec's.
    pub fn shown_hash(&self) -> &str {
        self.runs_as.as_deref().unwrap_or(&self.spec_hash)
    }

    /// Does a server showing spec hash `seen` run this spec?
    pub fn runs(&self, seen: Option<&str>) -> bool {
        seen.is_some_and(|h| h == self.spec_hash || self.runs_as.as_deref() == Some(h))
    }

    /// Wait `d` while waiting for the server; `superseded` when a newer operation arrives.
    pub async fn pause(&self, d: Duration) -> Result<(), PlatformError> {
        tokio::select! {
            () = self.superseded.cancelled() => Err(PlatformError::new(
                ErrorCode::Superseded,
                "a newer operation on the instance took over while the server was starting",
            )),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }
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
    /// How the server ended, when it ended by itself and the platform saw it.
    pub exit: Option<Exit>,
    /// Where drasi-server answers, when the platform knows better than the recorded facts.
    pub endpoint: Option<String>,
    /// drasi-server's health as the platform itself sees it (Kubernetes readiness probes), or
    /// `None`: the reconciler asks `/health` at the endpoint.
    pub healthy: Option<bool>,
}

/// One line of a server's output (colour codes stripped) and where it was read: the cursor
/// `Platform::logs` goes on after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogItem {
    pub line: String,
    pub cursor: String,
}

impl LogItem {
    /// A line as the container platforms send it with timestamps on (`<RFC 3339> <text>`), the
    /// timestamp its cursor; `None` for a line without one, or not after `after`.
    pub fn timestamped(raw: &str, after: Option<chrono::DateTime<chrono::FixedOffset>>) -> Option<Self> {
        let (at, line) = raw.split_once(' ')?;
        let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
        after.is_none_or(|a| t > a).then(|| Self { line: draas_jobs::domain::text::plain(line), cursor: at.to_owned() })
    }
}

/// A server's output, line by line, as it grows.
pub type LogStream = futures::stream::BoxStream<'static, LogItem>;

/// Which deployment of draas a server belongs to, as platforms mark it: its name (the key
/// prefix, which deployments on separate Redis servers may share) and its id (unique per
/// Redis and prefix, [`draas_jobs::store::Store::deployment_id`]). Servers are told apart by
/// the id; one marked with the name alone was started before ids existed and is never taken
/// for this deployment's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub name: String,
    pub id: String,
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

    /// What plugins this platform's servers can load (`None`: it cannot tell, e.g. an image's
    /// own plugins).
    fn catalog(&self) -> Option<Catalog> {
        None
    }

    /// Check the configuration of `spec` as far as the platform can without changing
    /// anything (the process platform runs drasi-server's own `validate`); a refusal leaves
    /// what runs running.
    async fn preflight(&self, _spec: &StartSpec) -> Result<(), PlatformError> {
        Ok(())
    }

    /// The running server of `spec` took its configuration live (through its API): keep what
    /// the platform holds of it (the config file, the ConfigMap) in step, so the server it
    /// starts next runs the same. Nothing restarts.
    async fn reconfigured(&self, _spec: &StartSpec) -> Result<(), PlatformError> {
        Ok(())
    }

    /// Start (or adopt) the server of `spec` and return once drasi-server is healthy.
    async fn start(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError>;

    /// Stop the instance's server (gracefully, then by force); gone already is fine.
    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError>;

    /// Stop and remove everything the platform keeps for the instance.
    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError>;

    /// What the platform sees of the instance; `facts` are the recorded runtime facts.
    async fn inspect(&self, id: &InstanceId, facts: &RuntimeFacts) -> Inspection;

    /// Everything of this deployment the platform runs (for orphans and drift).
    async fn managed(&self) -> Result<Vec<Managed>, PlatformError>;

    /// Remove something no instance owns.
    async fn remove(&self, m: &Managed) -> Result<(), PlatformError>;

    /// The last lines the server wrote, for errors (empty when unknown).
    async fn log_tail(&self, id: &InstanceId) -> String;

    /// The server's output after `since` (the cursor of a line it gave before; `None`: from its
    /// last lines), followed as it grows; it ends when the platform stops giving more (the
    /// container ended). `None`: this platform cannot read it from here.
    async fn logs(&self, _id: &InstanceId, _since: Option<String>) -> Option<LogStream> {
        None
    }

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
