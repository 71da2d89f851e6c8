//! Pure playlist parsing and variant choice.
//!
//! A playlist is untrusted input: every number in it is checked before any
//! arithmetic, and values no real source sends are either refused with a
//! typed [`ParseError`] or clamped with a [`Clamp`] that the caller logs.
//! What m3u8-rs allocates grows with the input, so the input is bounded
//! first ([`ParseLimits`]); and should the parser itself ever panic on some
//! input, the panic is caught here and becomes an error.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use m3u8_rs::Playlist;
use url::Url;

use super::{ByteRange, InitRef, MAX_SEGMENT_SECS, MAX_TARGET_DURATION, MediaPlaylist, SourceSegment};

/// The largest media sequence number the ledger can store (it is a Postgres
/// `bigint`): 2^63 - 1.
pub const MAX_SEQUENCE: u64 = i64::MAX as u64;

/// How much of a playlist is parsed at all. The parser allocates a few
/// hundred bytes per line, so these bound its memory whatever the source sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most media segments (`#EXTINF` lines) in one playlist.
    pub max_segments: usize,
    /// Most lines in one playlist, tags included.
    pub max_lines: usize,
}

impl ParseLimits {
    /// A live window: real sources offer seconds to a few hours of segments.
    /// 10,000 segments is over five hours of 2-second segments.
    pub const LIVE: ParseLimits = ParseLimits { max_segments: 10_000, max_lines: 60_000 };
    /// A whole VOD: 200,000 segments is over four days of 2-second segments.
    pub const VOD: ParseLimits = ParseLimits { max_segments: 200_000, max_lines: 1_500_000 };
}

/// Why a playlist was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not an m3u8 playlist (no #EXTM3U header)")]
    NotM3u8,
    #[error("malformed playlist: {0}")]
    Malformed(String),
    #[error("the playlist parser failed on this input")]
    ParserFailed,
    #[error("master playlist lists no variants")]
    NoVariants,
    #[error("{what} URI is not valid: {reason}")]
    BadUri { what: &'static str, reason: String },
    #[error("media sequence {0} is beyond 2^63-1, the largest the ledger can store")]
    SequenceOutOfRange(u64),
    #[error("byte range {length}@{offset} is empty or runs past 2^64")]
    BadByteRange { offset: u64, length: u64 },
    #[error("the playlist has {found} {what}, more than the {limit} allowed")]
    TooLarge { what: &'static str, found: usize, limit: usize },
}

/// A value the source sent that was out of range and was clamped.
#[derive(Debug, Clone, PartialEq)]
pub enum Clamp {
    /// `EXT-X-TARGETDURATION` outside 1 s ..= [`MAX_TARGET_DURATION`].
    TargetDuration { sent: u64 },
    /// An `EXTINF` above [`MAX_SEGMENT_SECS`] (or not a finite number).
    SegmentDuration { sequence: u64, sent: f64 },
    /// A program date-time that runs past what a date can hold; later
    /// segments of the playlist carry none.
    ProgramDateTime { sequence: u64 },
}

impl std::fmt::Display for Clamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Clamp::TargetDuration { sent } => write!(
                f,
                "EXT-X-TARGETDURATION:{sent} is outside 1..={}s; using {}s",
                MAX_TARGET_DURATION.as_secs(),
                sent.clamp(&1, &MAX_TARGET_DURATION.as_secs())
            ),
            Clamp::SegmentDuration { sequence, sent } => {
                write!(f, "segment {sequence} claims EXTINF {sent}; using {MAX_SEGMENT_SECS}s")
            }
            Clamp::ProgramDateTime { sequence } => {
                write!(f, "program date-time overflows at segment {sequence}; dropped from there on")
            }
        }
    }
}

/// What a fetched playlist turned out to be.
#[derive(Debug, Clone)]
pub enum Parsed {
    Master(Vec<Variant>),
    Media(MediaPlaylist),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: Url,
    pub bandwidth: u64,
    pub height: Option<u64>,
}

/// Which variant of a master playlist to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariantChoice {
    Best,
    Worst,
    /// The highest-bandwidth variant at this height, e.g. `720p`.
    Height(u64),
}

