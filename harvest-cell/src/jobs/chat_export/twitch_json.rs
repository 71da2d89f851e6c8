//! The TwitchDownloader chat JSON: the file chat renderers and players read
//! (the shape of `TwitchDownloaderCore/TwitchObjects/ChatRoot.cs`):
//!
//! ```json
//! { "FileInfo": { "Version": {...}, "CreatedAt": "...", "UpdatedAt": "..." },
//!   "streamer": { "name": "...", "login": "...", "id": 12826 },
//!   "comments": [ { "_id", "created_at", "channel_id", "content_type", "content_id",
//!                   "content_offset_seconds", "commenter": { "display_name", "_id", "name" },
//!                   "message": { "body", "bits_spent", "fragments", "user_badges",
//!                                "user_color", "user_notice_params"?, "emoticons" } } ],
//!   "video": { "title"?, "id", "created_at"?, "start": 0, "end", "length" } }
//! ```
//!
//! [`ExportWriter`] streams it: the header on creation, one comment per
//! [`ExportWriter::push`], and `video` (which needs the recording's end)
//! last, in [`ExportWriter::finish`]; JSON objects are unordered, and
//! TwitchDownloader looks its properties up by name. A chat of millions of
//! messages is written in constant memory.
//!
//! What becomes a comment: chat messages, and USERNOTICEs (subs, resubs,
//! gifts, raids, announcements) with `user_notice_params` carrying their
//! `msg-id` and the user's message as the body, or Twitch's system text when
//! the user wrote none. CLEARCHAT, CLEARMSG and ROOMSTATE are left out:
//! the format has no place for them, and the archive's NDJSON chunks keep
//! them. Note that TwitchDownloader's renderer draws USERNOTICE comments of
//! `sub`, `resub` and `subgift` only and skips the others.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

use colony::chat::{ChatKind, ChatMessage};

/// Emote ranges read from one message's `emotes` tag, at most.
const MAX_EMOTE_RANGES: usize = 1024;

/// The channel the chat is of.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamer {
    /// The channel's display name.
    pub name: String,
    /// Its login.
    pub login: String,
    /// Its platform id (a Twitch user id), written as a number where it is one.
    pub id: String,
}

/// The video the chat belongs to; its `end` comes at [`ExportWriter::finish`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Video {
    pub id: String,
    pub title: Option<String>,
    /// When the video starts (the recording's start).
    pub created_at: Option<DateTime<Utc>>,
}

/// Writes one chat JSON to `W`, a comment at a time.
pub struct ExportWriter<W: Write> {
    out: W,
    channel_id: String,
    video: Video,
    comments: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Write the header (`FileInfo`, `streamer`) and open `comments`.
    /// The file depends on its inputs only (no clock), so writing the same
    /// chat again gives the same bytes.
    pub fn new(mut out: W, streamer: &Streamer, video: Video) -> io::Result<Self> {
        let mut file_info = serde_json::json!({ "Version": { "Major": 1, "Minor": 4, "Patch": 0 } });
        if let Some(created_at) = video.created_at {
            file_info["CreatedAt"] = Value::from(stamp(created_at));
            file_info["UpdatedAt"] = Value::from(stamp(created_at));
        }
        let streamer_json = serde_json::json!({
            "name": streamer.name,
            "login": streamer.login,
            "id": number_or_string(&streamer.id),
        });
        write!(out, "{{\"FileInfo\":{file_info},\"streamer\":{streamer_json},\"comments\":[")?;
        Ok(Self { out, channel_id: streamer.id.clone(), video, comments: 0 })
    }

    /// Add `m` as a comment if it is one (see the module's note); returns
    /// whether it was written.
    pub fn push(&mut self, m: &ChatMessage) -> io::Result<bool> {
        let Some(comment) = comment(m, &self.channel_id, &self.video.id) else {
            return Ok(false);
        };
        if self.comments > 0 {
            self.out.write_all(b",")?;
        }
        serde_json::to_writer(&mut self.out, &comment)?;
        self.comments += 1;
        Ok(true)
    }

