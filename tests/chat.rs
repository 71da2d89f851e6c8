//! Chat archives through the real observer cell. Twitch's chat cannot be
//! reached from here: `colony_tests::chat::FakeChat` is a scripted local
//! fake of its anonymous IRC-over-WebSocket service, following Twitch's
//! public IRC reference (tags, USERNOTICE kinds, CLEARCHAT/CLEARMSG,
//! ROOMSTATE, PING, RECONNECT). The channel is a Twitch channel whose video
//! comes from the test live source through its resolver template.
//!
//! Bounded in time; every process is killed when the test ends.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use colony::chat::{ChatKind, ChatMessage};
use colony::recording::chat_ledger::{ChatGap, chunks, gaps};
use colony_tests::browser::Browser;
use colony_tests::chat::{FakeChat, Sent, Step};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::observer::{Rig, signal, wait_exit};
use colony_tests::web::{plays, serve};
use observer_cell::chat_capture::load_chunk;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// An observer of the channel with chat from `chat`, flushing every second.
fn observer(
    rig: &Rig,
    channel: i64,
    login: &str,
    a: (uuid::Uuid, colony::recording::Assignment),
    source: &LiveSource,
    chat: &FakeChat,
) -> tokio::process::Child {
    let template = Rig::twitch_resolver(source);
    let mut cmd = rig.observer_command(channel, login, a.0, a.1, &["--standby", "2s"]);
    cmd.env("COLONY_RESOLVER_TWITCH", template)
        .env("OBSERVER_TWITCH_CHAT_URL", chat.url())
        .env("OBSERVER_CHAT_FLUSH_EVERY", "1s");
    cmd.spawn().unwrap()
}

/// Every archived message, chunk by chunk.
async fn archive(rig: &Rig, recording: i64) -> Vec<ChatMessage> {
    let mut out = Vec::new();
    for chunk in chunks(&rig.pool, recording).await.unwrap() {
        out.extend(load_chunk(rig.store.as_ref(), &chunk.object_key).await.unwrap());
    }
    out
}