impl std::str::FromStr for VariantChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "best" => Ok(VariantChoice::Best),
            "worst" => Ok(VariantChoice::Worst),
            other => other
                .strip_suffix('p')
                .and_then(|h| h.parse().ok())
                .map(VariantChoice::Height)
                .ok_or_else(|| format!("'{s}' is not a variant; use best, worst or a height like 720p")),
        }
    }
}

/// Refuse input larger than `limits` before the parser allocates for it.
///
/// Counted as the parser reads: a lone CR ends a line as LF does, and a
/// bare URI line is a segment whether or not an `#EXTINF` precedes it.
fn check_size(bytes: &[u8], limits: ParseLimits) -> Result<(), ParseError> {
    let (mut lines, mut tagged, mut uris) = (0usize, 0usize, 0usize);
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for piece in line.split(|b| *b == b'\r') {
            lines += 1;
            let piece = piece.trim_ascii();
            if piece.starts_with(b"#EXTINF:") {
                tagged += 1;
            } else if piece.first().is_some_and(|b| *b != b'#') {
                uris += 1;
            }
        }
    }
    if lines > limits.max_lines {
        return Err(ParseError::TooLarge { what: "lines", found: lines, limit: limits.max_lines });
    }
    let segments = tagged.max(uris);
    if segments > limits.max_segments {
        return Err(ParseError::TooLarge { what: "segments", found: segments, limit: limits.max_segments });
    }
    Ok(())
}

/// Run the parser, turning a panic inside it into an error.
fn guarded<T>(parse: impl FnOnce() -> T) -> Result<T, ParseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|_| ParseError::ParserFailed)
}

fn malformed(e: impl std::fmt::Debug) -> ParseError {
    ParseError::Malformed(format!("{e:?}").chars().take(200).collect())
}

fn bad_uri(what: &'static str, uri: &str, e: url::ParseError) -> ParseError {
    // The URI is the source's text: show a bounded, escaped prefix of it.
    let shown: String = uri.escape_debug().take(120).collect();
    ParseError::BadUri { what, reason: format!("'{shown}': {e}") }
}

/// Parse a playlist fetched from `base`. Relative URIs resolve against it.
pub fn parse_playlist(bytes: &[u8], base: &Url, limits: ParseLimits) -> Result<Parsed, ParseError> {
    if !bytes.starts_with(b"#EXTM3U") {
        return Err(ParseError::NotM3u8);
    }
    check_size(bytes, limits)?;
    match guarded(|| m3u8_rs::parse_playlist_res(bytes))? {
        Ok(Playlist::MasterPlaylist(master)) => {
            let variants = master
                .variants
                .iter()
                .filter(|v| !v.is_i_frame)
                .filter_map(|v| {
                    Some(Variant {
                        uri: base.join(&v.uri).ok()?,
                        bandwidth: v.bandwidth,
                        height: v.resolution.map(|r| r.height),
                    })
                })
                .collect::<Vec<_>>();
            if variants.is_empty() {
                return Err(ParseError::NoVariants);
            }
            Ok(Parsed::Master(variants))
        }
        Ok(Playlist::MediaPlaylist(_)) => parse_media(bytes, base, limits).map(Parsed::Media),
        Err(e) => Err(malformed(e)),
    }
}

/// The `#EXT-X-DATERANGE` class that marks an ad break (Twitch's stitched ads).
const AD_CLASS: &str = "twitch-stitched-ad";
/// The ID prefix Twitch gives the date range of a stitched ad.
const AD_ID_PREFIX: &str = "stitched-ad-";
/// The client attributes Twitch puts on an ad's date range (`X-TV-TWITCH-AD-URL`, …).
const AD_ATTRIBUTE_PREFIX: &str = "X-TV-TWITCH-AD-";
/// The `#EXTINF` title Twitch puts on ad segments (`Amazon|…`); content
/// segments carry `live` or nothing.
const AD_TITLE_PREFIX: &str = "Amazon|";

