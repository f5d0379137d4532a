//! One `Settings`, loaded in layers: built-in defaults, then `deploy/config/base.yaml`, then
//! `deploy/config/<DRAAS_ENV>.yaml`, then `DRAAS_*` environment variables.
//!
//! Public environment contract: `DRAAS_REDIS_URL`, `DRAAS_KEY_PREFIX`, `DRAAS_LISTEN`,
//! `DRAAS_API_TOKENS` (comma-separated), `DRAAS_TOKENS` (a JSON array), `DRAAS_DATA_DIR`, `DRAAS_DEV`, `DRAAS_NODE_ID`,
//! `DRAAS_PROCESS_EXECUTABLE`, `DRAAS_DOCKER_IMAGE`, `DRAAS_KUBECONFIG`, `DRAAS_KUBE_NAMESPACE`;
//! any other setting as `DRAAS_<SECTION>__<KEY>`.

mod kubernetes;
mod network;
mod policy;
mod secrets;
pub mod tokens;
pub use kubernetes::{DataVolume, KubePlugins, KubeResources, KubernetesSettings, ProbeVia, ServiceType};
pub use network::{NetworkSettings, PortRange};
pub use policy::{PolicySettings, own_image};
pub use secrets::SecretSettings;
pub use tokens::{QuotaSettings, Role, TokenSettings};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::model::Platform;

/// Everything draas can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Redis URL; when unset, `draas up` starts a private redis-server under the data dir.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (inside a `{hash tag}`).
    pub key_prefix: String,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Accepted bearer tokens.
    pub api_tokens: Vec<SecretString>,
    /// Bearer tokens that may also see secrets (`?reveal=true`); accepted everywhere.
    pub admin_tokens: Vec<SecretString>,
    /// Named tokens with a role and quotas (`DRAAS_TOKENS`: a JSON array).
    pub tokens: Vec<TokenSettings>,
    /// Quotas of tokens that set none of their own.
    pub quotas: QuotaSettings,
    /// Development mode: no authentication.
    pub dev: bool,
    /// Where config files, logs and a private Redis live.
    pub data_dir: PathBuf,
    /// Platform of instances created without one.
    pub default_platform: Platform,
    /// Log output: `text` or `json`.
    pub log_format: LogFormat,
    /// API limits.
    pub api: ApiSettings,
    /// Node id of this host (default: the host name).
    pub node_id: Option<String>,
    /// Worker runtime.
    pub worker: WorkerSettings,
    /// Local process platform.
    pub process: ProcessSettings,
    /// Docker platform.
    pub docker: DockerSettings,
    /// Operation records.
    pub operations: OperationSettings,
    /// Reconciliation: health checks, drift repair, history.
    pub reconcile: ReconcileSettings,
    /// The original DRaaS API, served for its clients.
    pub compat: CompatSettings,
    /// Kubernetes platform.
    pub kubernetes: KubernetesSettings,
    /// The servers' output, shipped by workers for `GET …/logs`.
    pub logs: LogSettings,
    /// Which server `host` and `port` of a user's configuration are honoured.
    pub network: NetworkSettings,
    /// What users may run: images, CPU and memory (admin tokens are exempt).
    pub policy: PolicySettings,
    /// Instance secrets: the keys they are encrypted with, their limits.
    pub secrets: SecretSettings,
    /// Have drasi-server verify plugin signatures (`false`: it is started with
    /// `--skip-verification`, and the plugins directories this deployment configures are
    /// trusted as they are; `true` needs a `plugins.lock` beside the plugins).
    pub verify_plugins: bool,
    /// After SIGTERM or SIGINT, how long the process may take to finish what it is doing
    /// before it exits anyway (jobs it could not report are left to their leases' expiry, so
    /// another worker takes them up).
    pub shutdown_grace_secs: u64,
}

/// The servers' output as workers ship it into the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// Lines kept per instance (about: the stream is trimmed lazily); 0 ships none.
    pub keep_lines: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { keep_lines: 1000 }
    }
}

/// The original DRaaS API (`/api/server`, `/api/configuration`, `/api/status`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CompatSettings {
    /// How long start, stop, restart and delete wait for their operation before answering 504.
    pub wait_secs: u64,
}

impl Default for CompatSettings {
    fn default() -> Self {
        Self { wait_secs: 30 }
    }
}

