//! Exit codes every binary shares (DESIGN.md): 0 done, 2 bad configuration or
//! input, 3 fenced out by a replacement, 4 a tick that carried out its plan
//! but some actions failed, 1 anything else. And the one-line error report
//! that goes with them.

use std::process::ExitCode;

use crate::config::InvalidDatabaseUrl;
use crate::db::DbError;
use crate::storage::StorageError;

pub const OK: u8 = 0;
pub const FAILURE: u8 = 1;
pub const BAD_CONFIG: u8 = 2;
pub const FENCED: u8 = 3;
pub const ACTIONS_FAILED: u8 = 4;

/// An error the binary wants to exit with a specific code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn config(message: impl Into<String>) -> Self {
        Self { code: BAD_CONFIG, message: message.into() }
    }
}

/// The exit code for an error: the first cause in the chain that knows it is
/// a configuration problem decides.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(exit) = cause.downcast_ref::<Exit>() {
            return exit.code;
        }
        if cause.downcast_ref::<InvalidDatabaseUrl>().is_some() {
            return BAD_CONFIG;
        }
        if let Some(db) = cause.downcast_ref::<DbError>() {
            return if db.is_configuration() { BAD_CONFIG } else { FAILURE };
        }
        if let Some(storage) = cause.downcast_ref::<StorageError>() {
            return if storage.is_configuration() { BAD_CONFIG } else { FAILURE };
        }
    }
    FAILURE
}

/// Print `program: error: what happened: why` on one line and pick the code.
pub fn report(program: &str, err: &anyhow::Error) -> ExitCode {
    let line = format!("{err:#}").replace('\n', " ");
    eprintln!("{program}: error: {line}");
    ExitCode::from(code_for(err))
}

/// Parse the command line, or print one line (or the help) and say how to exit.
pub fn parse<C: clap::Parser>(program: &str) -> Result<C, ExitCode> {
    C::try_parse().map_err(|err| clap_exit(program, err, &C::command()))
}

/// Turn a binary's result into its exit code, reporting an error in one line.
pub fn finish(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(program, &err),
    }
}

/// Exit for a command-line parse error. Help and version print as clap
/// formats them (exit 0). A mistake becomes one line that names the flag and
/// its environment variable, and exit 2. A rejected value is never echoed: it
/// may be a URL with a password in it.
pub fn clap_exit(program: &str, err: clap::Error, command: &clap::Command) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::from(err.exit_code().clamp(0, 255) as u8);
    }
    let args: Vec<String> = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        _ => Vec::new(),
    };
    let described: Vec<String> = args.iter().map(|a| describe_arg(a, command)).collect();
    let message = match err.kind() {
        ErrorKind::MissingRequiredArgument => format!("missing {}", described.join(", ")),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) if !v.is_empty() => Some(format!("use one of {}", v.join(", "))),
                _ => None,
            };
            let why = std::error::Error::source(&err)
                .map(|s| s.to_string())
                .or(valid)
                .unwrap_or_else(|| "it is not valid".into());
            format!("invalid value for {}: {why}", described.join(", "))
        }
        _ => {
            let rendered = err.to_string();
            rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_owned()
        }
    };
    eprintln!("{program}: error: {message} (see `{program} --help`)");
    ExitCode::from(BAD_CONFIG)
}

/// `--database-url <URL>` → `--database-url <URL> (env DATABASE_URL)`.
fn describe_arg(rendered: &str, command: &clap::Command) -> String {
    let long = rendered.trim_start_matches("--").split([' ', '=']).next().unwrap_or_default();
    match find_env(command, long) {
        Some(env) => format!("{rendered} (env {env})"),
        None => rendered.to_owned(),
    }
}

fn find_env(command: &clap::Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|sub| find_env(sub, long)))
}
