//! Live chat as Colony archives it: the message model (one line of a chunk's
//! NDJSON) and the chunks that hold them. The IRC parser that turns Twitch's
//! IRC-over-WebSocket lines into messages belongs to the observer, the one
//! role that hears chat (`observer_cell::chat_capture::irc`); the export to
//! the JSON chat renderers read belongs to the harvest cell
//! (`harvest_cell::jobs::chat_export`).
//!
//! Everything here is pure. A chat line is untrusted input: the parser never
//! panics, bounds every field, and cuts a message over [`MAX_TEXT_BYTES`]
//! with `truncated` set.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The longest message text kept, in bytes (Twitch allows 500 characters,
/// at most 2,000 bytes of UTF-8); longer ones are cut at a character
/// boundary and flagged.
pub const MAX_TEXT_BYTES: usize = 2_048;

/// What kind of chat event a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    /// A chat message (`PRIVMSG`).
    Privmsg,
    /// A sub, resub, gift, raid or announcement (`USERNOTICE`; `notice` says which).
    Usernotice,
    /// A user's messages purged, timed out or banned, or the whole chat cleared (`CLEARCHAT`).
    Clearchat,
    /// One message deleted (`CLEARMSG`; `target` is its id).
    Clearmsg,
    /// The room's settings changed (`ROOMSTATE`).
    Roomstate,
}

/// One archived chat event. Deletions and timeouts are kept as events, not
/// applied: the archive holds what was said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Twitch's message id (the `id` tag); events without one get a stable
    /// id made from their content and time, so that a message seen twice
    /// (around a reconnect, or by a replacement observer) is the same id.
    pub id: String,
    pub kind: ChatKind,
    /// When Twitch's server sent it (`tmi-sent-ts`); the receive time where absent.
    pub sent_at: DateTime<Utc>,
    /// Seconds from the recording's start, on the video's timeline.
    #[serde(default)]
    pub offset_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The sender's login (lowercase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `#RRGGBB`, as the sender chose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    /// (badge, version), in the order Twitch sent them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub badges: Vec<(String, String)>,
    /// What the user wrote (a resub's or announcement's message included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The `emotes` tag as sent: `25:0-4,12-16/1902:6-10` (code-point ranges of `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emotes: Option<String>,
    /// USERNOTICE: its `msg-id` (sub, resub, subgift, raid, announcement, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// USERNOTICE: Twitch's own sentence for it (`system-msg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_text: Option<String>,
    /// USERNOTICE: its `msg-param-*` tags, without the prefix; ROOMSTATE: its settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// CLEARMSG: the deleted message's id; CLEARCHAT: the user's login (none: the whole chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// CLEARCHAT: the timeout in seconds (none: a ban or a clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u32>,
    /// The text was longer than [`MAX_TEXT_BYTES`] and was cut.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

impl ChatMessage {
    /// A message of `kind` with its id and time, and nothing else known yet.
    pub fn new(id: String, kind: ChatKind, sent_at: DateTime<Utc>) -> Self {
        Self {
            id,
            kind,
            sent_at,
            offset_secs: 0.0,
            user_id: None,
            login: None,
            display_name: None,
            color: None,
            badges: Vec::new(),
            text: None,
            emotes: None,
            notice: None,
            system_text: None,
            params: BTreeMap::new(),
            target: None,
            duration_secs: None,
            truncated: false,
        }
    }
}

/// A chunk's body: one message per line as JSON, gzip-compressed.
pub fn encode_chunk(messages: &[ChatMessage]) -> Result<Vec<u8>, std::io::Error> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for m in messages {
        serde_json::to_writer(&mut gz, m)?;
        gz.write_all(b"\n")?;
    }
    gz.finish()
}

/// A line of a chunk that is not a message: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ChunkLineError {
    pub line: usize,
    pub reason: String,
}

/// A damaged chunk stays damaged.
impl crate::exit::Classify for ChunkLineError {
    fn class(&self) -> crate::exit::ErrorClass {
        crate::exit::ErrorClass::Permanent
    }
}

/// A chunk's messages, one at a time, from its gzip body. A line longer than
/// [`MAX_CHUNK_LINE_BYTES`], one that is not a message, or a body that is
/// not whole gzip is an error: chunks are Colony's own writing, so a bad
/// one is damage to report, not input to skip.
pub fn read_chunk(body: &[u8]) -> impl Iterator<Item = Result<ChatMessage, ChunkLineError>> + '_ {
    let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(body));
    let mut buf = Vec::new();
    let mut line = 0;
    let mut failed = false;
    std::iter::from_fn(move || {
        loop {
            if failed {
                return None;
            }
            line += 1;
            buf.clear();
            let fail = |reason: String| Some(Err(ChunkLineError { line, reason }));
            let read = match (&mut reader).take(MAX_CHUNK_LINE_BYTES as u64 + 1).read_until(b'\n', &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    failed = true;
                    return fail(e.to_string());
                }
            };
            if read == 0 {
                return None;
            }
            if buf.len() > MAX_CHUNK_LINE_BYTES {
                failed = true;
                return fail(format!("a line longer than {MAX_CHUNK_LINE_BYTES} bytes"));
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(serde_json::from_slice(&buf).map_err(|e| ChunkLineError { line, reason: e.to_string() }));
        }
    })
}

/// A whole chunk's messages (see [`read_chunk`]).
pub fn decode_chunk(body: &[u8]) -> Result<Vec<ChatMessage>, ChunkLineError> {
    read_chunk(body).collect()
}

/// The longest line a chunk may hold: a message at its caps, as JSON.
pub const MAX_CHUNK_LINE_BYTES: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_damage_is_an_error() {
        let m = ChatMessage {
            user_id: Some("1".into()),
            login: Some("alice".into()),
            display_name: Some("Alice".into()),
            badges: vec![("subscriber".into(), "12".into())],
            text: Some("hello ✨".into()),
            offset_secs: 1.5,
            ..ChatMessage::new("a".into(), ChatKind::Privmsg, Utc::now())
        };
        let body = encode_chunk(&[m.clone(), m.clone()]).unwrap();
        assert_eq!(decode_chunk(&body).unwrap(), vec![m.clone(), m]);
        assert!(decode_chunk(b"not gzip").is_err());
        let mut cut = body.clone();
        cut.truncate(body.len() / 2);
        assert!(decode_chunk(&cut).is_err());
    }
}
