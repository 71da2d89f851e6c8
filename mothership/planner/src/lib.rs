//! The reconcile planner: a pure function from what a tick observed to the
//! actions that close the gap, each with the reason an operator will read in
//! `mothership decisions`.
//!
//! No I/O and no clock: `now` is an argument, so tables and property tests
//! cover every rule. It only proposes; `tick.rs` saves the plan and acts.

pub mod model;
pub mod policy;
pub mod reason;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::model::{ActiveState, CellKind, CellView, ChannelView, Instance, Observed};
use crate::policy::Policy;
pub use crate::reason::{Reason, Sickness};

/// One step toward the desired state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Open (or continue) the channel's live recording in a new observer.
    StartObserver {
        channel_id: i64,
        login: String,
        name: String,
    },
    /// Hand the channel's recording to a new observer; the old one is fenced
    /// out by the bumped lease token. With `stop_old` it is marked dead and
    /// stopped if it still runs; without, it may still be capturing and is
    /// left running until the replacement has fetched (make before break).
    ReplaceObserver {
        old: Uuid,
        old_ref: Option<String>,
        stop_old: bool,
        channel_id: i64,
        login: String,
        name: String,
    },
    /// Ask a cell to finish (SIGTERM, docker stop, StopTask): observers
    /// finalize their recording, harvest cells hand back or finish their job.
    StopCell {
        cell: Uuid,
        kind: CellKind,
        backend_ref: Option<String>,
    },
    /// The cell stopped answering: mark it dead, and stop it if it still runs.
    MarkDead {
        cell: Uuid,
        kind: CellKind,
        backend_ref: Option<String>,
    },
    StartHarvest,
    /// Put jobs whose lease expired back in the queue.
    RescueLeases {
        jobs: Vec<i64>,
    },
    /// Stop and remove something that carries this colony's labels but is no
    /// active cell in the database.
    ReapOrphan {
        backend_ref: String,
        cell: Option<Uuid>,
        running: bool,
    },
}

impl Action {
    /// The verb stored in the decisions table.
    pub fn name(&self) -> &'static str {
        match self {
            Action::StartObserver { .. } => "start_observer",
            Action::ReplaceObserver { .. } => "replace_observer",
            Action::StopCell { .. } => "stop_cell",
            Action::MarkDead { .. } => "mark_dead",
            Action::StartHarvest => "start_harvest",
            Action::RescueLeases { .. } => "rescue_leases",
            Action::ReapOrphan { .. } => "reap_orphan",
        }
    }

    /// What the action is about, for the decisions table.
    pub fn subject(&self) -> String {
        match self {
            Action::StartObserver { login, .. } | Action::ReplaceObserver { login, .. } => format!("channel {login}"),
            Action::StopCell { cell, kind, .. } | Action::MarkDead { cell, kind, .. } => {
                format!("{} cell {cell}", kind.as_str())
            }
            Action::StartHarvest => "harvest pool".into(),
            Action::RescueLeases { jobs } => format!("{} job(s)", jobs.len()),
            Action::ReapOrphan { backend_ref, .. } => backend_ref.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    #[serde(flatten)]
    pub action: Action,
    pub reason: Reason,
}

/// Something the planner chose not to do, and why (shown in the report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub subject: String,
    pub reason: Reason,
}

/// The numbers behind the plan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlanReport {
    pub live_channels: u32,
    pub observers_healthy: u32,
    pub observers_to_start: u32,
    pub observers_to_replace: u32,
    pub observers_to_stop: u32,
    /// Silent observers left running until their replacement has fetched.
    pub observers_handing_over: u32,
    pub harvest_running: u32,
    pub harvest_busy: u32,
    /// `clamp(ceil(ready / jobs_per_cell), min, max)` for this tick.
    pub harvest_want: u32,
    /// What the pool may shrink to: the window's largest want, and one cell
    /// while inside the idle cooldown.
    pub harvest_floor: u32,
    pub harvest_to_start: u32,
    pub harvest_to_stop: u32,
    pub jobs_ready: u64,
    pub jobs_running: u64,
    pub jobs_delayed: u64,
    pub jobs_dead: u64,
    pub leases_to_rescue: u32,
    pub orphans_to_reap: u32,
    /// The queue had ready or running jobs (kept for the idle cooldown).
    pub queue_busy: bool,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub actions: Vec<Planned>,
    pub report: PlanReport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Health {
    Healthy,
    Unhealthy(Sickness),
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or_default()
}

