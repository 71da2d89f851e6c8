//! The playlist parsers and the tracker under fuzzing: playlists generated
//! from HLS's grammar with hostile values, valid playlists mutated byte by
//! byte, plain garbage after `#EXTM3U`, the densest playlists the grammar
//! allows, and the edge set ([`super::edges`]). Each goes through both
//! parsers; the media playlists then drive a [`Tracker`] whose footprint
//! must stay bounded. What the parsers and the tracker returned is counted
//! in a [`FuzzReport`], so the test can tell which verdicts, clamps and
//! limits a run really reached.

use std::sync::Mutex;
use std::time::Duration;

use colony::hls::{Clamp, MediaPlaylist, ParseError, ParseLimits, Parsed, parse_media, parse_playlist};
use observer_cell::{Step, Tracker};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use url::Url;

use super::edges::{self, dense, lines, segments};
use super::{count_panics, mutate, panics, peak_extra, serial};

/// Heap bytes one line may cost a parser. Measured worst: 2,632 bytes a
/// line, for 1,025 bare URI lines (`x\n`, each a segment to m3u8-rs) in
/// `parse_playlist`, which holds m3u8-rs's whole parse while `parse_media`
/// parses the input again, and at a count where the segment vectors have
/// just doubled to room for 2,048. The margin, a quarter, is less than one
/// more copy of the segment list would add (a third at least), so that
/// regression fails; a dependency's structs growing by a field do not.
pub const BOUND_PER_LINE: usize = 3_300;
/// Heap bytes one byte may cost a parser beyond its line's share. Measured
/// worst: 3, on a playlist of 4 KB URIs at the fetch cap (its text is held
/// by both of m3u8-rs's parses and by a URL); 4 with the margin.
pub const BOUND_PER_BYTE: usize = 4;
/// What a parse costs before its first line (the base URL, the first
/// vectors). Measured worst: 2 KB; doubled.
pub const BOUND_BASE: usize = 4 * 1024;

/// The most heap parsing `input` may allocate, in either parser: linear in
/// its lines (as m3u8-rs reads them) and in its bytes, as a parser keeps an
/// entry per line whatever its length, and copies the text. (A bound in
/// bytes alone must allow 1,300 bytes a byte for the densest playlists, and
/// so gigabytes for the largest.) The edge set reaches over three quarters
/// of it, so a parse that costs a quarter more per line or per byte fails.
pub fn allocation_bound(input: &[u8]) -> usize {
    BOUND_PER_LINE * lines(input) + BOUND_PER_BYTE * input.len() + BOUND_BASE
}

fn numbers() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..20).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("99999999999999999999999999999999999999999".to_owned()),
        Just("9e29".to_owned()),
        Just("-1".to_owned()),
        Just("".to_owned()),
        Just("1.5".to_owned()),
        Just("NaN".to_owned()),
        "[0-9]{1,60}(\\.[0-9]{1,20})?",
    ]
}

fn dates() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("2026-11-21T10:00:00.000Z".to_owned()),
        Just("9999-12-31T23:59:59.999Z".to_owned()),
        Just("0000-01-01T00:00:00Z".to_owned()),
        Just("2026-02-30T25:61:61+99:99".to_owned()),
        (1000u32..10000, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}T00:00:00+01:00")),
        ".{0,30}",
    ]
}

fn uris() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..100).prop_map(|n| format!("seg{n}.ts")),
        Just("http://169.254.169.254/latest/meta-data/".to_owned()),
        Just("https://other.example:99999/x.ts".to_owned()),
        Just("file:///etc/passwd".to_owned()),
        Just("//host-relative/x.ts".to_owned()),
        Just("../../../../x".to_owned()),
        Just("http://[::ffff:169.254.169.254]/".to_owned()),
        Just("http://%zz/".to_owned()),
        "[a-z0-9/._?=&%:-]{0,80}",
        ".{0,40}",
    ]
}

