//! `draas op`: operations (what start, stop, restart, delete and reconcile requests became):
//! read one, wait for one to end, list them, cancel a queued one.

use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;

use super::Ctx;
use super::follow::{follow, is_final, report};
use super::input::duration;
use crate::client::{CliError, segment};
use crate::output::{self, Column, text};

/// `draas op …`.
#[derive(Debug, Subcommand)]
pub enum OpCmd {
    /// Show an operation.
    Get { id: String },
    /// Wait for an operation to end; exit 0 only when it succeeded.
    Wait {
        id: String,
        /// Give up after (90, 90s, 5m).
        #[arg(long, default_value = "5m", value_parser = duration, value_name = "DURATION")]
        timeout: Duration,
    },
    /// List operations, newest first.
    List {
        /// Only this instance's (id or name).
        #[arg(long)]
        instance: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancel a queued operation (its instance's desired state goes back).
    Cancel { id: String },
}

const COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |o| text(o, "/id") },
    Column { header: "KIND", cell: |o| text(o, "/kind") },
    Column { header: "INSTANCE", cell: |o| text(o, "/instanceName") },
    Column { header: "STATUS", cell: |o| text(o, "/status") },
    Column { header: "ATTEMPT", cell: |o| format!("{}/{}", text(o, "/attempt"), text(o, "/maxAttempts")) },
    Column { header: "REASON", cell: |o| text(o, "/reason") },
    Column { header: "BY", cell: |o| text(o, "/requestedBy") },
    Column { header: "ERROR", cell: |o| text(o, "/error/code") },
    Column { header: "AGE", cell: |o| output::age(o, "/createdAt") },
];

/// Run `draas op …`.
pub async fn run(ctx: &Ctx, cmd: OpCmd) -> Result<(), CliError> {
    match cmd {
        OpCmd::Get { id } => output::resource(ctx.out, &ctx.client.get(&op_path(&id), &[]).await?),
        OpCmd::Wait { id, timeout } => {
            let op = ctx.client.get(&op_path(&id), &[]).await?;
            let subject = match op["instanceId"].as_str() {
                Some(instance) => format!("instance {instance}"),
                None => "every instance".to_owned(),
            };
            return if is_final(&op) {
                report(ctx.out, &op, &subject)
            } else {
                follow(ctx, op, timeout, &subject).await
            };
        }
        OpCmd::List { instance, limit } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(i) = instance {
                // A deleted instance's operations are still listed: fall back to the raw id.
                let id = match ctx.client.instance_id(&i).await {
                    Err(CliError::Api { status: 404, .. }) => i,
                    other => other?,
                };
                query.push(("instance", id));
            }
            let page = ctx.client.get("/api/v1/operations", &query).await?;
            let mut items = page["items"].as_array().cloned().unwrap_or_default();
            if ctx.out == output::Output::Table {
                with_names(&ctx.client.names().await?, &mut items);
            }
            output::list(ctx.out, &items, COLUMNS);
        }
        OpCmd::Cancel { id } => {
            let path = format!("{}/cancel", op_path(&id));
            output::resource(ctx.out, &ctx.client.call(Method::POST, &path, &[], None).await?);
        }
    }
    Ok(())
}

/// Put each operation's instance name beside its id (`instanceName`; the id itself for an
/// instance that is gone, `*` for a reconcile of every instance).
pub fn with_names(names: &std::collections::HashMap<String, String>, ops: &mut [serde_json::Value]) {
    for op in ops {
        let name = match op["instanceId"].as_str() {
            Some(id) => names.get(id).map_or_else(|| id.to_owned(), |n| format!("{n} ({id})")),
            None => "*".to_owned(),
        };
        op["instanceName"] = serde_json::Value::String(name);
    }
}

fn op_path(id: &str) -> String {
    format!("/api/v1/operations/{}", segment(id))
}
