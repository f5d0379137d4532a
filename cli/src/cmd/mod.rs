//! The client commands: `instance`, `describe`, `config`, `secret`, `source`/`query`/`reaction`, `op`,
//! `history`, `events`, `results`, `logs`. Each talks to a draas API over HTTP; failures print
//! one line and exit non-zero.

mod component;
mod config;
mod data;
mod describe;
mod follow;
mod input;
mod instance;
mod op;
mod secret;
mod status;

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::client::{CliError, Client, ConnArgs};
use crate::output::Output;

/// `draas --help`'s closing section.
pub const EXIT_CODES_HELP: &str = "\
Client commands exit with:
  0  success
  1  the API refused the request (printed as `error: <code>: <message>`)
  2  bad command line or input file
  3  the operation failed, was superseded or cancelled (`error: <code>: <message>`)
  4  --wait ran out before the operation ended
  5  the server could not be reached

Server and token come from --server/--token, else DRAAS_SERVER/DRAAS_TOKEN, else the settings
file (--config, default $XDG_CONFIG_HOME/draas/config.yaml or ~/.config/draas/config.yaml, with
`server:` and `token:`), else where a `draas up` in this directory listens and the token it keeps
(./.draas/api-url and ./.draas/api-token, or under $DRAAS_DATA_DIR), else http://127.0.0.1:8080.";

/// A group of client subcommands with the shared connection flags.
#[derive(Debug, Args)]
pub struct Group<T: Subcommand> {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    cmd: T,
}

/// The client subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create, list, read, delete, start, stop and restart instances.
    Instance(Group<instance::InstanceCmd>),
    /// Read, replace and patch an instance's drasi-server configuration.
    Config(Group<config::ConfigCmd>),
    /// Set, remove and list an instance's secrets (write-only), and rewrap them after a key rotation.
    Secret(Group<secret::SecretCmd>),
    /// Add, remove and list an instance's sources.
    Source(Group<component::ComponentCmd>),
    /// Add, remove and list an instance's queries.
    Query(Group<component::ComponentCmd>),
    /// Add, remove and list an instance's reactions.
    Reaction(Group<component::ComponentCmd>),
    /// Read, wait for, list and cancel operations.
    Op(Group<op::OpCmd>),
    /// An instance's status transitions, newest first.
    History(status::HistoryArgs),
    /// Follow status transitions live (Server-Sent Events), resuming after a disconnect.
    Events(status::EventsArgs),
    /// A query's current results, from the instance's server, as a table; --watch follows its changes.
    Results(data::ResultsArgs),
    /// The instance's server output (last lines; -f follows).
    Logs(data::LogsArgs),
    /// An instance in full: endpoint, node, components, conditions, recent operations, history.
    Describe(describe::DescribeArgs),
}

/// What a command runs with.
pub struct Ctx {
    pub client: Client,
    pub out: Output,
}

impl Ctx {
    fn new(conn: &ConnArgs) -> Result<Self, CliError> {
        Ok(Self { client: Client::new(conn.resolve()?)?, out: conn.output })
    }
}

/// Run a client command; a failure is printed as one line and becomes the exit code.
pub async fn run(command: ClientCommand) -> ExitCode {
    match dispatch(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.line_for(std::io::IsTerminal::is_terminal(&std::io::stderr())));
            e.exit_code()
        }
    }
}

async fn dispatch(command: ClientCommand) -> Result<(), CliError> {
    use component::Kind;
    match command {
        ClientCommand::Instance(g) => instance::run(&Ctx::new(&g.conn)?, g.cmd).await,
        ClientCommand::Config(g) => config::run(&Ctx::new(&g.conn)?, g.cmd).await,
        ClientCommand::Secret(g) => secret::run(&Ctx::new(&g.conn)?, g.cmd).await,
        ClientCommand::Source(g) => component::run(&Ctx::new(&g.conn)?, Kind::Sources, g.cmd).await,
        ClientCommand::Query(g) => component::run(&Ctx::new(&g.conn)?, Kind::Queries, g.cmd).await,
        ClientCommand::Reaction(g) => component::run(&Ctx::new(&g.conn)?, Kind::Reactions, g.cmd).await,
        ClientCommand::Op(g) => op::run(&Ctx::new(&g.conn)?, g.cmd).await,
        ClientCommand::History(a) => status::history(&Ctx::new(&a.conn)?, &a.instance).await,
        ClientCommand::Events(a) => status::events(&Ctx::new(&a.conn)?, a.instance.as_deref()).await,
        ClientCommand::Results(a) => data::results(&Ctx::new(&a.conn)?, &a).await,
        ClientCommand::Logs(a) => data::logs(&Ctx::new(&a.conn)?, &a).await,
        ClientCommand::Describe(a) => describe::describe(&Ctx::new(&a.conn)?, &a.instance).await,
    }
}