fn segment_lines() -> impl Strategy<Value = String> {
    prop_oneof![
        (numbers(), uris()).prop_map(|(d, u)| format!("#EXTINF:{d},\n{u}")),
        (numbers(), ".{0,20}", uris()).prop_map(|(d, t, u)| format!("#EXTINF:{d},{t}\n{u}")),
        dates().prop_map(|d| format!("#EXT-X-PROGRAM-DATE-TIME:{d}")),
        (numbers(), proptest::option::of(numbers())).prop_map(|(n, o)| match o {
            Some(o) => format!("#EXT-X-BYTERANGE:{n}@{o}"),
            None => format!("#EXT-X-BYTERANGE:{n}"),
        }),
        (uris(), numbers(), numbers()).prop_map(|(u, n, o)| format!("#EXT-X-MAP:URI=\"{u}\",BYTERANGE=\"{n}@{o}\"")),
        uris().prop_map(|u| format!("#EXT-X-MAP:URI=\"{u}\"")),
        Just("#EXT-X-DISCONTINUITY".to_owned()),
        Just("#EXT-X-CUE-OUT:30".to_owned()),
        Just("#EXT-X-CUE-IN".to_owned()),
        ".{0,20}".prop_map(|c| format!("#EXT-X-DATERANGE:ID=\"x\",CLASS=\"{c}\",START-DATE=\"2026-01-01T00:00:00Z\"")),
        (uris(), ".{0,20}").prop_map(|(u, iv)| format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{u}\",IV={iv}")),
        "#EXT-[A-Z-]{1,20}(:.{0,40})?",
        Just("#EXT-X-ENDLIST".to_owned()),
    ]
}

fn header_lines() -> impl Strategy<Value = String> {
    prop_oneof![
        numbers().prop_map(|n| format!("#EXT-X-TARGETDURATION:{n}")),
        numbers().prop_map(|n| format!("#EXT-X-MEDIA-SEQUENCE:{n}")),
        numbers().prop_map(|n| format!("#EXT-X-DISCONTINUITY-SEQUENCE:{n}")),
        numbers().prop_map(|n| format!("#EXT-X-VERSION:{n}")),
        Just("#EXT-X-PLAYLIST-TYPE:EVENT".to_owned()),
        Just("#EXT-X-INDEPENDENT-SEGMENTS".to_owned()),
        (numbers(), numbers(), uris())
            .prop_map(|(b, h, u)| format!("#EXT-X-STREAM-INF:BANDWIDTH={b},RESOLUTION=1x{h}\n{u}")),
    ]
}

/// A playlist from the grammar, with hostile values.
pub fn grammar() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(header_lines(), 0..5),
        prop::collection::vec(segment_lines(), 0..40),
        prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        any::<bool>(),
    )
        .prop_map(|(head, body, eol, trailing)| {
            let mut text = String::from("#EXTM3U");
            for line in head.iter().chain(body.iter()) {
                text.push_str(eol);
                text.push_str(line);
            }
            if trailing {
                text.push_str(eol);
            }
            text.into_bytes()
        })
}

/// A valid live playlist, then mutated: bytes flipped, inserted, removed,
/// lines duplicated, the end cut off.
pub fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let valid = (0u64..1_000_000, 1usize..12).prop_map(|(first, n)| {
        let mut text = format!("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:{first}\n");
        for i in 0..n as u64 {
            text.push_str(&format!(
                "#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:{:02}.000Z\n#EXTINF:2.000,\nseg/{}.ts?token=t\n",
                i % 60,
                first + i
            ));
        }
        text.into_bytes()
    });
    (valid, prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 1..12)).prop_map(
        |(mut bytes, edits)| {
            mutate(&mut bytes, edits, |bytes, op, i| match op {
                3 => {
                    let line: Vec<u8> = bytes[i..].iter().take_while(|b| **b != b'\n').copied().collect();
                    bytes.splice(i..i, line.iter().copied().chain([b'\n']));
                }
                4 => bytes.truncate(i.max(7)),
                _ => bytes.splice(i..i, b"9999999999999999999999".iter().copied()).for_each(drop),
            });
            bytes
        },
    )
}

