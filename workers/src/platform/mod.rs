//! Platforms run drasi-server somewhere. Each is level-triggered: `start` adopts a matching
//! running server instead of starting a second one; `stop` and `delete` of something already
//! gone succeed.

pub mod process;

use serde_json::{Map, Value};

/// What a platform needs to start an instance.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub instance_id: draas_jobs::ids::InstanceId,
    /// The exact YAML drasi-server gets.
    pub yaml: String,
    pub spec_hash: String,
    /// Address and port the server binds (and is probed on).
    pub host: String,
    pub port: u16,
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
        )
    }
}