/// Is a cell alive? A cell its backend reports exited is dead at once, and
/// so is one a backend that lists at once (process, docker) does not show;
/// the start grace only covers a cell an eventually consistent backend (ECS)
/// may not list yet. Otherwise it lives by its own heartbeat.
fn health(
    cell: &CellView,
    listed: Option<&HashMap<Uuid, &Instance>>,
    observed: &Observed,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Health {
    let backend = &observed.backend;
    if let Some(listed) = listed
        && cell.backend == *backend
        && cell.backend_ref.is_some()
    {
        match listed.get(&cell.id) {
            Some(i) if !i.running => return Health::Unhealthy(Sickness::BackendExited { backend: backend.clone() }),
            None if observed.lists_at_once || age(now, cell.started_at) > policy.start_grace => {
                return Health::Unhealthy(Sickness::BackendLostIt { backend: backend.clone() });
            }
            _ => {}
        }
    }
    // Nobody can heartbeat while Postgres is down: after a restart, silence
    // is only counted from when it came back.
    let counted_from = |t: DateTime<Utc>| observed.database_up_since.map_or(t, |up| up.max(t));
    match cell.last_heartbeat {
        Some(beat) => {
            let since = counted_from(beat);
            if age(now, since) <= policy.heartbeat_timeout {
                return Health::Healthy;
            }
            Health::Unhealthy(Sickness::Silent {
                silent: trim(age(now, since)),
                timeout: policy.heartbeat_timeout,
                since_restart: since > beat,
            })
        }
        None if age(now, counted_from(cell.started_at)) > policy.start_grace => {
            Health::Unhealthy(Sickness::NoFirstHeartbeat {
                after: trim(age(now, cell.started_at)),
                grace: policy.start_grace,
            })
        }
        None => Health::Healthy,
    }
}

fn trim(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Decide what this tick should do. Pure: the same input gives the same plan.
pub fn plan(observed: &Observed, policy: &Policy, now: DateTime<Utc>) -> Plan {
    let mut plan = Plan::default();
    let listed: Option<HashMap<Uuid, &Instance>> =
        observed.instances.as_ref().map(|all| all.iter().filter_map(|i| Some((i.cell_id?, i))).collect());
    let health_of = |cell: &CellView| health(cell, listed.as_ref(), observed, policy, now);
    let mut dead_marked: HashSet<Uuid> = HashSet::new();

    plan_observers(observed, policy, now, &health_of, &mut plan, &mut dead_marked);
    plan_harvest(observed, policy, now, &health_of, &mut plan, &mut dead_marked);
    plan_leases(observed, &mut plan);
    plan_orphans(observed, &mut plan);
    plan
}

/// How long after a start that failed `failures` times in a row the next
/// may come: `base` after the first failure, doubling, at most 10 minutes.
pub fn start_backoff(base: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    base.saturating_mul(2u32.pow(doublings)).min(Duration::from_secs(600))
}

/// Why a start must wait, if it must.
fn backing_off(failures: u32, retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Reason> {
    let retry_at = retry_at.filter(|at| *at > now)?;
    Some(Reason::BackingOff { failures, retry_at })
}

fn plan_observers(
    observed: &Observed,
    policy: &Policy,
    now: DateTime<Utc>,
    health_of: &dyn Fn(&CellView) -> Health,
    plan: &mut Plan,
    dead_marked: &mut HashSet<Uuid>,
) {
    let by_channel = observers_by_channel(observed, health_of, plan, dead_marked);
    let wanted = judge_channels(observed, by_channel, health_of, plan, dead_marked);
    plan.report.observers_healthy = wanted.healthy;
    let mut budget = policy.max_observers.saturating_sub(wanted.healthy);
    schedule_replacements(wanted.replacements, policy, now, &mut budget, plan, dead_marked);
    schedule_starts(wanted.starts, policy, now, &mut budget, plan);
}

/// The observers that belong to a configured channel, by channel. The
/// others (their channel removed, or stopping and unhealthy) are stopped or
/// buried here.
fn observers_by_channel<'a>(
    observed: &'a Observed,
    health_of: &dyn Fn(&CellView) -> Health,
    plan: &mut Plan,
    dead_marked: &mut HashSet<Uuid>,
) -> HashMap<i64, Vec<&'a CellView>> {
    let mut by_channel: HashMap<i64, Vec<&CellView>> = HashMap::new();
    for cell in observed.cells.iter().filter(|c| c.kind == CellKind::Observer) {
        match (cell.channel_id, cell.state) {
            (_, ActiveState::Stopping) => {
                if let Health::Unhealthy(why) = health_of(cell) {
                    mark_dead(plan, dead_marked, cell, Reason::StoppingAndUnhealthy(why));
                }
            }
            (Some(channel), _) if observed.channels.iter().any(|c| c.id == channel) => {
                by_channel.entry(channel).or_default().push(cell)
            }
            _ => stop_or_bury(plan, dead_marked, cell, health_of(cell), Reason::ChannelRemoved),
        }
    }
    by_channel
}

/// What the channels want after each one's cells were judged.
struct Wanted<'a> {
    /// Channels with a healthy observer.
    healthy: u32,
    /// Dead observers to replace (the replacement continues the same
    /// recording), each with why; they come before new starts.
    replacements: Vec<(&'a ChannelView, &'a CellView, Sickness)>,
    /// Channels to start an observer for, each with why.
    starts: Vec<(&'a ChannelView, Reason)>,
}

/// Judge each channel's observers once: keep the newest healthy one and
/// stop the extras, bury the unhealthy, and say which channels want a
/// replacement or a start. Channels that went live first come first.
///
/// Make before break: a silent observer may still be capturing (cut from
/// Postgres, not from the source or storage), so it is stopped only once a
/// newer observer of its channel holds the lease and has fetched. Until
/// then it keeps uploading adoptable objects, and the hand-over leaves no hole.
fn judge_channels<'a>(
    observed: &'a Observed,
    mut by_channel: HashMap<i64, Vec<&'a CellView>>,
    health_of: &dyn Fn(&CellView) -> Health,
    plan: &mut Plan,
    dead_marked: &mut HashSet<Uuid>,
) -> Wanted<'a> {
    let mut wanted = Wanted { healthy: 0, replacements: Vec::new(), starts: Vec::new() };
    let mut channels: Vec<&ChannelView> = observed.channels.iter().collect();
    channels.sort_by_key(|c| (c.live_since.is_none(), c.live_since, c.id));
    for channel in channels {
        let live = channel.live_after_end();
        plan.report.live_channels += u32::from(live && channel.enabled);
        let mut cells = by_channel.remove(&channel.id).unwrap_or_default();
        // Newest first: a replacement is newer than the cell it replaced.
        cells.sort_by_key(|c| std::cmp::Reverse((c.started_at, c.id)));
        if !channel.enabled {
            for cell in cells {
                stop_or_bury(
                    plan,
                    dead_marked,
                    cell,
                    health_of(cell),
                    Reason::ChannelDisabled { login: channel.login.clone() },
                );
            }
            continue;
        }
        // Judge each cell once; the unhealthy keep their reason.
        let mut healthy: Vec<&CellView> = Vec::new();
        let mut unhealthy: Vec<(&CellView, Sickness)> = Vec::new();
        for cell in cells {
            match health_of(cell) {
                Health::Healthy => healthy.push(cell),
                Health::Unhealthy(why) => unhealthy.push((cell, why)),
            }
        }
        let recording_wanted = live || channel.open_recording.is_some();
        if let Some((keep, extra)) = healthy.split_first() {
            wanted.healthy += 1;
            for cell in extra {
                plan.report.observers_to_stop += 1;
                plan.actions.push(Planned {
                    action: Action::StopCell { cell: cell.id, kind: cell.kind, backend_ref: cell.backend_ref.clone() },
                    reason: Reason::DuplicateObserver { login: channel.login.clone(), keep: keep.id },
                });
            }
            for (cell, why) in unhealthy {
                if !why.may_be_capturing() || !recording_wanted {
                    mark_dead(plan, dead_marked, cell, Reason::unhealthy(why));
                } else if keep.caught_up {
                    mark_dead(plan, dead_marked, cell, Reason::unhealthy_and(why, Reason::HandedOver { to: keep.id }));
                } else {
                    hand_over_pending(plan, cell, why, Some(keep.id));
                }
            }
            continue;
        }
        // An observer saw the broadcast end after the probe that says live:
        // no start until a newer probe says so too.
        if let Some(ended) = channel.last_ended_at.filter(|_| channel.live && !live && channel.open_recording.is_none())
        {
            plan.report.skipped.push(Skipped {
                subject: format!("channel {}", channel.login),
                reason: Reason::ProbePredatesEnd { login: channel.login.clone(), ended },
            });
        }
        let mut unhealthy = unhealthy.into_iter();
        match unhealthy.next() {
            Some((newest, why)) if recording_wanted => wanted.replacements.push((channel, newest, why)),
            Some((newest, why)) => {
                let offline = Reason::ChannelOffline { login: channel.login.clone() };
                mark_dead(plan, dead_marked, newest, Reason::unhealthy_and(why, offline));
            }
            None if live => wanted.starts.push((channel, Reason::LiveWithoutObserver { login: channel.login.clone() })),
            None => {
                if let Some(recording) = channel.open_recording {
                    wanted.starts.push((channel, Reason::LeftOpen { recording, login: channel.login.clone() }));
                }
            }
        }
        for (cell, why) in unhealthy {
            if recording_wanted && why.may_be_capturing() {
                hand_over_pending(plan, cell, why, None);
            } else {
                mark_dead(plan, dead_marked, cell, Reason::unhealthy_and(why, Reason::Superseded));
            }
        }
    }
    wanted
}