/// `#EXTM3U` and then anything.
pub fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048).prop_map(|tail| {
        let mut bytes = b"#EXTM3U\n".to_vec();
        bytes.extend(tail);
        bytes
    })
}

pub fn any_playlist() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![400 => grammar(), 400 => mutated(), 100 => garbage(), 2 => dense()]
}

fn base() -> Url {
    Url::parse("http://src.example/live/index.m3u8?token=t").unwrap()
}

/// One input through `parse_playlist`: no panic (even one the parser
/// caught), allocation within the bound; its verdict is counted.
pub fn check_playlist(input: &[u8], limits: ParseLimits, report: &mut FuzzReport) -> Result<(), TestCaseError> {
    let before = panics();
    let (verdict, peak) = peak_extra(|| parse_playlist(input, &base(), limits));
    prop_assert_eq!(
        panics(),
        before,
        "a panic while parsing {:?}",
        String::from_utf8_lossy(&input[..input.len().min(4096)])
    );
    report.allocated(input, peak)?;
    report.verdicts.count(&verdict)
}

/// One input through `parse_media`: no panic, allocation within the bound,
/// refused as too large exactly when it is past a limit, never more
/// segments than the limit. Returns the media playlist, if any.
pub fn check_media(
    input: &[u8],
    limits: ParseLimits,
    report: &mut FuzzReport,
) -> Result<Option<MediaPlaylist>, TestCaseError> {
    let before = panics();
    let (result, peak) = peak_extra(|| parse_media(input, &base(), limits));
    prop_assert_eq!(
        panics(),
        before,
        "a panic while parsing {:?}",
        String::from_utf8_lossy(&input[..input.len().min(4096)])
    );
    report.allocated(input, peak)?;
    let (lines, segments) = (lines(input), segments(input));
    let too_many_lines = lines > limits.max_lines;
    let too_many_segments = segments > limits.max_segments;
    match &result {
        Err(ParseError::TooLarge { what: "lines", .. }) => prop_assert!(too_many_lines, "{} lines refused", lines),
        Err(ParseError::TooLarge { what: "segments", .. }) => {
            prop_assert!(too_many_segments, "{} segments refused", segments)
        }
        _ => prop_assert!(
            !too_many_lines && !too_many_segments,
            "{} lines and {} segments, past {:?}, not refused as too large",
            lines,
            segments,
            limits
        ),
    }
    report.limits.count(limits, lines, segments, &result);
    let media = result.ok();
    if let Some(media) = &media {
        prop_assert!(media.segments.len() <= limits.max_segments, "{} segments parsed", media.segments.len());
        report.parsed += 1;
        report.largest_parsed = report.largest_parsed.max(input.len());
        report.clamps.count(&media.clamps);
    }
    Ok(media)
}

/// A run of playlists through one tracker, as a source might serve them.
pub fn check_tracker(
    playlists: &[MediaPlaylist],
    gaps_secs: &[u8],
    report: &mut FuzzReport,
) -> Result<(), TestCaseError> {
    let mut tracker = Tracker::new();
    let window_bound = ParseLimits::LIVE.max_segments + observer_cell::MAX_IN_FLIGHT + 2048 + 16;
    let steps = &mut report.tracker;
    for (i, playlist) in playlists.iter().enumerate() {
        let since = gaps_secs.get(i).map(|s| Duration::from_secs(u64::from(*s)));
        steps.playlists += 1;
        for step in tracker.observe(playlist, since) {
            match &step {
                Step::Fetch { segment, .. } if i % 3 == 0 => tracker.released(segment.sequence),
                Step::Fetch { segment, .. } => tracker.stored(segment.sequence),
                Step::Gap { count, .. } => prop_assert!(*count > 0),
                Step::NewEpoch { .. } => {}
            }
            steps.count(&step);
        }
        prop_assert!(tracker.footprint() <= window_bound, "tracker footprint {}", tracker.footprint());
        steps.largest_footprint = steps.largest_footprint.max(tracker.footprint());
    }
    for step in tracker.close_epoch(true) {
        steps.count(&step);
    }
    Ok(())
}

