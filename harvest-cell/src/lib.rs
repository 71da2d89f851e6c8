//! The harvest cell: a queue worker for the work that can wait.
//!
//! Start reading here: `worker.rs` holds the loop. [`work_once`] claims one
//! job, runs it under a lease it keeps renewing, and completes or fails it;
//! [`work`] runs it in `--concurrency` loops until the cell is idle, drained
//! or stopped. [`jobs`] holds a handler per job kind and [`jobs::JobError`],
//! whose class decides retry or dead; `args.rs` holds the flags.

mod args;
pub mod jobs;
mod worker;

use std::time::Duration;

use tracing::warn;

use colony::cells::{self, Registration, Role};
use colony::exit::{Classify, ErrorClass};

pub use args::{HarvestArgs, KindTimeout};
pub use worker::{Ctx, JobResult, Turn, work, work_once};

/// Record this cell in the cells table (the mothership may have already).
/// A row the mothership marked dead, exited or stopping stays so: the cell
/// must not run, and gets [`CellGone`].
pub async fn register(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), CellError> {
    let me = Registration { id: cell_id, role: Role::Harvest, channel_id: None, recording_id: None, lease_token: None };
    if cells::register(pool, me).await? { Ok(()) } else { Err(CellError::Gone(cell_id)) }
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("cell {0} was marked dead or told to stop by the mothership; it must not run")]
    Gone(uuid::Uuid),
    #[error("database error")]
    Db(#[from] sqlx::Error),
}

impl Classify for CellError {
    fn class(&self) -> ErrorClass {
        match self {
            CellError::Gone(_) => ErrorClass::Fenced,
            CellError::Db(_) => ErrorClass::Transient,
        }
    }
}

/// Keep the cell row's heartbeat fresh so the mothership counts this cell
/// in the pool. Returns when the row is no longer active (the mothership
/// buried the cell): the cell must then stop.
pub async fn heartbeat_cell(pool: sqlx::PgPool, cell_id: uuid::Uuid, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let beat = cells::heartbeat(&pool, cell_id);
        match tokio::time::timeout(every.max(Duration::from_secs(1)), beat).await {
            Ok(Ok(false)) => {
                warn!("this cell's row is no longer active (the mothership marked it dead); stopping");
                return;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "cell heartbeat failed; retrying at the next interval"),
            Err(_) => warn!("cell heartbeat got no answer; retrying at the next interval"),
        }
    }
}

/// The cell is leaving of its own accord.
pub async fn mark_exited(pool: &sqlx::PgPool, cell_id: uuid::Uuid) -> Result<(), sqlx::Error> {
    cells::mark_exited(pool, cell_id).await
}
