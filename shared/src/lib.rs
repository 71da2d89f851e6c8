//! What more than one Colony role uses: the database guard, the job queue
//! and the typed arguments of each job kind, object storage (file and S3),
//! HLS fetching and parsing, recordings with their segment and chat ledgers,
//! channels, platform pages and resolver profiles, configuration parsed once
//! at the boundary, telemetry, signals and exit reporting.
//!
//! The names every crate shares (cell kinds, platforms, job kinds, recording
//! states, error classes) are `colony-vocab`'s, re-exported here where they
//! have always been found. The roles live in their own crates:
//! `observer-cell/`, `harvest-cell/`, `mothership/` and the pure
//! `mothership/planner/`. Code only one role uses lives with that role.
//! Nothing here knows about a launcher, the planner or the web stack.
//!
//! Start reading here: [`recording`] (the ledger every segment goes
//! through), then [`queue`].

pub mod cells;
pub mod channel;
pub mod chat;
pub mod child;
pub mod config;
pub mod db;
pub mod exit;
pub mod hls;
pub mod platform;
pub mod queue;
pub mod recording;
pub mod resolver;
pub mod signals;
pub mod storage;
pub mod telemetry;

/// The version every binary reports and records on its cell row.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// This machine's name, recorded on cell rows so an operator can find a cell.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// An error and its causes on one line, like anyhow's `{:#}`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
