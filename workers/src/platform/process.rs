//! The process platform: drasi-server as a local OS process on this node.
//!
//! Each instance gets `<data dir>/instances/<id>/` (mode 0700) holding `server.yaml` (0600),
//! `server.log` (stdout and stderr, size-capped by rotation) and drasi-server's own `./data`.
//! The server runs in its own process group, without a shell, so it outlives a worker restart;
//! it carries `DRAAS_INSTANCE_ID` and `DRAAS_SPEC_HASH` in its environment, so any worker on
//! this node can find, adopt or kill it from `/proc` alone.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use draas_jobs::ids::InstanceId;
use draas_jobs::settings::{ProcessSettings, StopSignal};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{Inspection, Managed, Platform, PlatformError, PortPool, Runtime, StartSpec};

/// File in the instance directory where the reaper notes how the server ended.
const EXIT_FILE: &str = "exit-status";

/// How much of the log goes into an error.
const LOG_TAIL_BYTES: u64 = 4096;

/// Local processes on this node.
#[derive(Clone)]
pub struct ProcessPlatform {
    settings: ProcessSettings,
    instances_dir: PathBuf,
    node: String,
    /// Key prefix of this deployment, marked on its processes (`DRAAS_DEPLOYMENT`).
    deployment: String,
    http: reqwest::Client,
}

/// A drasi-server process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub pid: i32,
    pub start_time: u64,
    pub spec_hash: Option<String>,
}

impl ProcessPlatform {
    /// Processes of this node, with files under `data_dir`.
    pub fn new(settings: ProcessSettings, data_dir: &Path, node: String, deployment: String) -> Self {
        Self {
            settings,
            instances_dir: data_dir.join("instances"),
            node,
            deployment,
            http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap_or_default(),
        }
    }

    /// Directory of an instance.
    pub fn dir(&self, id: &InstanceId) -> PathBuf {
        self.instances_dir.join(id.as_str())
    }

    fn log_path(&self, id: &InstanceId) -> PathBuf {
        self.dir(id).join("server.log")
    }

    /// Start (or adopt) the server of `spec`.
    pub async fn start(&self, spec: &StartSpec) -> Result<Runtime, PlatformError> {
        let id = &spec.instance_id;
        let running = find_processes(id);
        if let Some(p) = running.iter().find(|p| p.spec_hash.as_deref() == Some(spec.spec_hash.as_str()))
            && self.healthy(&spec.host, spec.port).await
            && listens_on(p.pid, spec.port)
        {
            for other in running.iter().filter(|o| o.pid != p.pid) {
                kill_group(other.pid, Signal::SIGKILL);
            }
            tracing::info!(instance = %id, pid = p.pid, "adopted running drasi-server");
            return Ok(self.runtime(spec, p));
        }
        for p in &running {
            self.terminate(p).await;
        }
        let config = self.write_config(spec)?;
        self.validate(&config).await?;
        let found = self.spawn(spec, &config)?;
        self.wait_healthy(spec, &found).await?;
        Ok(self.runtime(spec, &found))
    }

    fn runtime(&self, spec: &StartSpec, p: &Found) -> Runtime {
        let host = probe_host(&spec.host);
        let facts = json!({
            "pid": p.pid,
            "pidStartTime": p.start_time,
            "node": self.node,
            "port": spec.port,
            "endpoint": format!("http://{host}:{}", spec.port),
            "configFile": self.dir(&spec.instance_id).join("server.yaml"),
            "logFile": self.log_path(&spec.instance_id),
        });
        Runtime { facts: facts.as_object().cloned().unwrap_or_default() }
    }

    /// Write the YAML (0600) atomically into the instance directory (0700).
    fn write_config(&self, spec: &StartSpec) -> Result<PathBuf, PlatformError> {
        let io = |e: std::io::Error| PlatformError::new("io_error", format!("cannot write the config file: {e}"));
        let dir = self.dir(&spec.instance_id);
        fs::create_dir_all(&dir).map_err(io)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let path = dir.join("server.yaml");
        let tmp = dir.join(".server.yaml.tmp");
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        f.write_all(spec.yaml.as_bytes()).and_then(|()| f.sync_all()).map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }

