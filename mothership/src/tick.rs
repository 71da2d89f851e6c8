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
use sqlx::{Connection, PgConnection, PgPool};
use tracing::{info, warn};
use uuid::Uuid;

use crate::counters::Increments;
use crate::executor::{ActionOutcome, Done, Outcome};
use crate::launcher::{CellEnv, Launcher};
use crate::probe::{self, ProbeArgs, ProbeFailure, ProbeResult};
use colony::queue::Queue;
use colony_planner::model::{CellKind, Observed};
use colony_planner::policy::Policy;
use colony_planner::{self, Plan, PlanReport};

/// The advisory lock key every tick of a database takes ("colony" in ASCII).
pub const TICK_LOCK: i64 = 0x636f_6c6f_6e79;

/// Actions carried out at once (`executor::act_and_record`).
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
    /// The channels whose probe failed, by id, and why.
    #[serde(skip)]
    pub probe_errors: Vec<(i64, ProbeFailure)>,
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

/// A pass that could not finish may finish next time.
impl colony::exit::Classify for TickError {
    fn class(&self) -> colony::exit::ErrorClass {
        colony::exit::ErrorClass::Transient
    }
}

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

/// Observe, plan and save, without acting: the part of a tick the benchmark
/// times. Returns the observed state, the plan and the tick id it was saved under.
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
            inc.add(
                "colony_tick_actions_total",
                &[("action", a.action), ("outcome", a.outcome.carried().as_str())],
                1.0,
            );
        }
        if !report.probe_errors.is_empty() {
            let ids: Vec<i64> = report.probe_errors.iter().map(|(id, _)| *id).collect();
            let platforms: std::collections::HashMap<i64, String> =
                sqlx::query_as("SELECT id, COALESCE(platform, source_kind) FROM channels WHERE id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(pool)
                    .await?
                    .into_iter()
                    .collect();
            let mut counted: std::collections::BTreeMap<(&str, &str), f64> = Default::default();
            for (id, class) in &report.probe_errors {
                let Some(platform) = platforms.get(id) else { continue };
                *counted.entry((platform.as_str(), class.as_str())).or_default() += 1.0;
            }
            for ((platform, class), n) in counted {
                inc.add("colony_probe_errors_total", &[("platform", platform), ("class", class)], n);
            }
        }
    }
    inc.save(pool).await
}

async fn locked_tick(ctx: &TickCtx<'_>, started: Instant) -> Result<TickReport, TickError> {
    let probes = probe::probe_due(ctx.pool, ctx.probe).await?;
    let probe_summary = summarize(&probes);
    for p in probes.iter().filter(|p| p.error.is_some()) {
        let error = p.error.as_ref().map(|e| e.message.as_str()).unwrap_or_default();
        let class = p.error.as_ref().map(|e| e.class.as_str()).unwrap_or_default();
        info!(channel = %p.login, error, class, "probe failed; treating the channel as offline");
    }
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(ctx.pool).await?;
    let SavedPlan { plan, tick_id, listed, .. } = observe_plan_save(ctx, now).await?;

    let outcomes: Vec<ActionOutcome> = futures::stream::iter(plan.actions.iter())
        .map(|planned| crate::executor::act_and_record(ctx, tick_id, planned))
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
    let done = Counts::of(&outcomes);
    let report = TickReport {
        tick_id,
        at: now,
        launcher: ctx.launcher.backend(),
        took_ms: started.elapsed().as_millis() as u64,
        probes: probe_summary,
        probe_errors: probes.iter().filter_map(|p| Some((p.channel_id, p.error.as_ref()?.class))).collect(),
        backend_listed: listed,
        live_channels: plan.report.live_channels,
        observers_healthy: plan.report.observers_healthy,
        observers_started: done.observers_started,
        observers_replaced: done.observers_replaced,
        observers_stopped: done.observers_stopped,
        harvest_wanted: plan.report.harvest_want,
        harvest_running: plan.report.harvest_running,
        harvest_started: done.harvest_started,
        harvest_stopped: done.harvest_stopped,
        cells_marked_dead: done.marked_dead,
        jobs_ready: plan.report.jobs_ready,
        jobs_running: plan.report.jobs_running,
        jobs_delayed: plan.report.jobs_delayed,
        jobs_dead: plan.report.jobs_dead,
        leases_rescued: done.leases_rescued,
        orphans_reaped: done.orphans_reaped,
        failed_actions: done.failed,
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

/// What the pass's actions did, counted from their typed outcomes.
#[derive(Debug, Default)]
struct Counts {
    observers_started: u32,
    observers_replaced: u32,
    observers_stopped: u32,
    harvest_started: u32,
    harvest_stopped: u32,
    marked_dead: u32,
    leases_rescued: u32,
    orphans_reaped: u32,
    failed: u32,
}

impl Counts {
    fn of(outcomes: &[ActionOutcome]) -> Self {
        let mut n = Counts::default();
        for o in outcomes {
            match &o.outcome {
                Outcome::Done(Done::ObserverStarted(_)) => n.observers_started += 1,
                Outcome::Done(Done::ObserverReplaced { .. }) => n.observers_replaced += 1,
                Outcome::Done(Done::CellStopped { kind: CellKind::Observer, .. }) => n.observers_stopped += 1,
                Outcome::Done(Done::CellStopped { kind: CellKind::Harvest, .. }) => n.harvest_stopped += 1,
                Outcome::Done(Done::MarkedDead { .. }) => n.marked_dead += 1,
                Outcome::Done(Done::HarvestStarted { .. }) => n.harvest_started += 1,
                Outcome::Done(Done::LeasesRescued { jobs }) => n.leases_rescued += jobs.len() as u32,
                Outcome::Done(Done::OrphanReaped { .. }) => n.orphans_reaped += 1,
                Outcome::Failed(_) => n.failed += 1,
                Outcome::Skipped(_) => {}
            }
        }
        n
    }
}

fn summarize(probes: &[ProbeResult]) -> ProbeSummary {
    ProbeSummary {
        probed: probes.len() as u32,
        live: probes.iter().filter(|p| p.live).count() as u32,
        errors: probes.iter().filter(|p| p.error.is_some()).count() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(outcome: Outcome) -> ActionOutcome {
        ActionOutcome { action: "any", subject: "any".into(), reason: "any".into(), outcome }
    }

    /// The report counts what the actions did by their typed outcome: a
    /// stopped cell by its kind, rescued leases by the jobs put back, and
    /// failures whatever the action.
    #[test]
    fn the_report_counts_typed_outcomes() {
        let cell = uuid::Uuid::from_u128(1);
        let stop = |kind| Outcome::Done(Done::CellStopped { cell, kind, backend_ref: "r".into() });
        let outcomes = [
            outcome(stop(CellKind::Observer)),
            outcome(stop(CellKind::Harvest)),
            outcome(stop(CellKind::Harvest)),
            outcome(Outcome::Done(Done::LeasesRescued { jobs: vec![1, 2, 3] })),
            outcome(Outcome::Done(Done::MarkedDead { cell, kind: CellKind::Observer, stopped: true })),
            outcome(Outcome::Failed("launch failed".into())),
            outcome(Outcome::Skipped("another launcher's".into())),
        ];
        let n = Counts::of(&outcomes);
        assert_eq!((n.observers_stopped, n.harvest_stopped), (1, 2));
        assert_eq!((n.leases_rescued, n.marked_dead, n.failed), (3, 1, 1));
        assert_eq!((n.observers_started, n.harvest_started, n.orphans_reaped), (0, 0, 0));
    }
}
