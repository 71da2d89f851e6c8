//! `harvest-cell`: a thin shell over the `colony` library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use colony::config::DatabaseArgs;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;

/// A harvest cell works the job queue: VOD downloads, re-encodes, repairs, exports, thumbnails.
/// Run any number of them, on any machine that reaches Postgres and object storage.
#[derive(Debug, Parser)]
#[command(name = "harvest-cell", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    storage: StorageArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return colony::exit::clap_exit("harvest-cell", err, &Cli::command()),
    };
    colony::telemetry::init(&cli.log);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => colony::exit::report("harvest-cell", &err),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _pool = colony::db::connect(&cli.db).await?;
    let _store = colony::storage::open(&cli.storage).await?;
    anyhow::bail!("job execution is not part of this build yet; this binary only verifies its configuration")
}
