//! `mothership`: Colony's control plane. This file only parses arguments and
//! reports errors; the work lives in the `colony` library.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use colony::config::DatabaseArgs;
use colony::storage::StorageArgs;
use colony::telemetry::LogArgs;

/// Colony's control plane: starts one observer cell per live channel and a pool
/// of harvest cells sized to the job queue. Postgres is the only source of truth.
#[derive(Debug, Parser)]
#[command(name = "mothership", version, propagate_version = true)]
#[command(after_help = "Every flag can also be set through the environment variable shown beside it.\n\
First run: `mothership migrate`, then `mothership check`.")]
struct Cli {
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the database schema. Safe to run again: it applies
    /// only what is missing, and refuses a database newer than this binary.
    Migrate {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Check that Postgres answers with this binary's schema and that object
    /// storage is reachable and writable; print what was found.
    Check {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        storage: StorageArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match colony::exit::parse("mothership") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    colony::telemetry::init(&cli.log);
    colony::exit::finish("mothership", run(cli.command).await)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Migrate { db } => {
            let pool = colony::db::connect_unchecked(&db).await?;
            let report = colony::db::migrate(&pool).await?;
            if report.applied.is_empty() {
                println!("schema is up to date at version {}; nothing to do", report.version);
            } else {
                println!("applied {} migration(s); schema is at version {}", report.applied.len(), report.version);
            }
        }
        Command::Check { db, storage } => {
            let pool = colony::db::connect(&db).await?;
            println!("postgres: {} (schema version {})", db.database_url, colony::db::binary_version());
            let store = colony::storage::open(&storage).await?;
            colony::storage::probe_writable(store.as_ref()).await.context("object storage is not writable")?;
            println!("storage:  {} (writable)", store.describe());
            drop(pool);
        }
    }
    Ok(())
}
