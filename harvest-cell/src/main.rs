//! `harvest-cell`: a thin shell over the `colony` library.

use std::process::ExitCode;

use clap::Parser;
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
    let cli: Cli = match colony::exit::parse("harvest-cell") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    colony::telemetry::init(&cli.log);
    colony::exit::finish("harvest-cell", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _pool = colony::db::connect(&cli.db).await?;
    let _store = colony::storage::open(&cli.storage).await?;
    anyhow::bail!("job execution is not part of this build yet; this binary only verifies its configuration")
}
