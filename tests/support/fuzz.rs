//! Fuzzing the playlist parser and the tracker on stable Rust, with
//! proptest: playlists generated from HLS's grammar with hostile values,
//! valid playlists mutated byte by byte, and plain garbage after `#EXTM3U`.
//! Each case must parse (or be refused) without any panic, caught or not,
//! and within an allocation bound proportional to its size; the parsed
//! playlists then drive a [`Tracker`] whose footprint must stay bounded.
//!
//! The test `tests/fuzz.rs` runs a short pass in CI; the `fuzz-bench`
//! binary runs a million cases or more. Both install [`CountingAllocator`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colony::hls::{ParseLimits, parse_media, parse_playlist};
use observer_cell::{Step, Tracker};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use url::Url;

/// Counts live and peak heap bytes, to bound what parsing one input costs.
pub struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static PANICS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Heap bytes allocated beyond what was live when `f` started, at its peak.
/// Only meaningful with [`CountingAllocator`] installed and one thread busy.
pub fn peak_extra<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Count every panic, caught or not, from here on.
pub fn count_panics() {
    static HOOKED: std::sync::Once = std::sync::Once::new();
    HOOKED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

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

/// Byte edits at random places: overwrite, insert or remove a byte, or one
/// of three format-specific edits (`special`, given the op 3 to 5 and the place).
fn mutate(bytes: &mut Vec<u8>, edits: Vec<(u8, prop::sample::Index, u8)>, special: impl Fn(&mut Vec<u8>, u8, usize)) {
    for (op, at, value) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match op % 6 {
            0 => bytes[i] = value,
            1 => bytes.insert(i, value),
            2 => {
                bytes.remove(i);
            }
            op => special(bytes, op, i),
        }
    }
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

/// Serialises the fuzz runs of one test binary: the allocation bound is
/// measured on a process-wide counter, so two runs at once would blur it.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tag_values() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 _#/,:-]{0,30}",
        Just(String::new()),
        Just("\\".to_owned()),
        Just("\\s\\:\\\\\\r\\n\\".to_owned()),
        Just("1700000000000".to_owned()),
        Just("-99999999999999999999".to_owned()),
        Just("9223372036854775807".to_owned()),
        "[\\\\a-z]{0,20}",
        ".{0,300}".prop_map(|s| s.replace([' ', ';', '\r', '\n', '\0'], "\\s")),
    ]
}

fn emote_tags() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("25:0-4,12-16/1902:6-10".to_owned()),
        Just("25:0-99999999999999999999".to_owned()),
        Just("emotesv2_abc:5-2,0-0".to_owned()),
        prop::collection::vec((0u32..40, 0u32..40), 0..40).prop_map(|r| {
            let ranges: Vec<String> = r.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            format!("25:{}", ranges.join(","))
        }),
        "[0-9:,/_a-z-]{0,60}",
    ]
}

fn tags() -> impl Strategy<Value = String> {
    let named = prop_oneof![
        Just("id"),
        Just("tmi-sent-ts"),
        Just("badges"),
        Just("badge-info"),
        Just("color"),
        Just("display-name"),
        Just("user-id"),
        Just("login"),
        Just("msg-id"),
        Just("system-msg"),
        Just("msg-param-months"),
        Just("msg-param-sub-plan"),
        Just("ban-duration"),
        Just("target-msg-id"),
        Just("target-user-id"),
        Just("bits"),
        Just("slow"),
        Just("followers-only"),
    ];
    let tag = prop_oneof![
        4 => (named, tag_values()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => emote_tags().prop_map(|e| format!("emotes={e}")),
        1 => (1usize..200).prop_map(|n| format!("badges={}", "subscriber/12,".repeat(n))),
        1 => "[a-z-]{0,12}(=[^ ;\r\n\0]{0,20})?",
    ];
    prop::collection::vec(tag, 0..24).prop_map(|t| t.join(";"))
}

fn texts() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z ]{0,40}",
        Just("Kappa ünd 日本語 🎉".to_owned()),
        Just("\u{1}ACTION waves\u{1}".to_owned()),
        Just("\u{1}ACTION ".to_owned()),
        (1usize..1200).prop_map(|n| "é".repeat(n)),
        "[^\r\n\0]{0,200}",
    ]
}

