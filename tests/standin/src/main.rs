//! `drasi-server-standin`: a small test stand-in for the real `drasi-server` binary.
//!
//! The real server cannot be installed in the test environment, so draas' tests run this
//! program instead. It honours the same command line (`run`/`validate`, `-c/--config`,
//! `-p/--port`), the same YAML config file (camelCase, unknown top-level keys rejected,
//! `${ENV_VAR}` references), the same `GET /health` endpoint, and fails the same way (exit 1
//! with an error on stderr before binding; SIGINT shuts down cleanly; SIGTERM is left at its
//! default disposition, so the process dies with status 143).
//!
//! It deliberately shares no code with draas: its config parsing is its own, so a test that
//! passes proves draas produced a config the server would accept, not one draas agrees with.
//!
//! Test-only switches (environment variables):
//! - `DRASI_STANDIN_PLUGINS`: comma-separated plugins it "has" (default `source/mock,reaction/log`)
//!   when no `--plugins-dir` is given; with one, it has what the directory's
//!   `libdrasi_<type>_<kind>.so` file names say (the files are not loaded).
//!
//! Plugins behave as in the real server: `run` refuses a configuration whose source,
//! bootstrap provider or reaction kind has no plugin (`Missing plugins required by
//! configuration: …`, exit 1), and loads none at all when verification is on (no
//! `--skip-verification`, no `verifyPlugins: false`) and the directory has no `plugins.lock`;
//! `validate` only warns (`[WARN] source/x — not installed (referenced by source 'id')`) and
//! exits 0.
//! - `DRASI_STANDIN_CRASH_AFTER_SECS=N`: panic-like exit (code 101) after N seconds (0 = at start).
//! - `DRASI_STANDIN_NEVER_HEALTHY=1`: bind, but `/health` answers 503 forever.
//! - `DRASI_STANDIN_IGNORE_SIGINT=1`: keep running on SIGINT (only SIGKILL/SIGTERM stop it).
//! - `DRASI_STANDIN_STARTUP_DELAY_MS=N`: wait N ms before binding.
//! - `DRASI_STANDIN_LOG_EVERY_MS=N`: print a log line every N ms while running.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Top-level keys of the real server's config, in its declaration order (used verbatim in the
/// "unknown field" message, like serde's `deny_unknown_fields`).
const TOP_LEVEL_KEYS: &[&str] = &[
    "apiVersion",
    "id",
    "host",
    "port",
    "logLevel",
    "persistConfig",
    "persistIndex",
    "enableArchive",
    "enableUi",
    "solutionsDir",
    "stateStore",
    "secretStore",
    "defaultPriorityQueueCapacity",
    "defaultDispatchBufferCapacity",
    "pluginRegistry",
    "autoInstallPlugins",
    "plugins",
    "verifyPlugins",
    "trustedIdentities",
    "hotReloadPlugins",
    "hotReloadDebounceMs",
    "corsAllowedOrigins",
    "sources",
    "queries",
    "reactions",
    "identityProviders",
    "bootstrapProviders",
    "instances",
];

const DEFAULT_CONFIG_PATH: &str = "config/server.yaml";
const DEFAULT_PLUGINS: &str = "source/mock,reaction/log";
/// Internal source every server has; queries may subscribe to it without a plugin.
const COMPONENT_GRAPH_SOURCE: &str = "__component_graph__";
/// Reaction kinds compiled into the real server (no plugin needed).
const BUILTIN_REACTION_KINDS: &[&str] = &["application"];
const USAGE: &str = "Usage: drasi-server-standin [OPTIONS] [COMMAND]";

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Run,
    Validate,
}

#[derive(Debug)]
struct Cli {
    command: Command,
    config: PathBuf,
    port: Option<u16>,
    /// `Some(true)` for `--enable-ui`, `Some(false)` for `--disable-ui`.
    ui: Option<bool>,
    plugins_dir: Option<PathBuf>,
    skip_verification: bool,
}

