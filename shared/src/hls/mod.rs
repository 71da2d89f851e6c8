//! HLS as the recorder needs it: fetch a playlist, pick a variant from a
//! master playlist, and normalise a media playlist into segments with absolute
//! URLs, carried-forward `EXT-X-MAP`, byte ranges and program date-times.
//!
//! Parsing is pure ([`parse`]); fetching is a thin layer over reqwest
//! ([`HlsClient`]) that streams every response under a size cap and asks the
//! [`FetchPolicy`] before it connects anywhere.

mod fetch;
mod parse;
pub mod policy;

use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

pub use fetch::{Body, FetchLimits, HlsClient, HlsError, Retry, SPILL_AT, loggable, refusal_in};
pub use parse::{
    Clamp, MAX_SEQUENCE, ParseError, ParseLimits, Parsed, Variant, VariantChoice, parse_media, parse_playlist,
    pick_variant,
};
pub use policy::{FetchPolicy, HostPattern, Refusal};

/// The longest target duration Colony believes. Reload cadence and offline
/// detection follow the target duration, so a source that claims a day would
/// otherwise be reloaded once a day; real sources use 1 to 12 seconds.
pub const MAX_TARGET_DURATION: Duration = Duration::from_secs(30);

/// The longest segment duration Colony believes, in seconds (one hour). An
/// `EXTINF` above it is clamped, so durations, dates and caps derived from it
/// stay in range.
pub const MAX_SEGMENT_SECS: f64 = 3600.0;

/// An `EXT-X-MAP` init section: where it is and which bytes of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InitRef {
    pub uri: Url,
    pub byte_range: Option<ByteRange>,
}

/// `EXT-X-BYTERANGE` resolved to an absolute offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

impl ByteRange {
    /// The HTTP `Range` header value.
    pub fn header(&self) -> String {
        format!("bytes={}-{}", self.offset, self.end().saturating_sub(1))
    }

    /// The first byte after the range (the parser refuses ranges past 2^64).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.length)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceSegment {
    pub sequence: u64,
    pub uri: Url,
    pub duration: f64,
    pub byte_range: Option<ByteRange>,
    pub init: Option<InitRef>,
    pub program_date_time: Option<DateTime<Utc>>,
    /// `EXT-X-DISCONTINUITY` before this segment in the source.
    pub discontinuity: bool,
    /// An advertisement stitched in by the source, as far as it says so.
    pub is_ad: bool,
}

impl SourceSegment {
    /// File extension for storage: fMP4 media when an init section applies.
    pub fn extension(&self) -> &'static str {
        if self.init.is_some() { "m4s" } else { "ts" }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MediaPlaylist {
    pub target_duration: Duration,
    pub media_sequence: u64,
    pub segments: Vec<SourceSegment>,
    /// `EXT-X-ENDLIST`: the source says the broadcast is over.
    pub ended: bool,
    /// Values the source sent out of range, and what was used instead.
    pub clamps: Vec<Clamp>,
}

impl MediaPlaylist {
    pub fn last_sequence(&self) -> Option<u64> {
        self.segments.last().map(|s| s.sequence)
    }

    /// How long after a change to load the playlist again: the target
    /// duration (RFC 8216 §6.3.4, already clamped to [`MAX_TARGET_DURATION`]),
    /// or less when the segments it holds are shorter, so a source that
    /// claims a long target but publishes short segments is still followed.
    pub fn reload_interval(&self) -> Duration {
        let target = self.target_duration.as_secs_f64().max(1.0);
        if self.segments.is_empty() {
            return self.target_duration;
        }
        let mean = self.segments.iter().map(|s| s.duration).sum::<f64>() / self.segments.len() as f64;
        Duration::from_secs_f64(if mean.is_finite() { mean.clamp(1.0, target) } else { target })
    }
}
