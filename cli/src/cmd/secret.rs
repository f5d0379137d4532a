//! `draas secret`: set, remove and list an instance's secrets (values go in, never come out),
//! and rewrap every secret with the first of the server's keys after a key rotation.

use std::io::Read;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use crate::client::{Body, CliError, segment};
use crate::output::{self, Column, Output, age, text};

/// `draas secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Set a secret (its value from --value, else stdin); an instance that runs is restarted with it.
    Set {
        /// Instance id or name.
        instance: String,
        /// [A-Z_][A-Z0-9_]*, at most 64 characters, not starting with DRAAS_.
        name: String,
        /// The value (visible in the shell's history and process list: prefer stdin).
        #[arg(long)]
        value: Option<String>,
    },
    /// Remove a secret; an instance that runs is restarted without it.
    Rm { instance: String, name: String },
    /// The names of an instance's secrets and when each was set.
    List { instance: String },
    /// Seal every secret with the first of the server's secrets.keys (admin token).
    Rewrap,
}

const COLUMNS: &[Column] = &[
    Column { header: "NAME", cell: |i| text(i, "/name") },
    Column { header: "UPDATED", cell: |i| age(i, "/updatedAt") },
];

/// Run `draas secret …`.
pub async fn run(ctx: &Ctx, cmd: SecretCmd) -> Result<(), CliError> {
    match cmd {
        SecretCmd::Set { instance, name, value } => {
            let value = match value {
                Some(v) => v,
                None => stdin_value()?,
            };
            let id = ctx.client.instance_id(&instance).await?;
            let path = format!("/api/v1/instances/{}/secrets/{}", segment(&id), segment(&name));
            let body = Body::Json(json!({ "value": value }));
            let (set, op) = ctx.client.write(Method::PUT, &path, &[], Some(body)).await?;
            done(ctx, &set, &format!("secret {name} of instance {instance} set"), op);
            Ok(())
        }
        SecretCmd::Rm { instance, name } => {
            let id = ctx.client.instance_id(&instance).await?;
            let path = format!("/api/v1/instances/{}/secrets/{}", segment(&id), segment(&name));
            let (_, op) = ctx.client.write(Method::DELETE, &path, &[], None).await?;
            done(ctx, &json!({ "name": name }), &format!("secret {name} of instance {instance} removed"), op);
            Ok(())
        }
        SecretCmd::List { instance } => {
            let id = ctx.client.instance_id(&instance).await?;
            let list = ctx.client.get(&format!("/api/v1/instances/{}/secrets", segment(&id)), &[]).await?;
            output::list(ctx.out, list["items"].as_array().map_or(&[][..], Vec::as_slice), COLUMNS);
            Ok(())
        }
        SecretCmd::Rewrap => {
            let done = ctx.client.call(Method::POST, "/api/v1/secrets/rewrap", &[], None).await?;
            match ctx.out {
                Output::Table => println!(
                    "{} secrets sealed anew with key {} ({} could not be opened)",
                    text(&done, "/rewrapped"),
                    text(&done, "/keyId"),
                    text(&done, "/failed")
                ),
                out => output::document(out, &done),
            }
            Ok(())
        }
    }
}

/// The value on stdin, without the one line end `echo` or a here-string adds.
fn stdin_value() -> Result<String, CliError> {
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

fn done(ctx: &Ctx, doc: &Value, line: &str, op: Option<String>) {
    match ctx.out {
        Output::Table => match op {
            Some(op) => println!("{line}; restarting it: follow with `draas op wait {op}`"),
            None => println!("{line}"),
        },
        out => output::document(out, doc),
    }
}