/// Reconciliation.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ReconcileSettings {
    /// Seconds between passes (a divisor of 60, or a whole number of minutes dividing 60).
    pub interval_secs: u64,
    /// Health probes in flight at once.
    pub probe_concurrency: usize,
    /// Time allowed for one health probe.
    pub probe_timeout_ms: u64,
    /// First wait before repairing a crashed instance again.
    pub backoff_initial_ms: u64,
    /// Longest wait between repairs.
    pub backoff_max_ms: u64,
    /// Consecutive failed repairs after which the instance stays in `error` until a user acts.
    pub max_failures: u32,
    /// Repair instances whose status is `error` (desired running).
    pub repair_error: bool,
    /// Restart instances that stopped cleanly by themselves (desired running).
    pub repair_stopped: bool,
    /// Start a lost node's process instances on a live node.
    pub failover: bool,
    /// Remove containers and Kubernetes objects labelled as draas' that no instance owns
    /// (they are always reported).
    pub remove_orphans: bool,
    /// Transitions kept per instance.
    pub history_per_instance: usize,
    /// Transitions kept in the global buffer.
    pub history_global: usize,
    /// Read each healthy server's sources, queries and reactions on every probe (an instance
    /// with one in error is `degraded`).
    pub component_health: bool,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            interval_secs: 5,
            probe_concurrency: 64,
            probe_timeout_ms: 2000,
            backoff_initial_ms: 1000,
            backoff_max_ms: 300_000,
            max_failures: 5,
            repair_error: true,
            repair_stopped: false,
            failover: false,
            remove_orphans: false,
            history_per_instance: 100,
            history_global: 1000,
            component_health: true,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// API limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Requests taking longer are answered 408 (long-polls excepted).
    pub request_timeout_secs: u64,
    /// Longest a connection may take to send a request's headers, counted from when the
    /// server is ready for them: it bounds a client trickling a header as much as an idle
    /// keep-alive connection (closed once it has waited this long for a next request).
    pub header_timeout_secs: u64,
    /// Largest page a list may return.
    pub max_page_size: usize,
    /// Serve `/metrics` (API and workers) without a token, for scrapers inside a trusted network.
    pub metrics_public: bool,
    /// Longest a `?wait=` long-poll is held (at most 60; less behind a proxy with a shorter
    /// timeout): the request then answers 202 and the client polls on.
    pub max_wait_secs: u64,
    /// Most streams (query watches, followed logs, `/events`) an API replica serves at once;
    /// more are answered 429 `too_many_streams`.
    pub max_streams: usize,
    /// Seconds between the heartbeat comments a stream sends while it has nothing to say.
    pub heartbeat_secs: u64,
}

/// Worker runtime.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Jobs run at once per worker process.
    pub concurrency: usize,
    /// How often an idle worker polls its queues.
    pub poll_interval_ms: u64,
    /// Attempts per operation before it fails.
    pub max_attempts: u32,
    /// Time allowed for one attempt.
    pub attempt_timeout_secs: u64,
    /// First retry delay.
    pub backoff_initial_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
    /// Expiry of a per-instance lease.
    pub lease_ttl_secs: u64,
    /// Node heartbeat period.
    pub heartbeat_secs: u64,
    /// Fault injection for tests: make every start attempt panic.
    pub inject_panic: bool,
    /// Where the worker serves `/metrics` (none: no listener; `draas up` shows the worker's
    /// metrics on the API's `/metrics`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Stop by itself (exit code 0, after the same graceful stop as SIGTERM) once no job ran
    /// for this long; 0 = never. For hosts that run a worker to completion; a worker whose
    /// host runs drasi-servers of the deployment (process instances) stays to supervise them.
    pub exit_when_idle_secs: u64,
}

/// Local process platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProcessSettings {
    /// drasi-server executable: a path or a name looked up in PATH.
    pub executable: String,
    /// Time allowed for a started server to answer its health endpoint.
    pub health_timeout_secs: u64,
    /// Signal that asks drasi-server to stop: `SIGINT` (its clean shutdown; it does not handle
    /// SIGTERM) or `SIGTERM` (for a build that does).
    pub stop_signal: StopSignal,
    /// Time between the stop signal and SIGKILL.
    pub stop_grace_secs: u64,
    /// Size at which an instance's log file is rotated.
    pub log_max_bytes: u64,
    /// First port of this node's range.
    pub port_range_start: u16,
    /// Last port of this node's range.
    pub port_range_end: u16,
    /// Bind address written into configs that name none.
    pub host: String,
    /// drasi-server's plugins directory on this node (none: `plugins` beside the executable,
    /// where drasi-server itself looks); passed to `run` and `validate` as `--plugins-dir`.
    pub plugins_dir: Option<PathBuf>,
    /// Variables of the worker's environment a configuration may reference (`${NAME}`) and
    /// that the process platform passes to drasi-server (which gets nothing else of the
    /// worker's environment besides the instance's secrets and draas' own `DRAAS_*`
    /// markers). Names starting with `DRAAS_` are refused.
    pub env_allow: Vec<String>,
}