/// Why argument parsing stopped: help/version are not errors, the rest are usage errors (exit 2).
enum ArgStop {
    Help,
    Version,
    Usage(String),
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Cli, ArgStop> {
    let mut cli = Cli {
        command: Command::Run,
        config: PathBuf::from(DEFAULT_CONFIG_PATH),
        port: None,
        ui: None,
        plugins_dir: None,
        skip_verification: false,
    };
    let mut command_seen = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg.starts_with('-') && arg != "-" {
            apply_option(&mut cli, &arg, &mut args)?;
        } else if command_seen {
            return Err(ArgStop::Usage(format!("unexpected argument '{arg}' found")));
        } else {
            cli.command = parse_command(&arg)?;
            command_seen = true;
        }
    }
    Ok(cli)
}

fn parse_command(arg: &str) -> Result<Command, ArgStop> {
    match arg {
        "run" => Ok(Command::Run),
        "validate" => Ok(Command::Validate),
        // Real commands the stand-in has no use for: say so rather than pretend.
        "doctor" | "init" | "plugin" => {
            Err(ArgStop::Usage(format!("the stand-in does not implement the '{arg}' command")))
        }
        _ => Err(ArgStop::Usage(format!("unrecognized subcommand '{arg}'"))),
    }
}

fn apply_option(cli: &mut Cli, arg: &str, rest: &mut impl Iterator<Item = String>) -> Result<(), ArgStop> {
    // Long options also accept the `--name=value` form, like clap.
    let (name, inline) = match arg.split_once('=') {
        Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
        _ => (arg, None),
    };
    match name {
        "-h" | "--help" => return Err(ArgStop::Help),
        "-V" | "--version" => return Err(ArgStop::Version),
        "-c" | "--config" => cli.config = take_value("--config <FILE>", inline, rest)?.into(),
        "-p" | "--port" => cli.port = Some(parse_port_arg(take_value("--port <PORT>", inline, rest)?)?),
        "--plugins-dir" => cli.plugins_dir = Some(take_value("--plugins-dir <DIR>", inline, rest)?.into()),
        "--skip-verification" => cli.skip_verification = true,
        "--enable-ui" => cli.ui = Some(true),
        "--disable-ui" => cli.ui = Some(false),
        _ => return Err(ArgStop::Usage(format!("unexpected argument '{arg}' found"))),
    }
    Ok(())
}

fn take_value(label: &str, inline: Option<String>, rest: &mut impl Iterator<Item = String>) -> Result<String, ArgStop> {
    inline
        .or_else(|| rest.next())
        .ok_or_else(|| ArgStop::Usage(format!("a value is required for '{label}' but none was supplied")))
}

/// clap parses `--port` as a `u16`, so a non-number is a usage error (exit 2); the range
/// check (port 0) happens later with the config's own port, giving exit 1.
fn parse_port_arg(value: String) -> Result<u16, ArgStop> {
    value.parse::<u16>().map_err(|e| ArgStop::Usage(format!("invalid value '{value}' for '--port <PORT>': {e}")))
}

fn print_help() {
    println!("Test stand-in for drasi-server\n\n{USAGE}\n");
    println!("Commands:\n  run       Run the server (default)\n  validate  Validate a configuration file\n");
    println!("Options:\n  -c, --config <FILE>       Config file [default: {DEFAULT_CONFIG_PATH}]");
    println!("  -p, --port <PORT>         Override the config's port");
    println!("      --plugins-dir <DIR>   Plugins directory (only the file names count)");
    println!("      --skip-verification   Load plugins without a plugins.lock");
    println!("      --enable-ui / --disable-ui");
    println!("  -h, --help                Print help\n  -V, --version             Print version");
}

// ---------------------------------------------------------------------------------------------
// Test switches (environment)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Switches {
    crash_after: Option<Duration>,
    never_healthy: bool,
    ignore_sigint: bool,
    startup_delay: Duration,
    log_every: Option<Duration>,
}

