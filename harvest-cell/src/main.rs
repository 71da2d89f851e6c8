//! `harvest-cell`: works the job queue. A thin shell over the `harvest_cell` library.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use colony::config::DatabaseArgs;
use colony::exit::Exit;
use colony::queue::Queue;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;
use harvest_cell::{Ctx, HarvestArgs};
use tokio_util::sync::CancellationToken;

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
    storage: StorageArgs,
    #[command(flatten)]
    harvest: HarvestArgs,
    /// How often the cell tells the mothership it is alive.
    #[arg(long, env = "COLONY_HEARTBEAT_INTERVAL", default_value = "10s", value_name = "DURATION")]
    heartbeat: colony::config::NonZeroDuration,
    /// This cell's id; the mothership sets it, a joining laptop gets a fresh one.
    #[arg(long = "cell-id", env = "COLONY_CELL_ID", value_name = "UUID")]
    cell_id: Option<uuid::Uuid>,
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
    let kinds = cli.harvest.kind_filter().map_err(Exit::config)?;
    let pool = colony::db::connect(&cli.db).await?;
    let store = colony::storage::open(&cli.storage).await?;
    let cell_id = cli.cell_id.unwrap_or_else(uuid::Uuid::new_v4);
    match harvest_cell::register(&pool, cell_id).await {
        Ok(()) => {}
        Err(e @ harvest_cell::CellError::Gone(_)) => {
            return Err(colony::exit::classified(e));
        }
        Err(e) => return Err(anyhow::Error::from(e).context("registering the cell")),
    }
    let stop = CancellationToken::new();
    let signal = colony::signals::stop_signal().context("installing the SIGTERM handler")?;
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("stop requested: no new jobs; running ones get the shutdown deadline");
            stop.cancel();
        });
    }
    // A cell whose row the mothership buried stops claiming and leaves.
    let buried = CancellationToken::new();
    let heartbeat = {
        let (pool, stop, buried, every) = (pool.clone(), stop.clone(), buried.clone(), cli.heartbeat.into());
        tokio::spawn(async move {
            harvest_cell::heartbeat_cell(pool, cell_id, every).await;
            buried.cancel();
            stop.cancel();
        })
    };
    let ctx = Ctx {
        queue: Queue::new(pool.clone()),
        store,
        hls: colony::hls::HlsClient::for_vods(cli.harvest.fetch_timeout.into(), cli.harvest.limits),
        worker: cell_id.to_string(),
        kinds,
        args: cli.harvest,
    };
    let done = harvest_cell::work(ctx, stop).await?;
    heartbeat.abort();
    if buried.is_cancelled() {
        return Err(Exit::fenced("the mothership marked this cell dead; it stopped without claiming more").into());
    }
    harvest_cell::mark_exited(&pool, cell_id).await.context("marking the cell exited")?;
    tracing::info!(jobs = done, "harvest cell exiting");
    Ok(())
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
