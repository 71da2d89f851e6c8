//! The playlist parsers and the tracker under fuzzing: playlists generated
//! from HLS's grammar with hostile values, valid playlists mutated byte by
//! byte, and plain garbage after `#EXTM3U`. Each goes through both parsers;
//! the media playlists then drive a [`Tracker`] whose footprint must stay
//! bounded.

use std::time::Duration;

use colony::hls::{ParseLimits, parse_media, parse_playlist};
use observer_cell::{Step, Tracker};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use url::Url;

use super::{count_panics, mutate, panics, peak_extra, serial};

/// The allocation bound for one input: what a few hundred bytes of parser
/// state per line allow, and no more.
pub fn allocation_bound(input: usize) -> usize {
    input * 160 + 2 * 1024 * 1024
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
    prop_oneof![4 => grammar(), 4 => mutated(), 1 => garbage()]
}

/// One input through both parsers. Fails on a panic (even one the parser
/// caught) or an allocation past the bound; returns the media playlist, if
/// any, and the bytes parsing allocated at its peak.
pub fn check_parse(input: &[u8]) -> Result<(Option<colony::hls::MediaPlaylist>, usize), TestCaseError> {
    let base = Url::parse("http://src.example/live/index.m3u8?token=t").unwrap();
    let before = panics();
    let (parsed, peak) = peak_extra(|| {
        let _ = parse_playlist(input, &base, ParseLimits::LIVE);
        parse_media(input, &base, ParseLimits::LIVE).ok()
    });
    prop_assert_eq!(panics(), before, "a panic while parsing {:?}", String::from_utf8_lossy(input));
    let bound = allocation_bound(input.len());
    prop_assert!(peak <= bound, "parsing {} bytes allocated {} bytes (bound {})", input.len(), peak, bound);
    Ok((parsed, peak))
}

/// A run of playlists through one tracker, as a source might serve them.
pub fn check_tracker(playlists: &[colony::hls::MediaPlaylist], gaps_secs: &[u8]) -> Result<(), TestCaseError> {
    let mut tracker = Tracker::new();
    let window_bound = ParseLimits::LIVE.max_segments + observer_cell::MAX_IN_FLIGHT + 2048 + 16;
    for (i, playlist) in playlists.iter().enumerate() {
        let since = gaps_secs.get(i).map(|s| Duration::from_secs(u64::from(*s)));
        let steps = tracker.observe(playlist, since);
        for step in &steps {
            match step {
                Step::Fetch { segment, .. } if i % 3 == 0 => tracker.released(segment.sequence),
                Step::Fetch { segment, .. } => tracker.stored(segment.sequence),
                Step::Gap { count, .. } => prop_assert!(*count > 0),
                Step::NewEpoch { .. } => {}
            }
        }
        prop_assert!(tracker.footprint() <= window_bound, "tracker footprint {}", tracker.footprint());
    }
    let _ = tracker.close_epoch(true);
    Ok(())
}

/// Run `cases` cases (each one to six playlists through the parsers, then
/// through one tracker). Fails with the first counterexample, shrunk.
pub fn run(cases: u32) -> Result<FuzzReport, String> {
    let _serial = serial();
    count_panics();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let strategy = (prop::collection::vec(any_playlist(), 1..6), prop::collection::vec(any::<u8>(), 0..6));
    let report = std::sync::Mutex::new(FuzzReport::default());
    runner
        .run(&strategy, |(inputs, gaps)| {
            let mut parsed = Vec::new();
            for input in &inputs {
                let (p, peak) = check_parse(input)?;
                let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                r.inputs += 1;
                r.parsed += usize::from(p.is_some());
                r.largest_input = r.largest_input.max(input.len());
                r.peak_alloc = r.peak_alloc.max(peak);
                if input.len() >= 1024 {
                    r.worst_bytes_per_input_byte = r.worst_bytes_per_input_byte.max(peak as f64 / input.len() as f64);
                }
                drop(r);
                parsed.extend(p);
            }
            check_tracker(&parsed, &gaps)
        })
        .map_err(|e| e.to_string())?;
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.cases = cases as usize;
    Ok(report)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct FuzzReport {
    pub cases: usize,
    /// Playlists parsed (several per case), and how many were media playlists.
    pub inputs: usize,
    pub parsed: usize,
    pub largest_input: usize,
    /// The most heap one parse allocated.
    pub peak_alloc: usize,
    /// The most heap a parse allocated per byte of its input (inputs of 1 KiB and more).
    pub worst_bytes_per_input_byte: f64,
}
