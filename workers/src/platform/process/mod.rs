//! The process platform: drasi-server as a local OS process on this node.
//!
//! Each instance gets a directory (`files`). The server runs in its own process group,
//! without a shell, so it outlives a worker restart; it carries `DRAAS_INSTANCE_ID`,
//! `DRAAS_SPEC_HASH` and `DRAAS_DEPLOYMENT` in its environment, so any worker on this node can
//! find, adopt or kill it from `/proc` alone (`procfs`). `run` and `validate` get the node's
//! plugins directory (`process.plugins_dir`, else `plugins` beside the executable, where
//! drasi-server itself looks) and, unless `verify_plugins`, `--skip-verification`.

pub mod files;
pub mod procfs;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use draas_jobs::domain::ids::InstanceId;
use draas_jobs::domain::model::{Exit, RuntimeFacts};
use draas_jobs::domain::plugins::Catalog;
use draas_jobs::settings::{ProcessSettings, StopSignal};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use self::files::{Files, tail_str};
use self::procfs::Found;
use super::{ErrorCode, Inspection, Managed, Platform, PlatformError, PortPool, StartSpec};

/// Pause between two looks at a starting server's `/health`: short while a server usually
/// comes up (drasi-server answers tens of milliseconds after it is spawned; a look is a
/// refused connection until then), longer after.
const HEALTH_POLL_FAST: Duration = Duration::from_millis(4);
const HEALTH_POLL_FAST_FOR: Duration = Duration::from_secs(2);
const HEALTH_POLL_SLOW: Duration = Duration::from_millis(100);

/// An executable and its plugins, as far as a validation result of them can be trusted: the
/// same path, size and modification time of the executable, and the same plugin files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Executable {
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
    plugins: Vec<(std::ffi::OsString, u64, Option<SystemTime>)>,
}

/// Local processes on this node.
pub struct ProcessPlatform {
    settings: ProcessSettings,
    files: Files,
    node: String,
    /// This deployment, marked on its processes (`DRAAS_DEPLOYMENT`, `DRAAS_DEPLOYMENT_ID`).
    deployment: super::Deployment,
    /// Servers marked with this deployment's name alone already reported (pids).
    unclaimed: Mutex<HashSet<i32>>,
    http: reqwest::Client,
    /// Spec hashes the executable accepted (`validate`), so a start of a known configuration
    /// does not spawn it twice.
    validated: Mutex<HashSet<(Executable, String)>>,
    /// Have drasi-server verify plugin signatures.
    verify_plugins: bool,
}

impl ProcessPlatform {
    /// Processes of this node, with files under `data_dir`.
    pub fn new(
        settings: ProcessSettings,
        data_dir: &Path,
        node: String,
        deployment: super::Deployment,
        verify_plugins: bool,
    ) -> Self {
        Self {
            verify_plugins,
            settings,
            files: Files::new(data_dir),
            node,
            deployment,
            unclaimed: Mutex::new(HashSet::new()),
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default(),
            validated: Mutex::new(HashSet::new()),
        }
    }

    /// The instance directories.
    pub fn files(&self) -> &Files {
        &self.files
    }

    fn facts(&self, spec: &StartSpec, p: &Found) -> RuntimeFacts {
        let id = &spec.instance_id;
        let host = probe_host(&spec.host);
        RuntimeFacts {
            listeners: spec
                .listeners
                .iter()
                .map(|(name, port)| (name.clone(), format!("http://{host}:{port}")))
                .collect(),
            pid: Some(p.pid),
            pid_start_time: Some(p.start_time),
            node: Some(self.node.clone()),
            port: Some(spec.port),
            endpoint: Some(format!("http://{}:{}", probe_host(&spec.host), spec.port)),
            config_file: Some(self.files.config(id)),
            log_file: Some(self.files.log(id)),
            ..RuntimeFacts::default()
        }
    }

