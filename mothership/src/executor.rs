//! Carrying out a plan: each [`Action`] the planner chose becomes calls to
//! the launcher and writes to Postgres, and ends in one typed [`Outcome`]
//! that is recorded in `decisions` with its reason. The planner proposes;
//! this module only does what it was told, one action at a time, so one
//! failure never stops the others (`tick.rs` runs several at once).
//!
//! Starts that keep failing back off exponentially: a channel's in
//! `channels.start_failures` (through [`crate::channels`]), the harvest
//! pool's in the `colony` row.

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use crate::launcher::{CellSpec, LaunchError, ObserverAssignment};
use crate::tick::TickCtx;
use colony::cells;
use colony::queue::Queue;
use colony_planner::model::CellKind;
use colony_planner::{Action, Planned};
use colony_vocab::{ChannelId, RecordingId};

/// What one carried-out action did. The tick's report counts by matching on
/// it; `decisions.detail` stores it as JSON ([`Done::detail`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    ObserverStarted(ObserverStart),
    /// A new observer holds the channel's recording; the old one is fenced
    /// out, and `old` says what became of its process.
    ObserverReplaced {
        start: ObserverStart,
        old: Uuid,
        old_cell: OldCell,
    },
    CellStopped {
        cell: Uuid,
        kind: CellKind,
        backend_ref: String,
    },
    MarkedDead {
        cell: Uuid,
        kind: CellKind,
        stopped: bool,
    },
    HarvestStarted {
        cell: Uuid,
        backend_ref: String,
    },
    /// The jobs put back in the queue (those still expired when it ran).
    LeasesRescued {
        jobs: Vec<i64>,
    },
    OrphanReaped {
        backend_ref: String,
        cell: Option<Uuid>,
    },
}

/// What a replacement did with the cell it replaced.
#[derive(Debug, Clone, PartialEq)]
pub enum OldCell {
    /// Marked dead; true when its backend confirmed it stopped.
    Stopped(bool),
    /// Marked dead, but stopping it failed.
    NotStopped(String),
    /// Left running: it may still be capturing, and is stopped once the
    /// replacement holds the lease and has fetched (make before break).
    KeptUntilCaughtUp,
}

/// A launched observer and the recording lease it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ObserverStart {
    pub cell: Uuid,
    pub backend_ref: String,
    pub recording: RecordingId,
    pub lease_token: i64,
    /// The recording was opened for this start (not continued).
    pub new_recording: bool,
}

impl Done {
    /// The JSON `decisions.detail` keeps, and `mothership decisions` shows.
    pub fn detail(&self) -> serde_json::Value {
        let start = |s: &ObserverStart| {
            json!({
                "cell": s.cell,
                "backend_ref": s.backend_ref,
                "recording": s.recording,
                "lease_token": s.lease_token,
                "new_recording": s.new_recording,
            })
        };
        match self {
            Done::ObserverStarted(s) => start(s),
            Done::ObserverReplaced { start: s, old, old_cell } => {
                let mut detail = start(s);
                detail["replaced"] = json!(old);
                match old_cell {
                    OldCell::Stopped(stopped) => detail["old_stopped"] = json!(stopped),
                    OldCell::NotStopped(why) => detail["old_stopped"] = json!(format!("not stopped: {why}")),
                    OldCell::KeptUntilCaughtUp => {
                        detail["old_stopped"] = json!(false);
                        detail["old_kept"] = json!("running until the replacement holds the lease and has fetched");
                    }
                }
                detail
            }
            Done::CellStopped { cell, backend_ref, .. } => json!({ "cell": cell, "backend_ref": backend_ref }),
            Done::MarkedDead { cell, stopped, .. } => json!({ "cell": cell, "stopped": stopped }),
            Done::HarvestStarted { cell, backend_ref } => json!({ "cell": cell, "backend_ref": backend_ref }),
            Done::LeasesRescued { jobs } => json!({ "rescued": jobs.len(), "jobs": jobs }),
            Done::OrphanReaped { backend_ref, cell } => json!({ "backend_ref": backend_ref, "cell": cell }),
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Done),
    /// It failed; the error chain, with the next try's time for a start.
    Failed(String),
    /// Not this launcher's to do (a cell another backend runs), and why.
    Skipped(String),
}

/// How an action went, as `decisions.outcome` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Carried {
    Ok,
    Failed,
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

impl Outcome {
    pub fn carried(&self) -> Carried {
        match self {
            Outcome::Done(_) => Carried::Ok,
            Outcome::Failed(_) => Carried::Failed,
            Outcome::Skipped(_) => Carried::Skipped,
        }
    }

    /// Why it failed or was skipped.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Done(_) => None,
            Outcome::Failed(why) | Outcome::Skipped(why) => Some(why),
        }
    }
}

/// One action of a tick as it was carried out: what `decisions` keeps.
#[derive(Debug, Clone)]
pub struct ActionOutcome {
    /// The verb (`start_observer`, …).
    pub action: &'static str,
    pub subject: String,
    pub reason: String,
    pub outcome: Outcome,
}