/// Docker platform: drasi-server in containers of one Docker engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DockerSettings {
    /// Offer the docker platform on this worker. The engine is contacted lazily: an engine
    /// that does not answer makes docker operations retry (`docker_unavailable`), nothing else.
    pub enabled: bool,
    /// Engine endpoint: `unix:///path/docker.sock`, `tcp://host:port` or `http://host:port`,
    /// and `https://host:port` (or `tcp://` with the TLS files below) for TLS.
    pub endpoint: String,
    /// CA certificate, client certificate and client key (PEM) of a TLS endpoint.
    pub tls_ca: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Image of instances that name none (also `DRAAS_DOCKER_IMAGE`).
    pub image: String,
    /// When to pull the image: `always`, `if-missing` or `never`.
    pub image_policy: ImagePolicy,
    /// Host address the container port is published on.
    pub host_ip: String,
    /// Host name or address draas reaches published ports at (default: `host_ip`, or the
    /// engine's host, or 127.0.0.1 when `host_ip` is a wildcard).
    pub advertise_host: Option<String>,
    /// Path of the configuration file inside the container (drasi-server's default).
    pub config_path: String,
    /// Time between the stop signal (SIGINT) and SIGKILL.
    pub stop_grace_secs: u64,
    /// Time allowed for a started container to answer drasi-server's health endpoint.
    pub health_timeout_secs: u64,
    /// First host port of the pool every worker using this deployment's Docker engine shares.
    pub port_range_start: u16,
    /// Last host port of that pool.
    pub port_range_end: u16,
    /// Follow the engine's events, so a container that dies is repaired at once rather than
    /// on the next reconcile tick.
    pub follow_events: bool,
    /// A directory on the worker's host whose plugin files are copied into every container
    /// (like the configuration; no bind mount, so a remote engine works too). None: the
    /// image's own plugins.
    pub plugins_dir: Option<PathBuf>,
    /// Where the plugins go in the container (passed as `--plugins-dir`).
    pub plugins_path: String,
    /// User (`uid[:gid]` or a name) containers run as; unset: the image's own (drasi-server's
    /// image runs as its non-root user `drasi`). Containers always run with every capability
    /// dropped, `no-new-privileges`, a read-only root filesystem (the config, plugins and data
    /// directories are volumes; `/tmp` a tmpfs) and at most `pids_limit` processes.
    pub user: Option<String>,
    /// Most processes (threads included) a container may run.
    pub pids_limit: i64,
    /// drasi-server's data directory in the container (`./data` of its working directory:
    /// indexes, WAL), on a named volume per instance so it survives a new container; removed
    /// with the instance. Empty: no volume.
    pub data_path: String,
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: "unix:///var/run/docker.sock".into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            image: "ghcr.io/drasi-project/drasi-server:latest".into(),
            image_policy: ImagePolicy::IfMissing,
            host_ip: "127.0.0.1".into(),
            advertise_host: None,
            config_path: "/app/config/server.yaml".into(),
            stop_grace_secs: 10,
            health_timeout_secs: 30,
            port_range_start: 9100,
            port_range_end: 9999,
            follow_events: true,
            plugins_dir: None,
            plugins_path: "/app/plugins".into(),
            user: None,
            pids_limit: 1024,
            data_path: "/app/data".into(),
        }
    }
}

/// When the docker platform pulls an instance's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePolicy {
    /// Pull before every container is created.
    Always,
    /// Pull only when the engine does not have the image.
    #[default]
    IfMissing,
    /// Never pull: a missing image fails the operation (`image_missing`).
    Never,
}

/// The signal that asks a server to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum StopSignal {
    #[default]
    #[serde(rename = "SIGINT")]
    Sigint,
    #[serde(rename = "SIGTERM")]
    Sigterm,
}

