//! `draas describe`: one instance in full, kubectl-style: what it is, where it runs, its
//! components, what is wrong, what was done to it and what happened to it.

use clap::Args;
use serde_json::Value;

use super::Ctx;
use super::op::with_names;
use crate::client::{CliError, ConnArgs, segment};
use crate::output::{self, Column, Output, age, text};

/// `draas describe <instance>`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Instance id or name.
    pub instance: String,
}

/// Operations and transitions shown.
const RECENT: usize = 10;

const COMPONENTS: &[Column] = &[
    Column { header: "KIND", cell: |c| text(c, "/kind") },
    Column { header: "ID", cell: |c| text(c, "/id") },
    Column { header: "STATUS", cell: |c| text(c, "/status") },
    Column { header: "ERROR", cell: |c| text(c, "/error") },
];

const OPERATIONS: &[Column] = &[
    Column { header: "ID", cell: |o| text(o, "/id") },
    Column { header: "KIND", cell: |o| text(o, "/kind") },
    Column { header: "STATUS", cell: |o| text(o, "/status") },
    Column { header: "ERROR", cell: |o| text(o, "/error/code") },
    Column { header: "AGE", cell: |o| age(o, "/createdAt") },
];

const HISTORY: &[Column] = &[
    Column { header: "AGE", cell: |c| age(c, "/at") },
    Column { header: "FROM", cell: |c| text(c, "/from") },
    Column { header: "TO", cell: |c| text(c, "/to") },
    Column { header: "SOURCE", cell: |c| text(c, "/source") },
    Column { header: "REASON", cell: |c| text(c, "/reason") },
    Column { header: "BY", cell: |c| text(c, "/requestedBy") },
];

/// Print the instance, its recent operations and its history.
pub async fn describe(ctx: &Ctx, instance: &str) -> Result<(), CliError> {
    let i = ctx.client.instance(instance).await?;
    let id = text(&i, "/id");
    let limit = RECENT.to_string();
    let ops = ctx.client.get("/api/v1/operations", &[("instance", id.clone()), ("limit", limit)]).await?;
    let history = ctx.client.get(&format!("/api/v1/instances/{}/history", segment(&id)), &[]).await?;
    let mut ops = ops["items"].as_array().cloned().unwrap_or_default();
    let history: Vec<Value> = history["items"].as_array().into_iter().flatten().take(RECENT).cloned().collect();
    if ctx.out != Output::Table {
        with_names(&[(id, text(&i, "/name"))].into_iter().collect(), &mut ops);
        output::document(ctx.out, &serde_json::json!({"instance": i, "operations": ops, "history": history}));
        return Ok(());
    }
    let status = match text(&i, "/statusMessage") {
        m if m.is_empty() => text(&i, "/status"),
        m => format!("{} ({m})", text(&i, "/status")),
    };
    let facts = &i["runtimeFacts"];
    let runtime = [("pid", "/pid"), ("container", "/containerName"), ("pod", "/podName"), ("log", "/logFile")]
        .iter()
        .filter_map(|(label, ptr)| {
            facts.pointer(ptr).filter(|v| !v.is_null()).map(|v| format!("{label} {}", text(v, "")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let probe = &i["lastProbe"];
    let probe = if probe.is_null() {
        "never".to_owned()
    } else {
        let mut p = format!("{} ago", age(probe, "/at"));
        if let Some(ms) = probe["latencyMs"].as_f64() {
            p.push_str(&format!(", {ms:.1} ms"));
        }
        if probe["ok"] == true {
            p.push_str(", healthy");
        }
        match text(probe, "/message") {
            m if m.is_empty() => p,
            m => format!("{p}, {m}"),
        }
    };
    let summary = &i["componentsSummary"];
    for (field, value) in [
        ("Name", text(&i, "/name")),
        ("ID", text(&i, "/id")),
        ("Description", text(&i, "/description")),
        ("Platform", text(&i, "/platform")),
        ("Desired", text(&i, "/desiredState")),
        ("Status", status),
        ("Endpoint", text(&i, "/endpoint")),
        ("Node", text(&i, "/node")),
        ("Runtime", runtime),
        ("Generation", format!("{} (running {})", text(&i, "/generation"), text(&i, "/observedGeneration"))),
        ("Age", age(&i, "/createdAt")),
        ("Last probe", probe),
        (
            "Components",
            format!(
                "{} ({} running, {} failing)",
                text(summary, "/total"),
                text(summary, "/running"),
                text(summary, "/failing")
            ),
        ),
    ] {
        println!("{:<14}{}", format!("{field}:"), if value.is_empty() { "-".to_owned() } else { value });
    }
    section("Components", i["components"].as_array(), COMPONENTS);
    if let Some(conditions) = i["conditions"].as_array().filter(|c| !c.is_empty()) {
        println!("\nConditions:");
        for c in conditions {
            println!("  {}: {} (at {})", text(c, "/code"), text(c, "/message"), text(c, "/pointer"));
        }
    }
    section("Operations", Some(&ops), OPERATIONS);
    section("History", Some(&history), HISTORY);
    Ok(())
}

fn section(title: &str, items: Option<&Vec<Value>>, columns: &[Column]) {
    let items = items.map_or(&[][..], Vec::as_slice);
    println!("\n{title}:{}", if items.is_empty() { " none" } else { "" });
    if !items.is_empty() {
        output::list(Output::Table, items, columns);
    }
}