    /// Comments written so far.
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// Close `comments`, write `video` with its end (seconds from the start),
    /// flush, and hand the writer back.
    pub fn finish(mut self, end_secs: f64) -> io::Result<W> {
        let end = if end_secs.is_finite() { end_secs.max(0.0) } else { 0.0 };
        let mut video = serde_json::json!({ "id": self.video.id, "start": 0.0, "end": end, "length": end });
        if let Some(title) = &self.video.title {
            video["title"] = Value::from(title.as_str());
        }
        if let Some(created_at) = self.video.created_at {
            video["created_at"] = Value::from(stamp(created_at));
        }
        write!(self.out, "],\"video\":{video}}}")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn number_or_string(id: &str) -> Value {
    id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(id))
}

#[derive(Serialize)]
struct Comment<'a> {
    _id: &'a str,
    created_at: String,
    channel_id: &'a str,
    content_type: &'static str,
    content_id: &'a str,
    content_offset_seconds: f64,
    commenter: Commenter<'a>,
    message: Message<'a>,
}

#[derive(Serialize)]
struct Commenter<'a> {
    display_name: &'a str,
    _id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    body: &'a str,
    bits_spent: u64,
    fragments: Vec<Fragment<'a>>,
    user_badges: Vec<Badge<'a>>,
    user_color: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_notice_params: Option<NoticeParams<'a>>,
    emoticons: Vec<Emoticon<'a>>,
}

/// A run of the body: plain text, or one emote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fragment<'a> {
    pub text: &'a str,
    pub emoticon: Option<EmoteRef<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmoteRef<'a> {
    pub emoticon_id: &'a str,
}

#[derive(Serialize)]
struct Badge<'a> {
    _id: &'a str,
    version: &'a str,
}

/// `msg_id` is what TwitchDownloader reads; `msg-id` is how Twitch's v5 API
/// (and chat files made from it) spelled it.
#[derive(Serialize)]
struct NoticeParams<'a> {
    msg_id: &'a str,
    #[serde(rename = "msg-id")]
    msg_id_v5: &'a str,
}

#[derive(Serialize)]
struct Emoticon<'a> {
    _id: &'a str,
    begin: usize,
    end: usize,
}

fn comment<'a>(m: &'a ChatMessage, channel_id: &'a str, video_id: &'a str) -> Option<Comment<'a>> {
    let (body, emotes) = match m.kind {
        ChatKind::Privmsg => (m.text.as_deref().unwrap_or(""), m.emotes.as_deref()),
        ChatKind::Usernotice => match m.text.as_deref().filter(|t| !t.is_empty()) {
            Some(text) => (text, m.emotes.as_deref()),
            None => (m.system_text.as_deref().unwrap_or(""), None),
        },
        ChatKind::Clearchat | ChatKind::Clearmsg | ChatKind::Roomstate => return None,
    };
    let ranges = emote_ranges(body, emotes.unwrap_or(""));
    let login = m.login.as_deref().unwrap_or("");
    let notice = m.notice.as_deref().unwrap_or("");
    Some(Comment {
        _id: &m.id,
        created_at: stamp(m.sent_at),
        channel_id,
        content_type: "video",
        content_id: video_id,
        content_offset_seconds: if m.offset_secs.is_finite() { (m.offset_secs * 1000.0).round() / 1000.0 } else { 0.0 },
        commenter: Commenter {
            display_name: m.display_name.as_deref().unwrap_or(login),
            _id: m.user_id.as_deref().unwrap_or(""),
            name: login,
        },
        message: Message {
            body,
            bits_spent: m
                .params
                .get("bits")
                .and_then(|b| b.parse().ok())
                .filter(|_| m.kind == ChatKind::Privmsg)
                .unwrap_or(0),
            fragments: fragments(body, &ranges),
            user_badges: m.badges.iter().map(|(id, version)| Badge { _id: id, version }).collect(),
            user_color: m.color.as_deref(),
            user_notice_params: (m.kind == ChatKind::Usernotice)
                .then_some(NoticeParams { msg_id: notice, msg_id_v5: notice }),
            emoticons: ranges.iter().map(|r| Emoticon { _id: r.id, begin: r.begin, end: r.end }).collect(),
        },
    })
}

/// One emote's place in the body: code points `begin..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EmoteRange<'a> {
    id: &'a str,
    begin: usize,
    end: usize,
}

