//! Logging set-up shared by the binaries: human-readable or JSON lines on
//! stderr, filtered by `COLONY_LOG` (or `RUST_LOG`) syntax.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log format on stderr: `human` for people, `json` for log shippers.
    #[arg(long, env = "COLONY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `colony=debug,sqlx=warn`.
    #[arg(long = "log", env = "COLONY_LOG", default_value = "info", value_name = "FILTER")]
    pub log_filter: String,
}

/// Install the global subscriber. Safe to call once per process.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match args.log_format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
