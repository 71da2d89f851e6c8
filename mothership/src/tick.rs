//! One reconcile pass: lock, probe, observe, plan, save the plan, act,
//! report. It keeps no state between runs, so cron may run it.
//!
//! The advisory lock is held on a connection of its own for the whole pass,
//! so two overlapping ticks never act at once; the second one says so and
//! returns. A pass has a deadline (`--tick-deadline`), and every statement a
//! statement timeout, so a hung tick cannot hold the lock forever: closing
//! the lock's connection releases it. Every action is carried out on its own
//! and recorded in `decisions` with its reason and outcome, so one failure
//! never stops the others; starts that keep failing back off exponentially.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, PgConnection, PgPool};
use tracing::{info, warn};
use uuid::Uuid;

use super::counters::Increments;
use super::launcher::{CellEnv, CellSpec, LaunchError, Launcher, ObserverAssignment};
use super::probe::{self, ProbeArgs, ProbeResult};
use colony::cells;
use colony::queue::Queue;
use colony_planner::model::{CellKind, Observed};
use colony_planner::policy::Policy;
use colony_planner::{self, Action, Plan, PlanReport, Planned};

/// The advisory lock key every tick of a database takes ("colony" in ASCII).
pub const TICK_LOCK: i64 = 0x636f_6c6f_6e79;

/// Actions carried out at once.
const ACT_CONCURRENCY: usize = 8;

/// What a tick needs, injected.
pub struct TickCtx<'a> {
    pub pool: &'a PgPool,
    pub launcher: &'a dyn Launcher,
    pub policy: &'a Policy,
    pub probe: &'a ProbeArgs,
    /// The environment every cell gets (DATABASE_URL, storage, tuning).
    pub cell_env: CellEnv,
    /// A pass that takes longer is abandoned and its lock released.
    pub deadline: Duration,
    /// How long a pass may spend delivering webhooks.
    pub webhook_budget: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionOutcome {
    pub action: &'static str,
    pub subject: String,
    pub reason: String,
    pub outcome: Carried,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// How an action went, as `decisions.outcome` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carried {
    Ok,
    Failed,
    /// Not this launcher's to do (a cell another backend runs).
    Skipped,
}

impl Carried {
    pub fn as_str(self) -> &'static str {
        match self {
            Carried::Ok => "ok",
            Carried::Failed => "failed",
            Carried::Skipped => "skipped",
        }
    }
}

impl std::fmt::Display for Carried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProbeSummary {
    pub probed: u32,
    pub live: u32,
    pub errors: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    pub tick_id: Uuid,
    pub at: DateTime<Utc>,
    pub launcher: &'static str,
    pub took_ms: u64,
    pub probes: ProbeSummary,
    /// The channels whose probe failed, by id.
    #[serde(skip)]
    pub probe_errors: Vec<i64>,
    /// False when the backend could not be listed (nothing was declared gone or orphaned).
    pub backend_listed: bool,
    pub live_channels: u32,
    pub observers_healthy: u32,
    pub observers_started: u32,
    pub observers_replaced: u32,
    pub observers_stopped: u32,
    pub harvest_wanted: u32,
    pub harvest_running: u32,
    pub harvest_started: u32,
    pub harvest_stopped: u32,
    pub cells_marked_dead: u32,
    pub jobs_ready: u64,
    pub jobs_running: u64,
    pub jobs_delayed: u64,
    pub jobs_dead: u64,
    pub leases_rescued: u32,
    pub orphans_reaped: u32,
    pub failed_actions: u32,
    /// Webhook deliveries this pass sent, and those that failed (to be retried or dead).
    pub webhooks: crate::delivery::Delivered,
    pub plan: PlanReport,
    pub actions: Vec<ActionOutcome>,
}

#[derive(Debug)]
pub enum TickOutcome {
    /// Another tick holds the lock; nothing was done.
    Busy,
    Done(Box<TickReport>),
}