/// Leave a silent observer running until its replacement has fetched, and
/// say so in the report.
fn hand_over_pending(plan: &mut Plan, cell: &CellView, why: Sickness, to: Option<Uuid>) {
    plan.report.observers_handing_over += 1;
    plan.report.skipped.push(Skipped {
        subject: format!("observer cell {}", cell.id),
        reason: Reason::HandOverPending { old: cell.id, why, to },
    });
}

/// Replace dead observers while the observer budget lasts and the
/// channel's start backoff allows; the dead cell is buried either way.
fn schedule_replacements(
    replacements: Vec<(&ChannelView, &CellView, Sickness)>,
    policy: &Policy,
    now: DateTime<Utc>,
    budget: &mut u32,
    plan: &mut Plan,
    dead_marked: &mut HashSet<Uuid>,
) {
    for (channel, old, why) in replacements {
        // A silent cell may be the only one still capturing: it keeps
        // running until its replacement has fetched (`judge_channels`).
        let stop_old = !why.may_be_capturing();
        match may_start(channel, policy, now, budget, plan, true) {
            Admission::Go => {}
            Admission::BackingOff if stop_old => {
                // The dead cell is buried now; the channel gets its observer when the backoff ends.
                mark_dead(plan, dead_marked, old, Reason::unhealthy_and(why, Reason::ReplacementWaits));
                continue;
            }
            Admission::BackingOff | Admission::NoBudget => {
                if !stop_old {
                    hand_over_pending(plan, old, why, None);
                }
                continue;
            }
        }
        if stop_old {
            dead_marked.insert(old.id);
        }
        plan.report.observers_to_replace += 1;
        plan.actions.push(Planned {
            action: Action::ReplaceObserver {
                old: old.id,
                old_ref: old.backend_ref.clone(),
                stop_old,
                channel_id: channel.id,
                login: channel.login.clone(),
                name: channel.name.clone(),
            },
            reason: Reason::Replace { old: old.id, why },
        });
    }
}

