//! `draas token`: make an API token and the settings entry that accepts it (`tokens`), or
//! hash a token. Nothing here talks to an API: the token never leaves this process but on
//! stdout, and the settings hold only its SHA-256.

use std::io::Read;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use draas_jobs::settings::tokens::{MAX_NAME, SYSTEM, digest, valid_name};
use rand::RngCore;
use serde::Serialize;

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Print a fresh random token (once: it is stored nowhere) and the `tokens` entry to add
    /// to the settings.
    New {
        /// The token's name, recorded as `requestedBy` of what it asks for.
        name: String,
        #[arg(long, value_enum, default_value_t = RoleArg::Operate)]
        role: RoleArg,
    },
    /// Read a token from stdin and print its SHA-256 (hex), as `tokens[].sha256` wants it.
    Hash,
}

#[derive(Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleArg {
    Read,
    Operate,
    Admin,
}

/// A settings entry.
#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    role: RoleArg,
    sha256: String,
}

/// Run a token command.
pub fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    match cmd {
        TokenCmd::New { name, role } => new(&name, role),
        TokenCmd::Hash => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token).context("cannot read the token from stdin")?;
            // As the settings read tokens: surrounding whitespace (a newline) is not part of it.
            let token = token.trim();
            if token.is_empty() {
                bail!("no token on stdin");
            }
            println!("{}", hex::encode(digest(token.as_bytes())));
            Ok(())
        }
    }
}

fn new(name: &str, role: RoleArg) -> anyhow::Result<()> {
    if !valid_name(name) {
        bail!("a token name is 1-{MAX_NAME} characters of [A-Za-z0-9._-], and not '{SYSTEM}'");
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("draas_{}", hex::encode(bytes));
    let entry = Entry { name, role, sha256: hex::encode(digest(token.as_bytes())) };
    let yaml = serde_norway::to_string(&vec![&entry]).context("cannot write the entry")?;
    let json = serde_json::to_string(&entry).context("cannot write the entry")?;
    println!("{token}");
    eprintln!("The token above is shown this once; draas keeps only its SHA-256.");
    eprintln!("Add this entry to `tokens:` in the settings file:\n\n{yaml}");
    eprintln!("or to the JSON array of DRAAS_TOKENS:\n\n{json}\n");
    Ok(())
}
