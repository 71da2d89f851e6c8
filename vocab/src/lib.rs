//! Colony's vocabulary: the names the planner, the shared crate and every
//! role use for the same things, defined once so that no crate maps one
//! spelling onto another by hand.
//!
//! - [`CellKind`]: the two kinds of cell, as `cells.kind` stores them;
//! - [`Platform`]: the streaming platforms Colony knows;
//! - [`JobKind`]: every kind of job the queue carries;
//! - [`RecordingState`] and [`MediaSource`]: a recording's life and origin;
//! - [`ChannelId`] and [`RecordingId`]: ids that must not be mixed up.
//!
//! Plain values only: nothing here reads a clock, a file or a socket.

pub mod exit;
mod ids;
mod job;
mod platform;
mod recording;

pub use ids::{ChannelId, RecordingId};
pub use job::{JobKind, UnknownKind};
pub use platform::{Platform, UnknownPlatform};
pub use recording::{MediaSource, RecordingState};

use serde::{Deserialize, Serialize};

/// Which role a cell plays, as stored in `cells.kind` (a Postgres enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// Records one live channel.
    Observer,
    /// Works the job queue.
    Harvest,
}

impl CellKind {
    pub const ALL: [CellKind; 2] = [CellKind::Observer, CellKind::Harvest];

    /// The name stored in `cells.kind` and shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            CellKind::Observer => "observer",
            CellKind::Harvest => "harvest",
        }
    }

    /// The kind a stored name spells, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        CellKind::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_kind_reads_back_what_it_writes() {
        for kind in CellKind::ALL {
            assert_eq!(CellKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(CellKind::parse("Observer"), None);
    }
}