/// Parse the edge set ([`edges::edges`]), then run `cases` random cases
/// (each one to six playlists through both parsers, then through one
/// tracker). Fails with the first counterexample, shrunk.
pub fn run(cases: u32) -> Result<FuzzReport, String> {
    let _serial = serial();
    count_panics();
    let report = Mutex::new(FuzzReport::default());
    for edge in edges::edges() {
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        let parsed = (|| {
            // A VOD playlist at its limits goes through parse_media only: at
            // 200,000 segments parse_playlist, which holds two parses at
            // once, takes seconds and half a gigabyte in a debug build.
            if edge.limits == ParseLimits::LIVE {
                check_playlist(&edge.input, edge.limits, &mut r)?;
            }
            let parsed = check_media(&edge.input, edge.limits, &mut r)?;
            if edge.limits == ParseLimits::LIVE {
                check_tracker(parsed.as_slice(), &[], &mut r)?;
            }
            Ok::<_, TestCaseError>(parsed)
        })()
        .map_err(|e| format!("the edge playlist {}: {e}", edge.name))?;
        r.inputs += 1;
        r.largest_input = r.largest_input.max(edge.input.len());
        drop(parsed);
    }
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (prop::collection::vec(any_playlist(), 1..6), prop::collection::vec(any::<u8>(), 0..6));
    runner
        .run(&strategy, |(inputs, gaps)| {
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            let mut parsed = Vec::new();
            for input in &inputs {
                check_playlist(input, ParseLimits::LIVE, &mut r)?;
                parsed.extend(check_media(input, ParseLimits::LIVE, &mut r)?);
                r.inputs += 1;
                r.largest_input = r.largest_input.max(input.len());
            }
            check_tracker(&parsed, &gaps, &mut r)?;
            r.cases += 1;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// What the parsers and the tracker did with a run's inputs, counted from
/// what they returned rather than from what was generated.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuzzReport {
    /// Random cases that ran to their end.
    pub cases: usize,
    /// Playlists parsed (several per case, plus the edge set), and how many
    /// `parse_media` read as media playlists.
    pub inputs: usize,
    pub parsed: usize,
    /// What `parse_playlist` answered, by kind.
    pub verdicts: Verdicts,
    /// Values `parse_media` clamped, by kind.
    pub clamps: Clamps,
    /// How far the inputs went against the parse limits.
    pub limits: LimitReach,
    /// What the tracker was told to do.
    pub tracker: TrackerSteps,
    pub largest_input: usize,
    /// The largest input `parse_media` read as a media playlist.
    pub largest_parsed: usize,
    /// The most heap one parse allocated.
    pub peak_alloc: usize,
    /// The most heap a parse allocated per byte of its input (inputs of 1 KiB and more).
    pub worst_bytes_per_input_byte: f64,
    /// The largest share of [`allocation_bound`] one parse used.
    pub worst_share_of_bound: f64,
}

impl FuzzReport {
    fn allocated(&mut self, input: &[u8], peak: usize) -> Result<(), TestCaseError> {
        let (bound, lines) = (allocation_bound(input), lines(input));
        prop_assert!(
            peak <= bound,
            "parsing {} bytes in {} lines allocated {} bytes (bound {})",
            input.len(),
            lines,
            peak,
            bound
        );
        self.peak_alloc = self.peak_alloc.max(peak);
        self.worst_share_of_bound = self.worst_share_of_bound.max(peak as f64 / bound as f64);
        if input.len() >= 1024 {
            self.worst_bytes_per_input_byte = self.worst_bytes_per_input_byte.max(peak as f64 / input.len() as f64);
        }
        Ok(())
    }
}

/// `parse_playlist`'s answers, one count per kind. The match is exhaustive:
/// a new kind of answer must be counted (and reached) here too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    pub media: usize,
    pub master: usize,
    pub not_m3u8: usize,
    pub malformed: usize,
    pub parser_failed: usize,
    pub no_variants: usize,
    pub bad_uri: usize,
    pub sequence_out_of_range: usize,
    pub bad_byte_range: usize,
    pub too_many_lines: usize,
    pub too_many_segments: usize,
}

impl Verdicts {
    fn count(&mut self, verdict: &Result<Parsed, ParseError>) -> Result<(), TestCaseError> {
        let slot = match verdict {
            Ok(Parsed::Media(_)) => &mut self.media,
            Ok(Parsed::Master(_)) => &mut self.master,
            Err(ParseError::NotM3u8) => &mut self.not_m3u8,
            Err(ParseError::Malformed(_)) => &mut self.malformed,
            Err(ParseError::ParserFailed) => &mut self.parser_failed,
            Err(ParseError::NoVariants) => &mut self.no_variants,
            Err(ParseError::BadUri { .. }) => &mut self.bad_uri,
            Err(ParseError::SequenceOutOfRange(_)) => &mut self.sequence_out_of_range,
            Err(ParseError::BadByteRange { .. }) => &mut self.bad_byte_range,
            Err(ParseError::TooLarge { what: "lines", .. }) => &mut self.too_many_lines,
            Err(ParseError::TooLarge { what: "segments", .. }) => &mut self.too_many_segments,
            Err(e @ ParseError::TooLarge { .. }) => return Err(TestCaseError::fail(format!("an unknown limit: {e}"))),
        };
        *slot += 1;
        Ok(())
    }
}

/// The values `parse_media` clamped, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clamps {
    pub target_duration: usize,
    pub segment_duration: usize,
    pub program_date_time: usize,
}