/// Whether a channel may get an observer now.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// Yes: one unit of the observer budget is taken.
    Go,
    /// Its last starts failed; the backoff has not run out.
    BackingOff,
    /// `--max-observers` are running or planned.
    NoBudget,
}

/// Check a channel's start backoff and the observer budget, saying in the
/// report why a channel waits (a replacement's or a start's).
fn may_start(
    channel: &ChannelView,
    policy: &Policy,
    now: DateTime<Utc>,
    budget: &mut u32,
    plan: &mut Plan,
    replacement: bool,
) -> Admission {
    let subject = format!("channel {}", channel.login);
    if let Some(wait) = backing_off(channel.start_failures, channel.start_retry_at, now) {
        plan.report.skipped.push(Skipped { subject, reason: wait });
        return Admission::BackingOff;
    }
    if *budget == 0 {
        let reason = Reason::MaxObservers { max: policy.max_observers, replacement };
        plan.report.skipped.push(Skipped { subject, reason });
        return Admission::NoBudget;
    }
    *budget -= 1;
    Admission::Go
}

/// Start observers for the channels that want one, while the budget lasts
/// and each channel's start backoff allows.
fn schedule_starts(
    starts: Vec<(&ChannelView, Reason)>,
    policy: &Policy,
    now: DateTime<Utc>,
    budget: &mut u32,
    plan: &mut Plan,
) {
    for (channel, reason) in starts {
        if may_start(channel, policy, now, budget, plan, false) != Admission::Go {
            continue;
        }
        plan.report.observers_to_start += 1;
        plan.actions.push(Planned {
            action: Action::StartObserver {
                channel_id: channel.id,
                login: channel.login.clone(),
                name: channel.name.clone(),
            },
            reason,
        });
    }
}

