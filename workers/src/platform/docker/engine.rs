//! The connection to one Docker engine, and the one place that says what an engine error
//! means for an operation (retry or fail).
//!
//! Connecting does no I/O: the API version is negotiated on first use (the engine may be
//! older than bollard's default API version), and again after the engine was unreachable.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use bollard::errors::Error as DockerError;
use bollard::{API_DEFAULT_VERSION, Docker};
use draas_jobs::settings::DockerSettings;

use crate::platform::{ErrorCode, PlatformError};

/// Engine requests may take this long (a stop waits out its grace period).
const MIN_REQUEST_TIMEOUT_SECS: u64 = 120;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A client of the engine, version-negotiated on first use.
pub struct Engine {
    docker: Docker,
    negotiated: AtomicBool,
    /// What the last ping found: `UNKNOWN`, `UP` or `DOWN`.
    last_ping: AtomicU8,
    endpoint: String,
}

impl Engine {
    /// A client of the engine named by the settings (no I/O yet).
    pub fn connect(s: &DockerSettings) -> Result<Self, PlatformError> {
        let timeout = MIN_REQUEST_TIMEOUT_SECS.max(s.stop_grace_secs + 30);
        let endpoint = s.endpoint.trim();
        let tls = match (&s.tls_ca, &s.tls_cert, &s.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some((ca, cert, key)),
            (None, None, None) => None,
            _ => return Err(misconfigured("docker.tls_ca, tls_cert and tls_key must be given together")),
        };
        let docker = if let Some(path) = endpoint.strip_prefix("unix://") {
            Docker::connect_with_unix(path, timeout, API_DEFAULT_VERSION)
        } else if let Some((ca, cert, key)) = tls {
            Docker::connect_with_ssl(endpoint, key, cert, ca, timeout, API_DEFAULT_VERSION)
        } else if endpoint.starts_with("https://") {
            return Err(misconfigured("an https:// docker endpoint needs docker.tls_ca, tls_cert and tls_key"));
        } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
            Docker::connect_with_http(endpoint, timeout, API_DEFAULT_VERSION)
        } else {
            return Err(misconfigured(format!(
                "docker endpoint '{endpoint}' is not unix://, tcp://, http:// or https://"
            )));
        }
        .map_err(|e| misconfigured(format!("cannot set up the docker client for '{endpoint}': {e}")))?;
        Ok(Self {
            docker,
            negotiated: AtomicBool::new(false),
            last_ping: AtomicU8::new(UNKNOWN),
            endpoint: endpoint.to_owned(),
        })
    }

    /// The client, once the engine answered with its API version.
    pub async fn client(&self) -> Result<&Docker, PlatformError> {
        if !self.negotiated.load(Ordering::Acquire) {
            // The negotiated version is shared by every clone of the client.
            self.docker.clone().negotiate_version().await.map_err(|e| self.unavailable(&e))?;
            self.negotiated.store(true, Ordering::Release);
        }
        Ok(&self.docker)
    }

    /// Does the engine answer? A change either way is logged once (not on every pass).
    pub async fn ping(&self) -> Result<(), PlatformError> {
        let result = match self.client().await {
            Ok(docker) => docker.ping().await.map(|_| ()).map_err(|e| self.classify(e)),
            Err(e) => Err(e),
        };
        let now = if result.is_ok() { UP } else { DOWN };
        if self.last_ping.swap(now, Ordering::AcqRel) != now {
            match &result {
                Ok(()) => tracing::info!(endpoint = %self.endpoint, "docker engine answers"),
                // A host without Docker at all is not a fault (`draas up` on a laptop).
                Err(_) if self.endpoint.strip_prefix("unix://").is_some_and(|p| !std::path::Path::new(p).exists()) => {
                    tracing::info!(endpoint = %self.endpoint, "no docker engine on this host: the docker platform waits for one")
                }
                Err(e) => tracing::warn!(endpoint = %self.endpoint, error = %e, "docker engine does not answer"),
            }
        }
        result
    }

    /// What an engine error means: unreachable and server-side trouble are transient, a
    /// request the engine refuses (400) is permanent, a conflict (409) is retried.
    pub fn classify(&self, e: DockerError) -> PlatformError {
        match e {
            DockerError::DockerResponseServerError { status_code, message } => match status_code {
                400 => PlatformError::new(ErrorCode::DockerRejected, format!("the docker engine refused: {message}")),
                409 => PlatformError::new(ErrorCode::DockerConflict, format!("docker engine conflict: {message}")),
                _ => {
                    PlatformError::new(ErrorCode::DockerError, format!("docker engine error {status_code}: {message}"))
                }
            },
            e if is_transport(&e) => self.unavailable(&e),
            e => PlatformError::new(ErrorCode::DockerError, format!("docker engine error: {e}")),
        }
    }

    fn unavailable(&self, e: &DockerError) -> PlatformError {
        // Negotiate again once the engine is back (it may have been replaced by another version).
        self.negotiated.store(false, Ordering::Release);
        PlatformError::new(ErrorCode::DockerUnavailable, format!("docker engine at {} unreachable: {e}", self.endpoint))
    }
}

/// Errors of the connection rather than of the request.
pub fn is_transport(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
            | DockerError::APIVersionParseError {}
    )
}

/// Is this the engine's "no such container / image" answer?
pub fn is_not_found(e: &DockerError) -> bool {
    matches!(e, DockerError::DockerResponseServerError { status_code: 404, .. })
}

fn misconfigured(message: impl Into<String>) -> PlatformError {
    PlatformError::new(ErrorCode::DockerMisconfigured, message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn code(s: &DockerSettings) -> Option<&'static str> {
        Engine::connect(s).err().map(|e| e.code.as_str())
    }

    #[test]
    fn endpoints_are_checked_before_any_io() {
        let d = DockerSettings::default();
        assert_eq!(code(&d), None, "the local socket");
        assert_eq!(code(&DockerSettings { endpoint: "tcp://10.0.0.5:2375".into(), ..d.clone() }), None);
        let https = DockerSettings { endpoint: "https://10.0.0.5:2376".into(), ..d.clone() };
        assert_eq!(code(&https), Some("docker_misconfigured"), "TLS without certificates");
        let half = DockerSettings { tls_ca: Some("/ca.pem".into()), ..https };
        assert_eq!(code(&half), Some("docker_misconfigured"), "TLS files come together");
        assert_eq!(code(&DockerSettings { endpoint: "ssh://host".into(), ..d }), Some("docker_misconfigured"));
    }

    #[test]
    fn refusals_are_permanent_and_an_unreachable_engine_is_retried() {
        let engine = Engine::connect(&DockerSettings::default()).unwrap();
        let refused = DockerError::DockerResponseServerError { status_code: 400, message: "bad memory".into() };
        assert!(!engine.classify(refused).is_transient());
        let conflict = DockerError::DockerResponseServerError { status_code: 409, message: "in use".into() };
        assert!(engine.classify(conflict).is_transient());
        let gone = engine.classify(DockerError::SocketNotFoundError("/var/run/docker.sock".into()));
        assert_eq!(gone.code, ErrorCode::DockerUnavailable);
        assert!(gone.is_transient());
    }
}
