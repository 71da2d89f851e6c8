//! The harvest cell: a queue worker for the work that can wait.
//!
//! Start reading here: `worker.rs` holds the loop. [`work_once`] claims one
//! job, runs it under a lease it keeps renewing, and completes or fails it;
//! the loop runs it `--concurrency` times over until the cell is idle,
//! drained or stopped. Around the loop, `cell.rs` holds the cell's life:
//! [`run`] (what the binary calls) registers the cell, heartbeats it, stops
//! on SIGTERM or burial, and ends as a [`CellEnd`] or a classified
//! [`CellError`]. [`jobs`] holds a handler per job kind and
//! [`jobs::JobError`], whose class decides retry or dead; `args.rs` holds
//! the flags.

mod args;
mod cell;
pub mod jobs;
mod worker;

pub use args::{HarvestArgs, KindTimeout, KindsError};
pub use cell::{CellEnd, CellError, run};
pub use worker::{Ctx, JobResult, Turn, work_once};
