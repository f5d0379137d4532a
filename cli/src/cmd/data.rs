//! `draas results` and `draas logs`: what an instance computes and what its server says, read
//! through draas.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use reqwest::{Method, Response, header};
use serde_json::Value;

use super::Ctx;
use super::input::duration;
use crate::client::sse::SseParser;
use crate::client::{CliError, ConnArgs, error, segment};
use crate::output::{self, Output};

/// `draas results <instance> <query>`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Instance id or name.
    pub instance: String,
    /// Query id.
    pub query: String,
    /// Keep watching: the rows, then every change as it happens (redrawn on a terminal).
    #[arg(short, long)]
    pub watch: bool,
    /// With --watch: stop watching after this long (90, 90s, 5m) [default: until the instance stops or Ctrl-C].
    #[arg(long = "for", value_name = "DURATION", value_parser = duration, requires = "watch")]
    pub watch_for: Option<Duration>,
}

/// `draas logs <instance>`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Instance id or name.
    pub instance: String,
    /// Keep following: new lines as the server writes them, until it stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Lines to show first.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
}

/// Print the query's current rows; with `--watch`, follow its changes.
pub async fn results(ctx: &Ctx, a: &ResultsArgs) -> Result<(), CliError> {
    let id = ctx.client.instance_id(&a.instance).await?;
    let base = format!("/api/v1/instances/{}/queries/{}", segment(&id), segment(&a.query));
    if !a.watch {
        let body = ctx.client.get(&format!("{base}/results"), &[]).await?;
        output::rows(ctx.out, body["rows"].as_array().map_or(&[][..], Vec::as_slice));
        return Ok(());
    }
    let rb = ctx.client.request(Method::GET, &format!("{base}/watch")).header(header::ACCEPT, "text/event-stream");
    let res = ctx.client.send(rb).await?;
    let watching = watch(ctx.out, res);
    match a.watch_for {
        Some(limit) => tokio::time::timeout(limit, watching).await.unwrap_or(Ok(())),
        None => watching.await,
    }
}

/// Show the stream's snapshot and changes until its `end`.
async fn watch(out: Output, mut res: Response) -> Result<(), CliError> {
    let redraw = out == Output::Table && std::io::stdout().is_terminal();
    let mut parser = SseParser::default();
    let mut rows: Vec<Value> = Vec::new();
    // Whether a table has been printed: a snapshot taken before the query's first result
    // has no rows (and so no header); then the first change prints the table instead.
    let mut tabled = false;
    loop {
        let chunk = match res.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(CliError::Transport("the watch stream ended without saying why".into())),
            Err(e) => return Err(CliError::Transport(format!("the watch stream broke: {}", error::chain(&e)))),
        };
        for event in parser.feed(&chunk) {
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if out != Output::Table {
                println!("{}", serde_json::json!({"event": event.event, "data": data}));
                if event.event == "end" {
                    return Ok(());
                }
                continue;
            }
            match event.event.as_str() {
                "snapshot" => {
                    rows = data["rows"].as_array().cloned().unwrap_or_default();
                    show(&rows, redraw);
                    tabled = !rows.is_empty();
                }
                "change" => {
                    let changes = data["results"].as_array().cloned().unwrap_or_default();
                    apply(&mut rows, &changes);
                    if redraw || (!tabled && !rows.is_empty()) {
                        show(&rows, redraw);
                        tabled = true;
                    } else {
                        for c in &changes {
                            let row = if c["type"] == "UPDATE" { &c["after"] } else { &c["data"] };
                            println!("{} {}", c["type"].as_str().unwrap_or("?"), row);
                        }
                    }
                }
                "end" => {
                    eprintln!("watch ended: {}", data["reason"].as_str().unwrap_or("the stream ended"));
                    return Ok(());
                }
                _ => {}
            }
            let _ = std::io::stdout().flush();
        }
    }
}

/// Apply one change's rows: ADD appends, UPDATE replaces the row equal to `before`, DELETE
/// removes the row equal to `data`.
fn apply(rows: &mut Vec<Value>, changes: &[Value]) {
    for c in changes {
        match c["type"].as_str() {
            Some("ADD") => rows.push(c["data"].clone()),
            Some("UPDATE") => match rows.iter_mut().find(|r| **r == c["before"]) {
                Some(r) => *r = c["after"].clone(),
                None => rows.push(c["after"].clone()),
            },
            Some("DELETE") => {
                if let Some(i) = rows.iter().position(|r| *r == c["data"]) {
                    rows.remove(i);
                }
            }
            _ => {}
        }
    }
}

fn show(rows: &[Value], redraw: bool) {
    if redraw {
        print!("\x1b[2J\x1b[H");
    }
    output::rows(Output::Table, rows);
}

/// Print the server's last lines; with `--follow`, go on as it writes.
pub async fn logs(ctx: &Ctx, a: &LogsArgs) -> Result<(), CliError> {
    let id = ctx.client.instance_id(&a.instance).await?;
    let mut query = vec![("tail", a.tail.to_string())];
    if a.follow {
        query.push(("follow", "true".to_owned()));
    }
    let rb = ctx.client.request(Method::GET, &format!("/api/v1/instances/{}/logs", segment(&id))).query(&query);
    let mut res = ctx.client.send(rb).await?;
    let mut stdout = std::io::stdout();
    loop {
        match res.chunk().await {
            Ok(Some(c)) => {
                let _ = stdout.write_all(&c);
                let _ = stdout.flush();
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(CliError::Transport(format!("the log stream broke: {}", error::chain(&e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_applied_to_the_rows() {
        let mut rows = vec![json!({"s": "a", "t": 1}), json!({"s": "b", "t": 2})];
        apply(
            &mut rows,
            &[
                json!({"type": "UPDATE", "before": {"s": "a", "t": 1}, "after": {"s": "a", "t": 5}}),
                json!({"type": "DELETE", "data": {"s": "b", "t": 2}}),
                json!({"type": "ADD", "data": {"s": "c", "t": 3}}),
            ],
        );
        assert_eq!(rows, [json!({"s": "a", "t": 5}), json!({"s": "c", "t": 3})]);
    }
}
