//! Playlists at the edges the random cases never reach: exactly at every
//! [`ParseLimits`] limit and one past it (live and VOD), exactly the size of
//! the fetcher's playlist cap, and the densest shapes at the size where a
//! parser's vectors have just doubled. A run parses all of them before its
//! random cases, so however few cases it runs, it has been to every limit.

use colony::hls::{FetchLimits, ParseLimits};
use proptest::prelude::*;

/// One playlist of the edge set, and the limits it is parsed under.
pub struct Edge {
    pub name: String,
    pub limits: ParseLimits,
    pub input: Vec<u8>,
}

/// Segment and line shapes as short as the grammar allows: the most parser
/// state per input byte. `x\n` alone is a segment too: m3u8-rs makes one of
/// a URI line without `#EXTINF`; and it ends a tag's line at a lone `\r`.
pub const DENSE_FORMS: &[&str] = &[
    "x\n",
    "#EXTINF:1\nx\n",
    "#EXTINF:1,\nx\n",
    "#EXTINF:1,t\nx\n",
    "#EXTINF:\nx\n",
    "#EXTINF:1\r\nx\r\n",
    "#EXT-X-BYTERANGE:1\n#EXTINF:1,\nx\n",
    "#EXT-X-MAP:URI=\"i\"\n#EXTINF:1,\nx\n",
    "#EXT-X-PROGRAM-DATE-TIME:2026-11-21T10:00:00Z\n#EXTINF:1,\nx\n",
    "#EXT-X-DISCONTINUITY\n#EXTINF:1,\nx\n",
    "#EXT-X-CUE-IN\n#EXTINF:1,\nx\n",
    "#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n#EXTINF:1,\nx\n",
    "#EXT-X-FOO\n",
    "#X\n",
    "\n",
    "#X\r",
    "#EXT-X-FOO\r",
    "#EXT-X-CUE-IN\r",
];

/// The lines of an input as m3u8-rs reads them: a line ends at `\n`, and a
/// tag's line at a lone `\r` too (a last `\r` ends the last line).
pub fn lines(input: &[u8]) -> usize {
    let lone_cr = input.windows(2).filter(|w| w[0] == b'\r' && w[1] != b'\n').count();
    input.iter().filter(|b| **b == b'\n').count() + lone_cr + 1
}

/// The segments of an input as m3u8-rs reads them: one per `#EXTINF:`, and
/// one per URI line without it (whichever is more).
pub fn segments(input: &[u8]) -> usize {
    let uri_lines = input
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count();
    input.windows(8).filter(|w| w == b"#EXTINF:").count().max(uri_lines)
}

/// The fetcher's default playlist cap: the largest input a parser is given.
pub fn playlist_cap() -> usize {
    FetchLimits::default().playlist_cap() as usize
}

const HEAD: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n";

/// `forms` repeated in turn, `count` times in all, after `HEAD`.
pub fn repeated(forms: &[&str], count: usize) -> Vec<u8> {
    let mut text = String::from(HEAD);
    for form in forms.iter().cycle().take(count) {
        text.push_str(form);
    }
    text.into_bytes()
}

/// A media playlist of one segment, then `filler` lines up to exactly
/// `total` lines.
fn with_lines(total: usize, filler: &str) -> Vec<u8> {
    let mut text = format!("{HEAD}#EXTINF:2,\nseg.ts\n");
    let have = lines(text.as_bytes());
    text.push_str(&filler.repeat(total - have));
    text.into_bytes()
}

/// A media playlist of exactly `bytes` bytes: segments with long URIs, the
/// last line padded to the byte.
pub fn of_size(bytes: usize) -> Vec<u8> {
    let segment = |i: usize| format!("#EXTINF:2,\nseg/{i}.ts?pad={}\n", "p".repeat(4000));
    let mut text = String::from(HEAD);
    let mut i = 0;
    while text.len() + segment(i).len() + 64 < bytes {
        text.push_str(&segment(i));
        i += 1;
    }
    text.push_str(&format!("#EXTINF:2,\nlast.ts?pad={}\n", "p".repeat(bytes - text.len() - 24)));
    assert_eq!(text.len(), bytes, "the padding arithmetic");
    text.into_bytes()
}

/// Every limit at and one past, the fetch cap, and the dense shapes.
pub fn edges() -> Vec<Edge> {
    let mut edges = Vec::new();
    for (kind, limits) in [("live", ParseLimits::LIVE), ("vod", ParseLimits::VOD)] {
        // The live line limit with the line that costs most per byte; the
        // VOD one (1.5 million lines, seconds in a debug build otherwise)
        // with blank lines.
        let filler = if kind == "live" { "#X\n" } else { "\n" };
        for extra in [0, 1] {
            let past = if extra == 0 { "at" } else { "one past" };
            edges.push(Edge {
                name: format!("{kind} lines {past}"),
                limits,
                input: with_lines(limits.max_lines + extra, filler),
            });
            edges.push(Edge {
                name: format!("{kind} segments {past}"),
                limits,
                input: repeated(&["#EXTINF:1\nx\n"], limits.max_segments + extra),
            });
        }
    }
    edges.push(Edge { name: "the fetch cap".into(), limits: ParseLimits::LIVE, input: of_size(playlist_cap()) });
    // 1025 entries: a vector that grew by doubling holds room for 2048.
    for form in DENSE_FORMS {
        edges.push(Edge { name: format!("{form:?} x1025"), limits: ParseLimits::LIVE, input: repeated(&[form], 1025) });
    }
    edges
}

/// Dense playlists for the random cases: one or two of [`DENSE_FORMS`] in
/// turn, 2^k - 1, 2^k or 2^k + 1 times (k up to 13), around where the
/// parsers' vectors double. They stay under the live limits; [`edges`]
/// goes to them.
pub fn dense() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::vec(prop::sample::select(DENSE_FORMS), 1..3), 0u32..=13, 0usize..=2)
        .prop_map(|(forms, k, offset)| repeated(&forms, ((1usize << k) + offset).saturating_sub(1)))
}