/// The usable ranges of an `emotes` tag (`25:0-4,12-16/1902:6-10`) over
/// `body`, sorted: ranges past the body's end, reversed, unparsable or
/// overlapping an earlier one are dropped.
fn emote_ranges<'a>(body: &str, emotes: &'a str) -> Vec<EmoteRange<'a>> {
    let chars = body.chars().count();
    let mut ranges: Vec<EmoteRange<'a>> = emotes
        .split('/')
        .filter_map(|e| e.split_once(':'))
        .filter(|(id, _)| !id.is_empty())
        .flat_map(|(id, spans)| {
            spans.split(',').filter_map(move |span| {
                let (begin, end) = span.split_once('-')?;
                let (begin, end) = (begin.parse::<usize>().ok()?, end.parse::<usize>().ok()?);
                (begin <= end && end < chars).then_some(EmoteRange { id, begin, end })
            })
        })
        .take(MAX_EMOTE_RANGES)
        .collect();
    ranges.sort_by_key(|r| (r.begin, r.end));
    let mut next_free = 0;
    ranges.retain(|r| {
        let keep = r.begin >= next_free;
        if keep {
            next_free = r.end + 1;
        }
        keep
    });
    ranges
}

/// The body cut into text and emote fragments by sorted, disjoint ranges.
fn fragments<'a>(body: &'a str, ranges: &[EmoteRange<'a>]) -> Vec<Fragment<'a>> {
    if ranges.is_empty() {
        return vec![Fragment { text: body, emoticon: None }];
    }
    // Byte offset of every code point, and of the end.
    let offsets: Vec<usize> = body.char_indices().map(|(i, _)| i).chain([body.len()]).collect();
    let mut out = Vec::with_capacity(ranges.len() * 2 + 1);
    let mut at = 0;
    for r in ranges {
        let (start, end) = (offsets[r.begin], offsets[r.end + 1]);
        if start > at {
            out.push(Fragment { text: &body[at..start], emoticon: None });
        }
        out.push(Fragment { text: &body[start..end], emoticon: Some(EmoteRef { emoticon_id: r.id }) });
        at = end;
    }
    if at < body.len() {
        out.push(Fragment { text: &body[at..], emoticon: None });
    }
    out
}

/// The fragments of `body` by an `emotes` tag, as the export writes them.
pub fn body_fragments<'a>(body: &'a str, emotes: &'a str) -> Vec<Fragment<'a>> {
    fragments(body, &emote_ranges(body, emotes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag<'a>(text: &'a str, emote: Option<&'a str>) -> Fragment<'a> {
        Fragment { text, emoticon: emote.map(|emoticon_id| EmoteRef { emoticon_id }) }
    }

    #[test]
    fn emote_fragments_split_non_ascii_text_by_code_points() {
        // "ü" and "日本" are several bytes but one code point each.
        let body = "ü Kappa 日本 Keepo🎉Kappa";
        let got = body_fragments(body, "25:2-6,17-21/1902:11-15");
        assert_eq!(
            got,
            [
                frag("ü ", None),
                frag("Kappa", Some("25")),
                frag(" 日本 ", None),
                frag("Keepo", Some("1902")),
                frag("🎉", None),
                frag("Kappa", Some("25")),
            ]
        );
        assert_eq!(got.iter().map(|f| f.text).collect::<String>(), body);
    }

    #[test]
    fn hostile_emote_ranges_are_ignored() {
        let body = "Kappa hi";
        for tag in [
            "25:0-99",
            "25:5-2",
            "25:x-4",
            "25:0-4,2-6",
            ":0-4",
            "25",
            "25:-",
            "25:0-18446744073709551616",
            "25:0-4,0-4",
        ] {
            let got = body_fragments(body, tag);
            assert_eq!(got.iter().map(|f| f.text).collect::<String>(), body, "{tag}");
            assert!(got.iter().filter(|f| f.emoticon.is_some()).count() <= 1, "{tag}");
        }
        assert_eq!(body_fragments("", "25:0-0"), [frag("", None)]);
        assert_eq!(body_fragments(body, "25:0-4,2-6")[0], frag("Kappa", Some("25")));
    }

    #[test]
    fn an_empty_chat_is_still_a_valid_file() {
        let streamer = Streamer { name: "x".into(), login: "x".into(), id: "not-a-number".into() };
        let out = ExportWriter::new(Vec::new(), &streamer, Video::default()).unwrap().finish(f64::NAN).unwrap();
        let json: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["comments"], serde_json::json!([]));
        assert_eq!(json["streamer"]["id"], "not-a-number");
        assert_eq!(json["video"]["end"], 0.0);
    }
}