fn is_ad_daterange(d: &m3u8_rs::DateRange) -> bool {
    d.class.as_deref() == Some(AD_CLASS)
        || d.id.starts_with(AD_ID_PREFIX)
        || d.x_prefixed.as_ref().is_some_and(|x| x.keys().any(|k| k.starts_with(AD_ATTRIBUTE_PREFIX)))
}

/// Parse a media playlist, carrying `EXT-X-MAP`, byte-range offsets and
/// program date-times forward across segments as RFC 8216 says they apply.
pub fn parse_media(bytes: &[u8], base: &Url, limits: ParseLimits) -> Result<MediaPlaylist, ParseError> {
    check_size(bytes, limits)?;
    let mut playlist = guarded(|| m3u8_rs::parse_media_playlist_res(bytes))?.map_err(malformed)?;
    if !bytes.ends_with(b"\n") && !bytes.ends_with(b"\r") {
        // A response cut short mid-line: its last URI may be a prefix of the
        // real one ("seg/1" for "seg/12.ts") and name another segment. Drop
        // it; the next reload offers it whole.
        playlist.segments.pop();
        playlist.end_list = false;
    }
    let mut clamps = Vec::new();
    let target_secs = playlist.target_duration.clamp(1, MAX_TARGET_DURATION.as_secs());
    if target_secs != playlist.target_duration {
        clamps.push(Clamp::TargetDuration { sent: playlist.target_duration });
    }
    let first_sequence = playlist.media_sequence;
    if first_sequence > MAX_SEQUENCE {
        return Err(ParseError::SequenceOutOfRange(first_sequence));
    }
    let mut init: Option<InitRef> = None;
    let mut next_offset: std::collections::HashMap<Url, u64> = Default::default();
    let mut pdt: Option<DateTime<Utc>> = None;
    let mut segments = Vec::with_capacity(playlist.segments.len());
    let mut in_ad = false;
    for (i, seg) in playlist.segments.iter().enumerate() {
        let sequence = first_sequence
            .checked_add(i as u64)
            .filter(|s| *s <= MAX_SEQUENCE)
            .ok_or(ParseError::SequenceOutOfRange(first_sequence.saturating_add(i as u64)))?;
        let uri = base.join(&seg.uri).map_err(|e| bad_uri("segment", &seg.uri, e))?;
        if let Some(map) = &seg.map {
            let map_uri = base.join(&map.uri).map_err(|e| bad_uri("EXT-X-MAP", &map.uri, e))?;
            let byte_range = match &map.byte_range {
                Some(r) => Some(checked_range(r.offset.unwrap_or(0), r.length)?),
                None => None,
            };
            init = Some(InitRef { uri: map_uri, byte_range });
        }
        let byte_range = match &seg.byte_range {
            Some(r) => {
                let offset = r.offset.unwrap_or_else(|| next_offset.get(&uri).copied().unwrap_or(0));
                let range = checked_range(offset, r.length)?;
                next_offset.insert(uri.clone(), range.end());
                Some(range)
            }
            None => None,
        };
        pdt = match seg.program_date_time {
            Some(t) => Some(t.with_timezone(&Utc)),
            None => pdt,
        };
        for tag in &seg.unknown_tags {
            match tag.tag.as_str() {
                "X-CUE-OUT" | "X-CUE-OUT-CONT" => in_ad = true,
                "X-CUE-IN" => in_ad = false,
                _ => {}
            }
        }
        let sent = f64::from(seg.duration);
        let duration = if sent.is_finite() && sent <= MAX_SEGMENT_SECS {
            sent.max(0.0)
        } else {
            clamps.push(Clamp::SegmentDuration { sequence, sent });
            MAX_SEGMENT_SECS
        };
        let daterange_ad = seg.daterange.as_ref().is_some_and(is_ad_daterange);
        let title_ad = seg.title.as_deref().is_some_and(|t| t.starts_with(AD_TITLE_PREFIX));
        segments.push(SourceSegment {
            sequence,
            uri,
            duration,
            byte_range,
            init: init.clone(),
            program_date_time: pdt,
            discontinuity: seg.discontinuity,
            is_ad: in_ad || daterange_ad || title_ad,
        });
        if let Some(t) = pdt {
            // `duration` is at most MAX_SEGMENT_SECS, so the delta always
            // exists; the date may still run off the calendar.
            pdt = TimeDelta::try_milliseconds((duration * 1000.0) as i64).and_then(|d| t.checked_add_signed(d));
            if pdt.is_none() {
                clamps.push(Clamp::ProgramDateTime { sequence });
            }
        }
    }
    Ok(MediaPlaylist {
        target_duration: Duration::from_secs(target_secs),
        media_sequence: first_sequence,
        segments,
        ended: playlist.end_list,
        clamps,
    })
}

