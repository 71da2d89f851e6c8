//! `harvest-cell`: works the job queue. A thin shell over the
//! `harvest_cell` library: parse the flags, connect, run the cell, exit with
//! the code DESIGN.md fixes (0 done, 2 bad configuration, 3 fenced out, 1 other).

use std::process::ExitCode;

use clap::Parser;
use colony::config::{DatabaseArgs, StartArgs};
use colony::exit::Exit;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;
use harvest_cell::{CellEnd, HarvestArgs};

/// A harvest cell works Colony's job queue: VOD downloads for backfill,
/// re-encodes to an ABR ladder, repairs, exports, thumbnails and cold tiering. Run any number
/// of them, on any machine that reaches Postgres and object storage; they
/// never run the same job twice. A cell exits by itself after --idle-exit
/// with nothing to do (or when the queue is empty, with --drain). SIGTERM:
/// stop claiming, let running jobs finish within --shutdown-deadline, hand
/// back the rest without spending an attempt, exit 0.
#[derive(Debug, Parser)]
#[command(name = "harvest-cell", version)]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    db: DatabaseArgs,
    #[command(flatten)]
    start: StartArgs,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    harvest: HarvestArgs,
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
    let kinds = cli.harvest.kind_filter().map_err(colony::exit::classified)?;
    let pool = colony::db::connect_within(&cli.db, cli.start.start_grace.into()).await?;
    let store = colony::storage::open(&cli.storage).await?;
    match harvest_cell::run(cli.harvest, kinds, pool, store).await.map_err(colony::exit::classified)? {
        CellEnd::Finished { .. } => Ok(()),
        CellEnd::Buried => {
            Err(Exit::fenced("the mothership marked this cell dead; it stopped without claiming more").into())
        }
    }
}

#[cfg(test)]
mod tests {
    /// Clap's own checks of the whole command tree (unique argument ids,
    /// valid defaults), which otherwise only fail when a command runs.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
