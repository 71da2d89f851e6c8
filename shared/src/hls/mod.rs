//! HLS as the recorder needs it: fetch a playlist, pick a variant from a
//! master playlist, and normalise a media playlist into segments with absolute
//! URLs, carried-forward `EXT-X-MAP`, byte ranges and program date-times.
//!
//! Parsing is pure ([`parse`]); fetching is a thin layer over reqwest
//! ([`HlsClient`]).

mod fetch;
mod parse;

use std::time::Duration;

use chrono::{DateTime, Utc};
use url::Url;

pub use fetch::{HlsClient, HlsError};
pub use parse::{Parsed, VariantChoice, parse_media, parse_playlist, pick_variant};

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
        format!("bytes={}-{}", self.offset, self.offset + self.length.saturating_sub(1))
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
}

impl MediaPlaylist {
    pub fn last_sequence(&self) -> Option<u64> {
        self.segments.last().map(|s| s.sequence)
    }
}