impl Switches {
    fn from_env() -> Result<Self> {
        let crash_after = env_opt("DRASI_STANDIN_CRASH_AFTER_SECS")
            .map(|v| parse_secs("DRASI_STANDIN_CRASH_AFTER_SECS", &v))
            .transpose()?;
        let startup_delay = env_millis("DRASI_STANDIN_STARTUP_DELAY_MS")?.unwrap_or_default();
        // An interval of 0 would spin: treat it as "off".
        let log_every = env_millis("DRASI_STANDIN_LOG_EVERY_MS")?.filter(|d| !d.is_zero());
        Ok(Self {
            crash_after,
            never_healthy: env_flag("DRASI_STANDIN_NEVER_HEALTHY")?,
            ignore_sigint: env_flag("DRASI_STANDIN_IGNORE_SIGINT")?,
            startup_delay,
            log_every,
        })
    }
}

/// An environment variable's value, with empty treated as unset.
fn env_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn env_flag(name: &str) -> Result<bool> {
    match env_opt(name).as_deref() {
        None | Some("0" | "false" | "no" | "off") => Ok(false),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some(other) => bail!("invalid {name}={other}: expected 1 or 0"),
    }
}

fn env_millis(name: &str) -> Result<Option<Duration>> {
    env_opt(name)
        .map(|v| v.parse::<u64>().map(Duration::from_millis).map_err(|e| anyhow!("invalid {name}={v}: {e}")))
        .transpose()
}

fn parse_secs(name: &str, value: &str) -> Result<Duration> {
    let secs: f64 = value.parse().map_err(|e| anyhow!("invalid {name}={value}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| anyhow!("invalid {name}={value}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Logging (tracing-fmt look-alike on stdout)
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Self::Error),
            "warn" => Some(Self::Warn),
            "info" => Some(Self::Info),
            "debug" => Some(Self::Debug),
            "trace" => Some(Self::Trace),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warn => "WARN",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
            Self::Trace => "TRACE",
        }
    }
}

/// The config's `logLevel`, set once the config is loaded (info until then).
static MAX_LEVEL: OnceLock<Level> = OnceLock::new();

fn log(level: Level, target: &str, message: &str) {
    if level > *MAX_LEVEL.get().unwrap_or(&Level::Info) {
        return;
    }
    // Colour codes even when stdout is not a terminal, as the real server writes them.
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let colour = match level {
        Level::Error => 31,
        Level::Warn => 33,
        Level::Info => 32,
        Level::Debug => 34,
        Level::Trace => 35,
    };
    println!(
        "\x1b[2m{ts}\x1b[0m \x1b[{colour}m{:>5}\x1b[0m \x1b[2m{target}\x1b[0m\x1b[2m:\x1b[0m {message}",
        level.label()
    );
}

fn info(message: &str) {
    log(Level::Info, "drasi_server", message);
}

fn warn(message: &str) {
    log(Level::Warn, "drasi_server", message);
}

// ---------------------------------------------------------------------------------------------
// Config file
// ---------------------------------------------------------------------------------------------

/// A parsed, validated config: the document as written (with effective settings filled in)
/// plus the settings the stand-in acts on.
#[derive(Debug)]
struct Config {
    doc: Map<String, Value>,
    id: String,
    host: String,
    port: u16,
    log_level: Level,
    enable_ui: bool,
}

impl Config {
    fn count(&self, key: &str) -> usize {
        self.doc.get(key).and_then(Value::as_array).map_or(0, Vec::len)
    }
}

/// Reads the config file; for `run`, a missing file is replaced by a freshly written default,
/// as the real server does.
fn read_config_text(path: &Path, create_missing: bool) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create_missing => write_default_config(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("Config file not found: {}", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("Failed to read config file {}", path.display())),
    }
}

fn write_default_config(path: &Path) -> Result<String> {
    let text = format!(
        "id: {}\nhost: 0.0.0.0\nport: 8080\nlogLevel: info\nsources: []\nqueries: []\nreactions: []\n",
        random_id()
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("Failed to create config directory {}", dir.display()))?;
    }
    std::fs::write(path, &text).with_context(|| format!("Failed to write default config {}", path.display()))?;
    info(&format!("Config file {} not found; created a default configuration", path.display()));
    Ok(text)
}