    /// drasi-server's environment: nothing of the worker's but the variables of
    /// `process.env_allow`, then the instance's secrets (so a `${NAME}` of its configuration
    /// resolves to the instance's own, never to the worker's environment); draas' markers
    /// are added by the caller.
    fn server_env(&self, cmd: &mut std::process::Command, spec: &StartSpec) {
        cmd.env_clear();
        for name in &self.settings.env_allow {
            if let Some(v) = std::env::var_os(name) {
                cmd.env(name, v);
            }
        }
        for (name, value) in &spec.secrets {
            cmd.env(name, secrecy::ExposeSecret::expose_secret(value));
        }
    }

    /// Where the executable is.
    fn executable_path(&self) -> Option<PathBuf> {
        let exe = &self.settings.executable;
        if exe.contains('/') {
            return Some(PathBuf::from(exe));
        }
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(exe)).find(|p| p.is_file()))
    }

    /// The plugins directory drasi-server loads from, when there is one.
    pub fn plugins_dir(&self) -> Option<PathBuf> {
        let dir = match &self.settings.plugins_dir {
            Some(d) => d.clone(),
            None => std::fs::canonicalize(self.executable_path()?).ok()?.parent()?.join("plugins"),
        };
        dir.is_dir().then_some(dir)
    }

    /// What drasi-server gets besides `--config` (and `validate`): the plugins.
    fn plugin_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = Vec::new();
        if let Some(dir) = self.plugins_dir() {
            args.push("--plugins-dir".into());
            args.push(dir.into_os_string());
        }
        if !self.verify_plugins {
            args.push("--skip-verification".into());
        }
        args
    }

    /// The executable and its plugins as they are now, or `None` when they cannot be looked
    /// at (then every start validates).
    fn executable(&self) -> Option<Executable> {
        let path = self.executable_path()?;
        let meta = std::fs::metadata(&path).ok()?;
        let mut plugins: Vec<_> = self
            .plugins_dir()
            .and_then(|d| std::fs::read_dir(d).ok())
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| Some((e.file_name(), e.metadata().ok()?)))
                    .map(|(name, m)| (name, m.len(), m.modified().ok()))
                    .collect()
            })
            .unwrap_or_default();
        plugins.sort();
        Some(Executable { path, size: meta.len(), modified: meta.modified().ok(), plugins })
    }

    /// Run the server's own `validate --config <file>` unless this executable accepted this spec
    /// already; a rejection fails the operation.
    async fn validate(&self, config: &Path, spec: &StartSpec) -> Result<(), PlatformError> {
        let key = self.executable().map(|e| (e, spec.spec_hash.clone()));
        if let Some(k) = &key
            && self.validated.lock().is_ok_and(|v| v.contains(k))
        {
            return Ok(());
        }
        let mut cmd = tokio::process::Command::new(&self.settings.executable);
        cmd.arg("validate")
            .arg("--config")
            .arg(config)
            .args(self.plugin_args())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        self.server_env(cmd.as_std_mut(), spec);
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .map_err(|_| {
                PlatformError::new(ErrorCode::ValidateTimeout, "drasi-server validate did not finish within 30 s")
            })?
            .map_err(|e| spawn_error(&self.settings.executable, e))?;
        let text = draas_jobs::domain::text::plain(&format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        if out.status.success() {
            // drasi-server's validate passes a configuration whose plugins are missing, with
            // a warning; `run` would then die of it.
            let missing: Vec<&str> = text.lines().filter(|l| l.contains("not installed")).map(str::trim).collect();
            if !missing.is_empty() {
                return Err(PlatformError::new(
                    ErrorCode::PluginMissing,
                    format!("drasi-server lacks plugins this configuration needs: {}", missing.join("; ")),
                )
                .with_detail(tail_str(&text)));
            }
            if let (Some(k), Ok(mut v)) = (key, self.validated.lock()) {
                v.insert(k);
            }
            return Ok(());
        }
        Err(PlatformError::new(
            ErrorCode::ConfigRejected,
            format!("drasi-server rejected the configuration: {}", validate_verdict(&text)),
        )
        .with_detail(tail_str(&text)))
    }

    fn spawn(&self, spec: &StartSpec, config: &Path) -> Result<Found, PlatformError> {
        let id = &spec.instance_id;
        let io = |e: std::io::Error| {
            PlatformError::new(ErrorCode::IoError, format!("cannot open the log file: {e}")).caused_by(e)
        };
        let log = self.files.open_log(id).map_err(io)?;
        let err = log.try_clone().map_err(io)?;
        let mut cmd = std::process::Command::new(&self.settings.executable);
        cmd.arg("--config").arg(config).args(self.plugin_args());
        cmd.current_dir(self.files.dir(id)).stdin(Stdio::null()).stdout(log).stderr(err);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        self.server_env(&mut cmd, spec);
        cmd.env("DRAAS_INSTANCE_ID", id.as_str())
            .env("DRAAS_SPEC_HASH", &spec.spec_hash)
            .env("DRAAS_DEPLOYMENT", &self.deployment.name)
            .env("DRAAS_DEPLOYMENT_ID", &self.deployment.id);
        self.files.clear_exit(id);
        let mut child = cmd.spawn().map_err(|e| spawn_error(&self.settings.executable, e))?;
        let pid = i32::try_from(child.id()).unwrap_or_default();
        // Reap the child and note how it ended; if this worker dies first, init inherits it.
        let (files, id_owned) = (self.files.clone(), id.clone());
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                files.note_exit(&id_owned, exit_of(status));
            }
        });
        let start_time = procfs::start_time(pid).unwrap_or_default();
        tracing::info!(instance = %id, pid, port = spec.port, "drasi-server spawned");
        Ok(Found { pid, start_time, spec_hash: Some(spec.spec_hash.clone()) })
    }

    /// Wait until our server answers `/health` on its port: often at first (the server is up
    /// in tens of milliseconds), then less. A newer operation on the instance ends the wait
    /// (`superseded`); it takes over from what is running.
    async fn wait_healthy(&self, spec: &StartSpec, p: &Found) -> Result<(), PlatformError> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(self.settings.health_timeout_secs);
        loop {
            // The answer must come from our server: another program may hold the port, and
            // ours is then about to exit with a bind error.
            if self.healthy(&spec.host, spec.port).await && procfs::listens_on(p.pid, spec.port) && p.is_alive() {
                return Ok(());
            }
            if !p.is_alive() {
                return Err(PlatformError::new(
                    ErrorCode::CrashedOnStart,
                    "drasi-server exited before it became healthy",
                )
                .with_detail(self.files.log_tail(&spec.instance_id)));
            }
            if Instant::now() > deadline {
                self.terminate(p).await;
                return Err(PlatformError::new(
                    ErrorCode::HealthTimeout,
                    format!("drasi-server did not answer /health within {} s", self.settings.health_timeout_secs),
                )
                .with_detail(self.files.log_tail(&spec.instance_id)));
            }
            let fast = started.elapsed() < HEALTH_POLL_FAST_FOR;
            spec.pause(if fast { HEALTH_POLL_FAST } else { HEALTH_POLL_SLOW }).await?;
        }
    }

    /// Does drasi-server's health endpoint answer 200?
    async fn healthy(&self, host: &str, port: u16) -> bool {
        let url = format!("http://{}:{port}/health", probe_host(host));
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Stop one server: the stop signal (SIGINT by default: drasi-server's clean shutdown; it
    /// does not handle SIGTERM), then SIGKILL to the group after the grace period.
    async fn terminate(&self, p: &Found) {
        let signal = match self.settings.stop_signal {
            StopSignal::Sigint => Signal::SIGINT,
            StopSignal::Sigterm => Signal::SIGTERM,
        };
        kill_group(p.pid, signal);
        let grace = Instant::now() + Duration::from_secs(self.settings.stop_grace_secs);
        while p.is_alive() && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if p.is_alive() {
            tracing::warn!(pid = p.pid, "drasi-server ignored the stop signal; killing its process group");
            kill_group(p.pid, Signal::SIGKILL);
            let end = Instant::now() + Duration::from_secs(5);
            while p.is_alive() && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Keep every instance log on this node under the cap.
    pub fn rotate_logs(&self) {
        self.files.rotate_logs(self.settings.log_max_bytes);
    }

    /// Live drasi-servers of this deployment on this host (marked with its id), with their
    /// instance ids.
    pub fn deployment_processes(&self) -> Vec<(String, Found)> {
        let id = format!("DRAAS_DEPLOYMENT_ID={}", self.deployment.id);
        let name = format!("DRAAS_DEPLOYMENT={}", self.deployment.name);
        let found = procfs::scan(|vars| {
            let instance = vars.iter().find_map(|v| v.strip_prefix(b"DRAAS_INSTANCE_ID="))?;
            let instance = String::from_utf8_lossy(instance).into_owned();
            if vars.contains(&id.as_bytes()) {
                return Some((true, instance));
            }
            // Started before deployment ids, or by another deployment of the same name.
            let unmarked =
                vars.contains(&name.as_bytes()) && !vars.iter().any(|v| v.starts_with(b"DRAAS_DEPLOYMENT_ID="));
            unmarked.then_some((false, instance))
        });
        let (ours, unmarked): (Vec<_>, Vec<_>) = found.into_iter().partition(|((ours, _), _)| *ours);
        self.report_unclaimed(&unmarked);
        ours.into_iter().map(|((_, instance), p)| (instance, p)).collect()
    }

    /// Say once per server that one marked with this deployment's name alone is left alone:
    /// it may be another deployment's (the name is the key prefix, which deployments on other
    /// Redis servers share); its instance still adopts it when that is one of ours.
    fn report_unclaimed(&self, unmarked: &[((bool, String), Found)]) {
        let Ok(mut seen) = self.unclaimed.lock() else { return };
        for ((_, instance), p) in unmarked.iter().filter(|(_, p)| seen.insert(p.pid)) {
            tracing::info!(instance = %instance, pid = p.pid, deployment = %self.deployment.name,
                "a drasi-server marked with this deployment's name but no id is left alone (never killed as an orphan)");
        }
    }

    /// Kill a process group at once (an orphan).
    pub fn kill(&self, p: &Found) {
        kill_group(p.pid, Signal::SIGKILL);
    }
}

/// The servers of an instance on this host.
fn servers_of(id: &InstanceId) -> Vec<Found> {
    procfs::with_env(&format!("DRAAS_INSTANCE_ID={id}"))
}

#[async_trait::async_trait]
impl Platform for ProcessPlatform {
    fn kind(&self) -> draas_jobs::domain::model::Platform {
        draas_jobs::domain::model::Platform::Process
    }

    fn port_pool(&self, node: &str) -> Option<PortPool> {
        Some(PortPool { name: node.to_owned(), range: (self.settings.port_range_start, self.settings.port_range_end) })
    }

    fn busy_ports(&self, id: &InstanceId, range: (u16, u16)) -> Vec<u16> {
        procfs::busy_ports(range, &servers_of(id))
    }

    async fn start(&self, spec: &StartSpec) -> Result<RuntimeFacts, PlatformError> {
        let id = &spec.instance_id;
        let running = servers_of(id);
        if let Some(p) = running.iter().find(|p| spec.runs(p.spec_hash.as_deref()))
            && self.healthy(&spec.host, spec.port).await
            && procfs::listens_on(p.pid, spec.port)
        {
            for other in running.iter().filter(|o| o.pid != p.pid) {
                kill_group(other.pid, Signal::SIGKILL);
            }
            tracing::info!(instance = %id, pid = p.pid, "adopted running drasi-server");
            return Ok(self.facts(spec, p));
        }
        // Checked before anything that runs is stopped: a refused configuration leaves it.
        self.preflight(spec).await?;
        for p in &running {
            self.terminate(p).await;
        }
        let config = self.files.write_config(id, "server.yaml", &spec.yaml).map_err(|e| {
            PlatformError::new(ErrorCode::IoError, format!("cannot write the config file: {e}")).caused_by(e)
        })?;
        let found = self.spawn(spec, &config)?;
        self.wait_healthy(spec, &found).await?;
        Ok(self.facts(spec, &found))
    }

    fn catalog(&self) -> Option<Catalog> {
        draas_jobs::domain::plugins::scan(&self.plugins_dir()?)
    }

    /// drasi-server's own `validate` of the configuration, written beside the running one
    /// (`server.next.yaml`), with this node's plugins.
    async fn preflight(&self, spec: &StartSpec) -> Result<(), PlatformError> {
        let candidate = self.files.write_config(&spec.instance_id, "server.next.yaml", &spec.yaml).map_err(|e| {
            PlatformError::new(ErrorCode::IoError, format!("cannot write the config file: {e}")).caused_by(e)
        })?;
        self.validate(&candidate, spec).await.map_err(PlatformError::before_change)
    }

    /// The running server's file becomes the new configuration (the server reads it only at
    /// start; a restart by hand then runs what draas applied).
    async fn reconfigured(&self, spec: &StartSpec) -> Result<(), PlatformError> {
        self.files.write_config(&spec.instance_id, "server.yaml", &spec.yaml).map(drop).map_err(|e| {
            PlatformError::new(ErrorCode::IoError, format!("cannot write the config file: {e}")).caused_by(e)
        })
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError> {
        for p in servers_of(id) {
            self.terminate(&p).await;
        }
        Ok(())
    }

    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError> {
        self.stop(id).await?;
        self.files.remove(id).map_err(|e| {
            PlatformError::new(ErrorCode::IoError, format!("cannot remove the instance directory: {e}")).caused_by(e)
        })
    }

    async fn inspect(&self, id: &InstanceId, facts: &RuntimeFacts) -> Inspection {
        let (alive, spec_hash) = match (facts.pid, facts.pid_start_time) {
            (Some(pid), Some(start_time)) => (Found { pid, start_time, spec_hash: None }.is_alive(), None),
            _ => {
                let found = servers_of(id);
                (!found.is_empty(), found.into_iter().find_map(|p| p.spec_hash))
            }
        };
        let exit = if alive { None } else { self.files.last_exit(id) };
        let message = (!alive).then(|| exit.map_or_else(|| "the process is gone".to_owned(), |e| e.to_string()));
        Inspection { alive, spec_hash, message, exit, endpoint: None, healthy: None }
    }

    async fn managed(&self) -> Result<Vec<Managed>, PlatformError> {
        Ok(self
            .deployment_processes()
            .into_iter()
            .map(|(instance, p)| Managed { instance, spec_hash: p.spec_hash, handle: p.pid.to_string() })
            .collect())
    }

    async fn remove(&self, m: &Managed) -> Result<(), PlatformError> {
        let pid: i32 = m.handle.parse().map_err(|_| PlatformError::new(ErrorCode::InvalidHandle, "not a pid"))?;
        if let Some(start_time) = procfs::start_time(pid) {
            self.kill(&Found { pid, start_time, spec_hash: None });
        }
        Ok(())
    }

    async fn log_tail(&self, id: &InstanceId) -> String {
        self.files.log_tail(id)
    }

    async fn logs(&self, id: &InstanceId, since: Option<String>) -> Option<super::LogStream> {
        Some(self.files.follow_log(id, since.and_then(|c| c.parse().ok())))
    }
}

/// drasi-server binds `0.0.0.0` for "everywhere"; probe it on loopback then.
fn probe_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    }
}

fn spawn_error(exe: &str, e: std::io::Error) -> PlatformError {
    let (code, message) = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            (ErrorCode::ExecutableNotFound, format!("cannot run drasi-server executable '{exe}': {e}"))
        }
        _ => (ErrorCode::SpawnFailed, format!("cannot start '{exe}': {e}")),
    };
    PlatformError::new(code, message).caused_by(e)
}

/// The line of `drasi-server validate`'s report that says why: its first `[ERR]` line (its
/// report starts with "Validating: <file>"), else an `Error:` line, else the first line.
fn validate_verdict(report: &str) -> &str {
    let lines = || report.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find_map(|l| l.strip_prefix("[ERR]"))
        .or_else(|| lines().find_map(|l| l.strip_prefix("Error:")))
        .or_else(|| lines().next())
        .map_or("configuration rejected", str::trim)
}

fn kill_group(pid: i32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code { code },
        (None, Some(signal)) => Exit::Signal { signal },
        // Neither a code nor a signal does not happen on Unix; call it a plain failure.
        (None, None) => Exit::Code { code: -1 },
    }
}