/// Stop a cell that should not run; one that stopped answering is buried instead.
fn stop_or_bury(plan: &mut Plan, dead_marked: &mut HashSet<Uuid>, cell: &CellView, health: Health, reason: Reason) {
    match health {
        Health::Healthy => {
            plan.report.observers_to_stop += 1;
            plan.actions.push(Planned {
                action: Action::StopCell { cell: cell.id, kind: cell.kind, backend_ref: cell.backend_ref.clone() },
                reason,
            });
        }
        Health::Unhealthy(why) => mark_dead(plan, dead_marked, cell, Reason::unhealthy_and(why, reason)),
    }
}

fn mark_dead(plan: &mut Plan, dead_marked: &mut HashSet<Uuid>, cell: &CellView, reason: Reason) {
    if dead_marked.insert(cell.id) {
        plan.actions.push(Planned {
            action: Action::MarkDead { cell: cell.id, kind: cell.kind, backend_ref: cell.backend_ref.clone() },
            reason,
        });
    }
}

/// `clamp(ceil(ready / per_cell), min, max)`.
pub fn harvest_want(ready: u64, policy: &Policy) -> u32 {
    let per_cell = u64::from(policy.jobs_per_harvest_cell.max(1));
    let want = u32::try_from(ready.div_ceil(per_cell)).unwrap_or(u32::MAX);
    want.clamp(policy.min_harvest, policy.max_harvest.max(policy.min_harvest))
}

