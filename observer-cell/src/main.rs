//! `observer-cell`: a thin shell over the `colony` library.

use std::process::ExitCode;

use clap::Parser;
use colony::config::DatabaseArgs;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;

/// An observer cell records one live channel into object storage. The mothership starts it; it is
/// not meant to be run by hand except to test a deployment.
#[derive(Debug, Parser)]
#[command(name = "observer-cell", version)]
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
    let cli: Cli = match colony::exit::parse("observer-cell") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    colony::telemetry::init(&cli.log);
    colony::exit::finish("observer-cell", run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let _pool = colony::db::connect(&cli.db).await?;
    let _store = colony::storage::open(&cli.storage).await?;
    anyhow::bail!("live recording is not part of this build yet; this binary only verifies its configuration")
}