    /// Run the server's own `validate --config <file>`; a rejection fails the operation.
    async fn validate(&self, config: &Path) -> Result<(), PlatformError> {
        let mut cmd = tokio::process::Command::new(&self.settings.executable);
        cmd.arg("validate").arg("--config").arg(config).stdin(Stdio::null()).kill_on_drop(true);
        sanitize_env(cmd.as_std_mut());
        let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .map_err(|_| PlatformError::new("validate_timeout", "drasi-server validate did not finish within 30 s"))?
            .map_err(|e| spawn_error(&self.settings.executable, &e))?;
        if out.status.success() {
            return Ok(());
        }
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("configuration rejected").to_owned();
        Err(PlatformError::new("config_rejected", format!("drasi-server rejected the configuration: {first}"))
            .with_detail(tail_str(&text)))
    }

    fn spawn(&self, spec: &StartSpec, config: &Path) -> Result<Found, PlatformError> {
        let dir = self.dir(&spec.instance_id);
        let log_path = self.log_path(&spec.instance_id);
        let io = |e: std::io::Error| PlatformError::new("io_error", format!("cannot open the log file: {e}"));
        let log = OpenOptions::new().create(true).append(true).mode(0o600).open(&log_path).map_err(io)?;
        let err = log.try_clone().map_err(io)?;
        let mut cmd = std::process::Command::new(&self.settings.executable);
        cmd.arg("--config").arg(config).current_dir(&dir).stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
        sanitize_env(&mut cmd);
        cmd.env("DRAAS_INSTANCE_ID", spec.instance_id.as_str())
            .env("DRAAS_SPEC_HASH", &spec.spec_hash)
            .env("DRAAS_DEPLOYMENT", &self.deployment);
        let _ = fs::remove_file(dir.join(EXIT_FILE));
        let mut child = cmd.spawn().map_err(|e| spawn_error(&self.settings.executable, &e))?;
        let pid = i32::try_from(child.id()).unwrap_or_default();
        // Reap the child and note how it ended; if this worker dies first, init inherits it.
        let exit_file = dir.join(EXIT_FILE);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = fs::write(exit_file, describe_exit(status));
            }
        });
        let start_time = process_start_time(pid).unwrap_or_default();
        tracing::info!(instance = %spec.instance_id, pid, port = spec.port, "drasi-server spawned");
        Ok(Found { pid, start_time, spec_hash: Some(spec.spec_hash.clone()) })
    }

    async fn wait_healthy(&self, spec: &StartSpec, p: &Found) -> Result<(), PlatformError> {
        let deadline = Instant::now() + Duration::from_secs(self.settings.health_timeout_secs);
        loop {
            // The answer must come from our server: another program may hold the port, and
            // ours is then about to exit with a bind error.
            if self.healthy(&spec.host, spec.port).await && listens_on(p.pid, spec.port) && is_alive(p) {
                return Ok(());
            }
            if !is_alive(p) {
                let tail = self.log_tail(&spec.instance_id);
                return Err(PlatformError::new("crashed_on_start", "drasi-server exited before it became healthy")
                    .with_detail(tail));
            }
            if Instant::now() > deadline {
                self.terminate(p).await;
                return Err(PlatformError::new(
                    "health_timeout",
                    format!("drasi-server did not answer /health within {} s", self.settings.health_timeout_secs),
                )
                .with_detail(self.log_tail(&spec.instance_id)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Does drasi-server's health endpoint answer 200?
    pub async fn healthy(&self, host: &str, port: u16) -> bool {
        let url = format!("http://{}:{port}/health", probe_host(host));
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// Stop every server of the instance: the stop signal (SIGINT by default: drasi-server's
    /// clean shutdown; it does not handle SIGTERM), then SIGKILL to the group after the grace
    /// period.
    pub async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError> {
        for p in find_processes(id) {
            self.terminate(&p).await;
        }
        Ok(())
    }

    async fn terminate(&self, p: &Found) {
        let signal = match self.settings.stop_signal {
            StopSignal::Sigint => Signal::SIGINT,
            StopSignal::Sigterm => Signal::SIGTERM,
        };
        kill_group(p.pid, signal);
        let grace = Instant::now() + Duration::from_secs(self.settings.stop_grace_secs);
        while is_alive(p) && Instant::now() < grace {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if is_alive(p) {
            tracing::warn!(pid = p.pid, "drasi-server ignored the stop signal; killing its process group");
            kill_group(p.pid, Signal::SIGKILL);
            let end = Instant::now() + Duration::from_secs(5);
            while is_alive(p) && Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Stop the instance and remove its directory (config, log, data).
    pub async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError> {
        self.stop(id).await?;
        match fs::remove_dir_all(self.dir(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(PlatformError::new("io_error", format!("cannot remove the instance directory: {e}")))
            }
            _ => Ok(()),
        }
    }

    /// The last few KiB of an instance's log.
    pub fn log_tail(&self, id: &InstanceId) -> String {
        let Ok(mut f) = fs::File::open(self.log_path(id)) else { return String::new() };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Keep every instance log on this node under the cap: the newest half moves to
    /// `server.log.1` and the log is truncated (the server appends, so it writes on at 0).
    pub fn rotate_logs(&self) {
        let Ok(entries) = fs::read_dir(&self.instances_dir) else { return };
        for entry in entries.flatten() {
            let log = entry.path().join("server.log");
            if fs::metadata(&log).is_ok_and(|m| m.len() > self.settings.log_max_bytes)
                && let Err(e) = rotate(&log, self.settings.log_max_bytes / 2)
            {
                tracing::warn!(log = %log.display(), error = %e, "log rotation failed");
            }
        }
    }

    /// How the instance's last server ended, when this node's worker saw it end:
    /// `exited with code N` or `killed by signal N`.
    pub fn last_exit(&self, id: &InstanceId) -> Option<String> {
        fs::read_to_string(self.dir(id).join(EXIT_FILE)).ok().map(|s| s.trim().to_owned())
    }

    /// Live drasi-servers of this deployment on this host, with their instance ids.
    pub fn deployment_processes(&self) -> Vec<(String, Found)> {
        scan_processes(|vars| {
            let deployment = format!("DRAAS_DEPLOYMENT={}", self.deployment);
            vars.contains(&deployment.as_bytes())
                .then(|| vars.iter().find_map(|v| v.strip_prefix(b"DRAAS_INSTANCE_ID=")))
                .flatten()
                .map(|id| String::from_utf8_lossy(id).into_owned())
        })
    }

    /// Kill a process group at once (an orphan).
    pub fn kill(&self, p: &Found) {
        kill_group(p.pid, Signal::SIGKILL);
    }

    /// Is the instance's recorded process alive (pid and start time match)?
    pub fn is_running(&self, pid: i32, start_time: u64) -> bool {
        is_alive(&Found { pid, start_time, spec_hash: None })
    }
}

#[async_trait::async_trait]
impl Platform for ProcessPlatform {
    fn kind(&self) -> draas_jobs::model::Platform {
        draas_jobs::model::Platform::Process
    }

    fn port_pool(&self, node: &str) -> Option<PortPool> {
        Some(PortPool { name: node.to_owned(), range: (self.settings.port_range_start, self.settings.port_range_end) })
    }

    fn busy_ports(&self, id: &InstanceId, range: (u16, u16)) -> Vec<u16> {
        let listening = listening_sockets();
        let own: std::collections::HashSet<String> =
            find_processes(id).iter().flat_map(|p| socket_links(p.pid)).collect();
        let mut busy: Vec<u16> = listening
            .into_iter()
            .filter(|(port, inode)| (range.0..=range.1).contains(port) && !own.contains(inode))
            .map(|(port, _)| port)
            .collect();
        busy.sort_unstable();
        busy.dedup();
        busy
    }

    async fn start(&self, spec: &StartSpec) -> Result<Runtime, PlatformError> {
        ProcessPlatform::start(self, spec).await
    }

    async fn stop(&self, id: &InstanceId) -> Result<(), PlatformError> {
        ProcessPlatform::stop(self, id).await
    }

    async fn delete(&self, id: &InstanceId) -> Result<(), PlatformError> {
        ProcessPlatform::delete(self, id).await
    }

    async fn inspect(&self, id: &InstanceId, facts: &serde_json::Map<String, Value>) -> Inspection {
        let (alive, spec_hash) = match recorded(facts) {
            Some((pid, start)) => (self.is_running(pid, start), None),
            None => {
                let found = find_processes(id);
                (!found.is_empty(), found.into_iter().find_map(|p| p.spec_hash))
            }
        };
        let message = (!alive).then(|| self.last_exit(id).unwrap_or_else(|| "the process is gone".to_owned()));
        Inspection { alive, spec_hash, message, endpoint: None, healthy: None }
    }

    async fn managed(&self) -> Result<Vec<Managed>, PlatformError> {
        Ok(self
            .deployment_processes()
            .into_iter()
            .map(|(instance, p)| Managed { instance, spec_hash: p.spec_hash, handle: p.pid.to_string() })
            .collect())
    }

    async fn remove(&self, m: &Managed) -> Result<(), PlatformError> {
        let pid: i32 = m.handle.parse().map_err(|_| PlatformError::new("invalid_handle", "not a pid"))?;
        if let Some(start_time) = process_start_time(pid) {
            self.kill(&Found { pid, start_time, spec_hash: None });
        }
        Ok(())
    }

    async fn log_tail(&self, id: &InstanceId) -> String {
        ProcessPlatform::log_tail(self, id)
    }
}

fn rotate(log: &Path, keep: u64) -> std::io::Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(log)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let mut old =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(log.with_extension("log.1"))?;
    old.write_all(&tail)?;
    f.set_len(0)
}

/// drasi-server binds `0.0.0.0` for "everywhere"; probe it on loopback then.
fn probe_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        h => h,
    }
}

fn spawn_error(exe: &str, e: &std::io::Error) -> PlatformError {
    if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::PermissionDenied {
        PlatformError::new("executable_not_found", format!("cannot run drasi-server executable '{exe}': {e}"))
    } else {
        PlatformError::new("spawn_failed", format!("cannot start '{exe}': {e}"))
    }
}

/// drasi-server gets the worker's environment minus draas' own settings (tokens, Redis URL),
/// so `${VAR}` references in its config resolve against the host's environment.
fn sanitize_env(cmd: &mut std::process::Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DRAAS_") {
            cmd.env_remove(k);
        }
    }
}

fn kill_group(pid: i32, signal: Signal) {
    if pid > 1 {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Listening TCP sockets on this host (IPv4 and IPv6): port and `socket:[inode]` link name.
fn listening_sockets() -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (`addr:PORT` in hex), st field 3 (0A = LISTEN), inode field 9.
            let Some(port) =
                f.get(1).and_then(|a| a.rsplit_once(':')).and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if f.len() > 9 && f[3] == "0A" {
                out.push((port, format!("socket:[{}]", f[9])));
            }
        }
    }
    out
}

/// The `socket:[inode]` links among a process's descriptors.
fn socket_links(pid: i32) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter(|l| l.starts_with("socket:["))
        .collect()
}

/// Does process `pid` hold a listening TCP socket on `port` (IPv4 or IPv6)?
fn listens_on(pid: i32, port: u16) -> bool {
    let inodes: std::collections::HashSet<String> =
        listening_sockets().into_iter().filter(|(p, _)| *p == port).map(|(_, i)| i).collect();
    !inodes.is_empty() && socket_links(pid).iter().any(|l| inodes.contains(l))
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is the state (field 3); start time is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn is_alive(p: &Found) -> bool {
    process_start_time(p.pid).is_some_and(|t| p.start_time == 0 || t == p.start_time)
}

/// Every live process on this host whose environment names instance `id`.
pub fn find_processes(id: &InstanceId) -> Vec<Found> {
    let marker = format!("DRAAS_INSTANCE_ID={id}");
    scan_processes(|vars| vars.contains(&marker.as_bytes()).then_some(())).into_iter().map(|(_, f)| f).collect()
}

/// Live processes whose environment `select` picks (returning a tag for each).
fn scan_processes<T>(select: impl Fn(&[&[u8]]) -> Option<T>) -> Vec<(T, Found)> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
            let tag = select(&vars)?;
            let spec_hash = vars
                .iter()
                .find_map(|v| v.strip_prefix(b"DRAAS_SPEC_HASH="))
                .map(|h| String::from_utf8_lossy(h).into_owned());
            Some((tag, Found { pid, start_time: process_start_time(pid)?, spec_hash }))
        })
        .collect()
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".to_owned(),
    }
}

/// Parse runtime facts back into a process reference.
pub fn recorded(facts: &serde_json::Map<String, Value>) -> Option<(i32, u64)> {
    let pid = i32::try_from(facts.get("pid")?.as_i64()?).ok()?;
    let start = facts.get("pidStartTime")?.as_u64()?;
    Some((pid, start))
}

fn tail_str(s: &str) -> String {
    let start = s.len().saturating_sub(LOG_TAIL_BYTES as usize);
    let start = (start..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(s.len());
    s[start..].to_owned()
}