fn checked_range(offset: u64, length: u64) -> Result<ByteRange, ParseError> {
    if length == 0 || offset.checked_add(length).is_none() {
        return Err(ParseError::BadByteRange { offset, length });
    }
    Ok(ByteRange { offset, length })
}

/// Choose a variant. `Height` falls back to the best below it, then the
/// worst above it. `None` only for an empty list.
pub fn pick_variant<'a>(variants: &'a [Variant], choice: &VariantChoice) -> Option<&'a Variant> {
    match choice {
        VariantChoice::Best => variants.iter().max_by_key(|v| (v.height.unwrap_or(0), v.bandwidth)),
        VariantChoice::Worst => variants.iter().min_by_key(|v| (v.height.unwrap_or(0), v.bandwidth)),
        VariantChoice::Height(h) => variants
            .iter()
            .filter(|v| v.height.is_some_and(|vh| vh <= *h))
            .max_by_key(|v| (v.height, v.bandwidth))
            .or_else(|| variants.iter().min_by_key(|v| (v.height.unwrap_or(u64::MAX), v.bandwidth))),
    }
}

/// A playlist that does not parse will not parse the next time either;
/// whether to fetch it again is the fetch loop's call, not the parser's.
impl crate::exit::Classify for ParseError {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Permanent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: ParseLimits = ParseLimits::LIVE;

    fn base() -> Url {
        Url::parse("http://cdn.example/live/chan/index.m3u8?token=abc").unwrap()
    }

    #[test]
    fn media_playlist_resolves_uris_maps_ranges_and_dates() {
        let text = b"#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:41
#EXT-X-MAP:URI=\"init.mp4?v=1\"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00.000Z
#EXTINF:2.000,
seg41.m4s?sig=x
#EXT-X-BYTERANGE:1000@0
#EXTINF:2.000,
https://other.example/big.m4s
#EXT-X-BYTERANGE:500
#EXTINF:1.500,
https://other.example/big.m4s
#EXT-X-DISCONTINUITY
#EXTINF:2.000,Amazon|ad
/abs/seg44.m4s
#EXT-X-ENDLIST
";
        let p = parse_media(text, &base(), LIVE).unwrap();
        assert!(p.ended);
        assert!(p.clamps.is_empty());
        assert_eq!(p.target_duration, Duration::from_secs(2));
        let seqs: Vec<u64> = p.segments.iter().map(|s| s.sequence).collect();
        assert_eq!(seqs, [41, 42, 43, 44]);
        assert_eq!(p.segments[0].uri.as_str(), "http://cdn.example/live/chan/seg41.m4s?sig=x");
        assert_eq!(p.segments[3].uri.as_str(), "http://cdn.example/abs/seg44.m4s");
        let init = p.segments[3].init.as_ref().unwrap();
        assert_eq!(init.uri.as_str(), "http://cdn.example/live/chan/init.mp4?v=1");
        assert_eq!(p.segments[1].byte_range, Some(ByteRange { offset: 0, length: 1000 }));
        assert_eq!(p.segments[2].byte_range, Some(ByteRange { offset: 1000, length: 500 }));
        assert_eq!(p.segments[2].byte_range.unwrap().header(), "bytes=1000-1499");
        assert!(p.segments[3].discontinuity && p.segments[3].is_ad && !p.segments[0].is_ad);
        let t0 = p.segments[0].program_date_time.unwrap();
        assert_eq!((p.segments[2].program_date_time.unwrap() - t0).num_milliseconds(), 4000);
        assert_eq!(p.segments[0].extension(), "m4s");
    }

