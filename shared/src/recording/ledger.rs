//! Fenced writes to the segment ledger and the recording row.
//!
//! Every write carries the cell's lease token and only lands while the
//! recording still holds that token (`FOR SHARE` on the recording row, so a
//! concurrent hand-over waits for it or refuses it). A refused write is
//! [`LedgerError::Fenced`]: the cell has been replaced and must stop at once.

use serde_json::json;
use sqlx::PgPool;
use tracing::instrument;

use super::{LedgerRow, RecordingState};
use crate::queue::{NewJob, Queue};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("recording {recording_id} was handed to another cell; lease token {token} is no longer valid")]
    Fenced { recording_id: i64, token: i64 },
    #[error("ledger write failed")]
    Db(#[from] sqlx::Error),
}

/// A recording's running totals, sent with every heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub segments: i64,
    pub gaps: i64,
    pub bytes: i64,
    pub duration_secs: f64,
    pub last_sequence: Option<i64>,
    pub epoch: i32,
}

impl Progress {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a LedgerRow>) -> Self {
        let mut p = Progress::default();
        for r in rows {
            if r.is_gap {
                p.gaps += i64::from(r.gap_count);
            } else {
                p.segments += 1;
                p.bytes += r.bytes;
                p.duration_secs += r.duration_secs;
            }
            if r.epoch > p.epoch || (r.epoch == p.epoch && Some(r.media_sequence) > p.last_sequence) {
                p.last_sequence = Some(r.media_sequence);
            }
            p.epoch = p.epoch.max(r.epoch);
        }
        p
    }
}

#[derive(Debug, Clone)]
pub struct Ledger {
    pool: PgPool,
    recording_id: i64,
    token: i64,
}

impl Ledger {
    pub fn new(pool: PgPool, recording_id: i64, token: i64) -> Self {
        Self { pool, recording_id, token }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn recording_id(&self) -> i64 {
        self.recording_id
    }

    fn fenced(&self) -> LedgerError {
        LedgerError::Fenced { recording_id: self.recording_id, token: self.token }
    }

    async fn check_fence(&self) -> Result<(), LedgerError> {
        let token: Option<i64> = sqlx::query_scalar("SELECT lease_token FROM recordings WHERE id = $1")
            .bind(self.recording_id)
            .fetch_optional(&self.pool)
            .await?;
        if token == Some(self.token) { Ok(()) } else { Err(self.fenced()) }
    }

    /// Write one row. Returns false if it was already there (idempotent).
    #[instrument(skip_all, fields(recording = self.recording_id, epoch = row.epoch, seq = row.media_sequence), err)]
    pub async fn insert(&self, row: &LedgerRow) -> Result<bool, LedgerError> {
        let inserted: Option<i32> = sqlx::query_scalar(
            "WITH fence AS (SELECT id FROM recordings WHERE id = $1 AND lease_token = $2 FOR SHARE)
             INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs, bytes, object_key, init_key,
                                   program_date_time, source, is_gap, gap_count, is_ad, discontinuity)
             SELECT fence.id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM fence
             ON CONFLICT (recording_id, epoch, media_sequence) DO NOTHING
             RETURNING 1",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(row.epoch)
        .bind(row.media_sequence)
        .bind(row.duration_secs)
        .bind(row.bytes)
        .bind(&row.object_key)
        .bind(&row.init_key)
        .bind(row.program_date_time)
        .bind(row.source)
        .bind(row.is_gap)
        .bind(row.gap_count)
        .bind(row.is_ad)
        .bind(row.discontinuity)
        .fetch_optional(&self.pool)
        .await?;
        if inserted.is_some() {
            return Ok(true);
        }
        self.check_fence().await?;
        Ok(false)
    }

    /// Heartbeat: the recording's progress and the cell's liveness, fenced.
    pub async fn heartbeat(
        &self,
        cell_id: uuid::Uuid,
        progress: &Progress,
        state: RecordingState,
    ) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query_scalar(
            "UPDATE recordings SET state = $3, segment_count = $4, gap_count = $5, bytes = $6, duration_secs = $7,
                    last_sequence = $8, epoch = GREATEST(epoch, $9), holder_cell_id = $10
              WHERE id = $1 AND lease_token = $2
             RETURNING 1",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(state);
        let updated: Option<i32> = bind_progress(updated, progress).bind(cell_id).fetch_optional(&mut *tx).await?;
        if updated.is_none() {
            return Err(self.fenced());
        }
        // Never revive a cell the mothership is stopping or has buried.
        sqlx::query(
            "UPDATE cells SET last_heartbeat = now(),
                    state = CASE WHEN state = 'starting' THEN 'running'::cell_state ELSE state END
              WHERE id = $1 AND state IN ('starting', 'running', 'stopping')",
        )
        .bind(cell_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every row of the recording, ordered (a replacement cell resumes from these).
    pub async fn rows(&self) -> Result<Vec<LedgerRow>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT epoch, media_sequence, duration_secs, bytes, object_key, init_key, program_date_time, source,
                    is_gap, gap_count, is_ad, discontinuity
               FROM segments WHERE recording_id = $1 ORDER BY epoch, media_sequence",
        )
        .bind(self.recording_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Close the recording, enqueue the channel's post-processing and mark the
    /// cell exited, in one transaction. The media and the VOD playlist must
    /// already be in storage.
    #[instrument(skip_all, fields(recording = self.recording_id), err)]
    pub async fn finalize(
        &self,
        cell_id: uuid::Uuid,
        progress: &Progress,
        state: RecordingState,
    ) -> Result<Vec<i64>, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let pipeline = sqlx::query_scalar(
            "UPDATE recordings r SET state = $3, ended_at = now(), segment_count = $4, gap_count = $5, bytes = $6,
                    duration_secs = $7, last_sequence = $8, epoch = GREATEST(r.epoch, $9), holder_cell_id = NULL
               FROM channels c
              WHERE r.id = $1 AND r.lease_token = $2 AND c.id = r.channel_id
             RETURNING c.pipeline",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(state);
        let pipeline: Option<serde_json::Value> = bind_progress(pipeline, progress).fetch_optional(&mut *tx).await?;
        let Some(pipeline) = pipeline else {
            return Err(self.fenced());
        };
        let mut jobs = Vec::new();
        if progress.segments > 0 {
            for kind in pipeline.as_array().into_iter().flatten().filter_map(|k| k.as_str()) {
                let job = NewJob::new(kind, json!({ "recording_id": self.recording_id }))
                    .unique_key(format!("{kind}:recording:{}", self.recording_id));
                jobs.push(
                    Queue::enqueue_with(&mut *tx, &job)
                        .await
                        .map_err(|e| match e {
                            crate::queue::QueueError::Db(e) => LedgerError::Db(e),
                            other => LedgerError::Db(sqlx::Error::Protocol(other.to_string())),
                        })?
                        .id(),
                );
            }
        }
        sqlx::query("UPDATE cells SET state = 'exited', exited_at = now(), exit_code = 0 WHERE id = $1")
            .bind(cell_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(jobs)
    }
}

/// Bind a progress's columns in the order both recording updates use:
/// segments, gaps, bytes, duration, last sequence, epoch.
fn bind_progress<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    p: &Progress,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query.bind(p.segments).bind(p.gaps).bind(p.bytes).bind(p.duration_secs).bind(p.last_sequence).bind(p.epoch)
}