fn script() -> Vec<Step> {
    let say = |user, text: &str| Step::Say { user, text: text.to_owned() };
    vec![
        say("alice", "hello Kappa 👋"),
        say("bob", "ça va? LUL"),
        Step::Sub { user: "carol", months: 1 },
        Step::Sub { user: "dave", months: 14 },
        Step::GiftSub { user: "erin", recipient: "frank" },
        Step::Announcement { user: "modmod", text: "welcome to the stream".into() },
        Step::Wait(SECS(1)),
        Step::Raid { from: "raider", viewers: 420 },
        Step::Burst { messages: 300, per_second: 150 },
        say("spammer", "buy followers"),
        Step::DeleteLast,
        Step::Timeout { user: "spammer", secs: 600 },
        Step::RoomState { slow: 10 },
        say("alice", "before the drop"),
        Step::Drop,
        say("bob", "after the drop"),
        Step::Malformed("@@@ this is not IRC\r\n:tmi.twitch.tv\r\n@badges= :x PRIVMSG\r\n".into()),
        say("carol", "still here"),
        Step::Reconnect,
        say("dave", "after the reconnect <3"),
        Step::Silence(SECS(2)),
        say("erin", "the last word"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_is_archived_once_aligned_with_the_video_with_explicit_gaps_and_exported() {
    tokio::time::timeout(SECS(240), async {
        let ts = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
        let source = LiveSource::start().await;
        source.add("chatty", &ts, 6);
        let rig = Rig::file().await;
        let channel = rig.twitch_channel("chatty").await;
        let (cell, a) = rig.assign(channel).await;
        let chat = FakeChat::start("chatty", script()).await;
        let child = observer(&rig, channel, "chatty", (cell, a), &source, &chat);
        colony_tests::eventually("the chat script to run", SECS(120), || async { chat.finished().then_some(()) }).await;
        // Two flushes later, everything heard is stored.
        tokio::time::sleep(SECS(3)).await;
        source.end("chatty");
        let (code, stderr) = wait_exit(child, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");

        let sent = chat.sent();
        let archived = archive(&rig, a.recording_id).await;
        // Every message with an id is in the archive exactly once.
        let ids: Vec<&str> = archived.iter().map(|m| m.id.as_str()).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "no message twice");
        let sent_ids: HashSet<&str> = sent.iter().filter_map(|s| s.id.as_deref()).collect();
        let archived_with_sent_ids: HashSet<&str> = unique.iter().copied().filter(|id| sent_ids.contains(id)).collect();
        assert_eq!(archived_with_sent_ids, sent_ids, "every scripted message archived");
        // The events without ids: as many as were sent, kept, not applied.
        let count = |kind: ChatKind| archived.iter().filter(|m| m.kind == kind).count();
        let sent_count = |command: &str| sent.iter().filter(|s| s.command == command).count();
        assert_eq!(count(ChatKind::Clearmsg), sent_count("CLEARMSG"));
        assert_eq!(count(ChatKind::Clearchat), sent_count("CLEARCHAT"));
        assert!(count(ChatKind::Roomstate) >= sent_count("ROOMSTATE"), "ROOMSTATE also comes with each join");
        assert_eq!(count(ChatKind::Usernotice), sent_count("USERNOTICE"));
        let by_id: BTreeMap<&str, &ChatMessage> = archived.iter().map(|m| (m.id.as_str(), m)).collect();
        for s in sent.iter().filter(|s| s.id.is_some()) {
            let m = by_id[s.id.as_deref().unwrap()];
            assert_eq!(m.sent_at, s.at, "tmi-sent-ts kept");
            assert_eq!(m.text, s.text, "the text of {:?}", s.id);
        }
        let notices: HashSet<&str> = archived.iter().filter_map(|m| m.notice.as_deref()).collect();
        for kind in ["sub", "resub", "subgift", "raid", "announcement"] {
            assert!(notices.contains(kind), "{kind} kept: {notices:?}");
        }

        // Offsets on the video's timeline: from the first segment's program date-time.
        let rows = rig.rows(a.recording_id).await;
        let origin = rows.iter().find(|r| !r.is_gap).and_then(|r| r.program_date_time).unwrap();
        for s in sent.iter().filter(|s| s.id.is_some()) {
            let expected = (s.at - origin).num_milliseconds() as f64 / 1000.0;
            let got = by_id[s.id.as_deref().unwrap()].offset_secs;
            assert!((got - expected.max(0.0)).abs() < 1.0, "offset of {:?}: {got} vs {expected}", s.id);
        }

        // The drop and the reconnect are explicit gaps, each around its moment.
        let gap_rows: Vec<ChatGap> = gaps(&rig.pool, a.recording_id).await.unwrap();
        assert!(gap_rows.len() >= 2, "{gap_rows:?}");
        // (A gap ends when the join is read, which may come in the same
        // frame as the first message after it: a little slack.)
        let slack = chrono::Duration::milliseconds(500);
        let at = |text: &str| sent.iter().find(|s| s.text.as_deref() == Some(text)).unwrap().at;
        let (before, after) = (at("before the drop"), at("after the drop"));
        assert!(gap_rows.iter().any(|g| g.from_at >= before && g.to_at <= after + slack), "the drop: {gap_rows:?}");
        let (before, after) = (at("still here"), at("after the reconnect <3"));
        assert!(gap_rows.iter().any(|g| g.from_at >= before && g.to_at <= after + slack), "the reconnect: {gap_rows:?}");
        assert_eq!(gap_rows.len(), 2, "no gap but the drop's and the reconnect's: {gap_rows:?}\n{stderr}");
        assert!(chat.pongs() > 0 || chat.connections() >= 3);

        // The export: queued once the recording ended, TwitchDownloader's shape.
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'chat_export'")
            .fetch_one(&rig.pool)
            .await
            .unwrap();
        assert_eq!(queued, 1);
        let harvest = rig.harvest(&["--kinds", "chat_export", "--idle-exit", "2s"]);
        let (code, stderr) = wait_exit(harvest, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");
        let key = colony::storage::ObjectKey::parse(&format!("channels/chatty/{}/chat/chat.json", a.recording_id)).unwrap();
        let json: Value = serde_json::from_slice(&colony::storage::get_bytes(rig.store.as_ref(), &key).await.unwrap()).unwrap();
        assert_eq!(json["streamer"]["name"], "chatty");
        let comments = json["comments"].as_array().unwrap();
        let exported: HashSet<&str> = comments.iter().filter_map(|c| c["_id"].as_str()).collect();
        assert_eq!(exported, sent_ids, "every PRIVMSG and USERNOTICE is a comment, once");
        assert_eq!(comments.len(), sent_ids.len());
        for c in comments {
            let m = by_id[c["_id"].as_str().unwrap()];
            let offset = c["content_offset_seconds"].as_f64().unwrap();
            assert!((offset - m.offset_secs).abs() < 0.01, "{c}");
            assert!(c["message"]["body"].is_string() && c["commenter"]["name"].is_string(), "{c}");
        }

        // The dashboard plays the chat beside the video, in step with the player.
        let colony = colony_tests::mothership::Colony::new(rig);
        let (_server, base) = serve(&colony, None, &[]).await;
        let browser = Browser::start().await;
        let mut tab = browser.tab().await;
        tab.open(&format!("{base}/recordings/{}", a.recording_id)).await;
        plays(&mut tab, "a recording with chat").await;
        let deadline = std::time::Instant::now() + SECS(30);
        let pane = loop {
            let v = tab
                .eval(
                    "(() => { const t = document.getElementById('player').currentTime;
                       const items = [...document.querySelectorAll('#chat li')];
                       return { t, shown: items.length, latest: Math.max(-1, ...items.map(li => +li.dataset.offset)) }; })()",
                )
                .await;
            if v["shown"].as_u64() > Some(0) {
                break v;
            }
            assert!(std::time::Instant::now() < deadline, "no chat beside the video: {v}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let (t, latest) = (pane["t"].as_f64().unwrap(), pane["latest"].as_f64().unwrap());
        assert!(latest <= t + 1.0, "nothing shown ahead of the player: {pane}");
    })
    .await
    .expect("the test took over 4 minutes");
}

/// A replacement observer (the first one SIGKILLed) continues the same chat
/// archive: chunk numbers go on, no message is stored twice, and the time
/// between the last stored message and the replacement's join is a gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_observer_continues_the_chat_archive_without_duplicates() {
    tokio::time::timeout(SECS(180), async {
        let ts = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
        let source = LiveSource::start().await;
        source.add("handover", &ts, 6);
        let rig = Rig::file().await;
        let channel = rig.twitch_channel("handover").await;
        let say = |n: usize| Step::Say { user: "alice", text: format!("message {n}") };
        let mut script: Vec<Step> = (0..20).map(say).collect();
        script.push(Step::Wait(SECS(4)));
        script.extend((20..40).flat_map(|n| [say(n), Step::Wait(Duration::from_millis(200))]));
        let chat = FakeChat::start("handover", script).await;
        let first = rig.assign(channel).await;
        let recording = first.1.recording_id;
        let child = observer(&rig, channel, "handover", first, &source, &chat);
        colony_tests::eventually("a first chunk", SECS(60), || async {
            (!chunks(&rig.pool, recording).await.unwrap().is_empty()).then_some(())
        })
        .await;
        signal(&child, nix::sys::signal::Signal::SIGKILL);
        let _ = wait_exit(child, SECS(10)).await;
        let before = chunks(&rig.pool, recording).await.unwrap();

        let second = rig.assign(channel).await;
        assert_eq!(second.1.recording_id, recording, "the same recording continues");
        let child = observer(&rig, channel, "handover", second, &source, &chat);
        colony_tests::eventually("the chat script to run", SECS(90), || async { chat.finished().then_some(()) }).await;
        tokio::time::sleep(SECS(3)).await;
        source.end("handover");
        let (code, stderr) = wait_exit(child, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");

        let after = chunks(&rig.pool, recording).await.unwrap();
        assert!(after.len() > before.len());
        assert_eq!(after[..before.len()], before[..], "the first cell's chunks stay as they were");
        let seqs: Vec<i64> = after.iter().map(|c| c.seq).collect();
        assert_eq!(seqs, (0..after.len() as i64).collect::<Vec<_>>(), "chunk numbers go on");
        let archived = archive(&rig, recording).await;
        let ids: Vec<&str> = archived.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no message twice");
        // What was sent and is not archived fell inside an explicit gap.
        let stored: HashSet<&str> = ids.iter().copied().collect();
        let gap_rows = gaps(&rig.pool, recording).await.unwrap();
        let sent = chat.sent();
        let missing: Vec<&Sent> =
            sent.iter().filter(|s| s.id.as_deref().is_some_and(|id| !stored.contains(id))).collect();
        for s in &missing {
            assert!(
                gap_rows.iter().any(|g| g.from_at <= s.at && s.at <= g.to_at),
                "{:?} lost outside a gap: {gap_rows:?}",
                s.text
            );
        }
        assert!(gap_rows.iter().any(|g| g.reason.contains("previous observer")), "{gap_rows:?}");
    })
    .await
    .expect("the test took over 3 minutes");
}

/// The chat export's TwitchDownloader JSON, from lines as Twitch's IRC
/// sends them: the observer's parser feeds the harvest cell's writer, so the
/// test lives where both crates are reachable.
mod export_shape {
    use chrono::{DateTime, Utc};
    use colony::chat::ChatMessage;
    use harvest_cell::jobs::chat_export::twitch_json::{ExportWriter, Streamer, Video};
    use serde_json::Value;

    use observer_cell::chat_capture::irc::{Event, event};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn message(line: &str, offset: f64) -> ChatMessage {
        let Ok(Event::Message(mut m)) = event(line, at(1_700_000_000_000)) else { panic!("{line}") };
        m.offset_secs = offset;
        m
    }

    #[test]
    fn the_export_parses_and_has_twitchdownloaders_shape() {
        let lines = [
            (
                "@badges=subscriber/12,premium/1;color=#1E90FF;display-name=Gänse;emotes=25:0-4;id=m1;\
              tmi-sent-ts=1700000001234;user-id=7 :gaense!gaense@gaense.tmi.twitch.tv PRIVMSG #dallas :Kappa ünd 日本",
                1.2346,
            ),
            (
                "@bits=100;display-name=A;id=m2;tmi-sent-ts=1700000002000;user-id=8 :a!a@a PRIVMSG #dallas :cheer100",
                2.0,
            ),
            (
                "@display-name=Ronni;id=n1;login=ronni;msg-id=sub;system-msg=Ronni\\ssubscribed\\sat\\sTier\\s1.;\
              tmi-sent-ts=1700000003000;user-id=9 :tmi.twitch.tv USERNOTICE #dallas",
                3.0,
            ),
            (
                "@display-name=Ronni;emotes=25:0-4;id=n2;login=ronni;msg-id=resub;system-msg=x;\
              tmi-sent-ts=1700000004000;user-id=9 :tmi.twitch.tv USERNOTICE #dallas :Kappa again",
                4.0,
            ),
            ("@ban-duration=10;tmi-sent-ts=1700000005000 :tmi.twitch.tv CLEARCHAT #dallas :ronni", 5.0),
            ("@login=a;target-msg-id=m2;tmi-sent-ts=1700000006000 :tmi.twitch.tv CLEARMSG #dallas :cheer100", 6.0),
            ("@slow=10 :tmi.twitch.tv ROOMSTATE #dallas", 7.0),
        ];
        let streamer = Streamer { name: "Dallas".into(), login: "dallas".into(), id: "12826".into() };
        let video = Video { id: "v42".into(), title: Some("Stream".into()), created_at: Some(at(1_700_000_000_000)) };
        let mut w = ExportWriter::new(Vec::new(), &streamer, video).unwrap();
        let written: Vec<bool> = lines.iter().map(|(l, o)| w.push(&message(l, *o)).unwrap()).collect();
        assert_eq!(written, [true, true, true, true, false, false, false]);
        assert_eq!(w.comments(), 4);
        let out = w.finish(3600.5).unwrap();
        let json: Value = serde_json::from_slice(&out).unwrap();

        assert_eq!(json["FileInfo"]["Version"]["Major"], 1);
        assert_eq!(json["streamer"], serde_json::json!({ "name": "Dallas", "login": "dallas", "id": 12826 }));
        let video = &json["video"];
        assert_eq!(
            (video["id"].as_str(), video["start"].as_f64(), video["end"].as_f64()),
            (Some("v42"), Some(0.0), Some(3600.5))
        );
        assert_eq!(video["title"], "Stream");
        assert_eq!(video["created_at"], "2023-11-14T22:13:20.000Z");

        let comments = json["comments"].as_array().unwrap();
        assert_eq!(comments.len(), 4);
        let c = &comments[0];
        assert_eq!(c["_id"], "m1");
        assert_eq!(c["created_at"], "2023-11-14T22:13:21.234Z");
        assert_eq!(c["channel_id"], "12826");
        assert_eq!(c["content_id"], "v42");
        assert_eq!(c["content_offset_seconds"], 1.235);
        assert_eq!(c["commenter"], serde_json::json!({ "display_name": "Gänse", "_id": "7", "name": "gaense" }));
        let m = &c["message"];
        assert_eq!(m["body"], "Kappa ünd 日本");
        assert_eq!(
            m["fragments"],
            serde_json::json!([{ "text": "Kappa", "emoticon": { "emoticon_id": "25" } }, { "text": " ünd 日本", "emoticon": null }])
        );
        assert_eq!(
            m["user_badges"],
            serde_json::json!([{ "_id": "subscriber", "version": "12" }, { "_id": "premium", "version": "1" }])
        );
        assert_eq!(m["user_color"], "#1E90FF");
        assert_eq!(m["emoticons"], serde_json::json!([{ "_id": "25", "begin": 0, "end": 4 }]));
        assert!(m.get("user_notice_params").is_none());
        assert_eq!(comments[1]["message"]["bits_spent"], 100);
        assert_eq!(comments[1]["message"]["user_color"], Value::Null);

        let sub = &comments[2]["message"];
        assert_eq!(sub["body"], "Ronni subscribed at Tier 1.");
        assert_eq!(sub["user_notice_params"], serde_json::json!({ "msg_id": "sub", "msg-id": "sub" }));
        assert_eq!(sub["fragments"], serde_json::json!([{ "text": "Ronni subscribed at Tier 1.", "emoticon": null }]));
        let resub = &comments[3]["message"];
        assert_eq!(resub["body"], "Kappa again");
        assert_eq!(resub["user_notice_params"]["msg_id"], "resub");
        assert_eq!(resub["fragments"][0]["emoticon"]["emoticon_id"], "25");
    }
}
