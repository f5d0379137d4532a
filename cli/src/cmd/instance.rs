//! `draas instance`: create, list, get, and the lifecycle (start, stop, restart, delete), which
//! submit an operation and with `--wait` follow it to its end.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::follow::{WaitArg, follow, report};
use super::{Ctx, input};
use crate::client::{Body, CliError, segment};
use crate::output::{self, Column, Output, text};

/// `draas instance …`.
#[derive(Debug, Subcommand)]
pub enum InstanceCmd {
    /// Create an instance (stopped), with its drasi-server configuration from a file.
    Create {
        /// Unique name: 1-63 characters of [a-z0-9-].
        name: String,
        /// drasi-server configuration, YAML or JSON (`-` for stdin) [default: empty].
        #[arg(short = 'f', long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
        /// process, docker or kubernetes [default: the server's].
        #[arg(long)]
        platform: Option<String>,
    },
    /// List instances, oldest first.
    List {
        /// Only instances with this status (created, starting, running, stopping, stopped, error, unknown).
        #[arg(long)]
        status: Option<String>,
        /// Only instances on this platform.
        #[arg(long)]
        platform: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show an instance (by id or name).
    Get { instance: String },
    /// Start an instance.
    Start(Lifecycle),
    /// Stop an instance.
    Stop(Lifecycle),
    /// Restart an instance with its stored configuration.
    Restart(Lifecycle),
    /// Delete an instance: stop it and remove its files, port and records.
    Delete(Lifecycle),
}

/// An instance and `--wait`.
#[derive(Debug, Args)]
pub struct Lifecycle {
    /// Instance id or name.
    instance: String,
    #[command(flatten)]
    wait: WaitArg,
}

const COLUMNS: &[Column] = &[
    Column { header: "ID", cell: |i| text(i, "/id") },
    Column { header: "NAME", cell: |i| text(i, "/name") },
    Column { header: "PLATFORM", cell: |i| text(i, "/platform") },
    Column { header: "STATUS", cell: |i| text(i, "/status") },
    Column { header: "DESIRED", cell: |i| text(i, "/desiredState") },
    Column { header: "MESSAGE", cell: |i| text(i, "/statusMessage") },
];

/// Run `draas instance …`.
pub async fn run(ctx: &Ctx, cmd: InstanceCmd) -> Result<(), CliError> {
    match cmd {
        InstanceCmd::Create { name, file, description, platform } => {
            create(ctx, name, file, description, platform).await
        }
        InstanceCmd::List { status, platform, limit } => list(ctx, status, platform, limit).await,
        InstanceCmd::Get { instance } => {
            output::resource(ctx.out, &ctx.client.instance(&instance).await?);
            Ok(())
        }
        InstanceCmd::Start(a) => lifecycle(ctx, Method::POST, "start", a).await,
        InstanceCmd::Stop(a) => lifecycle(ctx, Method::POST, "stop", a).await,
        InstanceCmd::Restart(a) => lifecycle(ctx, Method::POST, "restart", a).await,
        InstanceCmd::Delete(a) => lifecycle(ctx, Method::DELETE, "", a).await,
    }
}

async fn create(
    ctx: &Ctx,
    name: String,
    file: Option<PathBuf>,
    description: Option<String>,
    platform: Option<String>,
) -> Result<(), CliError> {
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    if let Some(path) = file {
        body.insert("config".into(), input::document(&path)?);
    }
    body.extend(description.map(|d| ("description".to_owned(), json!(d))));
    body.extend(platform.map(|p| ("platform".to_owned(), json!(p))));
    let created =
        ctx.client.call(Method::POST, "/api/v1/instances", &[], Some(Body::Json(Value::Object(body)))).await?;
    match ctx.out {
        Output::Table => println!("instance {} created (id {})", text(&created, "/name"), text(&created, "/id")),
        out => output::document(out, &created),
    }
    Ok(())
}

async fn list(
    ctx: &Ctx,
    status: Option<String>,
    platform: Option<String>,
    limit: Option<usize>,
) -> Result<(), CliError> {
    let mut items: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(500, |l| l.saturating_sub(items.len()).clamp(1, 500));
        let mut query = vec![("limit", want.to_string())];
        query.extend(status.clone().map(|s| ("status", s)));
        query.extend(platform.clone().map(|p| ("platform", p)));
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page = ctx.client.get("/api/v1/instances", &query).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(c) if limit.is_none_or(|l| items.len() < l) => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    output::list(ctx.out, &items, COLUMNS);
    Ok(())
}

/// Submit `action` (empty: DELETE of the instance itself); with `--wait`, follow it.
async fn lifecycle(ctx: &Ctx, method: Method, action: &str, args: Lifecycle) -> Result<(), CliError> {
    let instance = ctx.client.instance(&args.instance).await?;
    let id = text(&instance, "/id");
    let path = match action {
        "" => format!("/api/v1/instances/{}", segment(&id)),
        action => format!("/api/v1/instances/{}/{action}", segment(&id)),
    };
    let op = ctx.client.call(method, &path, &[], None).await?;
    let subject = format!("instance {}", text(&instance, "/name"));
    match args.wait.limit() {
        Some(limit) => follow(ctx, op, limit, &subject).await,
        None if super::follow::is_final(&op) => report(ctx.out, &op, &subject),
        None => {
            match ctx.out {
                Output::Table => println!(
                    "{} of {subject} submitted: operation {} is {}; follow it with `draas op wait {}`",
                    text(&op, "/kind"),
                    text(&op, "/id"),
                    text(&op, "/status"),
                    text(&op, "/id")
                ),
                out => output::document(out, &op),
            }
            Ok(())
        }
    }
}