fn load_config(cli: &Cli) -> Result<Config> {
    let text = read_config_text(&cli.config, cli.command == Command::Run)?;
    let value: Value = serde_norway::from_str(&text)
        .with_context(|| format!("Failed to parse config file {}", cli.config.display()))?;
    let mut doc = match value {
        Value::Object(map) => map,
        Value::Null => bail!("Failed to parse config file {}: empty document", cli.config.display()),
        other => bail!("invalid type: {}, expected struct DrasiServerConfig", type_name(&other)),
    };
    check_top_level_keys(&doc)?;
    if let Some(port) = cli.port {
        doc.insert("port".into(), json!(port));
    }
    let config = settings_from(doc, cli.ui)?;
    validate_components(&config.doc)?;
    Ok(config)
}

fn check_top_level_keys(doc: &Map<String, Value>) -> Result<()> {
    match doc.keys().find(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => {
            let expected: Vec<String> = TOP_LEVEL_KEYS.iter().map(|k| format!("`{k}`")).collect();
            bail!("unknown field `{key}`, expected one of {}", expected.join(", "))
        }
    }
}

/// Resolves and checks the server settings, and writes the effective values back into the
/// document so `/api/v1/config` shows what the server actually uses.
fn settings_from(mut doc: Map<String, Value>, ui_flag: Option<bool>) -> Result<Config> {
    let id = match doc.get("id") {
        Some(v) => string_setting("id", v)?,
        None => random_id(),
    };
    let host = optional_string(&doc, "host")?.unwrap_or_else(|| "0.0.0.0".into());
    let port = doc.get("port").map(port_setting).transpose()?.unwrap_or(8080);
    let level_text = optional_string(&doc, "logLevel")?.unwrap_or_else(|| "info".into());
    let log_level = Level::parse(&level_text)
        .ok_or_else(|| anyhow!("invalid logLevel `{level_text}`: expected one of trace, debug, info, warn, error"))?;
    let enable_ui = ui_flag.unwrap_or_else(|| doc.get("enableUi").and_then(Value::as_bool) != Some(false));
    doc.insert("id".into(), json!(id));
    doc.insert("host".into(), json!(host));
    doc.insert("port".into(), json!(port));
    doc.insert("logLevel".into(), json!(level_text));
    Ok(Config { doc, id, host, port, log_level, enable_ui })
}

fn optional_string(doc: &Map<String, Value>, key: &str) -> Result<Option<String>> {
    doc.get(key).map(|v| string_setting(key, v)).transpose()
}

fn string_setting(key: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(resolve_env_ref(key, s)?.unwrap_or_else(|| s.clone())),
        other => bail!("invalid type for `{key}`: {}, expected a string", type_name(other)),
    }
}

/// The real server's port is a `u16` config value: an integer, or a `${VAR}` reference whose
/// value parses as one. A literal string such as `"8080"` is rejected, as serde would.
fn port_setting(value: &Value) -> Result<u16> {
    let port = match value {
        Value::Number(n) => n.as_u64().ok_or_else(|| anyhow!("invalid port `{n}`: expected an integer 1-65535"))?,
        Value::String(s) => match resolve_env_ref("port", s)? {
            Some(resolved) => resolved
                .trim()
                .parse::<u64>()
                .map_err(|_| anyhow!("invalid port `{resolved}` (from `{s}`): expected an integer 1-65535"))?,
            None => bail!("invalid type for `port`: string \"{s}\", expected an integer 1-65535"),
        },
        other => bail!("invalid type for `port`: {}, expected an integer 1-65535", type_name(other)),
    };
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("invalid port `{port}`: expected an integer 1-65535"),
    }
}

/// Resolves a whole-value `${VAR}` or `${VAR:-default}` reference (the real server's POSIX
/// form). Returns `None` when the value is not a reference; errors when the variable is unset
/// and has no default.
fn resolve_env_ref(key: &str, value: &str) -> Result<Option<String>> {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return Ok(None);
    };
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    match (std::env::var(name), default) {
        (Ok(v), _) => Ok(Some(v)),
        (Err(_), Some(d)) => Ok(Some(d.to_string())),
        (Err(_), None) => bail!("Environment variable '{name}' not found and no default provided (`{key}`)"),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "sequence",
        Value::Object(_) => "map",
    }
}

