//! `draas source|query|reaction add|rm|list`: one component of an instance's configuration at a
//! time; each change is validated by the API as part of the whole configuration.

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;

use super::follow::{WaitArg, after_write};
use super::{Ctx, input};
use crate::client::{Body, CliError, segment};
use crate::output::{self, Column, Output, text};

/// Which collection.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Sources,
    Queries,
    Reactions,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Sources => "sources",
            Kind::Queries => "queries",
            Kind::Reactions => "reactions",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Kind::Sources => "source",
            Kind::Queries => "query",
            Kind::Reactions => "reaction",
        }
    }

    fn columns(self) -> &'static [Column] {
        match self {
            Kind::Sources => &[
                Column { header: "ID", cell: |c| text(c, "/id") },
                Column { header: "KIND", cell: |c| text(c, "/kind") },
            ],
            Kind::Queries => &[
                Column { header: "ID", cell: |c| text(c, "/id") },
                Column { header: "SOURCES", cell: sources_of },
                Column { header: "QUERY", cell: |c| text(c, "/query") },
            ],
            Kind::Reactions => &[
                Column { header: "ID", cell: |c| text(c, "/id") },
                Column { header: "KIND", cell: |c| text(c, "/kind") },
                Column { header: "QUERIES", cell: queries_of },
            ],
        }
    }
}

fn sources_of(query: &serde_json::Value) -> String {
    let sources = query["sources"].as_array().into_iter().flatten();
    sources.map(|s| text(s, "/sourceId")).collect::<Vec<_>>().join(",")
}

fn queries_of(reaction: &serde_json::Value) -> String {
    let queries = reaction["queries"].as_array().into_iter().flatten();
    queries.map(|q| text(q, "")).collect::<Vec<_>>().join(",")
}

/// `draas source|query|reaction …`.
#[derive(Debug, Subcommand)]
pub enum ComponentCmd {
    /// Add one from a YAML or JSON file (`-` for stdin); kind-specific properties pass through.
    Add {
        /// Instance id or name.
        instance: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Remove one (refused while others use it).
    Rm {
        /// Instance id or name.
        instance: String,
        /// Component id.
        id: String,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// List them.
    List {
        /// Instance id or name.
        instance: String,
    },
}

/// Run `draas <kind> …`.
pub async fn run(ctx: &Ctx, kind: Kind, cmd: ComponentCmd) -> Result<(), CliError> {
    match cmd {
        ComponentCmd::Add { instance, file, wait } => {
            let doc = input::document(&file)?;
            let path = collection_path(ctx, &instance, kind).await?;
            let (added, op) = ctx.client.write(Method::POST, &path, &[], Some(Body::Json(doc))).await?;
            match ctx.out {
                Output::Table => println!("{} {} added to {instance}", kind.singular(), text(&added, "/id")),
                out => output::document(out, &added),
            }
            after_write(ctx, op, &wait, &format!("instance {instance}")).await?;
        }
        ComponentCmd::Rm { instance, id, wait } => {
            let path = format!("{}/{}", collection_path(ctx, &instance, kind).await?, segment(&id));
            let (_, op) = ctx.client.write(Method::DELETE, &path, &[], None).await?;
            if ctx.out == Output::Table {
                println!("{} {id} removed from {instance}", kind.singular());
            }
            after_write(ctx, op, &wait, &format!("instance {instance}")).await?;
        }
        ComponentCmd::List { instance } => {
            let path = collection_path(ctx, &instance, kind).await?;
            let items = ctx.client.get(&path, &[]).await?;
            output::list(ctx.out, items.as_array().map_or(&[][..], Vec::as_slice), kind.columns());
        }
    }
    Ok(())
}

async fn collection_path(ctx: &Ctx, instance: &str, kind: Kind) -> Result<String, CliError> {
    let id = ctx.client.instance_id(instance).await?;
    Ok(format!("/api/v1/instances/{}/config/{}", segment(&id), kind.collection()))
}
