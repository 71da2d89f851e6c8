//! The chat's IRC parser under fuzzing: Twitch lines generated from IRC's
//! grammar with hostile values, real lines mutated byte by byte, random
//! text, and lines at every cap the parser keeps (the line's length, the
//! text, a field, the emotes, the badges, the parameters), split from frames
//! as the WebSocket delivers them. What the parser answered is counted in
//! an [`IrcFuzzReport`]; every field a message keeps must be its input cut
//! to its cap, and the message's export must be valid JSON.

use std::collections::BTreeSet;
use std::sync::Mutex;

use colony::chat::{ChatKind, ChatMessage, MAX_TEXT_BYTES};
use observer_cell::chat_capture::irc::{
    self, Event, IrcError, MAX_BADGES, MAX_EMOTES_BYTES, MAX_FIELD_BYTES, MAX_LINE_BYTES, MAX_PARAMS,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{count_panics, mutate, panics, peak_extra, serial};

/// RFC 1459's most parameters in one line (the parser keeps its constant private).
const MAX_PARAMS_PER_LINE: usize = 15;

/// Heap bytes one byte of a line may cost `irc::event`. Measured worst:
/// 2.5, for a USERNOTICE whose `login` tag fills the line with escaped
/// two-byte capitals (`\sİ`): the tag is unescaped into a copy, and the copy
/// lowercased into another (İ grows to three bytes), before both are cut
/// to 256 bytes. With 3 a byte and the base below, that line uses 72 % of
/// its bound; a line that costs a copy more fails.
pub const BOUND_PER_BYTE: usize = 3;
/// What a short line costs (the message, its id, its maps and the parsed
/// line). Measured worst: 5.4 KB; 8 KiB.
pub const BOUND_BASE: usize = 8 * 1024;

/// The most heap reading one line may allocate. Past [`MAX_LINE_BYTES`] a
/// line is refused unread, so its length counts no further.
pub fn allocation_bound(line: &str) -> usize {
    BOUND_PER_BYTE * line.len().min(MAX_LINE_BYTES) + BOUND_BASE
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

/// The caps a line can reach, for [`at_cap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Line,
    Text,
    Field,
    Emotes,
    Badges,
    Params,
    RoomState,
    ParamsPerLine,
    /// The line's cap again, with the costliest line there is: a `login`
    /// of escaped two-byte capitals, unescaped and lowercased whole before
    /// it is cut.
    Login,
}

const CAPS: [Cap; 9] = [
    Cap::Line,
    Cap::Text,
    Cap::Field,
    Cap::Emotes,
    Cap::Badges,
    Cap::Params,
    Cap::RoomState,
    Cap::ParamsPerLine,
    Cap::Login,
];

/// `bytes` bytes of `filler` (a character of one to three bytes), ASCII
/// first where it does not divide: a cut may then fall inside a character.
fn text_of(bytes: usize, filler: char) -> String {
    let pad = bytes % filler.len_utf8();
    format!("{}{}", "a".repeat(pad), filler.to_string().repeat(bytes / filler.len_utf8()))
}

/// An `emotes` tag of exactly `bytes` bytes (at least 6): ranges of one
/// emote, the last one's end padded with digits.
fn emotes_of(bytes: usize) -> String {
    let mut tag = "25:0-0".to_owned();
    while tag.len() + 4 <= bytes {
        tag.push_str(",0-0");
    }
    tag.push_str(&"9".repeat(bytes - tag.len()));
    tag
}

/// A line `over` units past one of the parser's caps (negative: under it),
/// its text or field made of `filler`: where random lines rarely go.
pub fn at_cap(cap: Cap, over: isize, filler: char) -> String {
    let n = |cap: usize| cap.saturating_add_signed(over);
    let list =
        |count: usize, item: &dyn Fn(usize) -> String, sep: &str| (0..count).map(item).collect::<Vec<_>>().join(sep);
    match cap {
        Cap::Line => {
            let head = "@id=l :u!u@u PRIVMSG #c :";
            format!("{head}{}", text_of(n(MAX_LINE_BYTES) - head.len(), filler))
        }
        Cap::Text => format!("@id=t :u!u@u PRIVMSG #c :{}", text_of(n(MAX_TEXT_BYTES), filler)),
        Cap::Field => {
            format!("@id=f;display-name={} :u!u@u PRIVMSG #c :hi", text_of(n(MAX_FIELD_BYTES), filler))
        }
        Cap::Emotes => format!("@id=e;emotes={} :u!u@u PRIVMSG #c :hi", emotes_of(n(MAX_EMOTES_BYTES))),
        Cap::Badges => {
            format!("@id=b;badges={} :u!u@u PRIVMSG #c :hi", list(n(MAX_BADGES), &|i| format!("b{i}/1"), ","))
        }
        Cap::Params => format!(
            "@id=p;msg-id=sub;{} :tmi.twitch.tv USERNOTICE #c",
            list(n(MAX_PARAMS), &|i| format!("msg-param-p{i}=v"), ";")
        ),
        Cap::RoomState => {
            format!("@room-id=1;{} :tmi.twitch.tv ROOMSTATE #c", list(n(MAX_PARAMS), &|i| format!("k{i}=1"), ";"))
        }
        Cap::ParamsPerLine => format!("CAP{}", " p".repeat(n(MAX_PARAMS_PER_LINE))),
        Cap::Login => {
            let (head, tail) = ("@msg-id=sub;login=", " :tmi.twitch.tv USERNOTICE #c");
            let room = n(MAX_LINE_BYTES) - head.len() - tail.len();
            format!("{head}{}{}{tail}", "\\sİ".repeat(room / 4), "a".repeat(room % 4))
        }
    }
}

/// Lines around the caps: each cap, two under to two past, in ASCII or
/// two- and three-byte characters.
pub fn irc_at_caps() -> impl Strategy<Value = String> {
    (prop::sample::select(&CAPS[..]), -2isize..=2, prop::sample::select(&['x', 'é', '日'][..]))
        .prop_map(|(cap, over, filler)| at_cap(cap, over, filler))
}

/// Every cap exactly at it and one past it, and a line of spaces (rare at
/// random), once a run, whatever its count.
pub fn irc_edges() -> Vec<String> {
    let at_caps = CAPS.iter().flat_map(|cap| [0, 1].map(|over| at_cap(*cap, over, 'x')));
    at_caps.chain(["   ".to_owned()]).collect()
}

pub fn any_irc_frame() -> impl Strategy<Value = String> {
    let line = prop_oneof![4 => irc_grammar(), 4 => irc_mutated(), 1 => "[^\0]{0,400}", 1 => irc_at_caps()];
    (prop::collection::vec(line, 1..6), prop_oneof![Just("\r\n"), Just("\n"), Just("\r")])
        .prop_map(|(lines, eol)| lines.join(eol))
}

/// One frame through `split_frame` and `irc::event`: no panic (even a
/// caught one), allocation within the bound, every field its input cut to
/// its cap; each answer counted.
pub fn check_irc(frame: &str, report: &mut IrcFuzzReport) -> Result<(), TestCaseError> {
    let received = chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap();
    let before = panics();
    for line in irc::split_frame(frame) {
        report.lines += 1;
        let (event, peak) = peak_extra(|| irc::event(line, received));
        let bound = allocation_bound(line);
        prop_assert!(peak <= bound, "a {}-byte line allocated {} bytes (bound {})", line.len(), peak, bound);
        report.peak_alloc = report.peak_alloc.max(peak);
        report.worst_share_of_bound = report.worst_share_of_bound.max(peak as f64 / bound as f64);
        prop_assert_eq!(
            matches!(event, Err(IrcError::TooLong { .. })),
            line.len() > MAX_LINE_BYTES,
            "a {}-byte line: {:?}",
            line.len(),
            event.as_ref().err()
        );
        report.caps.line_at += usize::from(event.is_ok() && line.len() == MAX_LINE_BYTES);
        let reparse =
            || irc::parse(line).map_err(|e| TestCaseError::fail(format!("event read it, parse did not: {e}")));
        let m = match event {
            Ok(Event::Message(m)) => m,
            Ok(other) => {
                report.events.count(&other);
                if let Event::Ping(p) | Event::LoginFailed(p) = &other {
                    prop_assert!(p.len() <= MAX_FIELD_BYTES);
                }
                report.caps.params_per_line_at += usize::from(reparse()?.params().len() == MAX_PARAMS_PER_LINE);
                continue;
            }
            Err(e) => {
                report.refusals.count(&e);
                continue;
            }
        };
        report.events.messages += 1;
        check_message(&m, &reparse()?, &mut report.caps)?;
        check_export(&m)?;
    }
    prop_assert_eq!(panics(), before, "a panic on the frame {:?}", frame);
    Ok(())
}

/// `kept` is the tag `raw` if it fits in `cap` bytes, else a prefix of it
/// within the cap. Returns whether it was cut, and whether it was kept
/// whole at exactly the cap.
fn cut_to(kept: &str, raw: &str, cap: usize) -> Result<(bool, bool), TestCaseError> {
    if raw.len() <= cap {
        prop_assert_eq!(kept, raw);
        return Ok((false, raw.len() == cap));
    }
    prop_assert!(raw.starts_with(kept) && kept.len() <= cap, "{} bytes kept of {}", kept.len(), raw.len());
    Ok((true, false))
}

/// Every field of a message within its cap, and each one its input cut to
/// the cap, compared with the line's own tags as `irc::parse` reads them.
fn check_message(m: &ChatMessage, line: &irc::Line<'_>, caps: &mut CapReach) -> Result<(), TestCaseError> {
    prop_assert!(!m.id.is_empty());
    prop_assert!(m.id.len() <= MAX_FIELD_BYTES.max(64), "id of {} bytes", m.id.len());
    for f in [&m.user_id, &m.login, &m.display_name, &m.color, &m.notice, &m.system_text, &m.target] {
        prop_assert!(f.as_ref().is_none_or(|f| f.len() <= MAX_FIELD_BYTES), "a field over its cap: {:?}", f);
    }
    prop_assert!(m.badges.len() <= MAX_BADGES && m.params.len() <= MAX_PARAMS);
    for (k, v) in m.badges.iter().map(|(k, v)| (k, v)).chain(m.params.iter()) {
        prop_assert!(k.len() <= MAX_FIELD_BYTES && v.len() <= MAX_FIELD_BYTES);
    }
    let tag = |key: &str| line.tag(key).filter(|v| !v.is_empty());
    if let (ChatKind::Usernotice | ChatKind::Clearmsg, Some(raw)) = (m.kind, tag("login")) {
        let kept = m.login.as_deref().unwrap_or_default();
        let (cut, at) = cut_to(kept, &raw.to_lowercase(), MAX_FIELD_BYTES)?;
        caps.field_cut += usize::from(cut);
        caps.field_at += usize::from(at);
    }
    if matches!(m.kind, ChatKind::Privmsg | ChatKind::Usernotice) {
        for (key, kept) in [("user-id", &m.user_id), ("display-name", &m.display_name), ("color", &m.color)] {
            if let Some(raw) = tag(key) {
                let kept = kept.as_deref().unwrap_or_default();
                let (cut, at) = cut_to(kept, &raw, MAX_FIELD_BYTES)?;
                // Cut at the last character boundary within the cap.
                let short = (kept.len() + 1..=MAX_FIELD_BYTES).any(|i| raw.is_char_boundary(i));
                prop_assert!(!cut || !short, "{} cut to {} bytes", key, kept.len());
                caps.field_cut += usize::from(cut);
                caps.field_at += usize::from(at);
            }
        }
        if let Some(raw) = tag("emotes") {
            let kept = m.emotes.as_deref().unwrap_or_default();
            let (cut, at) = cut_to(kept, &raw, MAX_EMOTES_BYTES)?;
            // Cut before the last separator within the cap: after the last whole range.
            let last = raw.as_bytes()[..=MAX_EMOTES_BYTES.min(raw.len() - 1)].iter().rposition(|b| b",/".contains(b));
            prop_assert!(!cut || last.unwrap_or(0) == kept.len(), "emotes cut to {} bytes", kept.len());
            caps.emotes_cut += usize::from(cut);
            caps.emotes_at += usize::from(at);
        }
        if let Some(raw) = tag("badges") {
            let sent = raw.split(',').filter(|b| !b.is_empty()).count();
            prop_assert_eq!(m.badges.len(), sent.min(MAX_BADGES));
            caps.badges_cut += usize::from(sent > MAX_BADGES);
            caps.badges_at += usize::from(sent == MAX_BADGES);
        }
    }
    let text = m.text.as_deref().unwrap_or_default();
    prop_assert!(text.len() <= MAX_TEXT_BYTES);
    prop_assert!(!m.truncated || text.len() + 4 > MAX_TEXT_BYTES, "truncated to {} bytes", text.len());
    caps.text_cut += usize::from(m.truncated);
    caps.text_at += usize::from(!m.truncated && text.len() == MAX_TEXT_BYTES);
    // The parameters kept: the first MAX_PARAMS distinct names sent.
    let names: Option<BTreeSet<&str>> = match m.kind {
        ChatKind::Usernotice => Some(line.tags().filter_map(|(k, _)| k.strip_prefix("msg-param-")).collect()),
        ChatKind::Roomstate => Some(line.tags().map(|(k, _)| k).filter(|k| *k != "room-id").collect()),
        _ => None,
    };
    if let Some(mut names) = names
        && names.iter().all(|n| n.len() <= MAX_FIELD_BYTES)
    {
        names.remove("");
        prop_assert_eq!(m.params.len(), names.len().min(MAX_PARAMS));
        caps.params_cut += usize::from(names.len() > MAX_PARAMS);
        caps.params_at += usize::from(names.len() == MAX_PARAMS);
    }
    Ok(())
}

/// The export of any message must be writable too (hostile emote ranges).
fn check_export(m: &ChatMessage) -> Result<(), TestCaseError> {
    use harvest_cell::jobs::chat_export::twitch_json::{ExportWriter, Streamer};
    let streamer = Streamer { name: "d".into(), login: "d".into(), id: "1".into() };
    let fail = |e: &dyn std::fmt::Display| TestCaseError::fail(e.to_string());
    let mut out = ExportWriter::new(Vec::new(), &streamer, Default::default()).map_err(|e| fail(&e))?;
    out.push(m).map_err(|e| fail(&e))?;
    let json = out.finish(1.0).map_err(|e| fail(&e))?;
    prop_assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
    Ok(())
}

/// Read the edge lines ([`irc_edges`]), then run `cases` generated frames
/// through the IRC parser. Fails with the first counterexample, shrunk.
pub fn run_irc(cases: u32) -> Result<IrcFuzzReport, String> {
    let _serial = serial();
    count_panics();
    let report = Mutex::new(IrcFuzzReport::default());
    for line in irc_edges() {
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        check_irc(&line, &mut r).map_err(|e| format!("the edge line {:?}: {e}", &line[..line.len().min(80)]))?;
    }
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    runner
        .run(&any_irc_frame(), |frame| {
            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
            check_irc(&frame, &mut r)?;
            r.cases += 1;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    Ok(report.into_inner().unwrap_or_else(|e| e.into_inner()))
}

/// What the IRC parser answered, counted from its answers.
#[derive(Debug, Clone, Copy, Default)]
pub struct IrcFuzzReport {
    /// Random frames that ran to their end.
    pub cases: usize,
    pub lines: usize,
    pub events: Events,
    pub refusals: Refusals,
    pub caps: CapReach,
    /// The most heap one line allocated, and the largest share of its bound.
    pub peak_alloc: usize,
    pub worst_share_of_bound: f64,
}

/// The events lines became.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub messages: usize,
    pub pings: usize,
    pub reconnects: usize,
    pub joins: usize,
    pub login_failures: usize,
    pub other: usize,
}

impl Events {
    fn count(&mut self, event: &Event) {
        let slot = match event {
            Event::Message(_) => &mut self.messages,
            Event::Ping(_) => &mut self.pings,
            Event::Reconnect => &mut self.reconnects,
            Event::Joined => &mut self.joins,
            Event::LoginFailed(_) => &mut self.login_failures,
            Event::Other => &mut self.other,
        };
        *slot += 1;
    }
}

/// Why lines were refused. The match is exhaustive: a new reason must be
/// counted (and reached) here too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    pub too_long: usize,
    pub empty: usize,
    pub control_character: usize,
    pub no_command: usize,
    pub bad_command: usize,
    pub too_many_params: usize,
    pub missing: usize,
}

impl Refusals {
    fn count(&mut self, error: &IrcError) {
        let slot = match error {
            IrcError::TooLong { .. } => &mut self.too_long,
            IrcError::Empty => &mut self.empty,
            IrcError::ControlCharacter => &mut self.control_character,
            IrcError::NoCommand => &mut self.no_command,
            IrcError::BadCommand => &mut self.bad_command,
            IrcError::TooManyParams => &mut self.too_many_params,
            IrcError::Missing { .. } => &mut self.missing,
        };
        *slot += 1;
    }
}

/// Lines that reached a cap: kept whole at exactly the cap (`_at`), or cut
/// to it (`_cut`). A line past its cap is refused, counted in [`Refusals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapReach {
    pub line_at: usize,
    pub params_per_line_at: usize,
    pub text_at: usize,
    pub text_cut: usize,
    pub field_at: usize,
    pub field_cut: usize,
    pub emotes_at: usize,
    pub emotes_cut: usize,
    pub badges_at: usize,
    pub badges_cut: usize,
    pub params_at: usize,
    pub params_cut: usize,
}
