//! `draas history` and `draas events`: an instance's past transitions, and all transitions live
//! from the Server-Sent Events stream, reconnecting with `Last-Event-ID` so none is missed.

use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use reqwest::{Method, Response, header};
use serde_json::Value;

use super::Ctx;
use crate::client::sse::SseParser;
use crate::client::{CliError, ConnArgs, segment};
use crate::output::{self, Column, Output, text};

/// `draas history <instance>`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Instance id or name.
    pub instance: String,
}

/// `draas events [--instance]`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Only this instance's transitions (id or name).
    #[arg(long)]
    pub instance: Option<String>,
}

/// The server sends a keep-alive every 15 s: this long without a byte means the link is dead.
const IDLE: Duration = Duration::from_secs(45);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const COLUMNS: &[Column] = &[
    Column { header: "AGE", cell: |c| output::age(c, "/at") },
    Column { header: "AT", cell: |c| text(c, "/at") },
    Column { header: "FROM", cell: |c| text(c, "/from") },
    Column { header: "TO", cell: |c| text(c, "/to") },
    Column { header: "SOURCE", cell: |c| text(c, "/source") },
    Column { header: "REASON", cell: |c| text(c, "/reason") },
    Column { header: "BY", cell: |c| text(c, "/requestedBy") },
];

/// Print an instance's transitions, newest first.
pub async fn history(ctx: &Ctx, instance: &str) -> Result<(), CliError> {
    let id = ctx.client.instance_id(instance).await?;
    let page = ctx.client.get(&format!("/api/v1/instances/{}/history", segment(&id)), &[]).await?;
    output::list(ctx.out, page["items"].as_array().map_or(&[][..], Vec::as_slice), COLUMNS);
    Ok(())
}

/// Follow the event stream until interrupted. The first connection must succeed; later ones
/// are retried with backoff, resuming after the last event printed.
pub async fn events(ctx: &Ctx, instance: Option<&str>) -> Result<(), CliError> {
    let filter = match instance {
        Some(i) => Some(ctx.client.instance_id(i).await?),
        None => None,
    };
    let mut last_id: Option<String> = None;
    let mut res = connect(ctx, filter.as_deref(), None).await?;
    let mut names = ctx.client.names().await.unwrap_or_default();
    loop {
        let why = pump(ctx, res, &mut last_id, &mut names).await;
        eprintln!("events: {why}; reconnecting");
        res = reconnect(ctx, filter.as_deref(), last_id.as_deref()).await?;
    }
}

async fn connect(ctx: &Ctx, filter: Option<&str>, last_id: Option<&str>) -> Result<Response, CliError> {
    let mut rb = ctx.client.request(Method::GET, "/api/v1/events").header(header::ACCEPT, "text/event-stream");
    if let Some(f) = filter {
        rb = rb.query(&[("instance", f)]);
    }
    if let Some(id) = last_id {
        rb = rb.header("Last-Event-ID", id);
    }
    ctx.client.send(rb).await
}

async fn reconnect(ctx: &Ctx, filter: Option<&str>, last_id: Option<&str>) -> Result<Response, CliError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(ctx, filter, last_id).await {
            Err(CliError::Transport(why)) => {
                eprintln!("events: {why}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            other => return other,
        }
    }
}

/// Print the events of one connection until it ends; why it ended.
async fn pump(
    ctx: &Ctx,
    res: Response,
    last_id: &mut Option<String>,
    names: &mut std::collections::HashMap<String, String>,
) -> String {
    let mut parser = SseParser::default();
    let mut body = res.bytes_stream();
    loop {
        let chunk = match tokio::time::timeout(IDLE, body.next()).await {
            Err(_) => return format!("nothing received for {} s", IDLE.as_secs()),
            Ok(None) => return "the server closed the stream".to_owned(),
            Ok(Some(Err(e))) => return format!("stream broken: {}", crate::client::error::chain(&e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        for event in parser.feed(&chunk) {
            if event.id.is_some() {
                last_id.clone_from(&event.id);
            }
            if event.event == "status" {
                let change: Value =
                    serde_json::from_str(&event.data).unwrap_or_else(|_| Value::String(event.data.clone()));
                let id = text(&change, "/instanceId");
                if ctx.out == Output::Table && !names.contains_key(&id) {
                    // An instance created since the stream opened (or one gone: its id stands).
                    let name = ctx.client.instance(&id).await.map(|i| text(&i, "/name")).unwrap_or_default();
                    names.insert(id.clone(), name);
                }
                print_event(ctx.out, &change, names.get(&id).map_or("", String::as_str));
            }
        }
    }
}

fn print_event(out: Output, change: &Value, name: &str) {
    match out {
        Output::Json => println!("{change}"),
        Output::Yaml => print!("---\n{}", output::yaml(change)),
        Output::Table => println!(
            "{}  {} ({})  {} -> {}  source={} reason={}",
            text(change, "/at"),
            if name.is_empty() { "?" } else { name },
            text(change, "/instanceId"),
            text(change, "/from"),
            text(change, "/to"),
            text(change, "/source"),
            text(change, "/reason"),
        ),
    }
}
