//! A Twitch channel's live chat, recorded beside its video by the same
//! observer, anonymously (`justinfan` over IRC-over-WebSocket).
//!
//! Durable the way the video is: messages are written in chunks (every
//! `--chat-flush-every` or `--chat-flush-messages`) as gzip NDJSON objects
//! under the recording's prefix, each with a `chat_chunks` row fenced by the
//! recording's lease token. A disconnect is an explicit `chat_gaps` row from
//! when the connection was lost to when it was back; a replacement observer
//! continues after the last chunk, records the time its predecessor's
//! unflushed messages were lost as a gap, and skips messages already stored
//! (by id). Memory is bounded whatever the chat's rate: at most one chunk is
//! buffered, and the recent-id set has a fixed size. Twitch's lines become
//! messages in [`irc`], a pure parser that trusts nothing it reads.

pub mod irc;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use url::Url;

use colony::chat::ChatMessage;
use colony::exit::{Classify, ErrorClass};
use colony::recording::LedgerError;
use colony::recording::chat_ledger::{ChatChunk, ChatGap, ChatLedger, chunk_key};
use colony::storage::{ObjectKey, ObjectStore};
use irc::Event;

/// Twitch's IRC-over-WebSocket endpoint.
pub const TWITCH_CHAT_URL: &str = "wss://irc-ws.chat.twitch.tv:443";

#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Do not record chat, even for a Twitch channel with chat on.
    #[arg(long = "no-chat", env = "OBSERVER_NO_CHAT")]
    pub no_chat: bool,
    /// Twitch's chat endpoint (IRC over WebSocket).
    #[arg(long, env = "OBSERVER_TWITCH_CHAT_URL", default_value = TWITCH_CHAT_URL, value_name = "URL")]
    pub chat_url: Url,
    /// Write a chunk of chat at least this often.
    #[arg(long, env = "OBSERVER_CHAT_FLUSH_EVERY", default_value = "10s", value_name = "DURATION")]
    pub chat_flush_every: humantime::Duration,
    /// ... or as soon as this many messages are waiting.
    #[arg(long, env = "OBSERVER_CHAT_FLUSH_MESSAGES", default_value_t = 1000, value_name = "N")]
    pub chat_flush_messages: usize,
    /// With nothing from the server (not even a PING) for this long, the
    /// connection is taken as dead and made again. Twitch pings every ~5 min.
    #[arg(long, env = "OBSERVER_CHAT_IDLE_TIMEOUT", default_value = "6m", value_name = "DURATION")]
    pub chat_idle_timeout: humantime::Duration,
}

/// Ids remembered to drop a message seen twice: a fixed number of the newest.
struct RecentIds {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl RecentIds {
    fn new(capacity: usize) -> Self {
        Self { order: VecDeque::new(), set: HashSet::new(), capacity }
    }

    /// True the first time an id is seen.
    fn first_time(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() == self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back(id.to_owned());
        self.set.insert(id.to_owned());
        true
    }
}

/// How the chat recorder ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEnd {
    /// Told to stop; everything heard is stored.
    Stopped,
    /// The recording was handed to another cell.
    Fenced,
}

/// Counts, for the log and the tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChatStats {
    pub stored: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub chunks: u64,
    pub reconnects: u64,
}

pub struct ChatRecorder {
    args: ChatArgs,
    channel: String,
    recording_id: i64,
    pool: PgPool,
    ledger: ChatLedger,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectKey,
    next_seq: u64,
    buffer: Vec<ChatMessage>,
    seen: RecentIds,
    /// Where wall-clock times fall on the video's timeline.
    timeline: Timeline,
    /// Since when nothing could be heard (a gap to record once back).
    deaf_since: Option<(DateTime<Utc>, String)>,
    /// Stopping: store what is buffered whatever is known.
    stopping: bool,
    pub stats: ChatStats,
}

/// rustls needs one process-wide crypto provider, and this build links two
/// (through the AWS SDK and reqwest), so none is picked by itself: pick ring
/// before the first `wss://` connection. Installing it again is a no-op.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where wall-clock times fall on the video's timeline, from the segment
/// ledger: the recent stored segments with a program date-time, each with
/// where it starts in playback (every stored segment counts, ads included,
/// as in the dashboard's player and the MP4 export; gaps do not). Read
/// incrementally, and only the last [`TIMELINE_WINDOW`] segments are kept,
/// so it costs the same on day 7 as in minute 1.
#[derive(Debug, Default)]
struct Timeline {
    /// (program date-time, playback start, duration), in ledger order.
    recent: VecDeque<(DateTime<Utc>, f64, f64)>,
    /// Playback seconds of every stored segment read so far.
    total: f64,
    /// The last ledger row read: (epoch, media sequence).
    last: Option<(i32, i64)>,
}

