//! The `recordings` table: every write to it outside the fenced [`Ledger`]
//! (which closes and heartbeats a recording under its lease token).
//!
//! [`Ledger`]: super::Ledger

use sqlx::PgPool;

use super::RecordingState;
use crate::queue::JobFence;

/// Where a recording's media and playlists live: `channels/{login}/{id}`,
/// as SQL over `recordings r` joined to `channels c`. The database checks
/// the login to be a safe key segment.
const PREFIX: &str = "'channels/' || c.login || '/' || r.id";

/// A recording handed to a cell: the cell presents `lease_token` with every write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub recording_id: i64,
    pub lease_token: i64,
    /// False when an open recording was handed over to a replacement.
    pub created: bool,
}

/// Open a live recording for a channel, or hand its open one to `cell_id`
/// with a bumped token, which fences out the previous holder.
pub async fn assign_live(pool: &PgPool, channel_id: i64, cell_id: uuid::Uuid) -> Result<Assignment, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let open: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE recordings SET lease_token = lease_token + 1, holder_cell_id = $2
          WHERE channel_id = $1 AND source = 'live' AND state IN ('recording', 'standby')
         RETURNING id, lease_token",
    )
    .bind(channel_id)
    .bind(cell_id)
    .fetch_optional(&mut *tx)
    .await?;
    let assignment = match open {
        Some((recording_id, lease_token)) => Assignment { recording_id, lease_token, created: false },
        None => {
            // The broadcast the platform reports, if the channel is on one:
            // its id, title and category, and the first chapter.
            let (recording_id, lease_token): (i64, i64) = sqlx::query_as(
                "INSERT INTO recordings (channel_id, source, holder_cell_id, storage_prefix,
                                         stream_id, title, category, stream_started_at)
                 SELECT $1, 'live', $2, '', stream_id, stream_title, stream_category, stream_started_at
                   FROM channels WHERE id = $1
                 RETURNING id, lease_token",
            )
            .bind(channel_id)
            .bind(cell_id)
            .fetch_one(&mut *tx)
            .await?;
            // The login is checked by the database to be a safe key segment.
            sqlx::query(&format!(
                "UPDATE recordings r SET storage_prefix = {PREFIX} FROM channels c WHERE r.id = $1 AND c.id = r.channel_id"
            ))
            .bind(recording_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO chapters (recording_id, at, title, category)
                 SELECT id, started_at, title, category FROM recordings
                  WHERE id = $1 AND (title IS NOT NULL OR category IS NOT NULL)",
            )
            .bind(recording_id)
            .execute(&mut *tx)
            .await?;
            Assignment { recording_id, lease_token, created: true }
        }
    };
    tx.commit().await?;
    Ok(assignment)
}

/// What a platform says of the broadcasts of `channel_ids` (one entry each;
/// None where a channel is not live or not probed through an API), noted on
/// their open live recordings: the broadcast's id, title and category where
/// still unknown, and a new chapter when the title or category changed.
pub async fn note_broadcast(
    pool: &PgPool,
    channel_ids: &[i64],
    stream_ids: &[Option<String>],
    titles: &[Option<String>],
    categories: &[Option<String>],
    started: &[Option<chrono::DateTime<chrono::Utc>>],
) -> Result<(), sqlx::Error> {
    if stream_ids.iter().all(Option::is_none) {
        return Ok(());
    }
    sqlx::query(
        "WITH s AS (
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
                        AS s(channel_id, stream_id, title, category, started)
              WHERE stream_id IS NOT NULL),
         open AS (
             SELECT r.id, s.* FROM recordings r JOIN s ON s.channel_id = r.channel_id
              WHERE r.source = 'live' AND r.state IN ('recording', 'standby')),
         noted AS (
             UPDATE recordings r SET stream_id = COALESCE(r.stream_id, o.stream_id),
                    title = COALESCE(r.title, o.title), category = COALESCE(r.category, o.category),
                    stream_started_at = COALESCE(r.stream_started_at, o.started)
               FROM open o WHERE r.id = o.id)
         INSERT INTO chapters (recording_id, at, title, category)
         SELECT o.id, now(), o.title, o.category FROM open o
          WHERE NOT EXISTS (
                SELECT 1 FROM (SELECT title, category FROM chapters WHERE recording_id = o.id ORDER BY at DESC LIMIT 1) last
                 WHERE last.title IS NOT DISTINCT FROM o.title AND last.category IS NOT DISTINCT FROM o.category)
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_ids)
    .bind(stream_ids)
    .bind(titles)
    .bind(categories)
    .bind(started)
    .execute(pool)
    .await
    .map(|_| ())
}

