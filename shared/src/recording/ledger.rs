//! Fenced writes to the segment ledger and the recording row.
//!
//! Every write carries the cell's lease token and only lands while the
//! recording still holds that token (`FOR SHARE` on the recording row, so a
//! concurrent hand-over waits for it or refuses it). A refused write is
//! [`LedgerError::Fenced`]: the cell has been replaced and must stop at once.
//! A row the database refuses for what it holds is
//! [`LedgerError::Refused`]; the writer turns it into a gap instead of
//! retrying it forever.

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;
use tracing::instrument;

use super::{LedgerRow, MediaSource, RecordingState};
use crate::queue::{JobArgs, JobKind, Queue};

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("recording {recording_id} was handed to another cell; lease token {token} is no longer valid")]
    Fenced { recording_id: i64, token: i64 },
    /// The database refused what the row holds (a CHECK, a range): retrying
    /// the same row cannot help.
    #[error("the ledger refused the row")]
    Refused(#[source] sqlx::Error),
    #[error("ledger write failed")]
    Db(#[source] sqlx::Error),
    #[error("postgres did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// Queueing the recording's post-processing, in the same transaction
    /// as closing it, failed.
    #[error("queueing the recording's jobs failed")]
    Queue(#[source] crate::queue::QueueError),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        if refuses_the_data(&e) { LedgerError::Refused(e) } else { LedgerError::Db(e) }
    }
}

/// After a fenced write that changed nothing: Ok if `token` still holds the
/// recording (the write was a duplicate), fenced out if it moved on.
pub(crate) async fn check_fence(pool: &PgPool, recording_id: i64, token: i64) -> Result<(), LedgerError> {
    let held: Option<i64> = sqlx::query_scalar("SELECT lease_token FROM recordings WHERE id = $1")
        .bind(recording_id)
        .fetch_optional(pool)
        .await?;
    if held == Some(token) { Ok(()) } else { Err(LedgerError::Fenced { recording_id, token }) }
}

/// Errors about the data itself (SQLSTATE classes 22, data exception, and
/// 23, integrity violation), as opposed to a database that is away.
pub fn refuses_the_data(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// A recording's running totals, sent with every heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, sqlx::FromRow)]
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
            p.add(r);
        }
        p
    }

    /// Count one more row (rows may come in any order).
    pub fn add(&mut self, r: &LedgerRow) {
        if r.is_gap {
            self.gaps = self.gaps.saturating_add(i64::from(r.gap_count));
        } else {
            self.segments += 1;
            self.bytes = self.bytes.saturating_add(r.bytes);
            self.duration_secs += r.duration_secs;
        }
        if r.epoch > self.epoch || (r.epoch == self.epoch && Some(r.media_sequence) > self.last_sequence) {
            self.last_sequence = Some(r.media_sequence);
        }
        self.epoch = self.epoch.max(r.epoch);
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
        check_fence(&self.pool, self.recording_id, self.token).await
    }

    /// Write one row. Returns false if it was already there (idempotent).
    #[instrument(skip_all, fields(recording = self.recording_id, epoch = row.epoch, seq = row.media_sequence), err)]
    pub async fn insert(&self, row: &LedgerRow) -> Result<bool, LedgerError> {
        Ok(self.insert_batch(std::slice::from_ref(row)).await? == 1)
    }

    /// Write rows in one statement. Returns how many were new (a row already
    /// there is skipped: writes are idempotent).
    pub async fn insert_batch(&self, rows: &[LedgerRow]) -> Result<u64, LedgerError> {
        self.insert_batch_in(&self.pool, rows).await
    }

    /// [`insert_batch`](Self::insert_batch) on a connection or in a transaction.
    async fn insert_batch_in<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        rows: &[LedgerRow],
    ) -> Result<u64, LedgerError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let epochs: Vec<i32> = rows.iter().map(|r| r.epoch).collect();
        let sequences: Vec<i64> = rows.iter().map(|r| r.media_sequence).collect();
        let durations: Vec<f64> = rows.iter().map(|r| r.duration_secs).collect();
        let bytes: Vec<i64> = rows.iter().map(|r| r.bytes).collect();
        let keys: Vec<Option<String>> = rows.iter().map(|r| r.object_key.clone()).collect();
        let inits: Vec<Option<String>> = rows.iter().map(|r| r.init_key.clone()).collect();
        let dates: Vec<Option<chrono::DateTime<chrono::Utc>>> = rows.iter().map(|r| r.program_date_time).collect();
        let sources: Vec<&str> = rows
            .iter()
            .map(|r| match r.source {
                MediaSource::Live => "live",
                MediaSource::Vod => "vod",
            })
            .collect();
        let gaps: Vec<bool> = rows.iter().map(|r| r.is_gap).collect();
        let counts: Vec<i32> = rows.iter().map(|r| r.gap_count).collect();
        let ads: Vec<bool> = rows.iter().map(|r| r.is_ad).collect();
        let breaks: Vec<bool> = rows.iter().map(|r| r.discontinuity).collect();
        let reasons: Vec<Option<String>> = rows.iter().map(|r| r.gap_reason.clone()).collect();
        let warnings: Vec<Option<String>> = rows.iter().map(|r| r.warning.clone()).collect();
        let inserted: i64 = sqlx::query_scalar(
            "WITH fence AS (SELECT id FROM recordings WHERE id = $1 AND lease_token = $2 FOR SHARE),
                  ins AS (
                INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs, bytes, object_key, init_key,
                                      program_date_time, source, is_gap, gap_count, is_ad, discontinuity, gap_reason,
                                      warning)
                SELECT fence.id, u.epoch, u.seq, u.duration, u.bytes, u.key, u.init, u.pdt, u.source::media_source,
                       u.gap, u.count, u.ad, u.break, u.reason, u.warning
                  FROM fence,
                       UNNEST($3::int[], $4::bigint[], $5::float8[], $6::bigint[], $7::text[], $8::text[],
                              $9::timestamptz[], $10::text[], $11::bool[], $12::int[], $13::bool[], $14::bool[],
                              $15::text[], $16::text[])
                       AS u(epoch, seq, duration, bytes, key, init, pdt, source, gap, count, ad, break, reason, warning)
                ON CONFLICT (recording_id, epoch, media_sequence) DO NOTHING
                RETURNING 1)
             SELECT count(*) FROM ins",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(&epochs)
        .bind(&sequences)
        .bind(&durations)
        .bind(&bytes)
        .bind(&keys)
        .bind(&inits)
        .bind(&dates)
        .bind(&sources)
        .bind(&gaps)
        .bind(&counts)
        .bind(&ads)
        .bind(&breaks)
        .bind(&reasons)
        .bind(&warnings)
        .fetch_one(executor)
        .await?;
        if inserted == 0 {
            // All duplicates, or fenced out: tell which.
            self.check_fence().await?;
        }
        Ok(inserted as u64)
    }

    /// Heartbeat: the recording's progress and the cell's liveness, fenced.
    pub async fn heartbeat(
        &self,
        cell_id: uuid::Uuid,
        progress: &Progress,
        state: RecordingState,
        caught_up: bool,
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
        crate::cells::heartbeat(&mut *tx, cell_id).await?;
        if caught_up {
            crate::cells::caught_up(&mut *tx, cell_id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every row of the recording, ordered. Only for recordings known to be
    /// small (tests, a VOD's ledger); long ones are read with [`stream`](Self::stream).
    pub async fn rows(&self) -> Result<Vec<LedgerRow>, LedgerError> {
        Ok(self.stream().try_collect().await?)
    }

    /// Every row of the recording in (epoch, sequence) order, read as it
    /// arrives, so a week-long recording never sits in memory at once.
    pub fn stream(&self) -> BoxStream<'_, Result<LedgerRow, sqlx::Error>> {
        sqlx::query_as::<_, LedgerRow>(
            "SELECT epoch, media_sequence, duration_secs, bytes, object_key, init_key, program_date_time, source,
                    is_gap, gap_count, is_ad, discontinuity, gap_reason, warning
               FROM segments WHERE recording_id = $1 ORDER BY epoch, media_sequence",
        )
        .bind(self.recording_id)
        .fetch(&self.pool)
        .boxed()
    }

    /// Replace the gap row at (`epoch`, `first_sequence`) with `rows` (media
    /// adopted from storage, and gaps for what is still missing), fenced, in
    /// one transaction. Returns false if there was no such gap row.
    pub async fn replace_gap(&self, epoch: i32, first_sequence: i64, rows: &[LedgerRow]) -> Result<bool, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let removed: Option<i32> = sqlx::query_scalar(
            "WITH fence AS (SELECT id FROM recordings WHERE id = $1 AND lease_token = $2 FOR SHARE)
             DELETE FROM segments s USING fence
              WHERE s.recording_id = fence.id AND s.epoch = $3 AND s.media_sequence = $4 AND s.is_gap
             RETURNING 1",
        )
        .bind(self.recording_id)
        .bind(self.token)
        .bind(epoch)
        .bind(first_sequence)
        .fetch_optional(&mut *tx)
        .await?;
        if removed.is_none() {
            self.check_fence().await?;
            return Ok(false);
        }
        self.insert_batch_in(&mut *tx, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The recording's totals, counted by the database from its ledger.
    pub async fn totals(&self) -> Result<Progress, LedgerError> {
        Ok(totals(&self.pool, self.recording_id).await?)
    }

    /// Close the recording with the totals its ledger holds and enqueue the
    /// channel's post-processing, in one transaction. The media and the VOD
    /// playlist must already be in storage. The cell that held it leaves
    /// through [`crate::cells::mark_exited`].
    #[instrument(skip_all, fields(recording = self.recording_id), err)]
    pub async fn finalize(&self, state: RecordingState) -> Result<(Vec<i64>, Progress), LedgerError> {
        let mut tx = self.pool.begin().await?;
        let progress = totals(&mut *tx, self.recording_id).await?;
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
        let pipeline: Option<serde_json::Value> = bind_progress(pipeline, &progress).fetch_optional(&mut *tx).await?;
        let Some(pipeline) = pipeline else {
            return Err(self.fenced());
        };
        let mut jobs = Vec::new();
        if progress.segments > 0 {
            for name in pipeline.as_array().into_iter().flatten().filter_map(|k| k.as_str()) {
                let args =
                    name.parse::<JobKind>().ok().and_then(|kind| JobArgs::for_recording(kind, self.recording_id));
                let Some(args) = args else {
                    tracing::warn!(
                        kind = name,
                        recording = self.recording_id,
                        "the channel's pipeline names a job this build cannot queue for a recording; skipped"
                    );
                    continue;
                };
                let queued = Queue::enqueue_with(&mut *tx, &args.job()).await.map_err(|e| match e {
                    crate::queue::QueueError::Db(e) => LedgerError::Db(e),
                    other => LedgerError::Queue(other),
                })?;
                jobs.push(queued.id());
            }
        }
        tx.commit().await?;
        Ok((jobs, progress))
    }
}

/// A recording's totals from its ledger, in one aggregate.
pub async fn totals<'e>(executor: impl sqlx::PgExecutor<'e>, recording_id: i64) -> Result<Progress, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT is_gap) AS segments,
                coalesce(sum(gap_count) FILTER (WHERE is_gap), 0)::bigint AS gaps,
                coalesce(sum(bytes) FILTER (WHERE NOT is_gap), 0)::bigint AS bytes,
                coalesce(sum(duration_secs) FILTER (WHERE NOT is_gap), 0)::float8 AS duration_secs,
                (SELECT media_sequence FROM segments WHERE recording_id = $1
                  ORDER BY epoch DESC, media_sequence DESC LIMIT 1) AS last_sequence,
                coalesce(max(epoch), 0) AS epoch
           FROM segments WHERE recording_id = $1",
    )
    .bind(recording_id)
    .fetch_one(executor)
    .await
}

