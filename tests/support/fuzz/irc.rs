//! The chat's IRC parser under fuzzing: Twitch lines generated from IRC's
//! grammar with hostile values, real lines mutated byte by byte, and random
//! text, split from frames as the WebSocket delivers them. Every field a
//! message keeps must stay within its cap, and its export must be valid JSON.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{count_panics, mutate, panics, peak_extra, serial};

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
