//! What can go wrong in a client command, how it is shown (one line) and the exit code each
//! kind of failure gets.

use std::process::ExitCode;

/// Exit codes of the client commands (`draas --help` lists them).
pub mod exit {
    /// The API refused the request (problem answer: 4xx or 5xx).
    pub const API: u8 = 1;
    /// Bad command line or input file (clap's own usage errors are 2 as well).
    pub const USAGE: u8 = 2;
    /// The operation ended `failed`, `superseded` or `cancelled`.
    pub const OPERATION_FAILED: u8 = 3;
    /// `--wait` ran out before the operation ended.
    pub const TIMEOUT: u8 = 4;
    /// The server could not be reached, or answered something that is not draas.
    pub const UNREACHABLE: u8 = 5;
}

/// A failed client command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a problem document (or another error status); `pointer` names
    /// the faulty field of the request body, when the API said.
    #[error("{code}: {message}{}", pointer.as_deref().map(|p| format!(" (at {p})")).unwrap_or_default())]
    Api { status: u16, code: String, message: String, pointer: Option<String> },
    /// Bad input that never reached the API: an unreadable file, a malformed settings file.
    #[error("{0}")]
    Usage(String),
    /// The operation ended without success.
    #[error("{code}: {message}")]
    OperationFailed { code: String, message: String },
    /// `--wait` ran out.
    #[error("timeout: {0}")]
    Timeout(String),
    /// No answer, or an answer that is not draas'.
    #[error("{0}")]
    Transport(String),
}

impl CliError {
    /// The exit code of this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Api { .. } => exit::API,
            Self::Usage(_) => exit::USAGE,
            Self::OperationFailed { .. } => exit::OPERATION_FAILED,
            Self::Timeout(_) => exit::TIMEOUT,
            Self::Transport(_) => exit::UNREACHABLE,
        })
    }

    /// The one line printed to stderr: `error: <code>: <message>`.
    pub fn line(&self) -> String {
        one_line(&format!("error: {self}"))
    }

    /// [`line`](Self::line), its `error` in red on a terminal.
    pub fn line_for(&self, terminal: bool) -> String {
        let line = self.line();
        match line.strip_prefix("error") {
            Some(rest) if terminal => format!("\x1b[1;31merror\x1b[0m{rest}"),
            _ => line,
        }
    }
}

/// `text` on one line: line breaks and runs of blanks become single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes, `: `-separated (reqwest hides the useful part in the sources).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The innermost cause of an error (for a refused connection: "Connection refused").
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}