/// A VOD download's recording, found (by channel and URL) or opened, and
/// taken under `token` unless a later claim holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedVod {
    pub recording_id: i64,
    pub state: RecordingState,
    pub storage_prefix: String,
    /// The recording's token now: another claim's when it is above `token`.
    pub lease_token: i64,
}

/// Find or open the VOD recording of `url` on `channel_id`, and raise its
/// lease token to `token` (tokens only go up). A platform's broadcast id and
/// title are noted when given (the id links it to a live recording of the
/// same broadcast). None if the channel does not exist.
pub async fn open_vod(
    pool: &PgPool,
    channel_id: i64,
    url: &str,
    token: i64,
    broadcast: (Option<&str>, Option<&str>),
) -> Result<Option<OpenedVod>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO recordings (channel_id, source, state, source_url, storage_prefix)
         VALUES ($1, 'vod', 'recording', $2, '')
         ON CONFLICT (channel_id, source_url) WHERE source = 'vod' DO NOTHING",
    )
    .bind(channel_id)
    .bind(url)
    .execute(pool)
    .await?;
    let row: Option<(i64, RecordingState, String, i64)> = sqlx::query_as(&format!(
        "UPDATE recordings r SET lease_token = GREATEST(r.lease_token, $3),
                storage_prefix = CASE WHEN r.storage_prefix = '' THEN {PREFIX} ELSE r.storage_prefix END,
                stream_id = COALESCE(r.stream_id, $4), title = COALESCE(r.title, $5)
           FROM channels c
          WHERE r.channel_id = $1 AND r.source_url = $2 AND r.source = 'vod' AND c.id = r.channel_id
         RETURNING r.id, r.state, r.storage_prefix, r.lease_token"
    ))
    .bind(channel_id)
    .bind(url)
    .bind(token)
    .bind(broadcast.0)
    .bind(broadcast.1)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(recording_id, state, storage_prefix, lease_token)| OpenedVod {
        recording_id,
        state,
        storage_prefix,
        lease_token,
    }))
}

/// The recording will not be finished: `failed`, with why. Only while it
/// is open and `token` still holds it.
pub async fn fail(pool: &PgPool, id: i64, token: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recordings SET state = 'failed', error = $3, ended_at = now()
          WHERE id = $1 AND lease_token = $2 AND state IN ('recording', 'standby')",
    )
    .bind(id)
    .bind(token)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

/// The recording's objects moved to `class`; an earlier tiering error is cleared.
pub async fn set_storage_class(pool: &PgPool, id: i64, class: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE recordings SET storage_class = $2,
                error = CASE WHEN error LIKE 'archive_tier:%' THEN NULL ELSE error END
          WHERE id = $1",
    )
    .bind(id)
    .bind(class)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Note a problem on a finished recording (for an operator to read).
pub async fn note_error(pool: &PgPool, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE recordings SET error = $2 WHERE id = $1").bind(id).bind(error).execute(pool).await.map(|_| ())
}

/// A finished recording's totals after a repair, while `fence` holds.
/// False when the job's lease moved on (nothing written).
pub async fn set_totals(pool: &PgPool, fence: JobFence, id: i64, p: &super::Progress) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "WITH fence AS ({}) UPDATE recordings SET segment_count = $2, gap_count = $3, bytes = $4, duration_secs = $5
           FROM fence WHERE id = $1",
        JobFence::cte(6)
    ))
    .bind(id)
    .bind(p.segments)
    .bind(p.gaps)
    .bind(p.bytes)
    .bind(p.duration_secs)
    .bind(fence.job_id)
    .bind(fence.generation)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Remove a live recording opened for a launch that failed, if nothing was
/// written to it; one with segments keeps waiting for its next observer.
pub async fn delete_if_unwritten(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM recordings r WHERE r.id = $1 AND NOT EXISTS (SELECT 1 FROM segments WHERE recording_id = r.id)",
    )
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ())
}
