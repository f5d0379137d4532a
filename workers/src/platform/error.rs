//! Why an action on a platform failed: a stable code (its wire string is what clients see in
//! an operation's `error.code`), a message, and context such as a log tail. Whether a failure
//! is worth another attempt is decided in one place, [`ErrorCode::is_transient`].

/// Every way an action can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    // The server itself.
    ExecutableNotFound,
    SpawnFailed,
    ConfigRejected,
    PluginMissing,
    ValidateTimeout,
    CrashedOnStart,
    HealthTimeout,
    IoError,
    RenderFailed,
    // Ports.
    PortTaken,
    PortsExhausted,
    // Platforms in general.
    PlatformUnavailable,
    InvalidHandle,
    // Docker.
    DockerUnavailable,
    DockerMisconfigured,
    DockerRejected,
    DockerConflict,
    DockerError,
    ImageMissing,
    ImagePullFailed,
    // Kubernetes.
    KubeUnreachable,
    KubeUnauthorized,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeConflict,
    KubeApiError,
    KubeTimeout,
    StartTimeout,
    RolloutStalled,
    CrashLoop,
    OomKilled,
    ContainerConfigError,
    // The job itself.
    AttemptTimeout,
    Panicked,
    StoreUnavailable,
    LeaseLost,
    Superseded,
    InstanceNotFound,
    NodeLost,
    UnsupportedJob,
    RecordCorrupt,
    /// The instance's secrets cannot be opened (no key configured, or not the key they were
    /// sealed with).
    SecretsUnavailable,
}

impl ErrorCode {
    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExecutableNotFound => "executable_not_found",
            Self::SpawnFailed => "spawn_failed",
            Self::ConfigRejected => "config_rejected",
            Self::PluginMissing => "plugin_missing",
            Self::ValidateTimeout => "validate_timeout",
            Self::CrashedOnStart => "crashed_on_start",
            Self::HealthTimeout => "health_timeout",
            Self::IoError => "io_error",
            Self::RenderFailed => "render_failed",
            Self::PortTaken => "port_taken",
            Self::PortsExhausted => "ports_exhausted",
            Self::PlatformUnavailable => "platform_unavailable",
            Self::InvalidHandle => "invalid_handle",
            Self::DockerUnavailable => "docker_unavailable",
            Self::DockerMisconfigured => "docker_misconfigured",
            Self::DockerRejected => "docker_rejected",
            Self::DockerConflict => "docker_conflict",
            Self::DockerError => "docker_error",
            Self::ImageMissing => "image_missing",
            Self::ImagePullFailed => "image_pull_failed",
            Self::KubeUnreachable => "kube_unreachable",
            Self::KubeUnauthorized => "kube_unauthorized",
            Self::KubeForbidden => "kube_forbidden",
            Self::KubeInvalid => "kube_invalid",
            Self::KubeNotFound => "kube_not_found",
            Self::KubeConflict => "kube_conflict",
            Self::KubeApiError => "kube_api_error",
            Self::KubeTimeout => "kube_timeout",
            Self::StartTimeout => "start_timeout",
            Self::RolloutStalled => "rollout_stalled",
            Self::CrashLoop => "crash_loop",
            Self::OomKilled => "oom_killed",
            Self::ContainerConfigError => "container_config_error",
            Self::AttemptTimeout => "attempt_timeout",
            Self::Panicked => "panicked",
            Self::StoreUnavailable => "store_unavailable",
            Self::LeaseLost => "lease_lost",
            Self::Superseded => "superseded",
            Self::InstanceNotFound => "instance_not_found",
            Self::NodeLost => "node_lost",
            Self::UnsupportedJob => "unsupported_job",
            Self::RecordCorrupt => "record_corrupt",
            Self::SecretsUnavailable => "secrets_unavailable",
        }
    }

    /// The one place that decides: is trying again worth it? A permanent failure ends the
    /// operation at once; a transient one is retried with backoff up to the attempt cap.
    pub fn is_transient(self) -> bool {
        match self {
            // Outages and races that pass: the engine, the API server or Redis comes back, a
            // slow server answers next time, a conflicting write is gone.
            Self::SpawnFailed
            | Self::ValidateTimeout
            | Self::CrashedOnStart
            | Self::HealthTimeout
            | Self::IoError
            | Self::DockerUnavailable
            | Self::DockerConflict
            | Self::DockerError
            | Self::KubeUnreachable
            | Self::KubeConflict
            | Self::KubeApiError
            | Self::KubeTimeout
            | Self::StartTimeout
            | Self::RolloutStalled
            | Self::AttemptTimeout
            | Self::Panicked
            | Self::StoreUnavailable => true,
            // What another attempt would only repeat: a missing executable or image, a
            // configuration the server or the platform refuses, no port, no permission, an
            // instance that is gone or belongs elsewhere, a newer operation.
            Self::ExecutableNotFound
            | Self::ConfigRejected
            | Self::PluginMissing
            | Self::RenderFailed
            | Self::PortTaken
            | Self::PortsExhausted
            | Self::PlatformUnavailable
            | Self::InvalidHandle
            | Self::DockerMisconfigured
            | Self::DockerRejected
            | Self::ImageMissing
            | Self::ImagePullFailed
            | Self::KubeUnauthorized
            | Self::KubeForbidden
            | Self::KubeInvalid
            | Self::KubeNotFound
            | Self::CrashLoop
            | Self::SecretsUnavailable
            | Self::OomKilled
            | Self::ContainerConfigError
            | Self::LeaseLost
            | Self::Superseded
            | Self::InstanceNotFound
            | Self::NodeLost
            | Self::UnsupportedJob
            | Self::RecordCorrupt => false,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A platform failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PlatformError {
    pub code: ErrorCode,
    pub message: String,
    /// Context such as the tail of the server's log (plain text: no colour codes).
    pub detail: Option<String>,
    /// JSON pointer into the instance's configuration, when one field is at fault.
    pub pointer: Option<String>,
    /// The failure came from checking a configuration before anything changed: what ran
    /// before still runs.
    pub before_change: bool,
    /// What caused it, when it was an error of ours (a store failure, an I/O error).
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PlatformError {
    /// A failure with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: draas_jobs::domain::text::plain(&message.into()),
            detail: None,
            pointer: None,
            before_change: false,
            source: None,
        }
    }

    /// Attach detail (a log tail), without colour codes.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let d = draas_jobs::domain::text::plain(&detail.into());
        self.detail = (!d.trim().is_empty()).then_some(d);
        self
    }

    /// Point at the configuration field at fault.
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// Say the failure came from a check before anything changed.
    pub fn before_change(mut self) -> Self {
        self.before_change = true;
        self
    }

    /// Attach the error that caused this one.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Is trying again worth it?
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }
}

impl From<draas_jobs::store::StoreError> for PlatformError {
    fn from(e: draas_jobs::store::StoreError) -> Self {
        Self::new(ErrorCode::StoreUnavailable, e.to_string()).caused_by(e)
    }
}

impl PlatformError {
    /// This error with every known secret value masked in its message and detail.
    pub fn masked(mut self, masker: &draas_jobs::domain::secrets::Masker) -> Self {
        if !masker.is_empty() {
            self.message = masker.mask(&self.message);
            self.detail = self.detail.map(|d| masker.mask(&d));
        }
        self
    }
}

impl From<&PlatformError> for draas_jobs::domain::operation::OperationError {
    fn from(e: &PlatformError) -> Self {
        Self {
            code: e.code.as_str().to_owned(),
            message: e.message.clone(),
            detail: e.detail.clone(),
            pointer: e.pointer.clone(),
        }
    }
}
