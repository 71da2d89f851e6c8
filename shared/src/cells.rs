//! The `cells` table: every statement that writes it. The mothership
//! inserts a row before it launches a cell and buries it when it stops
//! answering; a cell registers, heartbeats and leaves through the same
//! functions. One rule holds in all of them: a row the mothership marked
//! dead or exited (or, for a start-up, stopping) is never revived.
//!
//! Each function takes any executor, so a caller can make the write part of
//! a transaction of its own (the ledger's heartbeat does).

use uuid::Uuid;

/// The states of a cell that may still run.
const ACTIVE: &str = "('starting', 'running', 'stopping')";

pub use colony_vocab::CellKind;

/// The mothership's row for a cell it is about to launch.
pub async fn insert_starting<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    kind: CellKind,
    backend: &str,
    channel_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cells (id, kind, backend, channel_id, state, host, version)
         VALUES ($1, $2::cell_kind, $3, $4, 'starting', NULL, $5)",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(backend)
    .bind(channel_id)
    .bind(crate::VERSION)
    .execute(db)
    .await
    .map(|_| ())
}

/// The observer's assignment, once the recording's lease was handed out.
pub async fn assign<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    recording_id: i64,
    lease_token: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cells SET recording_id = $2, lease_token = $3 WHERE id = $1")
        .bind(id)
        .bind(recording_id)
        .bind(lease_token)
        .execute(db)
        .await
        .map(|_| ())
}

/// The launcher's handle for a started cell.
pub async fn set_backend_ref<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    backend_ref: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cells SET backend_ref = $2 WHERE id = $1")
        .bind(id)
        .bind(backend_ref)
        .execute(db)
        .await
        .map(|_| ())
}

/// The launch failed: the cell never ran.
pub async fn mark_launch_failed<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid, why: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cells SET state = 'dead', exited_at = now(), detail = detail || jsonb_build_object('launch_error', $2::text)
          WHERE id = $1",
    )
    .bind(id)
    .bind(why)
    .execute(db)
    .await
    .map(|_| ())
}

/// The mothership asked the cell to stop.
pub async fn mark_stopping<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cells SET state = 'stopping' WHERE id = $1 AND state IN ('starting', 'running')")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

/// The launcher backend a cell row names (`process`, `docker`, `ecs`,
/// `manual`), or None when there is no such cell.
pub async fn backend<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT backend FROM cells WHERE id = $1").bind(id).fetch_optional(db).await
}

/// Bury a cell that stopped answering. Returns its backend when the row was
/// still active (None: already gone).
pub async fn mark_dead<'e>(
    db: impl sqlx::PgExecutor<'e>,
    id: Uuid,
    because: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "UPDATE cells SET state = 'dead', exited_at = now(), detail = detail || jsonb_build_object('dead_because', $2::text)
          WHERE id = $1 AND state IN {ACTIVE} RETURNING backend"
    ))
    .bind(id)
    .bind(because)
    .fetch_optional(db)
    .await
}

/// What a cell says about itself when it starts.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    pub id: Uuid,
    pub role: CellKind,
    pub channel_id: Option<i64>,
    pub recording_id: Option<i64>,
    pub lease_token: Option<i64>,
}

/// A starting cell's row: inserted if the mothership did not (a cell run by
/// hand), marked running if it did. False when the mothership already
/// buried the row or asked it to stop: the cell must not run.
pub async fn register<'e>(db: impl sqlx::PgExecutor<'e>, cell: Registration) -> Result<bool, sqlx::Error> {
    let registered: Option<i32> = sqlx::query_scalar(
        "INSERT INTO cells (id, kind, backend, channel_id, recording_id, lease_token, state, last_heartbeat, host, version)
         VALUES ($1, $2::cell_kind, 'manual', $3, $4, $5, 'running', now(), $6, $7)
         ON CONFLICT (id) DO UPDATE SET state = 'running', last_heartbeat = now(), host = EXCLUDED.host,
                version = EXCLUDED.version,
                recording_id = COALESCE(EXCLUDED.recording_id, cells.recording_id),
                lease_token = COALESCE(EXCLUDED.lease_token, cells.lease_token)
          WHERE cells.state IN ('starting', 'running')
         RETURNING 1",
    )
    .bind(cell.id)
    .bind(cell.role.as_str())
    .bind(cell.channel_id)
    .bind(cell.recording_id)
    .bind(cell.lease_token)
    .bind(crate::hostname())
    .bind(crate::VERSION)
    .fetch_optional(db)
    .await?;
    Ok(registered.is_some())
}

/// The cell is alive. False when its row is no longer active (the
/// mothership buried it): the cell must stop.
pub async fn heartbeat<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "UPDATE cells SET last_heartbeat = now(),
                state = CASE WHEN state = 'starting' THEN 'running'::cell_state ELSE state END
          WHERE id = $1 AND state IN {ACTIVE}"
    ))
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// An observer holds its lease and has fetched (or found its source
/// offline): a silent cell it replaced may now be stopped. Kept from the
/// first time it is said.
pub async fn caught_up<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE cells SET caught_up_at = now() WHERE id = $1 AND caught_up_at IS NULL")
        .bind(id)
        .execute(db)
        .await
        .map(|_| ())
}

/// The cell leaves of its own accord, exit code 0. A row already buried
/// stays as the mothership left it.
pub async fn mark_exited<'e>(db: impl sqlx::PgExecutor<'e>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE cells SET state = 'exited', exited_at = now(), exit_code = 0 WHERE id = $1 AND state IN {ACTIVE}"
    ))
    .bind(id)
    .execute(db)
    .await
    .map(|_| ())
}
