//! Where the client connects and with which token: flags, then the environment
//! (`DRAAS_SERVER`, `DRAAS_TOKEN`), then a settings file, then what `draas up` left behind.

use std::path::{Path, PathBuf};

use clap::Args;
use secrecy::SecretString;
use serde::Deserialize;

use super::error::CliError;
use crate::output::Output;

/// `draas up`'s default address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Connection and output flags shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Base URL of the draas API [default: from the settings file, else http://127.0.0.1:8080].
    #[arg(long, global = true, env = "DRAAS_SERVER", hide_env_values = true, value_name = "URL")]
    pub server: Option<String>,
    /// Bearer token [default: from the settings file, else ./.draas/api-token as `draas up` writes it].
    #[arg(long, global = true, env = "DRAAS_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Client settings file (YAML: `server:`, `token:`) [default: $XDG_CONFIG_HOME/draas/config.yaml,
    /// else ~/.config/draas/config.yaml].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// The client settings file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    server: Option<String>,
    token: Option<String>,
}

/// Where to connect, resolved.
#[derive(Debug)]
pub struct Connection {
    /// Base URL without a trailing slash.
    pub server: String,
    pub token: Option<SecretString>,
}

impl ConnArgs {
    /// Resolve server and token: flag or environment, then the settings file, then defaults.
    pub fn resolve(&self) -> Result<Connection, CliError> {
        let file = match &self.config {
            Some(path) => read_settings(path)?,
            None => default_settings_path()
                .filter(|p| p.is_file())
                .map(|p| read_settings(&p))
                .transpose()?
                .unwrap_or_default(),
        };
        let server = non_empty(self.server.clone())
            .or(non_empty(file.server))
            .or_else(up_url)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        if !server.starts_with("http://") {
            return Err(CliError::Usage(format!(
                "server must be an http:// URL (this build speaks plain HTTP), got '{server}'"
            )));
        }
        let token = non_empty(self.token.clone()).or(non_empty(file.token)).or_else(up_token);
        Ok(Connection { server: server.trim_end_matches('/').to_owned(), token: token.map(SecretString::from) })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn read_settings(path: &Path) -> Result<SettingsFile, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read settings file {}: {e}", path.display())))?;
    if text.trim().is_empty() {
        return Ok(SettingsFile::default());
    }
    serde_norway::from_str(&text)
        .map_err(|e| CliError::Usage(format!("settings file {} is not valid: {e}", path.display())))
}

/// `$XDG_CONFIG_HOME/draas/config.yaml`, else `~/.config/draas/config.yaml`.
fn default_settings_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("draas").join("config.yaml"))
}

/// The token `draas up` generated: `<data dir>/api-token` (`DRAAS_DATA_DIR`, default `.draas`).
fn up_token() -> Option<String> {
    non_empty(std::fs::read_to_string(up_dir().join("api-token")).ok())
}

/// Where a running `draas up` listens: `<data dir>/api-url`, written while it runs.
fn up_url() -> Option<String> {
    non_empty(std::fs::read_to_string(up_dir().join("api-url")).ok())
}

fn up_dir() -> PathBuf {
    std::env::var_os("DRAAS_DATA_DIR").map_or_else(|| PathBuf::from(".draas"), PathBuf::from)
}
