//! What one tick observed, as plain values: the planner's whole input.
//!
//! Nothing here touches a database or a backend, so tests (and the property
//! tests) can build any state by hand. `observe.rs` fills these from
//! Postgres and the launcher's own listing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub use colony_vocab::CellKind;

/// The states of a cell row that still count (exited and dead ones do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Starting,
    Running,
    /// The mothership asked it to stop; it is finishing.
    Stopping,
}

/// A channel with its probed liveness and its open live recording, if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelView {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub enabled: bool,
    pub live: bool,
    pub live_since: Option<DateTime<Utc>>,
    /// A live recording still in `recording` or `standby`.
    pub open_recording: Option<i64>,
    /// Starts of an observer for this channel that failed in a row, and when
    /// the next may be tried (exponential backoff).
    pub start_failures: u32,
    pub start_retry_at: Option<DateTime<Utc>>,
    /// When the observation behind `live` was made (the probe's start).
    pub probed_at: Option<DateTime<Utc>>,
    /// When the channel's last live recording ended (finalized), if one did.
    pub last_ended_at: Option<DateTime<Utc>>,
}

impl ChannelView {
    /// Live, by a probe made after the channel's last recording ended. An
    /// observer that saw a broadcast end knows more than any probe older than
    /// that end: a source that keeps serving its final playlist (or a
    /// platform API that lags) must not start the same broadcast again.
    pub fn live_after_end(&self) -> bool {
        self.live && !self.probe_predates_end()
    }

    /// The last recording ended after (or without) the probe that says live.
    pub fn probe_predates_end(&self) -> bool {
        match (self.last_ended_at, self.probed_at) {
            (Some(end), Some(probe)) => probe <= end,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A cell row in an active state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellView {
    pub id: Uuid,
    pub kind: CellKind,
    /// `process`, `docker`, `ecs` or `manual` (joined by itself).
    pub backend: String,
    pub backend_ref: Option<String>,
    /// None for a harvest cell, or an observer whose channel was removed.
    pub channel_id: Option<i64>,
    pub state: ActiveState,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// Jobs this cell holds right now (harvest cells).
    pub running_jobs: u32,
    /// An observer that holds its lease and has fetched from the source (or
    /// found it offline): a cell it replaces may stop now.
    pub caught_up: bool,
}

/// Something the launcher backend runs under this colony's labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// pid, container id or task ARN.
    pub backend_ref: String,
    /// From the `colony.cell.id` label; None if the label is missing or garbled.
    pub cell_id: Option<Uuid>,
    pub kind: Option<CellKind>,
    /// False for a container that exited but was not removed.
    pub running: bool,
}

/// A running job whose lease ran out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExpiredLease {
    pub job_id: i64,
    pub worker: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueView {
    pub ready: u64,
    pub running: u64,
    pub delayed: u64,
    pub dead: u64,
    pub oldest_ready_secs: Option<f64>,
    pub expired_leases: Vec<ExpiredLease>,
}

/// What earlier ticks recorded, read back for the stabilization window and
/// the idle cooldown.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// The largest harvest pool wanted by a tick inside the scale-down window.
    pub max_want_in_window: u32,
    /// The last tick that saw ready or running jobs.
    pub last_busy_at: Option<DateTime<Utc>>,
}

/// Everything the planner looks at.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    /// The launcher in use: only its own cells can be found "gone" by listing.
    pub backend: String,
    pub channels: Vec<ChannelView>,
    /// Cells in `starting`, `running` or `stopping`.
    pub cells: Vec<CellView>,
    /// The backend's listing; None when it could not be listed this tick
    /// (then nothing is declared gone or orphaned on its say-so).
    pub instances: Option<Vec<Instance>>,
    /// The backend lists a started cell at once (process, docker): a cell it
    /// does not list is gone. False for ECS, where the start grace applies.
    pub lists_at_once: bool,
    pub queue: QueueView,
    pub history: History,
    /// Harvest cell starts that failed in a row, and when the next may be tried.
    pub harvest_start_failures: u32,
    pub harvest_retry_at: Option<DateTime<Utc>>,
    /// When Postgres last started. A cell cannot heartbeat while it is down,
    /// so heartbeats are only judged over the time since.
    pub database_up_since: Option<DateTime<Utc>>,
}