/// A UUID-v4-shaped id. No `rand`/`uuid` dependency here, so it is seeded from std's
/// randomly keyed hasher plus the clock and pid: unique enough for a test server.
fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher, RandomState};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut words = [0u64; 2];
    for (i, word) in words.iter_mut().enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(i);
        *word = hasher.finish();
    }
    let [a, b] = words;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

// ---------------------------------------------------------------------------------------------
// Component checks
// ---------------------------------------------------------------------------------------------

type Obj = Map<String, Value>;

fn validate_components(doc: &Obj) -> Result<()> {
    let sources = component_list(doc, "sources", &["kind", "id"])?;
    let queries = component_list(doc, "queries", &["id", "query"])?;
    let reactions = component_list(doc, "reactions", &["kind", "id"])?;
    let source_ids = unique_ids(&sources, "source")?;
    let query_ids = unique_ids(&queries, "query")?;
    unique_ids(&reactions, "reaction")?;
    for query in &queries {
        check_query_sources(query, &source_ids)?;
    }
    for reaction in &reactions {
        check_reaction_queries(reaction, &query_ids)?;
    }
    Ok(())
}

/// The list under `key` (absent or null = empty); every item must be a map whose `required`
/// fields are strings.
fn component_list<'a>(doc: &'a Obj, key: &str, required: &[&str]) -> Result<Vec<&'a Obj>> {
    let items = match doc.get(key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => bail!("invalid type for `{key}`: {}, expected a sequence", type_name(other)),
    };
    let mut list = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(obj) = item else {
            bail!("{key}[{i}]: invalid type: {}, expected a map", type_name(item));
        };
        for field in required {
            match obj.get(*field) {
                Some(Value::String(_)) => {}
                None => bail!("{key}[{i}]: missing field `{field}`"),
                Some(v) => bail!("{key}[{i}]: invalid type for `{field}`: {}, expected a string", type_name(v)),
            }
        }
        list.push(obj);
    }
    Ok(list)
}

fn str_field<'a>(obj: &'a Obj, key: &str) -> &'a str {
    obj.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The plugins `doc` needs that `plugins` lacks, each with the component that needs it
/// (`source 'shop'`), in configuration order.
fn missing_plugins(doc: &Obj, plugins: &[String]) -> Vec<(String, String)> {
    let list = |key: &str| doc.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut needed = Vec::new();
    for source in list("sources").iter().filter_map(Value::as_object) {
        let by = format!("source '{}'", str_field(source, "id"));
        needed.push((format!("source/{}", str_field(source, "kind")), by.clone()));
        if let Some(kind) = source.get("bootstrapProvider").and_then(|b| b.get("kind")).and_then(Value::as_str) {
            needed.push((format!("bootstrap/{kind}"), by));
        }
    }
    for reaction in list("reactions").iter().filter_map(Value::as_object) {
        let kind = str_field(reaction, "kind");
        if !BUILTIN_REACTION_KINDS.contains(&kind) {
            needed.push((format!("reaction/{kind}"), format!("reaction '{}'", str_field(reaction, "id"))));
        }
    }
    needed.retain(|(plugin, _)| !plugins.contains(plugin));
    needed
}

fn unique_ids<'a>(list: &[&'a Obj], what: &str) -> Result<HashSet<&'a str>> {
    let mut ids = HashSet::new();
    for obj in list {
        let id = str_field(obj, "id");
        if !ids.insert(id) {
            bail!("Duplicate {what} id `{id}`");
        }
    }
    Ok(ids)
}

fn check_query_sources(query: &Obj, source_ids: &HashSet<&str>) -> Result<()> {
    let id = str_field(query, "id");
    for (i, sub) in array_field(query, "sources", id, "query")?.iter().enumerate() {
        let source = sub
            .get("sourceId")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("query `{id}`: sources[{i}]: missing field `sourceId`"))?;
        if source != COMPONENT_GRAPH_SOURCE && !source_ids.contains(source) {
            bail!("query `{id}` references unknown source `{source}`");
        }
    }
    Ok(())
}

