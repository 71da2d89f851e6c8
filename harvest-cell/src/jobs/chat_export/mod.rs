//! `chat_export`: a recording's archived chat as the TwitchDownloader JSON
//! that chat renderers and players read, at `{prefix}/chat/chat.json`.
//!
//! The chunks are read in `seq` order, one at a time, and streamed through
//! [`ExportWriter`] into a local file, which is then uploaded: the memory
//! used does not grow with the chat's length. Messages heard twice (around a
//! reconnect, or by an observer and its replacement) are dropped by id;
//! such duplicates sit close together in time, so only the ids of the last
//! few minutes are kept ([`RecentIds`]). The output depends on the archive
//! alone, so a rerun writes the same bytes to the same key.
//!
//! A recording without chat succeeds with nothing written. A chunk the
//! ledger names but the store lacks, or that does not decompress and parse,
//! fails the job for good, naming the chunk: that chat is gone, and an
//! export that silently skipped it would look complete.

pub mod twitch_json;

use std::collections::{HashSet, VecDeque};
use std::io::{BufWriter, Write};
use std::sync::Arc;

use serde_json::json;
use tracing::info;

use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::exit::{Classify, ErrorClass};
use colony::queue::RecordingArgs;
use colony::recording::chat_ledger::{self, ChatChunk};
use colony::storage::ObjectKey;
use twitch_json::{ExportWriter, Streamer, Video};

/// How far apart in server time two copies of one message can be found.
const DEDUP_WINDOW_MS: i64 = 10 * 60 * 1000;
/// Ids remembered at most, whatever the window holds (a raid's burst).
const DEDUP_MAX_IDS: usize = 200_000;

/// The ids of recent messages, to drop a second copy. Bounded: ids older
/// than the window behind the newest message seen, and beyond the count
/// limit, are forgotten first-in, first-out.
#[derive(Debug)]
pub struct RecentIds {
    order: VecDeque<(i64, Arc<str>)>,
    seen: HashSet<Arc<str>>,
    newest_ms: i64,
    window_ms: i64,
    max_ids: usize,
}

impl RecentIds {
    pub fn new(window_ms: i64, max_ids: usize) -> Self {
        Self { order: VecDeque::new(), seen: HashSet::new(), newest_ms: i64::MIN, window_ms, max_ids: max_ids.max(1) }
    }