/// Segments kept for mapping: about an hour of 2-second segments, far more
/// than one chunk of chat can span.
const TIMELINE_WINDOW: usize = 2_000;

impl Timeline {
    fn is_empty(&self) -> bool {
        self.recent.is_empty()
    }

    /// Read the rows stored since the last call.
    async fn catch_up(&mut self, pool: &PgPool, recording_id: i64) -> Result<(), sqlx::Error> {
        type Row = (i32, i64, Option<DateTime<Utc>>, f64, bool);
        let (epoch, seq) = self.last.unwrap_or((-1, -1));
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT epoch, media_sequence, program_date_time, duration_secs, is_gap FROM segments
              WHERE recording_id = $1 AND (recording_id, epoch, media_sequence) > ($1, $2, $3)
              ORDER BY epoch, media_sequence",
        )
        .bind(recording_id)
        .bind(epoch)
        .bind(seq)
        .fetch_all(pool)
        .await?;
        for (epoch, seq, pdt, duration, gap) in rows {
            self.push(pdt, if gap { 0.0 } else { duration.max(0.0) }, gap);
            self.last = Some((epoch, seq));
        }
        Ok(())
    }

    fn push(&mut self, pdt: Option<DateTime<Utc>>, duration: f64, gap: bool) {
        if let (Some(pdt), false) = (pdt, gap) {
            self.recent.push_back((pdt, self.total, duration));
            if self.recent.len() > TIMELINE_WINDOW {
                self.recent.pop_front();
            }
        }
        self.total += duration;
    }

    /// Seconds on the video's timeline at wall-clock `t`: in the last
    /// segment that began by then, its start plus the time since (capped at
    /// its end, unless it is the newest: chat during an outage sits where the
    /// video stopped). Before the first segment known: its start. Pure.
    fn offset(&self, t: DateTime<Utc>) -> Option<f64> {
        let first = self.recent.front()?;
        let i = self.recent.partition_point(|(pdt, _, _)| *pdt <= t);
        if i == 0 {
            return Some(first.1);
        }
        let (pdt, start, duration) = self.recent[i - 1];
        let since = (t - pdt).num_milliseconds() as f64 / 1000.0;
        let newest = i == self.recent.len();
        Some(start + if newest { since } else { since.min(duration) })
    }
}

/// How many recent ids are kept: far more than one chunk, so a replacement
/// and a reconnect both overlap within it.
const RECENT_IDS: usize = 20_000;

impl ChatRecorder {
    /// Pick up where the recording's chat stands: the next chunk number, the
    /// ids of the last chunk, and, if a chunk exists, a gap from its last
    /// message to now (what a previous cell heard and never stored).
    pub async fn open(
        args: ChatArgs,
        channel: &str,
        pool: PgPool,
        store: Arc<dyn ObjectStore>,
        prefix: ObjectKey,
        recording_id: i64,
        token: i64,
    ) -> Result<Self, sqlx::Error> {
        install_tls_provider();
        let chunks = colony::recording::chat_ledger::chunks(&pool, recording_id).await?;
        let mut seen = RecentIds::new(RECENT_IDS);
        let mut deaf_since = None;
        if let Some(last) = chunks.last() {
            match load_chunk(store.as_ref(), &last.object_key).await {
                Ok(messages) => messages.iter().for_each(|m| {
                    seen.first_time(&m.id);
                }),
                Err(e) => {
                    warn!(chunk = %last.object_key, error = %e, "could not read the last chat chunk; duplicates around the hand-over may be kept")
                }
            }
            deaf_since = Some((last.last_sent_at, "the previous observer stopped".to_owned()));
            info!(chunks = chunks.len(), "continuing a chat archive another cell started");
        }
        Ok(Self {
            channel: channel.to_owned(),
            recording_id,
            ledger: ChatLedger::new(pool.clone(), recording_id, token),
            pool,
            store,
            prefix,
            next_seq: chunks.last().map_or(0, |c| c.seq as u64 + 1),
            buffer: Vec::new(),
            seen,
            timeline: Timeline::default(),
            deaf_since,
            stopping: false,
            stats: ChatStats::default(),
            args,
        })
    }

