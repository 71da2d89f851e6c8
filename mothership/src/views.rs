//! The read models behind `status`, `channel list`, `cells`, `decisions`
//! and `jobs`, which the dashboard and its API show too. Read-only: nothing
//! here writes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::admin::AdminError;
use colony::config::{redact_source_url, redact_text};

/// A channel as `channel list` and `status` show it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ChannelStatus {
    pub id: i64,
    pub login: String,
    pub display_name: String,
    pub source_kind: String,
    pub source_url: String,
    /// The resolver profile it names (a name: the command lives on each host).
    pub resolver_profile: Option<String>,
    /// The streaming platform, for a platform channel.
    pub platform: Option<String>,
    /// What the platform says the broadcast is, while it is live.
    pub stream_title: Option<String>,
    pub stream_category: Option<String>,
    pub enabled: bool,
    pub live: bool,
    pub probed_at: Option<DateTime<Utc>>,
    pub probe_error: Option<String>,
    pub observer: Option<Uuid>,
    pub observer_state: Option<String>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub recording: Option<i64>,
    pub recording_state: Option<String>,
    pub segments: Option<i64>,
    /// Observer starts that failed in a row, and when the next one is allowed.
    pub start_failures: i32,
    pub start_retry_at: Option<DateTime<Utc>>,
}

pub async fn channel_status(pool: &PgPool) -> Result<Vec<ChannelStatus>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT c.id, c.login, c.display_name, c.source_kind, c.source_url, c.resolver_profile, c.platform,
                c.stream_title, c.stream_category, c.enabled, c.live,
                c.probed_at, c.probe_error, c.start_failures, c.start_retry_at,
                o.id AS observer, o.state::text AS observer_state, o.last_heartbeat,
                r.id AS recording, r.state::text AS recording_state, r.segment_count AS segments
           FROM channels c
           LEFT JOIN LATERAL (
                SELECT id, state, last_heartbeat FROM cells
                 WHERE channel_id = c.id AND kind = 'observer' AND state IN ('starting', 'running', 'stopping')
                 ORDER BY started_at DESC LIMIT 1) o ON true
           LEFT JOIN LATERAL (
                SELECT id, state, segment_count FROM recordings
                 WHERE channel_id = c.id AND source = 'live' ORDER BY id DESC LIMIT 1) r ON true
          ORDER BY c.login",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|mut row: ChannelStatus| {
        row.source_url = redact_source_url(&row.source_url);
        row.probe_error = row.probe_error.as_deref().map(redact_text);
        row
    })
    .collect())
}

/// A cell row as `cells` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CellStatus {
    pub id: Uuid,
    pub kind: String,
    pub backend: String,
    pub backend_ref: Option<String>,
    pub state: String,
    pub channel: Option<String>,
    pub recording_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: Option<DateTime<Utc>>,
    pub exited_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub host: Option<String>,
    pub running_jobs: i64,
    pub detail: serde_json::Value,
}

/// Active cells, or with `all` also the last `limit` finished ones.
pub async fn cells(pool: &PgPool, all: bool, limit: i64) -> Result<Vec<CellStatus>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT x.id, x.kind::text AS kind, x.backend, x.backend_ref, x.state::text AS state, c.login AS channel,
                x.recording_id, x.started_at, x.last_heartbeat, x.exited_at, x.exit_code, x.host,
                (SELECT count(*) FROM jobs j WHERE j.state = 'running' AND j.attempted_by = x.id::text) AS running_jobs,
                x.detail
           FROM cells x LEFT JOIN channels c ON c.id = x.channel_id
          WHERE x.state IN ('starting', 'running', 'stopping') OR $1
          ORDER BY (x.state IN ('starting', 'running', 'stopping')) DESC, x.started_at DESC
          LIMIT $2",
    )
    .bind(all)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Decision {
    pub id: i64,
    pub tick_id: Uuid,
    pub at: DateTime<Utc>,
    pub action: String,
    pub subject: String,
    pub reason: String,
    pub outcome: String,
    pub error: Option<String>,
}

pub async fn decisions(pool: &PgPool, limit: i64, failed_only: bool) -> Result<Vec<Decision>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT id, tick_id, at, action, subject, reason, outcome, error FROM decisions
          WHERE outcome = 'failed' OR NOT $2 ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .bind(failed_only)
    .fetch_all(pool)
    .await?)
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub kind: String,
    pub state: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub attempted_by: Option<String>,
    pub last_error: Option<String>,
    pub args: serde_json::Value,
    pub progress: Option<serde_json::Value>,
}

pub async fn jobs(
    pool: &PgPool,
    state: Option<&str>,
    kind: Option<&str>,
    limit: i64,
) -> Result<Vec<JobRow>, AdminError> {
    const STATES: &[&str] = &["available", "running", "retryable", "succeeded", "dead", "cancelled"];
    if let Some(s) = state.filter(|s| !STATES.contains(s)) {
        return Err(AdminError::Invalid(format!("'{s}' is not a job state; use one of {}", STATES.join(", "))));
    }
    Ok(sqlx::query_as(
        "SELECT id, kind, state::text AS state, attempt, max_attempts, run_at, attempted_by, last_error, args, progress
           FROM jobs
          WHERE ($1::text IS NULL OR state::text = $1) AND ($2::text IS NULL OR kind = $2)
            AND ($1::text IS NOT NULL OR state <> 'succeeded')
          ORDER BY id DESC LIMIT $3",
    )
    .bind(state)
    .bind(kind.map(job_kind))
    .bind(limit)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|mut row: JobRow| {
        redact_json(&mut row.args);
        row.last_error = row.last_error.as_deref().map(redact_text);
        row
    })
    .collect())
}

/// Mask every URL's query in a job's arguments (a VOD URL may carry a token).
fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) if s.contains("://") => *s = redact_text(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

/// `vod-download` and `vod_download` both name the same kind.
pub fn job_kind(raw: &str) -> String {
    raw.trim().replace('-', "_")
}
