//! `draas`: one binary. `draas api` serves the REST API, `draas up` runs everything on one
//! machine (with a private Redis when none is configured), `draas openapi` prints the spec, and
//! the client commands (`instance`, `config`, `op`, …) talk to a running API.

mod client;
mod cmd;
mod output;
mod up;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use draas_api::AppState;
use draas_jobs::settings::Settings;
use draas_jobs::store::Store;
use secrecy::SecretString;

#[derive(Parser)]
#[command(name = "draas", version, about = "Drasi Server as a Service", after_help = cmd::EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API (needs DRAAS_REDIS_URL).
    Api,
    /// Run jobs: start, stop, restart and delete instances (needs DRAAS_REDIS_URL).
    Worker,
    /// All-in-one: API and worker on this machine, with a private redis-server when DRAAS_REDIS_URL is unset.
    Up,
    /// Print the OpenAPI document.
    Openapi,
    #[command(flatten)]
    Client(cmd::ClientCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let served = match cli.command {
        Command::Client(command) => return Ok(cmd::run(command).await),
        Command::Openapi => {
            print!("{}", draas_api::openapi::json());
            Ok(())
        }
        Command::Api => {
            let settings = Settings::load()?;
            draas_jobs::telemetry::init(settings.log_format);
            bound_shutdown(settings.shutdown_grace_secs);
            let url = settings.redis_url.clone().context("DRAAS_REDIS_URL is not set")?;
            run_api(settings, &url).await
        }
        Command::Worker => {
            let settings = Settings::load()?;
            draas_jobs::telemetry::init(settings.log_format);
            bound_shutdown(settings.shutdown_grace_secs);
            let url = settings.redis_url.clone().context("DRAAS_REDIS_URL is not set")?;
            run_worker(settings, &url).await
        }
        Command::Up => up::run().await,
    };
    served.map(|()| ExitCode::SUCCESS)
}

/// Serve the API until SIGINT or SIGTERM.
pub async fn run_api(settings: Settings, redis_url: &SecretString) -> anyhow::Result<()> {
    settings.require_auth()?;
    let store = Store::from_settings(redis_url, &settings)?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    let state = AppState::new(store, settings);
    draas_api::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Run a worker until SIGINT or SIGTERM.
pub async fn run_worker(settings: Settings, redis_url: &SecretString) -> anyhow::Result<()> {
    let store = Store::from_settings(redis_url, &settings)?;
    draas_workers::run(store, settings, shutdown_signal()).await?;
    Ok(())
}

/// Once SIGINT or SIGTERM arrives, give the process `grace_secs` to stop by itself, then end
/// it: a graceful stop may wait on a Redis that is gone (apalis flushing acknowledgements,
/// an operation reporting its end), and a process asked to stop must stop. What it could not
/// report is left to the leases' expiry: another worker takes those jobs up.
pub fn bound_shutdown(grace_secs: u64) {
    let grace = std::time::Duration::from_secs(grace_secs.max(1));
    tokio::spawn(async move {
        shutdown_signal().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(grace_secs = grace.as_secs(), "still stopping after the shutdown grace; exiting now");
        up::stop_private_redis_now();
        std::process::exit(1);
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::debug!("shutting down");
}
