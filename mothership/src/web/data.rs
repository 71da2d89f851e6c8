//! What the pages and the JSON API show, read from Postgres. Read-only: the
//! writes the dashboard offers go through `crate::channels`, as the CLI's do.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use colony::recording::LedgerRow;

/// A live channel on the overview: its recording's progress and its observer's health.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LiveChannel {
    pub login: String,
    pub display_name: String,
    pub platform: Option<String>,
    pub stream_title: Option<String>,
    /// Live as last probed (a recording may still be open in its standby window).
    pub live: bool,
    pub recording_id: Option<i64>,
    pub recording_state: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    /// Now minus when the last segment was stored.
    pub lag_secs: Option<f64>,
    pub gaps: Option<i64>,
    pub epoch: Option<i32>,
    pub observer: Option<Uuid>,
    pub observer_state: Option<String>,
    pub heartbeat_age_secs: Option<f64>,
}

pub async fn live_channels(pool: &PgPool) -> Result<Vec<LiveChannel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.login, c.display_name, c.platform, c.stream_title, c.live,
                r.id AS recording_id, r.state::text AS recording_state, r.started_at, r.duration_secs,
                EXTRACT(EPOCH FROM now() - COALESCE(last.stored_at, r.started_at))::float8 AS lag_secs,
                r.gap_count AS gaps, r.epoch,
                o.id AS observer, o.state::text AS observer_state,
                EXTRACT(EPOCH FROM now() - o.last_heartbeat)::float8 AS heartbeat_age_secs
           FROM channels c
           LEFT JOIN LATERAL (
                SELECT * FROM recordings WHERE channel_id = c.id AND source = 'live' AND state IN ('recording', 'standby')
                 ORDER BY started_at DESC LIMIT 1) r ON true
           LEFT JOIN LATERAL (
                SELECT stored_at FROM segments s WHERE s.recording_id = r.id AND NOT s.is_gap
                 ORDER BY epoch DESC, media_sequence DESC LIMIT 1) last ON true
           LEFT JOIN LATERAL (
                SELECT id, state, last_heartbeat FROM cells
                 WHERE channel_id = c.id AND kind = 'observer' AND state IN ('starting', 'running', 'stopping')
                 ORDER BY started_at DESC LIMIT 1) o ON true
          WHERE c.live OR r.id IS NOT NULL
          ORDER BY c.login",
    )
    .fetch_all(pool)
    .await
}

/// A harvest cell and the job it runs.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct HarvestCell {
    pub id: Uuid,
    pub state: String,
    pub host: Option<String>,
    pub heartbeat_age_secs: Option<f64>,
    pub job_id: Option<i64>,
    pub job_kind: Option<String>,
    pub job_progress: Option<serde_json::Value>,
}

pub async fn harvest_cells(pool: &PgPool) -> Result<Vec<HarvestCell>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, c.state::text AS state, c.host,
                EXTRACT(EPOCH FROM now() - c.last_heartbeat)::float8 AS heartbeat_age_secs,
                j.id AS job_id, j.kind AS job_kind, j.progress AS job_progress
           FROM cells c
           LEFT JOIN LATERAL (
                SELECT id, kind, progress FROM jobs WHERE state = 'running' AND attempted_by = c.id::text
                 ORDER BY attempted_at DESC LIMIT 1) j ON true
          WHERE c.kind = 'harvest' AND c.state IN ('starting', 'running', 'stopping')
          ORDER BY c.started_at",
    )
    .fetch_all(pool)
    .await
}

/// A recording as the channel and recording pages show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Recording {
    pub id: i64,
    pub channel: String,
    pub channel_name: String,
    pub source: String,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub epoch: i32,
    pub segment_count: i64,
    pub gap_count: i64,
    pub bytes: i64,
    pub duration_secs: f64,
    pub title: Option<String>,
    pub category: Option<String>,
    pub chapters: i64,
    pub storage_prefix: String,
    pub error: Option<String>,
}

const RECORDING: &str = "SELECT r.id, c.login AS channel, c.display_name AS channel_name, r.source::text AS source,
        r.state::text AS state, r.started_at, r.ended_at, r.epoch, r.segment_count, r.gap_count, r.bytes,
        r.duration_secs, r.title, r.category,
        (SELECT count(*) FROM chapters WHERE recording_id = r.id) AS chapters,
        r.storage_prefix, r.error
   FROM recordings r JOIN channels c ON c.id = r.channel_id";

pub async fn recordings_of(pool: &PgPool, login: &str, limit: i64) -> Result<Vec<Recording>, sqlx::Error> {
    sqlx::query_as(&format!("{RECORDING} WHERE c.login = $1 ORDER BY r.started_at DESC LIMIT $2"))
        .bind(login)
        .bind(limit)
        .fetch_all(pool)
        .await
}