/// As the tick's report has always stored it: `outcome` as a word, then
/// `error` and `detail` when there are any.
impl Serialize for ActionOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("action", self.action)?;
        map.serialize_entry("subject", &self.subject)?;
        map.serialize_entry("reason", &self.reason)?;
        map.serialize_entry("outcome", &self.outcome.carried())?;
        if let Some(error) = self.outcome.error() {
            map.serialize_entry("error", error)?;
        }
        if let Outcome::Done(done) = &self.outcome {
            map.serialize_entry("detail", &done.detail())?;
        }
        map.end()
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

impl colony::exit::Classify for ActError {
    fn class(&self) -> colony::exit::ErrorClass {
        use colony::exit::ErrorClass;
        match self {
            ActError::Skipped(_) => ErrorClass::Permanent,
            ActError::Launch(e) => e.class(),
            ActError::Db(_) => ErrorClass::Transient,
            ActError::Queue(e) => e.class(),
        }
    }
}

/// Carry out one planned action, and record it in `decisions` under the tick.
pub async fn act_and_record(ctx: &TickCtx<'_>, tick_id: Uuid, planned: &Planned) -> ActionOutcome {
    let reason = planned.reason.to_string();
    let mut outcome = match act(ctx, &planned.action, &reason).await {
        Ok(done) => Outcome::Done(done),
        Err(ActError::Skipped(why)) => Outcome::Skipped(why),
        Err(e) => Outcome::Failed(colony::error_chain(&e)),
    };
    if !matches!(outcome, Outcome::Skipped(_)) {
        match record_start(ctx, &planned.action, matches!(outcome, Outcome::Done(_))).await {
            Ok(Some(next)) => {
                if let Outcome::Failed(why) = &mut outcome {
                    let next = next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    why.push_str(&format!("; next try at {next}"));
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "could not record the start's backoff"),
        }
    }
    let outcome = ActionOutcome { action: planned.action.name(), subject: planned.action.subject(), reason, outcome };
    match &outcome.outcome {
        Outcome::Failed(error) => {
            warn!(action = outcome.action, subject = %outcome.subject, error = error.as_str(), "action failed")
        }
        carried => {
            info!(action = outcome.action, subject = %outcome.subject, outcome = carried.carried().as_str(), reason = %outcome.reason, "action")
        }
    }
    let detail = match &outcome.outcome {
        Outcome::Done(done) => done.detail(),
        _ => json!({}),
    };
    let saved = sqlx::query(
        "INSERT INTO decisions (tick_id, action, subject, reason, outcome, error, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(tick_id)
    .bind(outcome.action)
    .bind(&outcome.subject)
    .bind(&outcome.reason)
    .bind(outcome.outcome.carried().as_str())
    .bind(outcome.outcome.error())
    .bind(detail)
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
    let wait = |failed: u32| colony_planner::start_backoff(ctx.policy.start_backoff, failed.saturating_add(1));
    match action {
        Action::StartObserver { channel_id, .. } | Action::ReplaceObserver { channel_id, .. } => {
            if ok {
                crate::channels::start_succeeded(ctx.pool, *channel_id).await?;
                return Ok(None);
            }
            crate::channels::start_failed(ctx.pool, *channel_id, wait).await
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
            .bind(wait(u32::try_from(failed).unwrap_or(0)).as_secs_f64())
            .fetch_one(ctx.pool)
            .await
        }
        Action::StopCell { .. } | Action::MarkDead { .. } | Action::RescueLeases { .. } | Action::ReapOrphan { .. } => {
            Ok(None)
        }
    }
}

async fn act(ctx: &TickCtx<'_>, action: &Action, reason: &str) -> Result<Done, ActError> {
    let backend = ctx.launcher.backend();
    match action {
        Action::StartObserver { channel_id, login, name } => {
            Ok(Done::ObserverStarted(start_observer(ctx, *channel_id, login, name).await?))
        }
        Action::ReplaceObserver { old, old_ref, stop_old, channel_id, login, name } => {
            // The replacement is launched whether or not the old cell could
            // be stopped: the bumped lease token fences it out either way.
            // One that may still be capturing is not stopped here at all.
            let old_cell = if *stop_old {
                match retire(ctx, *old, old_ref.as_deref(), reason).await {
                    Ok(stopped) => OldCell::Stopped(stopped),
                    Err(e) => OldCell::NotStopped(colony::error_chain(&e)),
                }
            } else {
                OldCell::KeptUntilCaughtUp
            };
            let start = start_observer(ctx, *channel_id, login, name).await?;
            Ok(Done::ObserverReplaced { start, old: *old, old_cell })
        }
        Action::StopCell { cell, kind, backend_ref } => {
            let ours = cells::backend(ctx.pool, *cell).await?.as_deref() == Some(backend);
            let Some(backend_ref) = backend_ref.as_deref().filter(|_| ours) else {
                return Err(ActError::Skipped(format!(
                    "cell {cell} was not started by the {backend} launcher; stop it where it runs"
                )));
            };
            ctx.launcher.stop(backend_ref, Some(*cell), reason).await?;
            cells::mark_stopping(ctx.pool, *cell).await?;
            Ok(Done::CellStopped { cell: *cell, kind: *kind, backend_ref: backend_ref.to_owned() })
        }
        Action::MarkDead { cell, kind, backend_ref } => {
            let stopped = retire(ctx, *cell, backend_ref.as_deref(), reason).await?;
            Ok(Done::MarkedDead { cell: *cell, kind: *kind, stopped })
        }
        Action::StartHarvest => {
            let cell = Uuid::new_v4();
            cells::insert_starting(ctx.pool, cell, CellKind::Harvest, backend, None).await?;
            // With a minimum pool, cells stay when idle and the mothership
            // alone shrinks the pool: no cell leaves only to be started again.
            let env = ctx.cell_env.harvest(cell, ctx.policy.min_harvest > 0);
            let spec = CellSpec { cell_id: cell, kind: CellKind::Harvest, channel: None, env };
            let backend_ref = launch(ctx, &spec).await?;
            Ok(Done::HarvestStarted { cell, backend_ref })
        }
        Action::RescueLeases { .. } => {
            let rescued = Queue::new(ctx.pool.clone()).rescue_expired().await?;
            Ok(Done::LeasesRescued { jobs: rescued.iter().map(|r| r.id).collect() })
        }
        Action::ReapOrphan { backend_ref, cell, .. } => {
            ctx.launcher.reap(backend_ref, *cell, reason).await?;
            Ok(Done::OrphanReaped { backend_ref: backend_ref.clone(), cell: *cell })
        }
    }
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
) -> Result<ObserverStart, ActError> {
    let cell = Uuid::new_v4();
    cells::insert_starting(ctx.pool, cell, CellKind::Observer, ctx.launcher.backend(), Some(channel_id)).await?;
    // Bumps the lease token of an open recording: its previous holder is fenced out.
    let assignment = colony::recording::assign_live(ctx.pool, channel_id, cell).await?;
    cells::assign(ctx.pool, cell, assignment.recording_id, assignment.lease_token).await?;
    let env = ctx.cell_env.observer(
        cell,
        &ObserverAssignment {
            recording_id: RecordingId(assignment.recording_id),
            lease_token: assignment.lease_token,
            channel_id: ChannelId(channel_id),
            login,
            name,
        },
    );
    let spec = CellSpec { cell_id: cell, kind: CellKind::Observer, channel: Some(login.to_owned()), env };
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
    Ok(ObserverStart {
        cell,
        backend_ref,
        recording: RecordingId(assignment.recording_id),
        lease_token: assignment.lease_token,
        new_recording: assignment.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> ObserverStart {
        ObserverStart {
            cell: Uuid::from_u128(1),
            backend_ref: "4242".into(),
            recording: RecordingId(7),
            lease_token: 3,
            new_recording: true,
        }
    }

    /// `decisions.detail` and the report's JSON are read by operators,
    /// webhooks and tests: the typed outcome writes the keys they always had.
    #[test]
    fn each_outcome_keeps_the_details_decisions_always_had() {
        let cell = Uuid::from_u128(1);
        let started = Done::ObserverStarted(start()).detail();
        assert_eq!(
            started,
            json!({ "cell": cell, "backend_ref": "4242", "recording": 7, "lease_token": 3, "new_recording": true })
        );
        let replaced = Done::ObserverReplaced {
            start: start(),
            old: Uuid::from_u128(2),
            old_cell: OldCell::NotStopped("gone".into()),
        }
        .detail();
        assert_eq!(replaced["replaced"], json!(Uuid::from_u128(2)));
        assert_eq!(replaced["old_stopped"], "not stopped: gone");
        assert_eq!(replaced["recording"], 7);
        let stopped = Done::CellStopped { cell, kind: CellKind::Harvest, backend_ref: "c1".into() }.detail();
        assert_eq!(stopped, json!({ "cell": cell, "backend_ref": "c1" }));
        assert_eq!(
            Done::MarkedDead { cell, kind: CellKind::Observer, stopped: false }.detail(),
            json!({ "cell": cell, "stopped": false })
        );
        assert_eq!(Done::LeasesRescued { jobs: vec![4, 5] }.detail(), json!({ "rescued": 2, "jobs": [4, 5] }));
        assert_eq!(
            Done::OrphanReaped { backend_ref: "c9".into(), cell: None }.detail(),
            json!({ "backend_ref": "c9", "cell": null })
        );
    }

    #[test]
    fn an_action_serializes_as_the_report_always_stored_it() {
        let done = ActionOutcome {
            action: "start_harvest",
            subject: "harvest pool".into(),
            reason: "queue".into(),
            outcome: Outcome::Done(Done::HarvestStarted { cell: Uuid::from_u128(1), backend_ref: "9".into() }),
        };
        let json = serde_json::to_value(&done).unwrap();
        assert_eq!(json["outcome"], "ok");
        assert_eq!(json["detail"]["backend_ref"], "9");
        assert!(json.get("error").is_none());
        let failed = ActionOutcome { outcome: Outcome::Failed("no docker".into()), ..done };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!((json["outcome"].as_str(), json["error"].as_str()), (Some("failed"), Some("no docker")));
        assert!(json.get("detail").is_none());
    }
}