    /// Record until `stop`: connect, listen, reconnect with backoff, and
    /// store what is heard; flush on the way out.
    pub async fn run(mut self, stop: CancellationToken) -> (ChatEnd, ChatStats) {
        let mut backoff = Duration::from_secs(1);
        let end = loop {
            if stop.is_cancelled() {
                break ChatEnd::Stopped;
            }
            let result = self.session(&stop).await;
            if stop.is_cancelled() && result != Err(SessionError::Fenced) {
                break ChatEnd::Stopped;
            }
            match result {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(SessionError::Fenced) => break ChatEnd::Fenced,
                Err(SessionError::Lost(why)) => {
                    warn!(channel = %self.channel, error = %why, "chat connection lost; reconnecting");
                }
            }
            if self.deaf_since.is_none() {
                self.deaf_since = Some((Utc::now(), "the chat connection was lost".into()));
            }
            self.stats.reconnects += 1;
            if self.flush().await == Err(SessionError::Fenced) {
                break ChatEnd::Fenced;
            }
            tokio::select! {
                _ = stop.cancelled() => break ChatEnd::Stopped,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        };
        self.stopping = true;
        let end = match (end, self.flush().await) {
            (ChatEnd::Stopped, Err(SessionError::Fenced)) => ChatEnd::Fenced,
            (end, _) => end,
        };
        // A gap still open when the recording ends lasts to the end.
        if end == ChatEnd::Stopped
            && let Some((from, reason)) = self.deaf_since.take()
        {
            let _ = self.ledger.insert_gap(&ChatGap { from_at: from, to_at: Utc::now(), reason }).await;
        }
        info!(
            channel = %self.channel, stored = self.stats.stored, chunks = self.stats.chunks,
            duplicates = self.stats.duplicates, malformed = self.stats.malformed,
            reconnects = self.stats.reconnects, "chat recorder stopped"
        );
        (end, self.stats)
    }

    /// One connection, from login to its end. Ok: told to stop, or the
    /// server asked us to reconnect.
    async fn session(&mut self, stop: &CancellationToken) -> Result<(), SessionError> {
        let connect = tokio_tungstenite::connect_async(self.args.chat_url.as_str());
        let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| SessionError::Lost("connecting timed out".into()))?
            .map_err(|e| SessionError::Lost(format!("connecting: {e}")))?;
        let nick = format!("justinfan{}", rand::random_range(10_000..99_999u32));
        let login = format!(
            "CAP REQ :twitch.tv/tags twitch.tv/commands\r\nPASS SCHMOOPIIE\r\nNICK {nick}\r\nJOIN #{}\r\n",
            self.channel
        );
        ws.send(Frame::text(login)).await.map_err(|e| SessionError::Lost(format!("logging in: {e}")))?;
        let mut flush = tokio::time::interval(self.args.chat_flush_every.into());
        flush.reset();
        let idle = Duration::from(self.args.chat_idle_timeout);
        let mut joined = false;
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ok(());
                }
                _ = flush.tick() => {
                    self.flush().await?;
                    continue;
                }
                frame = tokio::time::timeout(idle, ws.next()) => frame,
            };
            let text = match frame {
                Err(_) => {
                    return Err(SessionError::Lost(format!(
                        "nothing from the server for {}",
                        humantime::format_duration(idle)
                    )));
                }
                Ok(None) => return Err(SessionError::Lost("the server closed the connection".into())),
                Ok(Some(Err(e))) => return Err(SessionError::Lost(e.to_string())),
                Ok(Some(Ok(Frame::Text(text)))) => text,
                Ok(Some(Ok(Frame::Close(_)))) => {
                    return Err(SessionError::Lost("the server closed the connection".into()));
                }
                Ok(Some(Ok(_))) => continue,
            };
            let now = Utc::now();
            for line in irc::split_frame(&text) {
                match irc::event(line, now) {
                    Ok(Event::Message(m)) => self.heard(m),
                    Ok(Event::Ping(token)) => {
                        let pong = format!("PONG :{token}\r\n");
                        ws.send(Frame::text(pong)).await.map_err(|e| SessionError::Lost(e.to_string()))?;
                    }
                    Ok(Event::Joined) if !joined => {
                        joined = true;
                        self.back(now).await?;
                        info!(channel = %self.channel, "chat joined");
                    }
                    Ok(Event::Reconnect) => {
                        info!(channel = %self.channel, "the chat server asked for a reconnect");
                        self.deaf_since = Some((now, "the chat server asked for a reconnect".into()));
                        return Ok(());
                    }
                    Ok(Event::LoginFailed(why)) => return Err(SessionError::Lost(format!("login refused: {why}"))),
                    Ok(_) => {}
                    Err(e) => {
                        self.stats.malformed += 1;
                        debug!(error = %e, "skipped a malformed chat line");
                    }
                }
            }
            if self.buffer.len() >= self.args.chat_flush_messages {
                self.flush().await?;
            }
        }
    }

    /// Connected again: the silence becomes a gap row.
    async fn back(&mut self, now: DateTime<Utc>) -> Result<(), SessionError> {
        if let Some((from, reason)) = self.deaf_since.take() {
            let gap = ChatGap { from_at: from, to_at: now.max(from), reason };
            self.ledger.insert_gap(&gap).await.map_err(SessionError::from_ledger)?;
        }
        Ok(())
    }

    fn heard(&mut self, m: ChatMessage) {
        if self.seen.first_time(&m.id) {
            self.buffer.push(m);
        } else {
            self.stats.duplicates += 1;
        }
    }

    /// Store what is buffered as one chunk. A storage or database failure
    /// keeps the messages for the next try (up to a chunk's worth more,
    /// beyond which the oldest become a gap); fenced out stops the recorder.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.timeline.catch_up(&self.pool, self.recording_id).await {
            warn!(error = %e, "could not read the recording's segments for chat offsets");
        }
        // Offsets are on the video's timeline: until its first segment is
        // stored, wait (a chunk's worth at most) rather than guess.
        if self.timeline.is_empty() && self.buffer.len() < self.args.chat_flush_messages && !self.stopping {
            return Ok(());
        }
        let started = match self.timeline.is_empty() {
            true => sqlx::query_scalar("SELECT started_at FROM recordings WHERE id = $1")
                .bind(self.recording_id)
                .fetch_optional(&self.pool)
                .await
                .ok()
                .flatten(),
            false => None,
        };
        for m in &mut self.buffer {
            m.offset_secs = self.timeline.offset(m.sent_at).unwrap_or_else(|| {
                started.map_or(0.0, |s: DateTime<Utc>| ((m.sent_at - s).num_milliseconds() as f64 / 1000.0).max(0.0))
            });
        }
        match self.store_chunk().await {
            Ok(()) => {
                self.stats.stored += self.buffer.len() as u64;
                self.stats.chunks += 1;
                self.next_seq += 1;
                self.buffer.clear();
                Ok(())
            }
            Err(ChunkError::Ledger(LedgerError::Fenced { .. })) => Err(SessionError::Fenced),
            Err(e) => {
                warn!(channel = %self.channel, error = %e, messages = self.buffer.len(), "could not store a chat chunk; keeping it for the next try");
                let cap = self.args.chat_flush_messages.saturating_mul(2).max(1);
                if self.buffer.len() > cap {
                    let dropped: Vec<ChatMessage> = self.buffer.drain(..self.buffer.len() - cap).collect();
                    if let (Some(first), Some(last)) = (dropped.first(), dropped.last()) {
                        let gap = ChatGap {
                            from_at: first.sent_at,
                            to_at: last.sent_at,
                            reason: format!("{} messages could not be stored: {e}", dropped.len()),
                        };
                        let _ = self.ledger.insert_gap(&gap).await;
                    }
                }
                Ok(())
            }
        }
    }

    async fn store_chunk(&self) -> Result<(), ChunkError> {
        let key = chunk_key(&self.prefix, self.next_seq)?;
        let body = Bytes::from(colony::chat::encode_chunk(&self.buffer)?);
        let bytes = body.len() as i64;
        self.store.put(&key, body).await?;
        let (Some(first), Some(last)) = (self.buffer.first(), self.buffer.last()) else { return Ok(()) };
        let chunk = ChatChunk {
            seq: self.next_seq as i64,
            object_key: key.to_string(),
            messages: self.buffer.len() as i32,
            bytes,
            first_sent_at: first.sent_at,
            last_sent_at: last.sent_at,
            first_offset_secs: first.offset_secs,
            last_offset_secs: last.offset_secs,
            truncated: self.buffer.iter().filter(|m| m.truncated).count() as i32,
        };
        self.ledger.insert_chunk(&chunk).await?;
        debug!(seq = chunk.seq, messages = chunk.messages, "chat chunk stored");
        Ok(())
    }
}