pub async fn recording(pool: &PgPool, id: i64) -> Result<Option<Recording>, sqlx::Error> {
    sqlx::query_as(&format!("{RECORDING} WHERE r.id = $1")).bind(id).fetch_optional(pool).await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Chapter {
    pub at: DateTime<Utc>,
    pub title: Option<String>,
    pub category: Option<String>,
}

pub async fn chapters(pool: &PgPool, recording_id: i64) -> Result<Vec<Chapter>, sqlx::Error> {
    sqlx::query_as("SELECT at, title, category FROM chapters WHERE recording_id = $1 ORDER BY at")
        .bind(recording_id)
        .fetch_all(pool)
        .await
}

/// Every ledger row of a recording, in playback order.
pub async fn ledger(pool: &PgPool, recording_id: i64) -> Result<Vec<LedgerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT epoch, media_sequence, duration_secs, bytes, object_key, init_key, program_date_time, source,
                is_gap, gap_count, is_ad, discontinuity, gap_reason, warning
           FROM segments WHERE recording_id = $1 ORDER BY epoch, media_sequence",
    )
    .bind(recording_id)
    .fetch_all(pool)
    .await
}

/// The newest export job of a recording, in any state.
pub async fn export_job(pool: &PgPool, recording_id: i64) -> Result<Option<crate::views::JobRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, state::text AS state, attempt, max_attempts, run_at, attempted_by, last_error, args, progress
           FROM jobs WHERE kind = 'export' AND args->>'recording_id' = $1::text ORDER BY id DESC LIMIT 1",
    )
    .bind(recording_id.to_string())
    .fetch_optional(pool)
    .await
}

/// What a stretch of a recording's timeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Media,
    Ad,
    Gap,
}

/// A run of ledger rows of one kind in one epoch, placed on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub kind: SpanKind,
    pub epoch: i32,
    pub start_secs: f64,
    pub duration_secs: f64,
    pub segments: u64,
    /// For a gap: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The timeline bar: runs of media, ads and gaps, a new span at each epoch.
/// Pure; the rows come in playback order.
pub fn timeline(rows: &[LedgerRow]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut at = 0.0;
    for row in rows {
        let kind = match (row.is_gap, row.is_ad) {
            (true, _) => SpanKind::Gap,
            (false, true) => SpanKind::Ad,
            (false, false) => SpanKind::Media,
        };
        let duration = if row.duration_secs.is_finite() { row.duration_secs.max(0.0) } else { 0.0 };
        match spans.last_mut() {
            Some(last) if last.kind == kind && last.epoch == row.epoch && kind != SpanKind::Gap => {
                last.duration_secs += duration;
                last.segments += 1;
            }
            _ => spans.push(Span {
                kind,
                epoch: row.epoch,
                start_secs: at,
                duration_secs: duration,
                segments: if row.is_gap { row.gap_count.max(1) as u64 } else { 1 },
                reason: row.gap_reason.clone(),
            }),
        }
        at += duration;
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use colony::recording::MediaSource;
    use colony::storage::ObjectKey;

    fn seg(epoch: u32, seq: u64, ad: bool) -> LedgerRow {
        let key = ObjectKey::parse(&format!("r/e{epoch}/{seq}.ts")).unwrap();
        LedgerRow { is_ad: ad, ..LedgerRow::object(epoch, seq, 2.0, &key, None, 10, MediaSource::Live) }
    }

    #[test]
    fn the_timeline_runs_media_ads_and_gaps_and_breaks_at_each_epoch() {
        let rows = vec![
            seg(0, 0, false),
            seg(0, 1, false),
            seg(0, 2, true),
            LedgerRow::gap(0, 3, 2, 4.0, MediaSource::Live).because("the source never sent it"),
            seg(0, 5, false),
            seg(1, 0, false),
        ];
        let spans = timeline(&rows);
        let shape: Vec<(SpanKind, i32, f64, f64)> =
            spans.iter().map(|s| (s.kind, s.epoch, s.start_secs, s.duration_secs)).collect();
        assert_eq!(
            shape,
            vec![
                (SpanKind::Media, 0, 0.0, 4.0),
                (SpanKind::Ad, 0, 4.0, 2.0),
                (SpanKind::Gap, 0, 6.0, 4.0),
                (SpanKind::Media, 0, 10.0, 2.0),
                (SpanKind::Media, 1, 12.0, 2.0),
            ]
        );
        assert_eq!(spans[2].segments, 2);
        assert_eq!(spans[2].reason.as_deref(), Some("the source never sent it"));
    }
}