fn check_reaction_queries(reaction: &Obj, query_ids: &HashSet<&str>) -> Result<()> {
    let id = str_field(reaction, "id");
    for (i, item) in array_field(reaction, "queries", id, "reaction")?.iter().enumerate() {
        let query =
            item.as_str().ok_or_else(|| anyhow!("reaction `{id}`: queries[{i}]: expected a query id string"))?;
        if !query_ids.contains(query) {
            bail!("reaction `{id}` references unknown query `{query}`");
        }
    }
    Ok(())
}

/// A component's optional list field (absent or null = empty).
fn array_field<'a>(obj: &'a Obj, key: &str, id: &str, what: &str) -> Result<&'a [Value]> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => bail!("{what} `{id}`: invalid type for `{key}`: {}, expected a sequence", type_name(other)),
    }
}

/// The plugins the server has: the `--plugins-dir` file names, else `DRASI_STANDIN_PLUGINS`.
fn available_plugins(cli: &Cli) -> Vec<String> {
    let Some(dir) = &cli.plugins_dir else {
        let list = std::env::var("DRASI_STANDIN_PLUGINS").unwrap_or_else(|_| DEFAULT_PLUGINS.into());
        return list.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
    };
    let names = std::fs::read_dir(dir).into_iter().flatten().flatten();
    let mut plugins: Vec<String> = names
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_prefix("libdrasi_")?.strip_suffix(".so")?.to_owned();
            let (kind, rest) = stem.split_once('_')?;
            Some(format!("{kind}/{rest}"))
        })
        .collect();
    plugins.sort();
    plugins
}

/// What `run` loads: nothing when verification is on and there is no lockfile.
fn loaded_plugins(cli: &Cli, config: &Config) -> Vec<String> {
    let verify = !cli.skip_verification && config.doc.get("verifyPlugins").and_then(Value::as_bool) != Some(false);
    let lockfile = cli.plugins_dir.as_ref().is_some_and(|d| d.join("plugins.lock").exists());
    if verify && !lockfile {
        warn("verify_plugins enabled but no lockfile found — no plugins will be loaded");
        return Vec::new();
    }
    available_plugins(cli)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct AppState {
    doc: Value,
    never_healthy: bool,
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/sources", get(|s: State<Arc<AppState>>| async move { list(&s, "sources") }))
        .route("/api/v1/queries", get(|s: State<Arc<AppState>>| async move { list(&s, "queries") }))
        .route("/api/v1/reactions", get(|s: State<Arc<AppState>>| async move { list(&s, "reactions") }))
        .route("/api/v1/config", get(|s: State<Arc<AppState>>| async move { Json(s.doc.clone()) }))
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.never_healthy {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "starting"}))).into_response();
    }
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Json(json!({"status": "ok", "timestamp": timestamp})).into_response()
}

fn list(state: &AppState, key: &str) -> Json<Value> {
    let data = state.doc.get(key).filter(|v| v.is_array()).cloned().unwrap_or_else(|| json!([]));
    Json(json!({"success": true, "data": data}))
}

/// Binds `host:port`; IPv6 literals need brackets in the address string.
async fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    TcpListener::bind(&addr).await.with_context(|| format!("Failed to bind to {addr}"))
}

// ---------------------------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------------------------

/// Mimics a Rust panic in `main` (message on stderr, exit status 101).
fn simulated_crash() -> ! {
    eprintln!("\nthread 'main' panicked at {}:{}:{}: simulated crash", file!(), line!(), column!());
    eprintln!("note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace");
    std::process::exit(101);
}

/// Waits for SIGINT; with the ignore switch, every SIGINT is logged and swallowed.
async fn wait_for_sigint(sigint: &mut Signal, ignore: bool) {
    while sigint.recv().await.is_some() {
        if !ignore {
            return;
        }
        log(Level::Warn, "drasi_server", "Received SIGINT; ignoring it (DRASI_STANDIN_IGNORE_SIGINT)");
    }
    // The signal stream never ends in practice; if it did, keep running rather than exit.
    std::future::pending::<()>().await;
}

fn spawn_test_timers(switches: &Switches) {
    if let Some(after) = switches.crash_after {
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            simulated_crash();
        });
    }
    if let Some(every) = switches.log_every {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            for tick in 1u64.. {
                ticker.tick().await;
                info(&format!("standin heartbeat tick={tick}"));
            }
        });
    }
}