    /// True the first time `id` is offered (sent at `sent_ms`), false for a copy.
    pub fn first_time(&mut self, id: &str, sent_ms: i64) -> bool {
        if self.seen.contains(id) {
            return false;
        }
        self.newest_ms = self.newest_ms.max(sent_ms);
        let cutoff = self.newest_ms.saturating_sub(self.window_ms);
        while let Some((at, old)) = self.order.front() {
            if *at >= cutoff && self.order.len() < self.max_ids {
                break;
            }
            self.seen.remove(old);
            self.order.pop_front();
        }
        let id: Arc<str> = Arc::from(id);
        self.seen.insert(id.clone());
        self.order.push_back((sent_ms, id));
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// What went wrong with one chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chat chunk {seq} ({key}) is missing from storage; that chat is lost")]
    Missing { seq: i64, key: String },
    #[error("chat chunk {seq} ({key}) is corrupt at line {line}")]
    Corrupt {
        seq: i64,
        key: String,
        line: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A lost or damaged chunk is chat that no retry brings back.
impl Classify for ChunkError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Counts of one export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub messages: u64,
    pub duplicates: u64,
    pub comments: u64,
}

/// Decompress one chunk (`seq`, stored at `key`) and push each message it
/// holds through `dedup` to `out`. Pure but for the writer.
pub fn export_chunk<W: Write>(
    (seq, key): (i64, &str),
    gzipped: &[u8],
    out: &mut ExportWriter<W>,
    dedup: &mut RecentIds,
    tally: &mut Tally,
) -> Result<(), JobError> {
    let corrupt = |line: usize, source: Box<dyn std::error::Error + Send + Sync>| {
        JobError::classified(ChunkError::Corrupt { seq, key: key.to_owned(), line, source })
    };
    for message in colony::chat::read_chunk(gzipped) {
        let message = message.map_err(|e| corrupt(e.line, e.reason.into()))?;
        tally.messages += 1;
        if !dedup.first_time(&message.id, message.sent_at.timestamp_millis()) {
            tally.duplicates += 1;
            continue;
        }
        if out.push(&message).map_err(JobError::transient)? {
            tally.comments += 1;
        }
    }
    Ok(())
}

type Out = ExportWriter<BufWriter<std::fs::File>>;

pub async fn run(ctx: &Ctx, args: &RecordingArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let id = args.recording_id;
    #[allow(clippy::type_complexity)]
    let row: Option<(
        String,
        Option<String>,
        Option<String>,
        f64,
        _,
        String,
        String,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT r.storage_prefix, r.stream_id, r.title, r.duration_secs, r.started_at,
                    c.login, c.display_name, c.platform_handle, c.platform_id
               FROM recordings r JOIN channels c ON c.id = r.channel_id WHERE r.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(JobError::transient)?;
    let (prefix, stream_id, title, duration_secs, started_at, login, display_name, handle, platform_id) =
        row.ok_or_else(|| JobError::permanent(format!("recording {id} does not exist")))?;
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let chunks = chat_ledger::chunks(pool, id).await.map_err(JobError::transient)?;
    if chunks.is_empty() {
        info!(recording = id, "the recording has no chat; nothing to export");
        return Ok(());
    }
    let streamer = Streamer {
        name: display_name,
        login: handle.unwrap_or(login),
        id: platform_id.unwrap_or_else(|| "0".to_owned()),
    };
    let video = Video { id: stream_id.unwrap_or_else(|| id.to_string()), title, created_at: Some(started_at) };

    let work = tempfile::Builder::new().prefix("colony-chat-").tempdir().map_err(JobError::transient)?;
    let path = work.path().join("chat.json");
    let file = std::fs::File::create(&path).map_err(JobError::transient)?;
    let mut state: (Out, RecentIds, Tally) = (
        ExportWriter::new(BufWriter::new(file), &streamer, video).map_err(JobError::transient)?,
        RecentIds::new(DEDUP_WINDOW_MS, DEDUP_MAX_IDS),
        Tally::default(),
    );
    for (i, chunk) in chunks.iter().enumerate() {
        let body = fetch_chunk(ctx, chunk).await?;
        let chunk = chunk.clone();
        state = tokio::task::spawn_blocking(move || {
            let (mut out, mut dedup, mut tally) = state;
            export_chunk((chunk.seq, &chunk.object_key), body.as_ref(), &mut out, &mut dedup, &mut tally)
                .map(|()| (out, dedup, tally))
        })
        .await
        .map_err(|e| JobError::permanent(format!("exporting a chat chunk panicked: {e}")))??;
        let done = i + 1;
        progress.set(json!({ "chunks": done, "of": chunks.len(), "percent": done * 100 / chunks.len() }));
    }
    let (out, _, tally) = state;
    tokio::task::spawn_blocking(move || out.finish(duration_secs))
        .await
        .map_err(|e| JobError::permanent(format!("finishing the chat export panicked: {e}")))?
        .map_err(JobError::transient)?;
    let key = chat_ledger::export_key(&prefix).map_err(JobError::permanent)?;
    let size = ctx.store.put_file(&key, &path).await.map_err(JobError::transient)?;
    info!(%key, size, chunks = chunks.len(), messages = tally.messages, duplicates = tally.duplicates,
          comments = tally.comments, "chat export stored");
    Ok(())
}

async fn fetch_chunk(ctx: &Ctx, chunk: &ChatChunk) -> Result<impl AsRef<[u8]> + Send + 'static, JobError> {
    let missing = || JobError::classified(ChunkError::Missing { seq: chunk.seq, key: chunk.object_key.clone() });
    let key = ObjectKey::parse(&chunk.object_key).map_err(|e| {
        JobError::classified(ChunkError::Corrupt {
            seq: chunk.seq,
            key: chunk.object_key.clone(),
            line: 0,
            source: e.into(),
        })
    })?;
    colony::storage::get_bytes(ctx.store.as_ref(), &key)
        .await
        .map_err(|e| if e.is_not_found() { missing() } else { JobError::transient(e) })
}

#[cfg(test)]
mod tests {
    use super::twitch_json::Video;
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn line(id: &str, ms: i64, text: &str) -> String {
        let sent_at = serde_json::to_value(chrono_like(ms)).unwrap();
        format!(
            "{}\n",
            json!({ "id": id, "kind": "privmsg", "sent_at": sent_at, "offset_secs": 1.5, "login": "a", "text": text })
        )
    }

    /// An RFC 3339 time `ms` after 2026-01-01T00:00:00Z (ms below a minute).
    fn chrono_like(ms: i64) -> String {
        format!("2026-01-01T00:{:02}:{:02}.{:03}Z", ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    }

    fn writer() -> ExportWriter<Vec<u8>> {
        let streamer = Streamer { name: "C".into(), login: "c".into(), id: "1".into() };
        ExportWriter::new(Vec::new(), &streamer, Video { id: "v".into(), ..Video::default() }).unwrap()
    }

    #[test]
    fn chunks_export_once_per_message_id_across_chunks() {
        let (mut out, mut dedup, mut tally) =
            (writer(), RecentIds::new(DEDUP_WINDOW_MS, DEDUP_MAX_IDS), Tally::default());
        let first = gz(format!("{}{}", line("a", 1000, "one"), line("b", 2000, "two")).as_bytes());
        let second = gz(format!("{}\n{}", line("b", 2000, "two"), line("c", 3000, "três")).as_bytes());
        export_chunk((0, "k/0"), &first, &mut out, &mut dedup, &mut tally).unwrap();
        export_chunk((1, "k/1"), &second, &mut out, &mut dedup, &mut tally).unwrap();
        assert_eq!(tally, Tally { messages: 4, duplicates: 1, comments: 3 });
        let json: serde_json::Value = serde_json::from_slice(&out.finish(10.0).unwrap()).unwrap();
        let ids: Vec<&str> = json["comments"].as_array().unwrap().iter().map(|c| c["_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(json["comments"][2]["message"]["body"], "três");
    }

    #[test]
    fn a_corrupt_chunk_fails_for_good_naming_it() {
        let (mut out, mut dedup, mut tally) = (writer(), RecentIds::new(DEDUP_WINDOW_MS, 10), Tally::default());
        for (body, what) in [
            (b"not gzip at all".to_vec(), "not gzip"),
            (gz(format!("{}{{\"id\": 3}}\n", line("a", 0, "x")).as_bytes()), "bad line"),
            (gz(line("a", 0, "x").as_bytes())[..20].to_vec(), "cut short"),
        ] {
            let e = export_chunk((7, "channels/c/1/chat/00000007.ndjson.gz"), &body, &mut out, &mut dedup, &mut tally)
                .unwrap_err();
            assert!(matches!(e, JobError::Permanent(_)), "{what}: {e}");
            assert!(
                e.to_string().contains("chat chunk 7 (channels/c/1/chat/00000007.ndjson.gz) is corrupt"),
                "{what}: {e}"
            );
        }
    }

    #[test]
    fn recent_ids_forget_old_ids_and_stay_bounded() {
        let mut ids = RecentIds::new(60_000, 1000);
        assert!(ids.first_time("a", 0));
        assert!(!ids.first_time("a", 0));
        assert!(ids.first_time("b", 30_000));
        assert!(!ids.first_time("a", 0), "inside the window");
        assert!(ids.first_time("c", 120_000));
        assert!(ids.first_time("a", 0), "forgotten once the window moved past it");
        let mut capped = RecentIds::new(i64::MAX, 100);
        for i in 0..10_000 {
            assert!(capped.first_time(&i.to_string(), 0));
            assert!(capped.len() <= 100);
        }
        assert!(!capped.first_time("9999", 0));
    }
}
