//! The observer cell: records one live channel natively from HLS into object
//! storage, one ledger row per segment, from the first segment the source
//! still offers to the end of the broadcast.
//!
//! Three tasks cooperate around a pure [`Tracker`]: the recorder loop reloads
//! the playlist on the RFC 8216 §6.3.4 cadence and hands out fetches; fetch
//! tasks download and upload segments (spooling to local disk when storage is
//! down); the [`writer`] task writes ledger rows and heartbeats, buffering when
//! Postgres is down. Every write is fenced on the lease token: once the
//! recording has been handed to a replacement, this cell stops at once.
//!
//! **Start reading here:** `recorder.rs`. It opens with [`run`] (admit,
//! start, loop, end) and the loop itself, `Recorder::record_until_end` over
//! one `Phase` (live, or standing by after the source went offline). The
//! rest of a recording's life is in `recorder/`: `admit.rs`, `resume.rs`,
//! `start.rs`, `fetch.rs` and `finalize.rs`. Around the recorder:
//! `tracker.rs` (the pure bookkeeping of sequences, epochs and gaps),
//! `writer.rs` (the Postgres side), `spool.rs` (local disk while storage is
//! down), `adopt.rs` (what an earlier cell stored), `chat_capture/` (the
//! channel's chat), `args.rs` (the contract a launcher hands the cell) and
//! `check.rs` (`observer-cell --check`). `main.rs` is a thin shell over this
//! library.

mod adopt;
mod args;
pub mod chat_capture;
pub mod check;
mod recorder;
mod spool;
mod tracker;
mod writer;

pub use args::{ObserverArgs, RECORDING_ID_ALIAS, RECORDING_ID_VAR, accept_old_names};
pub use recorder::{EndError, RecordingEnd, run};
pub use tracker::{EpochReason, Lost, MAX_IN_FLIGHT, Step, Tracker};
