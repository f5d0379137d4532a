//! How client commands print: tables for people, JSON or YAML for scripts. Lists are printed
//! as arrays (every page joined), single resources as documents.

use comfy_table::{Table, presets};
use serde_json::Value;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Columns for people (documents such as a configuration print as YAML).
    Table,
    /// Pretty JSON (one compact document per line for `events`).
    Json,
    /// YAML (`---` between documents for `events`).
    Yaml,
}

/// A table column: header and how to get the cell from a JSON item.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

/// The text of the value at JSON pointer `ptr`: strings as they are, absent and null empty,
/// anything else compact JSON.
pub fn text(item: &Value, ptr: &str) -> String {
    match item.pointer(ptr) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// How long ago the RFC 3339 time at `ptr` was, kubectl-style (`42s`, `5m`, `3h`, `2d`).
pub fn age(item: &Value, ptr: &str) -> String {
    let Some(at) = item.pointer(ptr).and_then(Value::as_str) else { return String::new() };
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(at) else { return at.to_owned() };
    human_duration((chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_seconds().max(0))
}

/// `secs` kubectl-style: `42s`, `5m`, `3h`, `2d`.
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Print a list of items.
pub fn list(out: Output, items: &[Value], columns: &[Column]) {
    match out {
        Output::Table => {
            let mut table = plain_table();
            table.set_header(columns.iter().map(|c| c.header));
            for item in items {
                table.add_row(columns.iter().map(|c| (c.cell)(item)));
            }
            print_table(table);
        }
        _ => document(out, &Value::Array(items.to_vec())),
    }
}

/// Print rows whose fields are not known in advance (a query's results): in table mode one
/// column per field, in the order the first row names them (upper-cased as headers).
pub fn rows(out: Output, items: &[Value]) {
    match out {
        Output::Table => {
            let mut fields: Vec<String> = Vec::new();
            for key in items.iter().filter_map(Value::as_object).flat_map(|o| o.keys()) {
                if !fields.contains(key) {
                    fields.push(key.clone());
                }
            }
            let mut table = plain_table();
            table.set_header(fields.iter().map(|f| f.to_uppercase()));
            for item in items {
                table.add_row(fields.iter().map(|f| text(&item[f.as_str()], "")));
            }
            print_table(table);
        }
        _ => document(out, &Value::Array(items.to_vec())),
    }
}

/// Print one resource: in table mode as FIELD / VALUE rows.
pub fn resource(out: Output, item: &Value) {
    match (out, item.as_object()) {
        (Output::Table, Some(fields)) => {
            let mut table = plain_table();
            for (k, v) in fields {
                table.add_row([k.clone(), text(v, "")]);
            }
            print_table(table);
        }
        _ => document(out, item),
    }
}

/// Print a document (a configuration, a component): YAML in table mode.
pub fn document(out: Output, doc: &Value) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(doc).unwrap_or_default()),
        Output::Table | Output::Yaml => print!("{}", yaml(doc)),
    }
}

/// `doc` as YAML.
pub fn yaml(doc: &Value) -> String {
    serde_norway::to_string(doc).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// A borderless table.
fn plain_table() -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table
}

/// Print kubectl-like: columns two spaces apart, no trailing blanks.
fn print_table(mut table: Table) {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}
