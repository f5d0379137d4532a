//! `draas results`: what an instance computes, read through draas from its server.

use clap::Args;

use super::Ctx;
use crate::client::{CliError, ConnArgs, segment};
use crate::output;

/// `draas results <instance> <query>`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Instance id or name.
    pub instance: String,
    /// Query id.
    pub query: String,
}

/// Print the query's current rows.
pub async fn results(ctx: &Ctx, instance: &str, query: &str) -> Result<(), CliError> {
    let id = ctx.client.instance_id(instance).await?;
    let path = format!("/api/v1/instances/{}/queries/{}/results", segment(&id), segment(query));
    let body = ctx.client.get(&path, &[]).await?;
    output::rows(ctx.out, body["rows"].as_array().map_or(&[][..], Vec::as_slice));
    Ok(())
}
