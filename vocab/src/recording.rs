//! A recording's life and origin, as Postgres stores them
//! (`recording_state` and `media_source` enums).

use serde::{Deserialize, Serialize};

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "recording_state", rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum RecordingState {
    /// An observer is capturing it.
    Recording,
    /// The source went offline; a reconnect within the standby window continues it.
    Standby,
    Complete,
    /// Closed early: its cell was stopped, or the source ended badly.
    Interrupted,
    Failed,
}

impl RecordingState {
    pub const ALL: [RecordingState; 5] = [
        RecordingState::Recording,
        RecordingState::Standby,
        RecordingState::Complete,
        RecordingState::Interrupted,
        RecordingState::Failed,
    ];

    /// Still being written: `recording` or `standby`.
    pub fn is_open(self) -> bool {
        matches!(self, RecordingState::Recording | RecordingState::Standby)
    }

    /// The name Postgres stores.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Standby => "standby",
            RecordingState::Complete => "complete",
            RecordingState::Interrupted => "interrupted",
            RecordingState::Failed => "failed",
        }
    }

    /// The state a stored name spells, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        RecordingState::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

impl std::fmt::Display for RecordingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a recording's media came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = "media_source", rename_all = "lowercase"))]
#[serde(rename_all = "lowercase")]
pub enum MediaSource {
    /// Captured from a live playlist by an observer.
    Live,
    /// Downloaded after the fact by a harvest cell.
    Vod,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recording_and_standby_are_open() {
        let open: Vec<_> = RecordingState::ALL.into_iter().filter(|s| s.is_open()).collect();
        assert_eq!(open, [RecordingState::Recording, RecordingState::Standby]);
        for s in RecordingState::ALL {
            assert_eq!(RecordingState::parse(s.as_str()), Some(s));
        }
    }
}
