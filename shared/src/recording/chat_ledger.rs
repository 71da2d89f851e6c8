//! A recording's chat archive in the ledger: the `chat_chunks` and
//! `chat_gaps` tables, of which this module is the only writer. Every write
//! is fenced by the recording's lease token in the same statement, as the
//! segment ledger's are: a replaced observer cannot add a chunk.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use super::LedgerError;
use crate::storage::{ObjectKey, StorageError};

/// One stored chunk of chat.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ChatChunk {
    pub seq: i64,
    pub object_key: String,
    pub messages: i32,
    pub bytes: i64,
    pub first_sent_at: DateTime<Utc>,
    pub last_sent_at: DateTime<Utc>,
    pub first_offset_secs: f64,
    pub last_offset_secs: f64,
    pub truncated: i32,
}

/// A stretch without a chat connection.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct ChatGap {
    pub from_at: DateTime<Utc>,
    pub to_at: DateTime<Utc>,
    pub reason: String,
}

/// `{prefix}/chat/{seq:08}.ndjson.gz`: one chunk's object.
pub fn chunk_key(prefix: &ObjectKey, seq: u64) -> Result<ObjectKey, StorageError> {
    prefix.join(&format!("chat/{seq:08}.ndjson.gz"))
}

/// `{prefix}/chat/chat.json`: the export chat renderers read.
pub fn export_key(prefix: &ObjectKey) -> Result<ObjectKey, StorageError> {
    prefix.join("chat/chat.json")
}

/// The chat side of a recording's ledger, for the cell holding its lease.
#[derive(Debug, Clone)]
pub struct ChatLedger {
    pool: PgPool,
    recording_id: i64,
    token: i64,
}

impl ChatLedger {
    pub fn new(pool: PgPool, recording_id: i64, token: i64) -> Self {
        Self { pool, recording_id, token }
    }

    /// Record a stored chunk. Returns false if that chunk number was already
    /// there (idempotent); fenced out if the lease moved on.
    pub async fn insert_chunk(&self, c: &ChatChunk) -> Result<bool, LedgerError> {
        let inserted: Option<i32> = sqlx::query_scalar(
            "WITH fence AS (SELECT id FROM recordings WHERE id = $1 AND lease_token = $2 FOR SHARE)
             INSERT INTO chat_chunks (recording_id, seq, object_key, messages, bytes, first_sent_at, last_sent_at,
                                      first_offset_secs, last_offset_secs, truncated)
             SELECT fence.id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM fence
             ON CONFLICT (recording_id, seq) DO NOTHING
             RETURNING 1",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(c.seq)
        .bind(&c.object_key)
        .bind(c.messages)
        .bind(c.bytes)
        .bind(c.first_sent_at)
        .bind(c.last_sent_at)
        .bind(c.first_offset_secs)
        .bind(c.last_offset_secs)
        .bind(c.truncated)
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() {
            return Ok(true);
        }
        self.check_fence().await.map(|()| false)
    }

    /// Record a stretch without chat (from, to, why).
    pub async fn insert_gap(&self, gap: &ChatGap) -> Result<(), LedgerError> {
        let inserted: Option<i32> = sqlx::query_scalar(
            "WITH fence AS (SELECT id FROM recordings WHERE id = $1 AND lease_token = $2 FOR SHARE)
             INSERT INTO chat_gaps (recording_id, from_at, to_at, reason)
             SELECT fence.id, $3, $4, $5 FROM fence
             ON CONFLICT (recording_id, from_at) DO UPDATE SET to_at = GREATEST(chat_gaps.to_at, EXCLUDED.to_at)
             RETURNING 1",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(gap.from_at)
        .bind(gap.to_at)
        .bind(&gap.reason)
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() { Ok(()) } else { self.check_fence().await }
    }

    async fn check_fence(&self) -> Result<(), LedgerError> {
        super::ledger::check_fence(&self.pool, self.recording_id, self.token).await
    }
}

/// A recording's chunks, in order.
pub async fn chunks(pool: &PgPool, recording_id: i64) -> Result<Vec<ChatChunk>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, object_key, messages, bytes, first_sent_at, last_sent_at, first_offset_secs, last_offset_secs,
                truncated
           FROM chat_chunks WHERE recording_id = $1 ORDER BY seq",
    )
    .bind(recording_id)
    .fetch_all(pool)
    .await
}

/// How many chunks of chat a recording has.
pub async fn chunk_count(pool: &PgPool, recording_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM chat_chunks WHERE recording_id = $1")
        .bind(recording_id)
        .fetch_one(pool)
        .await
}

/// A recording's chat gaps, in order.
pub async fn gaps(pool: &PgPool, recording_id: i64) -> Result<Vec<ChatGap>, sqlx::Error> {
    sqlx::query_as("SELECT from_at, to_at, reason FROM chat_gaps WHERE recording_id = $1 ORDER BY from_at")
        .bind(recording_id)
        .fetch_all(pool)
        .await
}

/// The chunks holding messages between two offsets of the recording's
/// timeline, in order.
pub async fn chunks_between(
    pool: &PgPool,
    recording_id: i64,
    from_secs: f64,
    to_secs: f64,
) -> Result<Vec<ChatChunk>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, object_key, messages, bytes, first_sent_at, last_sent_at, first_offset_secs, last_offset_secs,
                truncated
           FROM chat_chunks
          WHERE recording_id = $1 AND last_offset_secs >= $2 AND first_offset_secs <= $3
          ORDER BY seq",
    )
    .bind(recording_id)
    .bind(from_secs)
    .bind(to_secs)
    .fetch_all(pool)
    .await
}