    #[test]
    fn master_playlist_picks_variants() {
        let text = b"#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360
low/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080
high/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720
mid/index.m3u8
";
        let Parsed::Master(v) = parse_playlist(text, &base(), LIVE).unwrap() else { panic!("not master") };
        assert_eq!(pick_variant(&v, &VariantChoice::Best).unwrap().uri.path(), "/live/chan/high/index.m3u8");
        assert_eq!(pick_variant(&v, &VariantChoice::Worst).unwrap().height, Some(360));
        assert_eq!(pick_variant(&v, &"720p".parse().unwrap()).unwrap().height, Some(720));
        assert_eq!(pick_variant(&v, &"900p".parse().unwrap()).unwrap().height, Some(720));
        assert_eq!(pick_variant(&v, &"144p".parse().unwrap()).unwrap().height, Some(360));
        assert!("fast".parse::<VariantChoice>().is_err());
    }

    #[test]
    fn a_playlist_cut_short_does_not_offer_its_last_line() {
        let text =
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n#EXTINF:2.0,\nseg/10.ts\n#EXTINF:2.0,\nseg/1";
        let p = parse_media(text, &base(), LIVE).unwrap();
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.segments[0].uri.path(), "/live/chan/seg/10.ts");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"<html>404</html>",
            b"#EXTM3U\n#EXTINF:abc\n",
            b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n",
            b"#EXTM3U\n\xff\xfe\x00\x01\x80garbage\x00\n\x9f",
        ] {
            let _ = parse_playlist(bad, &base(), LIVE);
        }
        assert_eq!(parse_playlist(b"<html>", &base(), LIVE).unwrap_err(), ParseError::NotM3u8);
    }

    /// Defect: a program date-time followed by an absurd EXTINF made chrono
    /// panic on `+=`, which took down the tick, the observer and the harvest cell.
    #[test]
    fn an_absurd_extinf_after_a_program_date_time_is_clamped_not_a_panic() {
        for extinf in ["9e29", "999999999999999999999999999999", &"9".repeat(60), "1e400"] {
            let text = format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n\
                 #EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00.000Z\n#EXTINF:{extinf},\na.ts\n#EXTINF:2,\nb.ts\n"
            );
            let p = parse_media(text.as_bytes(), &base(), LIVE).unwrap();
            assert!(p.segments.iter().all(|s| s.duration <= MAX_SEGMENT_SECS), "{extinf}");
        }
        let end_of_time = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n\
            #EXT-X-PROGRAM-DATE-TIME:9999-12-31T23:59:59.000Z\n#EXTINF:3000,\na.ts\n#EXTINF:2,\nb.ts\n";
        let p = parse_media(end_of_time, &base(), LIVE).unwrap();
        assert_eq!(p.segments.len(), 2);
    }

    /// Ads are the markers Twitch names, not any class containing "ad"
    /// (`preload`) or any title mentioning Amazon.
    #[test]
    fn only_named_ad_markers_make_an_ad() {
        let segment = |tags: &str, title: &str| {
            let text = format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n{tags}#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00.000Z\n#EXTINF:2.000,{title}\nseg1.ts\n"
            );
            parse_media(text.as_bytes(), &base(), LIVE).unwrap().segments[0].is_ad
        };
        let range = |attrs: &str| format!("#EXT-X-DATERANGE:{attrs},START-DATE=\"2026-11-21T10:00:00Z\"\n");
        assert!(segment(&range("ID=\"a\",CLASS=\"twitch-stitched-ad\""), ""));
        assert!(segment(&range("ID=\"stitched-ad-17\""), ""));
        assert!(segment(&range("ID=\"a\",X-TV-TWITCH-AD-URL=\"https://x\""), ""));
        assert!(segment("", "Amazon|1234"));
        assert!(!segment(&range("ID=\"a\",CLASS=\"preload\""), ""));
        assert!(!segment(&range("ID=\"a\",CLASS=\"twitch-stream-source\""), "live"));
        assert!(!segment("", "An Amazon rainforest documentary"));
    }

    /// Defect: a target duration of 100000 s put the next reload a day away,
    /// and 6.2e18 made `target * 3` panic.
    #[test]
    fn a_huge_target_duration_is_clamped() {
        for target in ["100000", "6200000000000000000", "18446744073709551615", "0"] {
            let text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:{target}\n#EXTINF:2,\na.ts\n");
            let p = parse_media(text.as_bytes(), &base(), LIVE).unwrap();
            assert!(p.target_duration <= MAX_TARGET_DURATION && p.target_duration >= Duration::from_secs(1));
            assert!(matches!(p.clamps[0], Clamp::TargetDuration { .. }), "{target}");
        }
    }

    /// Defect: a media sequence at or above 2^63 became a negative sequence in
    /// the ledger, which refused it forever.
    #[test]
    fn a_media_sequence_beyond_what_the_ledger_holds_is_refused() {
        let at = |seq: u64| {
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{seq}\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n"
            )
        };
        assert!(matches!(
            parse_media(at(1 << 63).as_bytes(), &base(), LIVE),
            Err(ParseError::SequenceOutOfRange(s)) if s == 1 << 63
        ));
        assert!(matches!(parse_media(at(u64::MAX).as_bytes(), &base(), LIVE), Err(ParseError::SequenceOutOfRange(_))));
        // The second segment would be 2^63.
        assert!(matches!(
            parse_media(at(MAX_SEQUENCE).as_bytes(), &base(), LIVE),
            Err(ParseError::SequenceOutOfRange(_))
        ));
        let ok = parse_media(at(MAX_SEQUENCE - 1).as_bytes(), &base(), LIVE).unwrap();
        assert_eq!(ok.last_sequence(), Some(MAX_SEQUENCE));
    }

    #[test]
    fn byte_ranges_that_overflow_or_are_empty_are_refused() {
        for range in ["18446744073709551615@18446744073709551615", "1@18446744073709551615", "0@0"] {
            let text = format!("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-BYTERANGE:{range}\n#EXTINF:2,\na.ts\n");
            assert!(
                matches!(parse_media(text.as_bytes(), &base(), LIVE), Err(ParseError::BadByteRange { .. })),
                "{range}"
            );
        }
    }

    #[test]
    fn a_playlist_beyond_the_limits_is_refused_before_it_is_parsed() {
        let mut text = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
        for i in 0..20 {
            text.push_str(&format!("#EXTINF:2,\n{i}.ts\n"));
        }
        let small = ParseLimits { max_segments: 10, max_lines: 1000 };
        assert_eq!(
            parse_media(text.as_bytes(), &base(), small).unwrap_err(),
            ParseError::TooLarge { what: "segments", found: 20, limit: 10 }
        );
        let few_lines = ParseLimits { max_segments: 100, max_lines: 10 };
        assert!(matches!(parse_playlist(text.as_bytes(), &base(), few_lines), Err(ParseError::TooLarge { .. })));
    }

    /// Issue 24, found by the fuzz edges: the size check counted lines by LF
    /// and segments by `#EXTINF`, but the parser also ends a line at a lone
    /// CR and makes a segment of a bare URI line, so 60,000 URI lines parsed
    /// into 60,000 live segments and 1 MiB of `#X\r` allocated 114 MB.
    #[test]
    fn the_size_check_counts_lines_and_segments_as_the_parser_reads_them() {
        let small = ParseLimits { max_segments: 10, max_lines: 1000 };
        let mut bare = String::from("#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
        for i in 0..20 {
            bare.push_str(&format!("{i}.ts\n"));
        }
        assert_eq!(
            parse_media(bare.as_bytes(), &base(), small).unwrap_err(),
            ParseError::TooLarge { what: "segments", found: 20, limit: 10 }
        );
        let cr = format!("#EXTM3U\r{}", "#X\r".repeat(2000));
        assert!(matches!(
            parse_playlist(cr.as_bytes(), &base(), small),
            Err(ParseError::TooLarge { what: "lines", found: 2001, .. })
        ));
        // CRLF is one line ending, not two.
        let crlf = "#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXTINF:2,\r\n0.ts\r\n";
        let limits = ParseLimits { max_segments: 1, max_lines: 5 };
        assert!(parse_media(crlf.as_bytes(), &base(), limits).is_ok());
    }
}
