//! The cell's life around the worker loop. [`run`] registers the cell in the
//! `cells` table, heartbeats its row so the mothership counts it in the
//! pool, stops claiming on SIGTERM or when the mothership buries the row,
//! and marks the row exited when it leaves of its own accord. How it ended
//! comes back typed, for the binary to turn into its exit code: a
//! [`CellEnd`], or a [`CellError`] with its class.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::HarvestArgs;
use crate::worker::{self, Ctx};
use colony::cells::{self, CellKind, Registration};
use colony::exit::{Classify, ErrorClass};
use colony::hls::HlsClient;
use colony::queue::{KindFilter, Queue};
use colony::storage::ObjectStore;

/// How a cell that got to work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellEnd {
    /// Idle for `--idle-exit`, drained, or stopped by SIGTERM: its row says
    /// it exited.
    Finished { jobs: u64 },
    /// The mothership marked this cell dead while it worked: it stopped
    /// claiming and left, and its row stays as the mothership wrote it.
    Buried,
}

#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("cell {0} was marked dead or told to stop by the mothership; it must not run")]
    Gone(uuid::Uuid),
    #[error("registering the cell: database error")]
    Register(#[source] sqlx::Error),
    #[error("installing the SIGTERM handler")]
    Signal(#[source] std::io::Error),
    #[error("marking the cell exited")]
    MarkExited(#[source] sqlx::Error),
}

impl Classify for CellError {
    fn class(&self) -> ErrorClass {
        match self {
            CellError::Gone(_) => ErrorClass::Fenced,
            CellError::Register(_) | CellError::MarkExited(_) => ErrorClass::Transient,
            // The host refused a signal handler: a retry would meet the same refusal.
            CellError::Signal(_) => ErrorClass::Permanent,
        }
    }
}

/// Run the cell: register, work the queue until idle, drained or stopped,
/// and leave. `kinds` is what [`HarvestArgs::kind_filter`] made of `args`.
pub async fn run(
    args: HarvestArgs,
    kinds: KindFilter,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
) -> Result<CellEnd, CellError> {
    let cell_id = args.cell_id.unwrap_or_else(uuid::Uuid::new_v4);
    register(&pool, cell_id).await?;
    let stop = CancellationToken::new();
    let signal = colony::signals::stop_signal().map_err(CellError::Signal)?;
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            signal.await;
            info!("stop requested: no new jobs; running ones get the shutdown deadline");
            stop.cancel();
        });
    }
    // A cell whose row the mothership buried stops claiming and leaves.
    let buried = CancellationToken::new();
    let heartbeat = {
        let (pool, stop, buried, every) = (pool.clone(), stop.clone(), buried.clone(), args.heartbeat.into());
        tokio::spawn(async move {
            heartbeat(pool, cell_id, every).await;
            buried.cancel();
            stop.cancel();
        })
    };
    let ctx = Ctx {
        queue: Queue::new(pool.clone()),
        store,
        hls: HlsClient::for_vods(args.fetch_timeout.into(), args.limits),
        worker: cell_id.to_string(),
        kinds,
        args,
    };
    let jobs = worker::work(ctx, stop).await;
    heartbeat.abort();
    if buried.is_cancelled() {
        return Ok(CellEnd::Buried);
    }
    // The cell is leaving of its own accord.
    cells::mark_exited(&pool, cell_id).await.map_err(CellError::MarkExited)?;
    info!(jobs, "harvest cell exiting");
    Ok(CellEnd::Finished { jobs })
}

/// Record this cell in the cells table (the mothership may have already).
/// A row the mothership marked dead, exited or stopping stays so: the cell
/// must not run, and gets [`CellError::Gone`].
async fn register(pool: &PgPool, cell_id: uuid::Uuid) -> Result<(), CellError> {
    let me =
        Registration { id: cell_id, role: CellKind::Harvest, channel_id: None, recording_id: None, lease_token: None };
    if cells::register(pool, me).await.map_err(CellError::Register)? { Ok(()) } else { Err(CellError::Gone(cell_id)) }
}

/// Keep the cell row's heartbeat fresh so the mothership counts this cell
/// in the pool. Returns when the row is no longer active (the mothership
/// buried the cell): the cell must then stop.
async fn heartbeat(pool: PgPool, cell_id: uuid::Uuid, every: Duration) {
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
