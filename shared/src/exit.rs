//! Exit codes every binary shares (DESIGN.md): 0 done, 2 bad configuration or
//! input, 3 fenced out by a replacement, 4 a tick that carried out its plan
//! but some actions failed, 1 anything else. And the one-line error report
//! that goes with them.
//!
//! Every error type answers one question, [`Classify::class`]: is it the
//! operator's configuration, a passing failure worth another try, a
//! permanent one, or a sign that this process was fenced out? The mapping
//! from that answer to an exit code is [`ErrorClass::exit_code`], and
//! [`code_for`] is the one place that finds the answer in an error chain.

use std::process::ExitCode;

use crate::config::InvalidDatabaseUrl;
use crate::db::DbError;
use crate::storage::StorageError;

pub use colony_vocab::exit::{ACTIONS_FAILED, BAD_CONFIG, Classify, ErrorClass, FAILURE, FENCED, OK};

/// An error whose class is known, carried through `anyhow` so that
/// [`code_for`] can find it: the boundary wraps a role's own error types
/// with [`classified`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub class: ErrorClass,
    pub message: String,
}

impl Exit {
    /// A configuration or input mistake, in one line that says how to fix it.
    pub fn config(message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Config, message: message.into() }
    }

    /// This process was fenced out: a replacement holds its work.
    pub fn fenced(message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Fenced, message: message.into() }
    }
}

impl Classify for Exit {
    fn class(&self) -> ErrorClass {
        self.class
    }
}

/// An error with its class and its whole chain, as one value `anyhow`
/// carries: how a binary hands a classified error to [`finish`].
pub fn classified<E: Classify + std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    let class = e.class();
    anyhow::Error::from(Exit { class, message: crate::error_chain(&e) })
}

impl Classify for InvalidDatabaseUrl {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}

impl Classify for DbError {
    fn class(&self) -> ErrorClass {
        if self.is_configuration() { ErrorClass::Config } else { ErrorClass::Transient }
    }
}

impl Classify for StorageError {
    fn class(&self) -> ErrorClass {
        if self.is_configuration() {
            ErrorClass::Config
        } else if self.is_transient() {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        }
    }
}

/// A run that did its work but not all of it: a tick whose plan was carried
/// out while some actions failed (exit 4).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PartlyFailed(pub String);

/// Its class is a failure; [`code_for`] gives it exit 4, not 1.
impl Classify for PartlyFailed {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}

/// The class of one cause, for the types the shared crate knows.
fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ErrorClass> {
    if let Some(e) = cause.downcast_ref::<Exit>() {
        return Some(e.class());
    }
    if let Some(e) = cause.downcast_ref::<InvalidDatabaseUrl>() {
        return Some(e.class());
    }
    if let Some(e) = cause.downcast_ref::<DbError>() {
        return Some(e.class());
    }
    cause.downcast_ref::<StorageError>().map(Classify::class)
}

/// The exit code for an error: the first cause in the chain whose class is
/// known decides; anything else is a failure (1).
pub fn code_for(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<PartlyFailed>().is_some() {
        return ACTIONS_FAILED;
    }
    err.chain().find_map(class_of).map_or(FAILURE, ErrorClass::exit_code)
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