/// Bind a progress's columns in the order both recording updates use:
/// segments, gaps, bytes, duration, last sequence, epoch.
fn bind_progress<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    p: &Progress,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query.bind(p.segments).bind(p.gaps).bind(p.bytes).bind(p.duration_secs).bind(p.last_sequence).bind(p.epoch)
}

/// What a repair found out about one stored segment.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentFix {
    /// Fetched again from the source and stored over the old object.
    Refetched { bytes: i64 },
    /// Beyond saving: a gap now, with why; the object stays referenced when
    /// it still exists (`keep_object`), for a human to look at.
    Gap { reason: String, keep_object: bool },
    /// It decodes, with complaints worth a look.
    Warning(String),
}

/// Write a repair's verdict on segment (`epoch`, `sequence`) of a recording,
/// while the repair job's `fence` holds. False when the lease moved on.
pub async fn fix_segment(
    pool: &PgPool,
    fence: crate::queue::JobFence,
    recording_id: i64,
    epoch: i32,
    sequence: i64,
    fix: &SegmentFix,
) -> Result<bool, sqlx::Error> {
    let at = "FROM fence WHERE recording_id = $1 AND epoch = $2 AND media_sequence = $3";
    let query = match fix {
        SegmentFix::Refetched { .. } => {
            format!(
                "WITH fence AS ({}) UPDATE segments SET bytes = $4, warning = NULL {at}",
                crate::queue::JobFence::cte(5)
            )
        }
        SegmentFix::Gap { .. } => format!(
            "WITH fence AS ({}) UPDATE segments SET is_gap = true, gap_count = 1, discontinuity = true, gap_reason = $4,
                    object_key = CASE WHEN $5 THEN object_key END, init_key = CASE WHEN $5 THEN init_key END,
                    bytes = CASE WHEN $5 THEN bytes ELSE 0 END {at}",
            crate::queue::JobFence::cte(6)
        ),
        SegmentFix::Warning(_) => {
            format!("WITH fence AS ({}) UPDATE segments SET warning = $4 {at}", crate::queue::JobFence::cte(5))
        }
    };
    let q = sqlx::query(&query).bind(recording_id).bind(epoch).bind(sequence);
    let q = match fix {
        SegmentFix::Refetched { bytes } => q.bind(*bytes),
        SegmentFix::Gap { reason, keep_object } => q.bind(reason.as_str()).bind(*keep_object),
        SegmentFix::Warning(text) => q.bind(text.as_str()),
    };
    let done = q.bind(fence.job_id).bind(fence.generation).execute(pool).await?;
    Ok(done.rows_affected() > 0)
}

impl crate::exit::Classify for LedgerError {
    fn class(&self) -> crate::exit::ErrorClass {
        use crate::exit::ErrorClass;
        match self {
            LedgerError::Fenced { .. } => ErrorClass::Fenced,
            LedgerError::Refused(_) => ErrorClass::Permanent,
            LedgerError::Db(_) | LedgerError::TimedOut(_) => ErrorClass::Transient,
            LedgerError::Queue(e) => e.class(),
        }
    }
}