#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("database error during the tick")]
    Db(#[from] sqlx::Error),
    #[error("the tick did not finish within its deadline ({}); its lock was released", humantime::format_duration(*.0))]
    Deadline(Duration),
}

/// Observe, plan and save, without acting: the part of a tick the benchmark
/// times. Returns the observed state, the plan and the tick id it was saved under.
/// A plan as saved in `ticks`, with what it was made from.
pub struct SavedPlan {
    pub observed: Observed,
    pub plan: Plan,
    /// The `ticks` row; every decision of this pass refers to it.
    pub tick_id: Uuid,
    /// Whether the launcher listed its instances (false: it did not answer,
    /// so orphan and liveness checks were skipped).
    pub listed: bool,
}

pub async fn observe_plan_save(ctx: &TickCtx<'_>, now: DateTime<Utc>) -> Result<SavedPlan, TickError> {
    // List the backend before reading cells: a cell row is written before its
    // launch, so every instance listed has its row visible by now.
    let instances = match ctx.launcher.list().await {
        Ok(list) => Some(list),
        Err(e) => {
            warn!(error = %format!("{:#}", anyhow::Error::from(e)), "could not list the launcher backend; skipping orphan and liveness checks");
            None
        }
    };
    let listed = instances.is_some();
    let mut observed = super::observe::database(ctx.pool, ctx.policy, ctx.launcher.backend()).await?;
    observed.instances = instances;
    observed.lists_at_once = ctx.launcher.lists_at_once();
    let plan = colony_planner::plan(&observed, ctx.policy, now);
    let tick_id = Uuid::new_v4();
    sqlx::query("INSERT INTO ticks (id, launcher, harvest_want, queue_busy, plan) VALUES ($1, $2, $3, $4, $5)")
        .bind(tick_id)
        .bind(ctx.launcher.backend())
        .bind(plan.report.harvest_want as i32)
        .bind(plan.report.queue_busy)
        .bind(sqlx::types::Json(&plan))
        .execute(ctx.pool)
        .await?;
    Ok(SavedPlan { observed, plan, tick_id, listed })
}

/// One whole reconcile pass.
#[tracing::instrument(skip_all, fields(launcher = ctx.launcher.backend()), err)]
pub async fn tick(ctx: &TickCtx<'_>) -> Result<TickOutcome, TickError> {
    let started = Instant::now();
    // The lock lives on a connection of its own: closing it releases the
    // lock, whatever state the pool is in.
    let mut lock = PgConnection::connect_with(&ctx.pool.connect_options()).await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(TICK_LOCK).fetch_one(&mut lock).await?;
    if !locked {
        let _ = lock.close().await;
        return Ok(TickOutcome::Busy);
    }
    let result = match tokio::time::timeout(ctx.deadline, locked_tick(ctx, started)).await {
        Ok(result) => result,
        Err(_) => Err(TickError::Deadline(ctx.deadline)),
    };
    if let Err(e) = count(ctx.pool, &result, started).await {
        warn!(error = %e, "could not add this tick to the metric counters");
    }
    if let Err(e) = lock.close().await {
        warn!(error = %e, "closing the tick lock's connection failed; Postgres releases the lock when it notices");
    }
    result.map(|r| TickOutcome::Done(Box::new(r)))
}

/// Add this pass to the counters `/metrics` reads.
async fn count(pool: &PgPool, result: &Result<TickReport, TickError>, started: Instant) -> Result<(), sqlx::Error> {
    let mut inc = Increments::default();
    let outcome = match result {
        Ok(r) if r.failed_actions > 0 => "partly_failed",
        Ok(_) => "ok",
        Err(_) => "failed",
    };
    inc.tick(started.elapsed().as_secs_f64(), outcome);
    if let Ok(report) = result {
        for a in &report.actions {
            inc.add("colony_tick_actions_total", &[("action", a.action), ("outcome", a.outcome.as_str())], 1.0);
        }
        if !report.probe_errors.is_empty() {
            let by_platform: Vec<(String, i64)> = sqlx::query_as(
                "SELECT COALESCE(platform, source_kind), count(*) FROM channels WHERE id = ANY($1) GROUP BY 1",
            )
            .bind(&report.probe_errors)
            .fetch_all(pool)
            .await?;
            for (platform, n) in by_platform {
                inc.add("colony_probe_errors_total", &[("platform", &platform)], n as f64);
            }
        }
    }
    inc.save(pool).await
}