#[derive(Debug, PartialEq)]
enum SessionError {
    Fenced,
    Lost(String),
}

impl SessionError {
    fn from_ledger(e: LedgerError) -> Self {
        match e {
            LedgerError::Fenced { .. } => SessionError::Fenced,
            other => SessionError::Lost(colony::error_chain(&other)),
        }
    }
}

impl From<LedgerError> for SessionError {
    fn from(e: LedgerError) -> Self {
        Self::from_ledger(e)
    }
}

/// A lost connection is made again; fenced out is the end.
impl Classify for SessionError {
    fn class(&self) -> ErrorClass {
        match self {
            SessionError::Fenced => ErrorClass::Fenced,
            SessionError::Lost(_) => ErrorClass::Transient,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ChunkError {
    #[error("storage")]
    Storage(#[from] colony::storage::StorageError),
    #[error("ledger")]
    Ledger(#[from] LedgerError),
    #[error("encoding")]
    Encode(#[from] std::io::Error),
}

/// Storage and the ledger say for themselves; messages that cannot be
/// encoded once cannot be encoded again.
impl Classify for ChunkError {
    fn class(&self) -> ErrorClass {
        match self {
            ChunkError::Storage(e) => e.class(),
            ChunkError::Ledger(e) => e.class(),
            ChunkError::Encode(_) => ErrorClass::Permanent,
        }
    }
}

/// A stored chunk's messages.
pub async fn load_chunk(store: &dyn ObjectStore, key: &str) -> anyhow::Result<Vec<ChatMessage>> {
    let key = ObjectKey::parse(key)?;
    let body = colony::storage::get_bytes(store, &key).await?;
    Ok(colony::chat::decode_chunk(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TLS side of `wss://` is usable in this build (a crypto provider is
    /// there to pick): a refused connection is an error, not a panic.
    #[tokio::test]
    async fn a_wss_url_fails_as_an_error_not_a_panic() {
        // A server that takes the connection and hangs up mid-handshake.
        install_tls_provider();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((socket, _)) = listener.accept() {
                drop(socket);
            }
        });
        let result = tokio_tungstenite::connect_async(format!("wss://127.0.0.1:{port}/")).await;
        assert!(result.is_err());
    }

    #[test]
    fn chat_lands_where_the_video_is_across_gaps_and_epochs() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let mut t = Timeline::default();
        assert_eq!(t.offset(at(0)), None, "nothing stored yet");
        // Epoch 0: segments at 0, 2 and 4 s; a gap row (6 s lost); one at 8 s.
        t.push(Some(at(0)), 2.0, false);
        t.push(Some(at(2)), 2.0, false);
        t.push(Some(at(4)), 2.0, false);
        t.push(None, 0.0, true);
        t.push(Some(at(8)), 2.0, false);
        assert_eq!(t.offset(at(-5)), Some(0.0), "before the first segment");
        assert_eq!(t.offset(at(3)), Some(3.0));
        assert_eq!(t.offset(at(7)), Some(6.0), "in the gap: where the video jumps");
        assert_eq!(t.offset(at(9)), Some(7.0), "after the gap, the video is 2 s behind the clock");
        // Epoch 1 after a 60 s outage: chat in the outage sits at the end of epoch 0.
        t.push(Some(at(70)), 2.0, false);
        assert_eq!(t.offset(at(40)), Some(8.0));
        assert_eq!(t.offset(at(71)), Some(9.0));
        assert_eq!(t.offset(at(75)), Some(13.0), "the newest segment runs on");
    }

    #[test]
    fn recent_ids_drop_a_repeat_and_forget_the_oldest_past_capacity() {
        let mut ids = RecentIds::new(2);
        assert!(ids.first_time("a"));
        assert!(!ids.first_time("a"));
        assert!(ids.first_time("b"));
        assert!(ids.first_time("c"));
        assert_eq!(ids.set.len(), 2);
        assert!(ids.first_time("a"), "a was forgotten");
    }
}