impl Clamps {
    fn count(&mut self, clamps: &[Clamp]) {
        for clamp in clamps {
            match clamp {
                Clamp::TargetDuration { .. } => self.target_duration += 1,
                Clamp::SegmentDuration { .. } => self.segment_duration += 1,
                Clamp::ProgramDateTime { .. } => self.program_date_time += 1,
            }
        }
    }
}

/// Inputs `parse_media` read at exactly a limit (as media playlists), and
/// refused as too large at exactly one past it, live and VOD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitReach {
    pub live_lines_at: usize,
    pub live_lines_one_past: usize,
    pub live_segments_at: usize,
    pub live_segments_one_past: usize,
    pub vod_lines_at: usize,
    pub vod_lines_one_past: usize,
    pub vod_segments_at: usize,
    pub vod_segments_one_past: usize,
}

impl LimitReach {
    fn count(
        &mut self,
        limits: ParseLimits,
        lines: usize,
        segments: usize,
        result: &Result<MediaPlaylist, ParseError>,
    ) {
        let [lines_at, lines_past, segments_at, segments_past] = match limits {
            ParseLimits::LIVE => [
                &mut self.live_lines_at,
                &mut self.live_lines_one_past,
                &mut self.live_segments_at,
                &mut self.live_segments_one_past,
            ],
            ParseLimits::VOD => [
                &mut self.vod_lines_at,
                &mut self.vod_lines_one_past,
                &mut self.vod_segments_at,
                &mut self.vod_segments_one_past,
            ],
            _ => return,
        };
        match result {
            Ok(media) => {
                *lines_at += usize::from(lines == limits.max_lines);
                *segments_at += usize::from(media.segments.len() == limits.max_segments);
            }
            Err(ParseError::TooLarge { what: "lines", .. }) => {
                *lines_past += usize::from(lines == limits.max_lines + 1)
            }
            Err(ParseError::TooLarge { what: "segments", .. }) => {
                *segments_past += usize::from(segments == limits.max_segments + 1)
            }
            Err(_) => {}
        }
    }
}

/// What the tracker was told to do, and the most it held at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackerSteps {
    pub playlists: usize,
    pub fetches: usize,
    pub gaps: usize,
    pub new_epochs: usize,
    pub largest_footprint: usize,
}

impl TrackerSteps {
    fn count(&mut self, step: &Step) {
        match step {
            Step::Fetch { .. } => self.fetches += 1,
            Step::Gap { .. } => self.gaps += 1,
            Step::NewEpoch { .. } => self.new_epochs += 1,
        }
    }
}