async fn locked_tick(ctx: &TickCtx<'_>, started: Instant) -> Result<TickReport, TickError> {
    let probes = probe::probe_due(ctx.pool, ctx.probe).await?;
    let probe_summary = summarize(&probes);
    for p in probes.iter().filter(|p| p.error.is_some()) {
        info!(channel = %p.login, error = p.error.as_deref().unwrap_or_default(), "probe failed; treating the channel as offline");
    }
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(ctx.pool).await?;
    let SavedPlan { plan, tick_id, listed, .. } = observe_plan_save(ctx, now).await?;

    let outcomes: Vec<ActionOutcome> = futures::stream::iter(plan.actions.iter())
        .map(|planned| act_and_record(ctx, tick_id, planned))
        .buffered(ACT_CONCURRENCY)
        .collect()
        .await;

    if let Err(e) = crate::webhook::enqueue_events(ctx.pool).await {
        warn!(error = %colony::error_chain(&e), "could not queue this tick's webhook deliveries; the next tick tries again");
    }
    let worker = format!("mothership:{}", colony::hostname());
    let webhooks = match crate::delivery::deliver_due(&Queue::new(ctx.pool.clone()), &worker, ctx.webhook_budget).await
    {
        Ok(done) => done,
        Err(e) => {
            warn!(error = %colony::error_chain(&e), "webhook deliveries stopped; the next tick goes on");
            crate::delivery::Delivered::default()
        }
    };
    let count = |name: &str| outcomes.iter().filter(|o| o.action == name && o.outcome == Carried::Ok).count() as u32;
    let report = TickReport {
        tick_id,
        at: now,
        launcher: ctx.launcher.backend(),
        took_ms: started.elapsed().as_millis() as u64,
        probes: probe_summary,
        probe_errors: probes.iter().filter(|p| p.error.is_some()).map(|p| p.channel_id).collect(),
        backend_listed: listed,
        live_channels: plan.report.live_channels,
        observers_healthy: plan.report.observers_healthy,
        observers_started: count("start_observer"),
        observers_replaced: count("replace_observer"),
        observers_stopped: outcomes
            .iter()
            .filter(|o| o.action == "stop_cell" && o.outcome == Carried::Ok && o.subject.starts_with("observer"))
            .count() as u32,
        harvest_wanted: plan.report.harvest_want,
        harvest_running: plan.report.harvest_running,
        harvest_started: count("start_harvest"),
        harvest_stopped: outcomes
            .iter()
            .filter(|o| o.action == "stop_cell" && o.outcome == Carried::Ok && o.subject.starts_with("harvest"))
            .count() as u32,
        cells_marked_dead: count("mark_dead"),
        jobs_ready: plan.report.jobs_ready,
        jobs_running: plan.report.jobs_running,
        jobs_delayed: plan.report.jobs_delayed,
        jobs_dead: plan.report.jobs_dead,
        leases_rescued: outcomes
            .iter()
            .filter(|o| o.action == "rescue_leases")
            .filter_map(|o| o.detail.get("rescued").and_then(|n| n.as_u64()))
            .sum::<u64>() as u32,
        orphans_reaped: count("reap_orphan"),
        failed_actions: outcomes.iter().filter(|o| o.outcome == Carried::Failed).count() as u32,
        webhooks,
        plan: plan.report.clone(),
        actions: outcomes,
    };
    sqlx::query("UPDATE ticks SET report = $2 WHERE id = $1")
        .bind(tick_id)
        .bind(sqlx::types::Json(&report))
        .execute(ctx.pool)
        .await?;
    // The history the planner reads back spans minutes; a day is plenty.
    sqlx::query("DELETE FROM ticks WHERE at < now() - interval '1 day'").execute(ctx.pool).await?;
    Ok(report)
}