/// Operation records.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OperationSettings {
    /// How long finished operations are kept.
    pub ttl_secs: u64,
    /// Queue depth above which new operations are refused with 429.
    pub max_queue_depth: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "draas".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_tokens: Vec::new(),
            admin_tokens: Vec::new(),
            tokens: Vec::new(),
            quotas: QuotaSettings::default(),
            dev: false,
            data_dir: PathBuf::from(".draas"),
            default_platform: Platform::Process,
            log_format: LogFormat::Text,
            api: ApiSettings::default(),
            node_id: None,
            worker: WorkerSettings::default(),
            process: ProcessSettings::default(),
            docker: DockerSettings::default(),
            operations: OperationSettings::default(),
            reconcile: ReconcileSettings::default(),
            compat: CompatSettings::default(),
            kubernetes: KubernetesSettings::default(),
            logs: LogSettings::default(),
            network: NetworkSettings::default(),
            policy: PolicySettings::default(),
            secrets: SecretSettings::default(),
            shutdown_grace_secs: 10,
            verify_plugins: false,
        }
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1024 * 1024,
            request_timeout_secs: 90,
            header_timeout_secs: 10,
            max_page_size: 500,
            metrics_public: false,
            max_wait_secs: 60,
            max_streams: 256,
            heartbeat_secs: 15,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            poll_interval_ms: 100,
            max_attempts: 3,
            attempt_timeout_secs: 120,
            backoff_initial_ms: 500,
            backoff_max_ms: 30_000,
            lease_ttl_secs: 30,
            heartbeat_secs: 5,
            inject_panic: false,
            metrics_listen: None,
            exit_when_idle_secs: 0,
        }
    }
}

impl Default for ProcessSettings {
    fn default() -> Self {
        Self {
            executable: "drasi-server".into(),
            health_timeout_secs: 30,
            stop_signal: StopSignal::Sigint,
            stop_grace_secs: 10,
            log_max_bytes: 10 * 1024 * 1024,
            port_range_start: 8100,
            port_range_end: 8999,
            host: "127.0.0.1".into(),
            plugins_dir: None,
            env_allow: ["PATH", "LANG", "LC_ALL", "TZ"].map(String::from).to_vec(),
        }
    }
}

impl Default for OperationSettings {
    fn default() -> Self {
        Self { ttl_secs: 7 * 24 * 3600, max_queue_depth: 2000 }
    }
}

/// Settings that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings: {0}")]
    Config(#[from] config::ConfigError),
    #[error("invalid settings: {0}")]
    Invalid(String),
}

fn clean_tokens(tokens: &[SecretString]) -> Vec<SecretString> {
    tokens
        .iter()
        .map(|t| secrecy::ExposeSecret::expose_secret(t).trim().to_owned())
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .collect()
}

fn tokens_from_json(json: &str) -> Result<Vec<TokenSettings>, SettingsError> {
    serde_json::from_str(json).map_err(|e| {
        SettingsError::Invalid(format!("DRAAS_TOKENS must be a JSON array of {{name, role, sha256}}: {e}"))
    })
}

/// Environment variables of the public contract that do not follow `SECTION__KEY`.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("DRAAS_PROCESS_EXECUTABLE", "process.executable"),
    ("DRAAS_DOCKER_IMAGE", "docker.image"),
    ("DRAAS_KUBECONFIG", "kubernetes.kubeconfig"),
    ("DRAAS_KUBE_NAMESPACE", "kubernetes.namespace"),
];