/// A Twitch-shaped line from IRC's grammar, with hostile values.
pub fn irc_grammar() -> impl Strategy<Value = String> {
    let command = prop_oneof![
        Just("PRIVMSG"),
        Just("USERNOTICE"),
        Just("CLEARCHAT"),
        Just("CLEARMSG"),
        Just("ROOMSTATE"),
        Just("PING"),
        Just("RECONNECT"),
        Just("NOTICE"),
        Just("JOIN"),
        Just("366"),
        Just("CAP"),
    ];
    let prefix = prop_oneof![
        Just(Some(":tmi.twitch.tv".to_owned())),
        Just(Some(":ronni!ronni@ronni.tmi.twitch.tv".to_owned())),
        Just(None),
        "[^ \r\n\0]{0,30}".prop_map(|p| Some(format!(":{p}"))),
    ];
    let channel = prop_oneof![Just("#dallas".to_owned()), Just("*".to_owned()), Just(String::new()), "[#a-z]{0,10}"];
    (proptest::option::of(tags()), prefix, command, channel, proptest::option::of(texts())).prop_map(
        |(tags, prefix, command, channel, text)| {
            let mut line = String::new();
            if let Some(tags) = tags {
                line.push('@');
                line.push_str(&tags);
                line.push(' ');
            }
            if let Some(prefix) = prefix {
                line.push_str(&prefix);
                line.push(' ');
            }
            line.push_str(command);
            if !channel.is_empty() {
                line.push(' ');
                line.push_str(&channel);
            }
            if let Some(text) = text {
                line.push_str(" :");
                line.push_str(&text);
            }
            line
        },
    )
}

/// A real Twitch line, then mutated byte by byte (kept UTF-8 by lossy decoding).
pub fn irc_mutated() -> impl Strategy<Value = String> {
    const LINES: [&str; 6] = [
        "@badge-info=subscriber/14;badges=subscriber/12,premium/1;color=#1E90FF;display-name=Gänse;emotes=25:0-4,12-16/1902:6-10;id=885196de;tmi-sent-ts=1700000001234;user-id=7 :gaense!gaense@gaense.tmi.twitch.tv PRIVMSG #twitch :Kappa Keepo Kappa ünd 日本語",
        "@badges=subscriber/6;display-name=Ronni;emotes=25:0-4;id=r1;login=ronni;msg-id=resub;msg-param-cumulative-months=6;system-msg=Ronni\\ssubscribed\\sat\\sTier\\s1.;tmi-sent-ts=1700000003000;user-id=9 :tmi.twitch.tv USERNOTICE #dallas :Kappa great stream",
        "@ban-duration=350;room-id=12345678;target-user-id=87654321;tmi-sent-ts=1642719320727 :tmi.twitch.tv CLEARCHAT #dallas :ronni",
        "@login=ronni;room-id=;target-msg-id=abc-123-def;tmi-sent-ts=1642720582342 :tmi.twitch.tv CLEARMSG #dallas :HeyGuys",
        "@emote-only=0;followers-only=-1;r9k=0;room-id=12345678;slow=0;subs-only=0 :tmi.twitch.tv ROOMSTATE #bar",
        "PING :tmi.twitch.tv",
    ];
    (
        prop::sample::select(&LINES[..]),
        prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<u8>()), 1..12),
    )
        .prop_map(|(line, edits)| {
            let mut bytes = line.as_bytes().to_vec();
            mutate(&mut bytes, edits, |bytes, op, i| match op {
                3 => bytes.splice(i..i, b"\\".iter().copied()).for_each(drop),
                4 => bytes.truncate(i),
                _ => bytes.splice(i..i, b";a=b;;=;\\s".iter().copied()).for_each(drop),
            });
            String::from_utf8_lossy(&bytes).into_owned()
        })
}

pub fn any_irc_frame() -> impl Strategy<Value = String> {
    let line = prop_oneof![4 => irc_grammar(), 4 => irc_mutated(), 1 => "[^\0]{0,400}"];
    (prop::collection::vec(line, 1..6), prop_oneof![Just("\r\n"), Just("\n"), Just("\r")], any::<bool>()).prop_map(
        |(lines, eol, oversized)| {
            let mut frame = lines.join(eol);
            if oversized {
                // One line over the limit: refused before it is read.
                frame.push_str(eol);
                frame.push_str("PRIVMSG #c :");
                frame.push_str(&"x".repeat(observer_cell::chat_capture::irc::MAX_LINE_BYTES));
            }
            frame
        },
    )
}

