//! `draas`: one binary. `draas api` serves the REST API, `draas up` runs everything on one
//! machine (with a private Redis when none is configured), `draas openapi` prints the spec, and
//! the client commands (`instance`, `config`, `op`, …) talk to a running API.

mod client;
mod cmd;
mod output;
mod token;
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
    /// Make an API token and its settings entry, or hash a token.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Print a shell completion script: `source <(draas completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(cmd::ClientCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let served = match cli.command {
        Command::Client(command) => return Ok(cmd::run(command).await),
        Command::Token(cmd) => token::run(cmd),
        Command::Openapi => {
            print!("{}", draas_api::openapi::json());
            Ok(())
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "draas",
                &mut std::io::stdout(),
            );
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
    let listener = bind_api(&settings).await?;
    serve_api(listener, settings, redis_url).await
}

/// Bind the API's listener (`listen`), saying where it listens (or why it cannot).
pub async fn bind_api(settings: &Settings) -> anyhow::Result<tokio::net::TcpListener> {
    settings.require_auth()?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    Ok(listener)
}

/// Serve the API on a bound `listener` until SIGINT or SIGTERM.
pub async fn serve_api(
    listener: tokio::net::TcpListener,
    settings: Settings,
    redis_url: &SecretString,
) -> anyhow::Result<()> {
    let store = Store::from_settings(redis_url, &settings)?;
    let state = AppState::new(store, settings);
    // Said once everything before it is in place (for `up`: its Redis and its `api-url`).
    tracing::info!(listen = %listener.local_addr()?, "API listening");
    draas_api::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Run a worker until SIGINT or SIGTERM.
pub async fn run_worker(settings: Settings, redis_url: &SecretString) -> anyhow::Result<()> {
    let store = Store::from_settings(redis_url, &settings)?;
    draas_workers::run(store, settings, shutdown_signal()).await?;
    Ok(())
}

/// Whether SIGINT or SIGTERM has arrived, for every part of the process that stops on it.
static STOP: std::sync::OnceLock<tokio::sync::watch::Receiver<bool>> = std::sync::OnceLock::new();

/// Listen for SIGINT and SIGTERM from now on (the handlers are in place before this returns,
/// so a signal that comes while the process still starts up is not missed), and once one
/// arrives, give the process `grace_secs` to stop by itself, then end it: a graceful stop may
/// wait on a Redis that is gone (apalis flushing acknowledgements, an operation reporting its
/// end), and a process asked to stop must stop. What it could not report is left to the
/// leases' expiry: another worker takes those jobs up.
pub fn bound_shutdown(grace_secs: u64) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    if STOP.set(rx).is_err() {
        return;
    }
    let (Ok(mut term), Ok(mut int)) = (
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    let grace = std::time::Duration::from_secs(grace_secs.max(1));
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::debug!("shutting down");
        let _ = tx.send(true);
        tokio::time::sleep(grace).await;
        tracing::warn!(grace_secs = grace.as_secs(), "still stopping after the shutdown grace; exiting now");
        up::stop_private_redis_now();
        std::process::exit(1);
    });
}

/// Resolves once SIGINT or SIGTERM arrived (see [`bound_shutdown`], which must run first).
pub async fn shutdown_signal() {
    match STOP.get() {
        Some(rx) => {
            let _ = rx.clone().wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}