impl Settings {
    /// Load settings from the config directory (`DRAAS_CONFIG_DIR`, else `deploy/config` when
    /// it exists) and the process environment.
    pub fn load() -> Result<Self, SettingsError> {
        let dir = std::env::var_os("DRAAS_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("deploy/config")).filter(|p| p.is_dir()));
        Self::load_from(dir.as_deref(), std::env::vars())
    }

    /// Load settings from an explicit directory and environment (used by tests).
    pub fn load_from(
        dir: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut env: std::collections::HashMap<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with("DRAAS_")).collect();
        // A list of objects does not fit `SECTION__KEY` variables: it comes as one JSON array.
        let tokens = env.remove("DRAAS_TOKENS").map(|json| tokens_from_json(&json)).transpose()?;
        let profile = env.get("DRAAS_ENV").map(String::as_str).unwrap_or("local");
        if profile.is_empty() || !profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SettingsError::Invalid(format!("DRAAS_ENV '{profile}' is not a profile name")));
        }
        let mut builder = config::Config::builder();
        if let Some(dir) = dir {
            builder = builder.add_source(config::File::from(dir.join("base.yaml")).required(false));
            builder = builder.add_source(config::File::from(dir.join(format!("{profile}.yaml"))).required(false));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("DRAAS")
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("api_tokens")
                .with_list_parse_key("admin_tokens")
                .with_list_parse_key("network.allowed_hosts")
                .with_list_parse_key("policy.images")
                .with_list_parse_key("secrets.keys")
                .with_list_parse_key("process.env_allow")
                .with_list_parse_key("kubernetes.plugins.kinds")
                .with_list_parse_key("kubernetes.plugins.copy_command")
                .with_list_parse_key("kubernetes.config_copy_command")
                .try_parsing(true)
                .source(Some(env.clone().into_iter().collect())),
        );
        for (var, key) in ENV_ALIASES {
            builder = builder.set_override_option(*key, env.get(*var).cloned())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        settings.api_tokens = clean_tokens(&settings.api_tokens);
        settings.admin_tokens = clean_tokens(&settings.admin_tokens);
        settings.secrets.keys = clean_tokens(&settings.secrets.keys);
        settings.process.env_allow.retain(|n| !n.trim().is_empty());
        if let Some(tokens) = tokens {
            settings.tokens = tokens;
        }
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), SettingsError> {
        crate::domain::ids::check_prefix(&self.key_prefix).map_err(SettingsError::Invalid)?;
        let i = self.reconcile.interval_secs;
        if !(i > 0 && (i < 60 && 60_u64.is_multiple_of(i) || i.is_multiple_of(60) && 60_u64.is_multiple_of(i / 60))) {
            return Err(SettingsError::Invalid(format!(
                "reconcile.interval_secs {i} must divide 60, or be a whole number of minutes dividing 60"
            )));
        }
        if self.process.port_range_start == 0 || self.process.port_range_start > self.process.port_range_end {
            return Err(SettingsError::Invalid("process port range is empty".into()));
        }
        self.kubernetes.check().map_err(SettingsError::Invalid)?;
        if self.docker.port_range_start == 0 || self.docker.port_range_start > self.docker.port_range_end {
            return Err(SettingsError::Invalid("docker port range is empty".into()));
        }
        if let Some(p) = self.policy.problems().into_iter().next() {
            return Err(SettingsError::Invalid(p));
        }
        self.secrets.vault().map_err(|e| SettingsError::Invalid(e.to_string()))?;
        if let Some(n) = self.process.env_allow.iter().find(|n| n.starts_with("DRAAS_") || n.contains(['=', '\0'])) {
            return Err(SettingsError::Invalid(format!(
                "process.env_allow names '{n}': draas' own DRAAS_* variables (tokens, the Redis URL) never reach a server"
            )));
        }
        self.token_entries()?;
        if self.api.heartbeat_secs == 0 {
            return Err(SettingsError::Invalid("api.heartbeat_secs must be at least 1".into()));
        }
        Ok(())
    }

    /// An API must authenticate: tokens, or explicit dev mode.
    pub fn require_auth(&self) -> Result<(), SettingsError> {
        if !self.dev && self.api_tokens.is_empty() && self.admin_tokens.is_empty() && self.tokens.is_empty() {
            return Err(SettingsError::Invalid(
                "no API tokens: set DRAAS_TOKENS or DRAAS_API_TOKENS, or DRAAS_DEV=true to run without authentication"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Every accepted token (`tokens`, then `api_tokens` and `admin_tokens`), with its quota.
    pub fn token_entries(&self) -> Result<Vec<tokens::TokenEntry>, SettingsError> {
        tokens::entries(&self.tokens, &self.api_tokens, &self.admin_tokens, &self.quotas)
            .map_err(SettingsError::Invalid)
    }

    /// This host's node id.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "localhost".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn committed_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config")
    }

    #[test]
    fn plugin_settings_default_as_documented_and_come_from_the_environment() {
        let defaults = Settings::load_from(Some(&committed_dir()), env(&[])).expect("settings");
        assert!(!defaults.verify_plugins, "the deployment's own plugins are trusted");
        assert_eq!((defaults.process.plugins_dir.as_ref(), defaults.docker.plugins_dir.as_ref()), (None, None));
        assert_eq!(defaults.docker.plugins_path, "/app/plugins");
        assert_eq!(defaults.kubernetes.plugins, KubePlugins::default(), "base.yaml says the built-in defaults");
        assert!(defaults.reconcile.component_health);
        let s = Settings::load_from(
            Some(&committed_dir()),
            env(&[
                ("DRAAS_PROCESS__PLUGINS_DIR", "/opt/drasi/plugins"),
                ("DRAAS_DOCKER__PLUGINS_DIR", "/srv/plugins"),
                ("DRAAS_VERIFY_PLUGINS", "true"),
                ("DRAAS_KUBERNETES__PLUGINS__IMAGE", "registry.example/plugins:0.2.2"),
                ("DRAAS_KUBERNETES__PLUGINS__KINDS", "source/postgres,reaction/log"),
            ]),
        )
        .expect("settings");
        assert_eq!(s.process.plugins_dir, Some(PathBuf::from("/opt/drasi/plugins")));
        assert_eq!(s.docker.plugins_dir, Some(PathBuf::from("/srv/plugins")));
        assert!(s.verify_plugins);
        assert_eq!(s.kubernetes.plugins.image.as_deref(), Some("registry.example/plugins:0.2.2"));
        assert_eq!(s.kubernetes.plugins.kinds, ["source/postgres", "reaction/log"]);
    }

    #[test]
    fn the_public_environment_contract_is_honoured_over_the_committed_files() {
        let s = Settings::load_from(
            Some(&committed_dir()),
            env(&[
                ("DRAAS_REDIS_URL", "redis://127.0.0.1:6390/0"),
                ("DRAAS_KEY_PREFIX", "fleet-a"),
                ("DRAAS_LISTEN", "0.0.0.0:9090"),
                ("DRAAS_API_TOKENS", "one, two,,three"),
                ("DRAAS_DATA_DIR", "/var/lib/draas"),
                ("DRAAS_NODE_ID", "node-7"),
                ("DRAAS_PROCESS_EXECUTABLE", "/opt/drasi/bin/drasi-server"),
                ("DRAAS_WORKER__CONCURRENCY", "3"),
                ("DRAAS_DOCKER_IMAGE", "registry.example/drasi-server:0.2.2"),
                ("DRAAS_DOCKER__IMAGE_POLICY", "never"),
                ("DRAAS_DOCKER__ENDPOINT", "tcp://docker.internal:2375"),
            ]),
        )
        .expect("settings");
        assert_eq!(
            s.redis_url.as_ref().map(|u| u.expose_secret().to_owned()).as_deref(),
            Some("redis://127.0.0.1:6390/0")
        );
        assert_eq!(s.key_prefix, "fleet-a");
        assert_eq!(s.listen.to_string(), "0.0.0.0:9090");
        let tokens: Vec<_> = s.api_tokens.iter().map(|t| t.expose_secret().to_owned()).collect();
        assert_eq!(tokens, ["one", "two", "three"]);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/draas"));
        assert_eq!(s.node_id(), "node-7");
        assert_eq!(s.process.executable, "/opt/drasi/bin/drasi-server");
        assert_eq!(s.worker.concurrency, 3);
        assert_eq!(s.docker.image, "registry.example/drasi-server:0.2.2");
        assert_eq!(s.docker.image_policy, ImagePolicy::Never);
        assert_eq!(s.docker.endpoint, "tcp://docker.internal:2375");
        assert!(!s.dev);
    }

    #[test]
    fn committed_files_load_and_match_the_built_in_defaults() {
        let s = Settings::load_from(Some(&committed_dir()), env(&[("DRAAS_DEV", "true")])).expect("settings");
        let d = Settings::default();
        assert!(s.dev);
        assert_eq!(s.listen, d.listen);
        assert_eq!(s.key_prefix, d.key_prefix);
        assert_eq!(s.process.port_range_start, d.process.port_range_start);
        assert_eq!(s.operations.ttl_secs, d.operations.ttl_secs);
        assert_eq!(s.api.request_timeout_secs, d.api.request_timeout_secs);
        assert_eq!(s.docker.image, d.docker.image);
        assert_eq!(s.docker.image_policy, d.docker.image_policy);
        assert_eq!(
            (s.docker.port_range_start, s.docker.port_range_end),
            (d.docker.port_range_start, d.docker.port_range_end)
        );
        assert_eq!(s.docker.enabled, d.docker.enabled);
    }

    #[test]
    fn kubernetes_access_comes_from_the_plain_environment_variables() {
        let s = Settings::load_from(
            Some(&committed_dir()),
            env(&[("DRAAS_KUBECONFIG", "/etc/draas/kubeconfig"), ("DRAAS_KUBE_NAMESPACE", "drasi-a")]),
        )
        .expect("settings");
        assert_eq!(s.kubernetes.kubeconfig, Some(PathBuf::from("/etc/draas/kubeconfig")));
        assert_eq!(s.kubernetes.namespace, "drasi-a");
        assert_eq!(Settings::default().kubernetes.namespace, "drasi-instances");
        assert!(Settings::load_from(None, env(&[("DRAAS_KUBE_NAMESPACE", "Not_A_Namespace")])).is_err());
    }

    #[test]
    fn secret_keys_and_the_env_allow_list_come_from_comma_separated_variables() {
        let (a, b) = (crate::vault::generate_key(), crate::vault::generate_key());
        let keys = format!("{}, {}", a.expose_secret(), b.expose_secret());
        let vars = [
            ("DRAAS_DEV", "true"),
            ("DRAAS_SECRETS__KEYS", keys.as_str()),
            ("DRAAS_PROCESS__ENV_ALLOW", "PATH,PGPORT"),
        ];
        let s = Settings::load_from(Some(&committed_dir()), env(&vars)).expect("settings");
        let got: Vec<_> = s.secrets.keys.iter().map(|k| k.expose_secret().to_owned()).collect();
        assert_eq!(got, [a.expose_secret(), b.expose_secret()]);
        assert_eq!(s.process.env_allow, ["PATH", "PGPORT"]);
        let d = Settings::load_from(Some(&committed_dir()), env(&[("DRAAS_DEV", "true")])).expect("settings");
        assert!(d.secrets.keys.is_empty() && d.process.env_allow == ["PATH", "LANG", "LC_ALL", "TZ"], "{d:?}");
        assert!(Settings::load_from(None, env(&[("DRAAS_DEV", "true"), ("DRAAS_SECRETS__KEYS", "c2hvcnQ=")])).is_err());
        let own = [("DRAAS_DEV", "true"), ("DRAAS_PROCESS__ENV_ALLOW", "PATH,DRAAS_REDIS_URL")];
        assert!(Settings::load_from(None, env(&own)).is_err(), "draas' own variables never reach a server");
    }

    #[test]
    fn named_tokens_come_as_a_json_array_and_quotas_as_sections() {
        let sha = hex::encode(tokens::digest(b"secret"));
        let json = format!(r#"[{{"name": "ci", "role": "read", "sha256": "{sha}", "ops_per_minute": 5}}]"#);
        let s = Settings::load_from(
            Some(&committed_dir()),
            env(&[("DRAAS_TOKENS", &json), ("DRAAS_QUOTAS__MAX_STREAMS", "2"), ("DRAAS_ADMIN_TOKENS", "boss")]),
        )
        .expect("settings");
        assert!(s.require_auth().is_ok());
        let entries = s.token_entries().expect("entries");
        let ci = &entries[0];
        assert_eq!((ci.name.as_str(), ci.role, ci.digest), ("ci", Role::Read, tokens::digest(b"secret")));
        assert_eq!(
            (ci.quota.ops_per_minute, ci.quota.max_streams, ci.quota.max_instances),
            (Some(5), Some(2), Some(1000))
        );
        assert_eq!((entries[1].name.as_str(), entries[1].role), ("admin-1", Role::Admin));
        let bad = Settings::load_from(None, env(&[("DRAAS_TOKENS", r#"[{"name": "ci"}]"#)])).expect_err("refused");
        assert!(bad.to_string().contains("DRAAS_TOKENS"), "{bad}");
    }

    #[test]
    fn missing_tokens_without_dev_mode_and_bad_prefixes_are_refused() {
        assert!(Settings::load_from(None, env(&[])).expect("settings").require_auth().is_err());
        assert!(Settings::load_from(None, env(&[("DRAAS_DEV", "true"), ("DRAAS_KEY_PREFIX", "a}b")])).is_err());
        assert!(Settings::load_from(None, env(&[("DRAAS_DEV", "true"), ("DRAAS_ENV", "../x")])).is_err());
    }
}
