//! Reading the planner's input out of Postgres: channels with their open
//! recordings, active cells with the jobs they hold, the queue, and the
//! history the stabilization window and idle cooldown need.
//!
//! A handful of set-based queries, each served by a partial index, so a tick
//! stays well under a second with ten thousand channels and a million jobs.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use colony_planner::model::{ActiveState, CellKind, CellView, ChannelView, ExpiredLease, History, Observed, QueueView};
use colony_planner::policy::Policy;

/// This colony's instance id (labels every launched cell).
pub async fn instance_id(pool: &PgPool) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar("SELECT instance_id FROM colony").fetch_one(pool).await
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: i64,
    login: String,
    display_name: String,
    enabled: bool,
    live: bool,
    live_since: Option<DateTime<Utc>>,
    open_recording: Option<i64>,
    start_failures: i32,
    start_retry_at: Option<DateTime<Utc>>,
    probed_at: Option<DateTime<Utc>>,
    last_ended_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct CellRow {
    id: Uuid,
    kind: String,
    backend: String,
    backend_ref: Option<String>,
    channel_id: Option<i64>,
    state: String,
    started_at: DateTime<Utc>,
    last_heartbeat: Option<DateTime<Utc>>,
    caught_up: bool,
}

/// When channel `c`'s last live recording ended (NULL while it is open, or
/// when there is none): the planner starts no observer on a probe older than
/// that, and the probe pass asks again at once (`probe::due`).
pub(crate) const LAST_LIVE_ENDED_AT: &str = "(SELECT l.ended_at FROM recordings l
    WHERE l.channel_id = c.id AND l.source = 'live' ORDER BY l.started_at DESC LIMIT 1)";

pub async fn channels(pool: &PgPool) -> Result<Vec<ChannelView>, sqlx::Error> {
    let rows: Vec<ChannelRow> = sqlx::query_as(&format!(
        "SELECT c.id, c.login, c.display_name, c.enabled, c.live, c.live_since, r.id AS open_recording,
                c.start_failures, c.start_retry_at, c.probed_at, {LAST_LIVE_ENDED_AT} AS last_ended_at
           FROM channels c
           LEFT JOIN recordings r
             ON r.channel_id = c.id AND r.source = 'live' AND r.state IN ('recording', 'standby')
          ORDER BY c.id"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ChannelView {
            id: r.id,
            login: r.login,
            name: r.display_name,
            enabled: r.enabled,
            live: r.live,
            live_since: r.live_since,
            open_recording: r.open_recording,
            start_failures: r.start_failures.max(0) as u32,
            start_retry_at: r.start_retry_at,
            probed_at: r.probed_at,
            last_ended_at: r.last_ended_at,
        })
        .collect())
}

pub async fn cells(pool: &PgPool) -> Result<Vec<CellView>, sqlx::Error> {
    let rows: Vec<CellRow> = sqlx::query_as(
        "SELECT id, kind::text AS kind, backend, backend_ref, channel_id, state::text AS state, started_at, last_heartbeat,
                caught_up_at IS NOT NULL AS caught_up
           FROM cells WHERE state IN ('starting', 'running', 'stopping')",
    )
    .fetch_all(pool)
    .await?;
    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT attempted_by, count(*) FROM jobs
          WHERE state = 'running' AND attempted_by IS NOT NULL GROUP BY attempted_by",
    )
    .fetch_all(pool)
    .await?;
    let held: HashMap<String, i64> = held.into_iter().collect();
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(CellView {
                kind: CellKind::parse(&r.kind)?,
                state: match r.state.as_str() {
                    "starting" => ActiveState::Starting,
                    "running" => ActiveState::Running,
                    _ => ActiveState::Stopping,
                },
                running_jobs: held.get(&r.id.to_string()).copied().unwrap_or(0) as u32,
                id: r.id,
                backend: r.backend,
                backend_ref: r.backend_ref,
                channel_id: r.channel_id,
                started_at: r.started_at,
                last_heartbeat: r.last_heartbeat,
                caught_up: r.caught_up,
            })
        })
        .collect())
}

pub async fn queue(pool: &PgPool) -> Result<QueueView, sqlx::Error> {
    let colony::queue::KindStats { ready, running, delayed, dead, oldest_ready_secs, .. } =
        colony::queue::totals(pool).await?;
    let expired: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, attempted_by FROM jobs WHERE state = 'running' AND lease_until < now() ORDER BY id LIMIT 10000",
    )
    .fetch_all(pool)
    .await?;
    Ok(QueueView {
        ready: ready as u64,
        running: running as u64,
        delayed: delayed as u64,
        dead: dead as u64,
        oldest_ready_secs,
        expired_leases: expired.into_iter().map(|(job_id, worker)| ExpiredLease { job_id, worker }).collect(),
    })
}

pub async fn history(pool: &PgPool, policy: &Policy) -> Result<History, sqlx::Error> {
    let secs = |d: Duration| d.as_secs_f64();
    let (max_want, last_busy_at): (Option<i32>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT max(harvest_want) FILTER (WHERE at > now() - make_interval(secs => $1)),
                max(at) FILTER (WHERE queue_busy)
           FROM ticks WHERE at > now() - make_interval(secs => greatest($1, $2))",
    )
    .bind(secs(policy.scale_down_window))
    .bind(secs(policy.idle_cooldown))
    .fetch_one(pool)
    .await?;
    Ok(History { max_want_in_window: max_want.unwrap_or(0).max(0) as u32, last_busy_at })
}

/// The harvest pool's start backoff: failures in a row, and the next try.
pub async fn harvest_backoff(pool: &PgPool) -> Result<(u32, Option<DateTime<Utc>>), sqlx::Error> {
    let (failures, retry_at): (i32, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT harvest_start_failures, harvest_start_retry_at FROM colony").fetch_one(pool).await?;
    Ok((failures.max(0) as u32, retry_at))
}

/// Everything but the backend listing, which the tick takes first.
pub async fn database(pool: &PgPool, policy: &Policy, backend: &str) -> Result<Observed, sqlx::Error> {
    let up_since = sqlx::query_scalar("SELECT pg_postmaster_start_time()").fetch_one(pool);
    let (channels, cells, queue, history, (harvest_start_failures, harvest_retry_at), database_up_since) = tokio::try_join!(
        channels(pool),
        cells(pool),
        queue(pool),
        history(pool, policy),
        harvest_backoff(pool),
        up_since
    )?;
    Ok(Observed {
        backend: backend.to_owned(),
        channels,
        cells,
        instances: None,
        lists_at_once: false,
        queue,
        history,
        harvest_start_failures,
        harvest_retry_at,
        database_up_since,
    })
}
