//! Recordings and their segment ledger: the domain types, where a
//! recording's media lives in object storage, and handing a recording to a
//! cell under a fresh fencing token.

pub mod chat_ledger;
mod ledger;
mod playlist;
mod publish;
mod recordings;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{ObjectKey, StorageError};

pub use ledger::{Ledger, LedgerError, Progress, SegmentFix, fix_segment};
pub use playlist::{Continuity, Header, LiveWindow, PlaylistKind, relative_to, render, render_with};
pub use publish::{PublishError, VodArgs, publish_vod};
pub use recordings::{Assignment, OpenedVod, assign_live};
/// Writes to the `recordings` table outside the ledger; nothing else writes it.
pub mod rows {
    pub use super::recordings::{
        delete_if_unwritten, fail, note_broadcast, note_error, open_vod, set_storage_class, set_totals,
    };
}

pub use colony_vocab::{MediaSource, RecordingState};

/// One ledger row: a stored segment, or an explicit gap.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, Serialize, Deserialize)]
pub struct LedgerRow {
    pub epoch: i32,
    pub media_sequence: i64,
    pub duration_secs: f64,
    pub bytes: i64,
    pub object_key: Option<String>,
    pub init_key: Option<String>,
    pub program_date_time: Option<DateTime<Utc>>,
    pub source: MediaSource,
    pub is_gap: bool,
    pub gap_count: i32,
    pub is_ad: bool,
    pub discontinuity: bool,
    /// For a gap row: why it is one.
    #[sqlx(default)]
    pub gap_reason: Option<String>,
    /// Something worth knowing about a stored segment: repair's findings, or
    /// that it was adopted from storage with an estimated duration.
    #[sqlx(default)]
    pub warning: Option<String>,
}

impl LedgerRow {
    /// A gap row for `count` sequence numbers from `first_sequence`. A count
    /// beyond what the column holds is stored as its maximum; the reason
    /// (see [`because`](Self::because)) carries the true one.
    pub fn gap(epoch: u32, first_sequence: u64, count: u64, estimated_secs: f64, source: MediaSource) -> Self {
        Self {
            epoch: i32::try_from(epoch).unwrap_or(i32::MAX),
            media_sequence: i64::try_from(first_sequence).unwrap_or(i64::MAX),
            duration_secs: estimated_secs,
            bytes: 0,
            object_key: None,
            init_key: None,
            program_date_time: None,
            source,
            is_gap: true,
            gap_count: count.min(i32::MAX as u64) as i32,
            is_ad: false,
            discontinuity: true,
            gap_reason: None,
            warning: None,
        }
    }

    /// The row of a segment stored under `key`, `bytes` long and lasting
    /// `duration_secs` (with `init_key` for fMP4), with nothing else known
    /// of it.
    pub fn object(
        epoch: u32,
        sequence: u64,
        duration_secs: f64,
        key: &ObjectKey,
        init_key: Option<String>,
        bytes: u64,
        source: MediaSource,
    ) -> Self {
        Self {
            epoch: i32::try_from(epoch).unwrap_or(i32::MAX),
            media_sequence: i64::try_from(sequence).unwrap_or(i64::MAX),
            duration_secs,
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            object_key: Some(key.to_string()),
            init_key,
            program_date_time: None,
            source,
            is_gap: false,
            gap_count: 0,
            is_ad: false,
            discontinuity: false,
            gap_reason: None,
            warning: None,
        }
    }

    /// The row of a stored segment: `segment` as the source described it,
    /// `bytes` long, stored under `key` (with `init_key` for fMP4).
    pub fn stored(
        epoch: u32,
        segment: &crate::hls::SourceSegment,
        key: &ObjectKey,
        init_key: Option<String>,
        bytes: u64,
        source: MediaSource,
    ) -> Self {
        Self {
            program_date_time: segment.program_date_time,
            is_ad: segment.is_ad,
            discontinuity: segment.discontinuity,
            ..Self::object(epoch, segment.sequence, segment.duration, key, init_key, bytes, source)
        }
    }

    /// The gap that takes this row's place (same epoch, sequence, duration
    /// and source) when its object never reached storage, with why.
    pub fn into_gap(self, reason: impl Into<String>) -> Self {
        Self {
            epoch: self.epoch,
            media_sequence: self.media_sequence,
            ..Self::gap(0, 0, 1, self.duration_secs, self.source)
        }
        .because(reason)
    }

    /// The same row with why it is a gap.
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.gap_reason = Some(reason.into());
        self
    }
}

/// `{prefix}/e{epoch}/{seq}.{ext}`
pub fn segment_key(prefix: &ObjectKey, epoch: u32, sequence: u64, extension: &str) -> Result<ObjectKey, StorageError> {
    prefix.join(&format!("e{epoch}/{sequence:08}.{extension}"))
}

/// `{prefix}/e{epoch}/init-{n}.mp4`: an fMP4 init section.
pub fn init_key(prefix: &ObjectKey, epoch: u32, n: usize) -> Result<ObjectKey, StorageError> {
    prefix.join(&format!("e{epoch}/init-{n}.mp4"))
}

/// `{prefix}/playlist.m3u8`: the EVENT playlist while live, the VOD one after.
pub fn playlist_key(prefix: &ObjectKey) -> Result<ObjectKey, StorageError> {
    prefix.join("playlist.m3u8")
}