fn plan_harvest(
    observed: &Observed,
    policy: &Policy,
    now: DateTime<Utc>,
    health_of: &dyn Fn(&CellView) -> Health,
    plan: &mut Plan,
    dead_marked: &mut HashSet<Uuid>,
) {
    let queue = &observed.queue;
    let report = &mut plan.report;
    (report.jobs_ready, report.jobs_running, report.jobs_delayed, report.jobs_dead) =
        (queue.ready, queue.running, queue.delayed, queue.dead);
    report.queue_busy = queue.ready > 0 || queue.running > 0;

    let mut alive: Vec<&CellView> = Vec::new();
    for cell in observed.cells.iter().filter(|c| c.kind == CellKind::Harvest) {
        match health_of(cell) {
            Health::Unhealthy(why) => mark_dead(plan, dead_marked, cell, Reason::unhealthy(why)),
            Health::Healthy if cell.state != ActiveState::Stopping => alive.push(cell),
            Health::Healthy => {}
        }
    }
    let report = &mut plan.report;
    report.harvest_running = alive.len() as u32;
    report.harvest_busy = alive.iter().filter(|c| c.running_jobs > 0).count() as u32;
    let want = harvest_want(queue.ready, policy);
    report.harvest_want = want;
    let in_cooldown =
        report.queue_busy || observed.history.last_busy_at.is_some_and(|at| age(now, at) < policy.idle_cooldown);
    let floor = want
        .max(observed.history.max_want_in_window.min(policy.max_harvest))
        .max(u32::from(in_cooldown).min(policy.max_harvest));
    report.harvest_floor = floor;

    let running = alive.len() as u32;
    let harvest_wait = backing_off(observed.harvest_start_failures, observed.harvest_retry_at, now);
    if let (true, Some(wait)) = (want > running, harvest_wait) {
        plan.report.skipped.push(Skipped { subject: "harvest pool".into(), reason: wait });
    } else if want > running {
        let start = want - running;
        report.harvest_to_start = start;
        for _ in 0..start {
            plan.actions.push(Planned {
                action: Action::StartHarvest,
                reason: Reason::HarvestWanted {
                    ready: queue.ready,
                    want,
                    per_cell: policy.jobs_per_harvest_cell,
                    min: policy.min_harvest,
                    max: policy.max_harvest,
                    running,
                },
            });
        }
    } else if running > floor {
        // Only cells this launcher can stop; cells that joined by themselves leave on their own.
        let mut idle: Vec<&&CellView> =
            alive.iter().filter(|c| c.running_jobs == 0 && c.backend == observed.backend).collect();
        idle.sort_by_key(|c| (c.started_at, c.id));
        let why = if floor == 0 {
            Reason::IdleCooldown { cooldown: policy.idle_cooldown }
        } else {
            Reason::IdleWindow { floor, window: policy.scale_down_window }
        };
        for cell in idle.into_iter().take((running - floor) as usize) {
            report.harvest_to_stop += 1;
            plan.actions.push(Planned {
                action: Action::StopCell { cell: cell.id, kind: cell.kind, backend_ref: cell.backend_ref.clone() },
                reason: why.clone(),
            });
        }
    }
}

/// Put back jobs whose lease expired, and nothing more: a cell is dead only
/// when its own heartbeat is stale (a Postgres outage expires every lease at
/// once, and the cells holding them are healthy; each stops the job itself).
fn plan_leases(observed: &Observed, plan: &mut Plan) {
    let expired = &observed.queue.expired_leases;
    if expired.is_empty() {
        return;
    }
    plan.report.leases_to_rescue = expired.len() as u32;
    plan.actions.push(Planned {
        action: Action::RescueLeases { jobs: expired.iter().map(|l| l.job_id).collect() },
        reason: Reason::LeaseExpired,
    });
}

fn plan_orphans(observed: &Observed, plan: &mut Plan) {
    let Some(instances) = &observed.instances else { return };
    let active: HashSet<Uuid> = observed.cells.iter().map(|c| c.id).collect();
    for instance in instances {
        if instance.cell_id.is_some_and(|id| active.contains(&id)) {
            continue;
        }
        let reason = match (instance.cell_id, instance.running) {
            (None, _) => Reason::OrphanWithoutId,
            (Some(cell), true) => Reason::OrphanInactive { cell },
            (Some(cell), false) => Reason::OrphanFinished { cell },
        };
        plan.report.orphans_to_reap += 1;
        plan.actions.push(Planned {
            action: Action::ReapOrphan {
                backend_ref: instance.backend_ref.clone(),
                cell: instance.cell_id,
                running: instance.running,
            },
            reason,
        });
    }
}
