//! `draas config`: an instance's drasi-server configuration, read (JSON/YAML, or the exact
//! rendered YAML drasi-server gets), replaced from a file, or patched (RFC 6902 / RFC 7396).

use std::path::PathBuf;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::follow::{WaitArg, after_write};
use super::{Ctx, input};
use crate::client::{Body, CliError, segment};
use crate::output::{self, Output};

/// `draas config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the stored configuration (YAML unless -o json).
    Get {
        /// Instance id or name.
        instance: String,
        /// With draas' defaults filled in, as drasi-server gets them.
        #[arg(long)]
        effective: bool,
    },
    /// Replace the whole configuration with a YAML or JSON file (`-` for stdin).
    Set {
        /// Instance id or name.
        instance: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Patch the configuration with an RFC 6902 JSON Patch file (JSON or YAML; `-` for stdin).
    Patch {
        /// Instance id or name.
        instance: String,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The file is an RFC 7396 JSON Merge Patch instead.
        #[arg(long)]
        merge: bool,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Print the exact YAML drasi-server is given (defaults and allocated port filled in).
    Yaml {
        /// Instance id or name.
        instance: String,
    },
}

/// Run `draas config …`.
pub async fn run(ctx: &Ctx, cmd: ConfigCmd) -> Result<(), CliError> {
    match cmd {
        ConfigCmd::Get { instance, effective } => {
            let path = config_path(ctx, &instance).await?;
            let query = if effective { vec![("effective", "true".to_owned())] } else { Vec::new() };
            output::document(ctx.out, &ctx.client.get(&path, &query).await?);
            Ok(())
        }
        ConfigCmd::Set { instance, file, wait } => {
            let doc = input::document(&file)?;
            let path = config_path(ctx, &instance).await?;
            let (after, op) = ctx.client.write(Method::PUT, &path, &[], Some(Body::Json(doc))).await?;
            changed(ctx.out, &instance, "replaced", &after);
            after_write(ctx, op, &wait, &format!("instance {instance}")).await
        }
        ConfigCmd::Patch { instance, file, merge, wait } => {
            let doc = input::document(&file)?;
            let media = if merge { "application/merge-patch+json" } else { "application/json-patch+json" };
            let path = config_path(ctx, &instance).await?;
            let (after, op) = ctx.client.write(Method::PATCH, &path, &[], Some(Body::JsonAs(doc, media))).await?;
            changed(ctx.out, &instance, "patched", &after);
            after_write(ctx, op, &wait, &format!("instance {instance}")).await
        }
        ConfigCmd::Yaml { instance } => {
            let path = config_path(ctx, &instance).await?;
            print!("{}", ctx.client.get_text(&path, "application/yaml").await?);
            Ok(())
        }
    }
}

async fn config_path(ctx: &Ctx, instance: &str) -> Result<String, CliError> {
    Ok(format!("/api/v1/instances/{}/config", segment(&ctx.client.instance_id(instance).await?)))
}

fn changed(out: Output, instance: &str, what: &str, after: &Value) {
    match out {
        Output::Table => println!("configuration of {instance} {what}"),
        out => output::document(out, after),
    }
}