/// One frame through `split_frame` and `irc::event`: no panic (even a
/// caught one), allocation within the bound, every field within its cap.
pub fn check_irc(frame: &str, report: &mut IrcFuzzReport) -> Result<(), TestCaseError> {
    use colony::chat::MAX_TEXT_BYTES;
    use observer_cell::chat_capture::irc::{
        self, Event, MAX_BADGES, MAX_EMOTES_BYTES, MAX_FIELD_BYTES, MAX_LINE_BYTES, MAX_PARAMS,
    };
    let received = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let before = panics();
    for line in irc::split_frame(frame) {
        report.lines += 1;
        let (event, peak) = peak_extra(|| irc::event(line, received));
        // The message kept is at most the line's size a few times over.
        let bound = line.len().min(MAX_LINE_BYTES) * 8 + 64 * 1024;
        prop_assert!(peak <= bound, "a {}-byte line allocated {} bytes (bound {})", line.len(), peak, bound);
        report.peak_alloc = report.peak_alloc.max(peak);
        let m = match event {
            Ok(Event::Message(m)) => m,
            Ok(Event::Ping(p) | Event::LoginFailed(p)) => {
                prop_assert!(p.len() <= MAX_FIELD_BYTES);
                report.other += 1;
                continue;
            }
            Ok(_) => {
                report.other += 1;
                continue;
            }
            Err(e) => {
                if line.len() > MAX_LINE_BYTES {
                    prop_assert!(matches!(e, irc::IrcError::TooLong { .. }), "{}", e);
                }
                report.refused += 1;
                continue;
            }
        };
        report.messages += 1;
        prop_assert!(!m.id.is_empty());
        prop_assert!(m.id.len() <= MAX_FIELD_BYTES.max(64), "id of {} bytes", m.id.len());
        for f in [&m.user_id, &m.login, &m.display_name, &m.color, &m.notice, &m.system_text, &m.target] {
            prop_assert!(f.as_ref().is_none_or(|f| f.len() <= MAX_FIELD_BYTES), "a field over its cap: {:?}", f);
        }
        prop_assert!(m.text.as_ref().is_none_or(|t| t.len() <= MAX_TEXT_BYTES));
        prop_assert!(m.emotes.as_ref().is_none_or(|e| e.len() <= MAX_EMOTES_BYTES));
        prop_assert!(m.badges.len() <= MAX_BADGES && m.params.len() <= MAX_PARAMS);
        for (k, v) in m.badges.iter().map(|(k, v)| (k, v)).chain(m.params.iter()) {
            prop_assert!(k.len() <= MAX_FIELD_BYTES && v.len() <= MAX_FIELD_BYTES);
        }
        // The export of any message must be writable too (hostile emote ranges).
        let streamer = harvest_cell::jobs::chat_export::twitch_json::Streamer {
            name: "d".into(),
            login: "d".into(),
            id: "1".into(),
        };
        let mut out =
            harvest_cell::jobs::chat_export::twitch_json::ExportWriter::new(Vec::new(), &streamer, Default::default())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
        out.push(&m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let json = out.finish(1.0).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
    }
    prop_assert_eq!(panics(), before, "a panic on the frame {:?}", frame);
    Ok(())
}

/// Run `cases` generated frames through the IRC parser. Fails with the
/// first counterexample, shrunk.
pub fn run_irc(cases: u32) -> Result<IrcFuzzReport, String> {
    let _serial = serial();
    count_panics();
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let report = std::sync::Mutex::new(IrcFuzzReport::default());
    runner
        .run(&any_irc_frame(), |frame| {
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            check_irc(&frame, &mut r)
        })
        .map_err(|e| e.to_string())?;
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report.cases = cases as usize;
    Ok(report)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct IrcFuzzReport {
    pub cases: usize,
    pub lines: usize,
    /// Lines that became messages, other events, or were refused.
    pub messages: usize,
    pub other: usize,
    pub refused: usize,
    /// The most heap one line allocated.
    pub peak_alloc: usize,
}