fn summarize(probes: &[ProbeResult]) -> ProbeSummary {
    ProbeSummary {
        probed: probes.len() as u32,
        live: probes.iter().filter(|p| p.live).count() as u32,
        errors: probes.iter().filter(|p| p.error.is_some()).count() as u32,
    }
}

/// Why an action did not (fully) happen.
#[derive(Debug, thiserror::Error)]
enum ActError {
    #[error("{0}")]
    Skipped(String),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("database error")]
    Db(#[from] sqlx::Error),
    #[error("job queue error")]
    Queue(#[from] colony::queue::QueueError),
}

async fn act_and_record(ctx: &TickCtx<'_>, tick_id: Uuid, planned: &Planned) -> ActionOutcome {
    let reason = planned.reason.to_string();
    let result = act(ctx, &planned.action, &reason).await;
    let (outcome, mut error, detail) = match result {
        Ok(detail) => (Carried::Ok, None, detail),
        Err(ActError::Skipped(why)) => (Carried::Skipped, Some(why), serde_json::Value::Null),
        Err(e) => (Carried::Failed, Some(colony::error_chain(&e)), serde_json::Value::Null),
    };
    if outcome != Carried::Skipped {
        match record_start(ctx, &planned.action, outcome == Carried::Ok).await {
            Ok(Some(next)) => {
                let next = next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                error = error.map(|e| format!("{e}; next try at {next}"));
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not record the start's backoff"),
        }
    }
    let outcome = ActionOutcome {
        action: planned.action.name(),
        subject: planned.action.subject(),
        reason,
        outcome,
        error,
        detail,
    };
    match outcome.outcome {
        Carried::Failed => {
            warn!(action = outcome.action, subject = %outcome.subject, error = outcome.error.as_deref().unwrap_or_default(), "action failed")
        }
        _ => {
            info!(action = outcome.action, subject = %outcome.subject, outcome = outcome.outcome.as_str(), reason = %outcome.reason, "action")
        }
    }
    let saved = sqlx::query(
        "INSERT INTO decisions (tick_id, action, subject, reason, outcome, error, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tick_id)
    .bind(outcome.action)
    .bind(&outcome.subject)
    .bind(&outcome.reason)
    .bind(outcome.outcome.as_str())
    .bind(&outcome.error)
    .bind(if outcome.detail.is_null() { json!({}) } else { outcome.detail.clone() })
    .execute(ctx.pool)
    .await;
    if let Err(e) = saved {
        warn!(error = %e, action = outcome.action, "could not record the decision");
    }
    outcome
}

/// Keep a start's backoff: reset it after a success; after a failure count
/// it and return when the next try may come.
async fn record_start(ctx: &TickCtx<'_>, action: &Action, ok: bool) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    // The wait after the failure that brings the count past `failed`.
    let wait_secs = |failed: i32| {
        colony_planner::start_backoff(ctx.policy.start_backoff, u32::try_from(failed).unwrap_or(0).saturating_add(1))
            .as_secs_f64()
    };
    match action {
        Action::StartObserver { channel_id, .. } | Action::ReplaceObserver { channel_id, .. } => {
            if ok {
                sqlx::query("UPDATE channels SET start_failures = 0, start_retry_at = NULL WHERE id = $1 AND start_failures > 0")
                    .bind(channel_id)
                    .execute(ctx.pool)
                    .await?;
                return Ok(None);
            }
            let failed: i32 = sqlx::query_scalar("SELECT start_failures FROM channels WHERE id = $1")
                .bind(channel_id)
                .fetch_optional(ctx.pool)
                .await?
                .unwrap_or(0);
            sqlx::query_scalar(
                "UPDATE channels SET start_failures = start_failures + 1,
                        start_retry_at = now() + make_interval(secs => $2)
                  WHERE id = $1 RETURNING start_retry_at",
            )
            .bind(channel_id)
            .bind(wait_secs(failed))
            .fetch_optional(ctx.pool)
            .await
            .map(Option::flatten)
        }
        Action::StartHarvest => {
            if ok {
                sqlx::query(
                    "UPDATE colony SET harvest_start_failures = 0, harvest_start_retry_at = NULL
                      WHERE harvest_start_failures > 0",
                )
                .execute(ctx.pool)
                .await?;
                return Ok(None);
            }
            let failed: i32 =
                sqlx::query_scalar("SELECT harvest_start_failures FROM colony").fetch_one(ctx.pool).await?;
            sqlx::query_scalar(
                "UPDATE colony SET harvest_start_failures = harvest_start_failures + 1,
                        harvest_start_retry_at = now() + make_interval(secs => $1)
                 RETURNING harvest_start_retry_at",
            )
            .bind(wait_secs(failed))
            .fetch_one(ctx.pool)
            .await
        }
        _ => Ok(None),
    }
}

async fn act(ctx: &TickCtx<'_>, action: &Action, reason: &str) -> Result<serde_json::Value, ActError> {
    let backend = ctx.launcher.backend();
    match action {
        Action::StartObserver { channel_id, login, name } => start_observer(ctx, *channel_id, login, name).await,
        Action::ReplaceObserver { old, old_ref, channel_id, login, name } => {
            // The replacement is launched whether or not the old cell could
            // be stopped: the bumped lease token fences it out either way.
            let stopped = retire(ctx, *old, old_ref.as_deref(), reason).await;
            let mut detail = start_observer(ctx, *channel_id, login, name).await?;
            detail["replaced"] = json!(old);
            detail["old_stopped"] = match stopped {
                Ok(stopped) => json!(stopped),
                Err(e) => json!(format!("not stopped: {}", colony::error_chain(&e))),
            };
            Ok(detail)
        }
        Action::StopCell { cell, backend_ref, .. } => {
            let ours = cell_backend(ctx, *cell).await == backend;
            let Some(backend_ref) = backend_ref.as_deref().filter(|_| ours) else {
                return Err(ActError::Skipped(format!(
                    "cell {cell} was not started by the {backend} launcher; stop it where it runs"
                )));
            };
            ctx.launcher.stop(backend_ref, Some(*cell), reason).await?;
            cells::mark_stopping(ctx.pool, *cell).await?;
            Ok(json!({ "cell": cell, "backend_ref": backend_ref }))
        }
        Action::MarkDead { cell, backend_ref, .. } => {
            let stopped = retire(ctx, *cell, backend_ref.as_deref(), reason).await?;
            Ok(json!({ "cell": cell, "stopped": stopped }))
        }
        Action::StartHarvest => {
            let cell_id = Uuid::new_v4();
            insert_cell(ctx, cell_id, CellKind::Harvest, None).await?;
            // With a minimum pool, cells stay when idle and the mothership
            // alone shrinks the pool: no cell leaves only to be started again.
            let env = ctx.cell_env.harvest(cell_id, ctx.policy.min_harvest > 0);
            let spec = CellSpec { cell_id, kind: CellKind::Harvest, channel: None, env };
            let backend_ref = launch(ctx, &spec).await?;
            Ok(json!({ "cell": cell_id, "backend_ref": backend_ref }))
        }
        Action::RescueLeases { .. } => {
            let rescued = Queue::new(ctx.pool.clone()).rescue_expired().await?;
            Ok(json!({ "rescued": rescued.len(), "jobs": rescued.iter().map(|r| r.id).collect::<Vec<_>>() }))
        }
        Action::ReapOrphan { backend_ref, cell, .. } => {
            ctx.launcher.reap(backend_ref, *cell, reason).await?;
            Ok(json!({ "backend_ref": backend_ref, "cell": cell }))
        }
    }
}

async fn cell_backend(ctx: &TickCtx<'_>, cell: Uuid) -> String {
    sqlx::query_scalar("SELECT backend FROM cells WHERE id = $1")
        .bind(cell)
        .fetch_optional(ctx.pool)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Mark a cell dead and, if this launcher runs it, get rid of it. Returns
/// whether the backend confirmed it is gone. The database write comes first:
/// a replacement must never wait on a backend that does not answer.
async fn retire(ctx: &TickCtx<'_>, cell: Uuid, backend_ref: Option<&str>, reason: &str) -> Result<bool, ActError> {
    let backend = cells::mark_dead(ctx.pool, cell, reason).await?;
    let Some(backend_ref) = backend_ref.filter(|_| backend.as_deref() == Some(ctx.launcher.backend())) else {
        return Ok(false);
    };
    match ctx.launcher.reap(backend_ref, Some(cell), reason).await {
        Ok(()) => Ok(true),
        Err(e) => {
            // The tick after next reaps it as an orphan; the fence already holds.
            warn!(cell = %cell, error = %format!("{:#}", anyhow::Error::from(e)), "could not stop a dead cell");
            Ok(false)
        }
    }
}

async fn insert_cell(
    ctx: &TickCtx<'_>,
    cell_id: Uuid,
    kind: CellKind,
    channel_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    let role = match kind {
        CellKind::Observer => cells::Role::Observer,
        CellKind::Harvest => cells::Role::Harvest,
    };
    cells::insert_starting(ctx.pool, cell_id, role, ctx.launcher.backend(), channel_id).await
}

/// Launch, and record the handle, or mark the cell dead with why it failed.
async fn launch(ctx: &TickCtx<'_>, spec: &CellSpec) -> Result<String, ActError> {
    match ctx.launcher.start(spec).await {
        Ok(backend_ref) => {
            cells::set_backend_ref(ctx.pool, spec.cell_id, &backend_ref).await?;
            Ok(backend_ref)
        }
        Err(e) => {
            let why = colony::error_chain(&e);
            cells::mark_launch_failed(ctx.pool, spec.cell_id, &why).await?;
            Err(e.into())
        }
    }
}

async fn start_observer(
    ctx: &TickCtx<'_>,
    channel_id: i64,
    login: &str,
    name: &str,
) -> Result<serde_json::Value, ActError> {
    let cell_id = Uuid::new_v4();
    insert_cell(ctx, cell_id, CellKind::Observer, Some(channel_id)).await?;
    // Bumps the lease token of an open recording: its previous holder is fenced out.
    let assignment = colony::recording::assign_live(ctx.pool, channel_id, cell_id).await?;
    cells::assign(ctx.pool, cell_id, assignment.recording_id, assignment.lease_token).await?;
    let env = ctx.cell_env.observer(
        cell_id,
        &ObserverAssignment {
            recording_id: assignment.recording_id,
            lease_token: assignment.lease_token,
            channel_id,
            login,
            name,
        },
    );
    let spec = CellSpec { cell_id, kind: CellKind::Observer, channel: Some(login.to_owned()), env };
    let backend_ref = match launch(ctx, &spec).await {
        Ok(backend_ref) => backend_ref,
        Err(e) => {
            // A recording opened for this launch and never written stays no
            // trace; an existing one keeps waiting for its next observer.
            if assignment.created {
                let _ = colony::recording::rows::delete_if_unwritten(ctx.pool, assignment.recording_id).await;
            }
            return Err(e);
        }
    };
    Ok(json!({
        "cell": cell_id,
        "backend_ref": backend_ref,
        "recording": assignment.recording_id,
        "lease_token": assignment.lease_token,
        "new_recording": assignment.created,
    }))
}