fn log_startup(config: &Config) {
    info(&format!("Starting server id={} on {}:{}", config.id, config.host, config.port));
    info(&format!(
        "Configuration: {} sources, {} queries, {} reactions",
        config.count("sources"),
        config.count("queries"),
        config.count("reactions")
    ));
    if config.enable_ui {
        // The real server warns when the UI is on but no UI assets were built in.
        log(Level::Warn, "drasi_server", "UI is enabled but no UI assets were found; UI disabled");
    }
}

async fn run(cli: &Cli, switches: &Switches) -> Result<()> {
    // Installed first so an ignored SIGINT is ignored from the very start. SIGTERM is
    // deliberately left alone: the real server dies from it (status 143).
    let mut sigint = signal(SignalKind::interrupt()).context("Failed to install SIGINT handler")?;
    let config = load_config(cli)?;
    let _ = MAX_LEVEL.set(config.log_level);
    let missing = missing_plugins(&config.doc, &loaded_plugins(cli, &config));
    if !missing.is_empty() {
        let mut names: Vec<&str> = missing.iter().map(|(p, _)| p.as_str()).collect();
        names.dedup();
        bail!("Missing plugins required by configuration: {}", names.join(", "));
    }
    if switches.crash_after == Some(Duration::ZERO) {
        simulated_crash();
    }
    // The real server keeps state under ./data relative to its working directory.
    let _ = std::fs::create_dir_all("data");
    log_startup(&config);
    spawn_test_timers(switches);
    tokio::select! {
        () = tokio::time::sleep(switches.startup_delay) => {}
        () = wait_for_sigint(&mut sigint, switches.ignore_sigint) => {
            info("Shutting down");
            return Ok(());
        }
    }
    let listener = bind(&config.host, config.port).await?;
    serve(listener, config, switches, sigint).await
}

async fn serve(listener: TcpListener, config: Config, switches: &Switches, mut sigint: Signal) -> Result<()> {
    info(&format!("Server listening on http://{}:{}", config.host, config.port));
    let state = Arc::new(AppState { doc: Value::Object(config.doc), never_healthy: switches.never_healthy });
    let app = router(state);
    // Dropping the server on SIGINT (rather than draining connections) matches the real
    // server's ~20 ms shutdown.
    tokio::select! {
        res = async { axum::serve(listener, app).await } => res.context("HTTP server failed")?,
        () = wait_for_sigint(&mut sigint, switches.ignore_sigint) => {}
    }
    info("Shutting down");
    Ok(())
}

fn validate(cli: &Cli) -> Result<()> {
    let config = load_config(cli)?;
    for (plugin, by) in missing_plugins(&config.doc, &available_plugins(cli)) {
        println!("  [WARN] {plugin} — not installed (referenced by {by})");
    }
    println!(
        "Configuration is valid: {} sources, {} queries, {} reactions",
        config.count("sources"),
        config.count("queries"),
        config.count("reactions")
    );
    Ok(())
}

/// Prints a startup error like the real server (anyhow's `Error: …` plus a backtrace).
fn report_error(error: &anyhow::Error) -> ExitCode {
    eprintln!("Error: {error:#}\n\nStack backtrace:\n   0: drasi_server::main");
    ExitCode::from(1)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{USAGE}\n\nFor more information, try '--help'.");
    ExitCode::from(2)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match parse_args(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(ArgStop::Help) => {
            print_help();
            return ExitCode::SUCCESS;
        }
        Err(ArgStop::Version) => {
            println!("drasi-server-standin {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(ArgStop::Usage(message)) => return usage_error(&message),
    };
    let switches = match Switches::from_env() {
        Ok(s) => s,
        Err(e) => return usage_error(&format!("{e:#}")),
    };
    let result = match cli.command {
        Command::Run => run(&cli, &switches).await,
        Command::Validate => match validate(&cli) {
            // The real validate reports on stdout, an error as an `[ERR]` line, and exits 1.
            Err(e) => {
                println!("Validating: {}\n\nStructure:\n  [ERR] Validation error: {e:#}", cli.config.display());
                return ExitCode::from(1);
            }
            ok => ok,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report_error(&e),
    }
}
