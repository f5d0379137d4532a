//! Following an operation to its end: polls `GET /api/v1/operations/{id}?wait=1` (so an end is
//! seen at once), shows the status in a spinner when stderr is a terminal, and ends with a
//! success line or the operation's error.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::Ctx;
use super::input::duration;
use crate::client::{CliError, segment};
use crate::output::{self, Output};

/// Default limit of `--wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);

/// `--wait[=DURATION]` and `--timeout` of the lifecycle commands.
#[derive(Debug, Clone, Args)]
pub struct WaitArg {
    /// Wait for the operation to end, showing its status; optional limit, e.g. --wait 90s or
    /// --wait=90s [default: 5m].
    #[arg(long, num_args = 0..=1, value_name = "DURATION", value_parser = duration)]
    wait: Option<Option<Duration>>,
    /// Wait at most this long (90, 90s, 5m); implies --wait.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    timeout: Option<Duration>,
}

impl WaitArg {
    /// How long to wait, when asked to.
    pub fn limit(&self) -> Option<Duration> {
        match (self.timeout, self.wait) {
            (Some(t), _) => Some(t),
            (None, Some(w)) => Some(w.unwrap_or(DEFAULT_WAIT)),
            (None, None) => None,
        }
    }
}

/// Is the operation over?
pub fn is_final(op: &Value) -> bool {
    matches!(op["status"].as_str(), Some("succeeded" | "failed" | "superseded" | "cancelled"))
}

/// After a configuration write: with `--wait`, follow the `reconfigure` it started (none: the
/// instance does not run; the configuration applies at its next start).
pub async fn after_write(ctx: &Ctx, op: Option<String>, wait: &WaitArg, subject: &str) -> Result<(), CliError> {
    let (Some(limit), Some(op)) = (wait.limit(), op) else { return Ok(()) };
    let op = ctx.client.get(&format!("/api/v1/operations/{}", segment(&op)), &[]).await?;
    follow(ctx, op, limit, subject).await
}

/// Follow `op` until it ends or `limit` passes, then report it.
pub async fn follow(ctx: &Ctx, mut op: Value, limit: Duration, subject: &str) -> Result<(), CliError> {
    let spinner = Spinner::new();
    let deadline = Instant::now() + limit;
    let path = format!("/api/v1/operations/{}", segment(op["id"].as_str().unwrap_or_default()));
    while !is_final(&op) {
        spinner.show(&progress(&op, subject));
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            spinner.clear();
            return Err(CliError::Timeout(format!(
                "operation {} still {} after {}s; follow it with `draas op wait {}`",
                text(&op, "/id"),
                text(&op, "/status"),
                limit.as_secs(),
                text(&op, "/id")
            )));
        }
        op = ctx.client.get(&path, &[("wait", "1".to_owned())]).await.inspect_err(|_| spinner.clear())?;
    }
    spinner.clear();
    report(ctx.out, &op, subject)
}

/// The end of an operation: a success line (or the document with `-o json|yaml`), else its error.
pub fn report(out: Output, op: &Value, subject: &str) -> Result<(), CliError> {
    let id = text(op, "/id");
    match op["status"].as_str() {
        Some("succeeded") => {
            if out == Output::Table {
                let endpoint = op.pointer("/result/endpoint").and_then(Value::as_str);
                let at = endpoint.map(|e| format!(" at {e}")).unwrap_or_default();
                println!("{subject} {}{at} (operation {id})", past(&text(op, "/kind")));
            } else {
                output::document(out, op);
            }
            Ok(())
        }
        Some("failed") => {
            if out != Output::Table {
                output::document(out, op);
            }
            let code = op.pointer("/error/code").and_then(Value::as_str).unwrap_or("failed");
            let message = op.pointer("/error/message").and_then(Value::as_str).unwrap_or("the operation failed");
            let more = if op.pointer("/error/detail").is_some_and(|d| !d.is_null()) {
                format!("; details: draas op get {id} -o yaml")
            } else {
                String::new()
            };
            Err(CliError::OperationFailed {
                code: code.to_owned(),
                message: format!("{subject}: {message} (operation {id}{more})"),
            })
        }
        Some(status) => Err(CliError::OperationFailed {
            code: status.to_owned(),
            message: format!("{subject}: operation {id} was {status} before it finished (a newer request or a cancel)"),
        }),
        None => Err(CliError::Transport(format!("the answer is not an operation: {op}"))),
    }
}

fn progress(op: &Value, subject: &str) -> String {
    let status = text(op, "/status");
    let attempt = match (op["attempt"].as_u64(), op["maxAttempts"].as_u64()) {
        (Some(a), Some(m)) if a > 1 => format!(", attempt {a}/{m}"),
        _ => String::new(),
    };
    format!("{} {subject}: {status}{attempt}", text(op, "/kind"))
}

fn past(kind: &str) -> String {
    match kind {
        "start" => "started".to_owned(),
        "stop" => "stopped".to_owned(),
        "restart" => "restarted".to_owned(),
        "delete" => "deleted".to_owned(),
        "reconcile" => "reconciled".to_owned(),
        "reconfigure" => "reconfigured".to_owned(),
        other => format!("{other} succeeded"),
    }
}

fn text(op: &Value, ptr: &str) -> String {
    output::text(op, ptr)
}

/// A spinner on stderr, only when stderr is a terminal.
struct Spinner(Option<ProgressBar>);

impl Spinner {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    fn show(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.to_owned());
        }
    }

    fn clear(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
