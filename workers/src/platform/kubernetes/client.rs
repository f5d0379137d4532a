//! Reaching the Kubernetes API: the client from a kubeconfig (path and context from settings)
//! or the pod's own service account, and the one function that turns API failures into
//! platform errors.

use std::time::Duration;

use draas_jobs::settings::KubernetesSettings;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::platform::{ErrorCode, PlatformError};

/// Longest wait for one API answer: a hung API server must not hold a job until its timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the cluster the settings name. Nothing is asked of the API server yet, so an
/// unreachable cluster shows only when a job uses it.
pub async fn connect(settings: &KubernetesSettings) -> Result<Client, PlatformError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        PlatformError::new(ErrorCode::PlatformUnavailable, format!("kubernetes: {what}: {e}"))
    };
    let mut config = match &settings.kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| unavailable(&format!("cannot read kubeconfig {}", path.display()), &e))?;
            let options = KubeConfigOptions { context: settings.context.clone(), ..KubeConfigOptions::default() };
            Config::from_custom_kubeconfig(file, &options).await.map_err(|e| unavailable("invalid kubeconfig", &e))?
        }
        None => Config::incluster().map_err(|e| unavailable("no kubeconfig and not in a cluster", &e))?,
    };
    config.read_timeout = Some(READ_TIMEOUT);
    Client::try_from(config).map_err(|e| unavailable("cannot build a client", &e))
}

/// The one place a Kubernetes API failure becomes a platform error: refusals (authentication,
/// RBAC, invalid objects, a missing namespace) are permanent, the rest is retried.
pub fn api_error(what: &str, e: kube::Error) -> PlatformError {
    match e {
        kube::Error::Api(s) => {
            let code = match s.code {
                401 => ErrorCode::KubeUnauthorized,
                403 => ErrorCode::KubeForbidden,
                400 | 422 => ErrorCode::KubeInvalid,
                404 => ErrorCode::KubeNotFound,
                409 => ErrorCode::KubeConflict,
                _ => ErrorCode::KubeApiError,
            };
            PlatformError::new(code, format!("{what}: {} ({} {})", s.message, s.code, s.reason))
        }
        other => PlatformError::new(
            ErrorCode::KubeUnreachable,
            format!("{what}: the Kubernetes API is unreachable: {other}"),
        ),
    }
}

/// Is this the API's "not found"?
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}
