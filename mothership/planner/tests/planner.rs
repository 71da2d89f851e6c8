//! The planner, by table and by property. Pure: no database, no clock.

use chrono::{DateTime, Duration as Ago, TimeZone, Utc};
use colony_planner::model::{
    ActiveState, CellKind, CellView, ChannelView, ExpiredLease, History, Instance, Observed, QueueView,
};
use colony_planner::policy::Policy;
use colony_planner::{Action, Plan, Reason, Sickness, plan};
use proptest::prelude::*;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn policy() -> Policy {
    Policy {
        heartbeat_timeout: std::time::Duration::from_secs(60),
        start_grace: std::time::Duration::from_secs(90),
        jobs_per_harvest_cell: 4,
        min_harvest: 0,
        max_harvest: 8,
        scale_down_window: std::time::Duration::from_secs(300),
        idle_cooldown: std::time::Duration::from_secs(120),
        max_observers: 100,
        start_backoff: std::time::Duration::from_secs(10),
    }
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn channel(n: i64, live: bool) -> ChannelView {
    ChannelView {
        id: n,
        login: format!("ch{n}"),
        name: format!("Channel {n}"),
        enabled: true,
        live,
        live_since: live.then(|| now() - Ago::minutes(n)),
        open_recording: None,
        start_failures: 0,
        start_retry_at: None,
        probed_at: Some(now() - Ago::seconds(5)),
        last_ended_at: None,
    }
}

/// A cell started `started` seconds ago whose last heartbeat was `beat` seconds ago.
fn cell(n: u128, kind: CellKind, channel: Option<i64>, started: i64, beat: Option<i64>) -> CellView {
    CellView {
        id: id(n),
        kind,
        backend: "process".into(),
        backend_ref: Some(format!("{}", 1000 + n)),
        channel_id: channel,
        state: ActiveState::Running,
        started_at: now() - Ago::seconds(started),
        last_heartbeat: beat.map(|b| now() - Ago::seconds(b)),
        running_jobs: 0,
        caught_up: beat.is_some(),
    }
}

fn observer(n: u128, channel: i64, beat: i64) -> CellView {
    cell(n, CellKind::Observer, Some(channel), 600, Some(beat))
}

fn harvest(n: u128, jobs: u32) -> CellView {
    CellView { running_jobs: jobs, ..cell(n, CellKind::Harvest, None, 600, Some(5)) }
}

fn listed(cells: &[CellView]) -> Option<Vec<Instance>> {
    Some(
        cells
            .iter()
            .map(|c| Instance {
                backend_ref: c.backend_ref.clone().unwrap(),
                cell_id: Some(c.id),
                kind: Some(c.kind),
                running: true,
            })
            .collect(),
    )
}

fn observed(channels: Vec<ChannelView>, cells: Vec<CellView>) -> Observed {
    let instances = listed(&cells);
    Observed { backend: "process".into(), channels, cells, instances, ..Default::default() }
}

fn names(plan: &Plan) -> Vec<&'static str> {
    plan.actions.iter().map(|a| a.action.name()).collect()
}

#[test]
fn a_live_channel_without_an_observer_gets_one() {
    let p = plan(&observed(vec![channel(1, true), channel(2, false)], vec![]), &policy(), now());
    assert_eq!(names(&p), ["start_observer"]);
    assert!(matches!(&p.actions[0].action, Action::StartObserver { channel_id: 1, .. }));
    assert_eq!(p.actions[0].reason, Reason::LiveWithoutObserver { login: "ch1".into() });
}

#[test]
fn a_healthy_observer_is_left_alone() {
    let p = plan(&observed(vec![channel(1, true)], vec![observer(10, 1, 5)]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.report.observers_healthy, 1);
}

#[test]
fn an_observer_with_a_stale_heartbeat_is_replaced_on_the_same_channel() {
    let p = plan(&observed(vec![channel(1, true)], vec![observer(10, 1, 61)]), &policy(), now());
    assert_eq!(names(&p), ["replace_observer"]);
    let Action::ReplaceObserver { old, channel_id, .. } = &p.actions[0].action else { unreachable!() };
    assert_eq!((*old, *channel_id), (id(10), 1));
    let silent = Sickness::Silent {
        silent: std::time::Duration::from_secs(61),
        timeout: std::time::Duration::from_secs(60),
        since_restart: false,
    };
    assert_eq!(p.actions[0].reason, Reason::Replace { old: id(10), why: silent });
    assert!(p.actions[0].reason.to_string().contains("no heartbeat for 1m 1s"), "{}", p.actions[0].reason);
}

#[test]
fn an_observer_its_backend_no_longer_runs_is_replaced_without_waiting_for_the_heartbeat() {
    let mut o = observed(vec![channel(1, true)], vec![observer(10, 1, 5)]);
    o.instances = Some(vec![]);
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["replace_observer"]);
    assert!(
        matches!(&p.actions[0].reason, Reason::Replace { why: Sickness::BackendLostIt { .. }, .. }),
        "{}",
        p.actions[0].reason
    );
}

#[test]
fn a_new_observer_gets_its_start_grace_and_then_is_replaced() {
    let young = cell(10, CellKind::Observer, Some(1), 30, None);
    let p = plan(&observed(vec![channel(1, true)], vec![young]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let old = cell(10, CellKind::Observer, Some(1), 91, None);
    let p = plan(&observed(vec![channel(1, true)], vec![old]), &policy(), now());
    assert_eq!(names(&p), ["replace_observer"]);
}

#[test]
fn observers_of_disabled_or_removed_channels_are_stopped() {
    let mut disabled = channel(1, true);
    disabled.enabled = false;
    let orphaned = cell(11, CellKind::Observer, None, 600, Some(5));
    let gone_channel = observer(12, 99, 5);
    let p = plan(&observed(vec![disabled], vec![observer(10, 1, 5), orphaned, gone_channel]), &policy(), now());
    assert_eq!(names(&p), ["stop_cell", "stop_cell", "stop_cell"]);
    assert!(p.actions.iter().any(|a| matches!(a.reason, Reason::ChannelDisabled { .. })));
    assert_eq!(p.actions.iter().filter(|a| a.reason == Reason::ChannelRemoved).count(), 2);
    assert_eq!(p.report.observers_to_stop, 3);
}

#[test]
fn a_dead_observer_of_an_offline_channel_is_buried_unless_its_recording_is_open() {
    let p = plan(&observed(vec![channel(1, false)], vec![observer(10, 1, 300)]), &policy(), now());
    assert_eq!(names(&p), ["mark_dead"]);
    let mut open = channel(1, false);
    open.open_recording = Some(7);
    let p = plan(&observed(vec![open.clone()], vec![observer(10, 1, 300)]), &policy(), now());
    assert_eq!(names(&p), ["replace_observer"], "an open recording must be finished by a replacement");
    let p = plan(&observed(vec![open], vec![]), &policy(), now());
    assert_eq!(names(&p), ["start_observer"]);
    assert!(matches!(p.actions[0].reason, Reason::LeftOpen { .. }), "{}", p.actions[0].reason);
}

#[test]
fn max_observers_caps_starts_and_replacements_go_first() {
    let mut pol = policy();
    pol.max_observers = 2;
    let channels = vec![channel(1, true), channel(2, true), channel(3, true), channel(4, true)];
    // ch1 healthy, ch2 stale (replacement), ch3 and ch4 new.
    let cells = vec![observer(10, 1, 5), observer(20, 2, 500)];
    let p = plan(&observed(channels, cells), &pol, now());
    assert_eq!(names(&p), ["replace_observer"]);
    assert_eq!(p.report.skipped.len(), 2);
    assert!(
        matches!(p.report.skipped[0].reason, Reason::MaxObservers { max: 2, .. }),
        "{}",
        p.report.skipped[0].reason
    );
}

#[test]
fn the_harvest_pool_scales_up_at_once_and_never_above_max() {
    let mut o = observed(vec![], vec![harvest(1, 2)]);
    o.queue.ready = 10;
    let p = plan(&o, &policy(), now());
    assert_eq!(p.report.harvest_want, 3);
    assert_eq!(names(&p), ["start_harvest", "start_harvest"]);
    o.queue.ready = 1000;
    let p = plan(&o, &policy(), now());
    assert_eq!(p.report.harvest_want, 8);
    assert_eq!(p.actions.len(), 7);
}

#[test]
fn min_harvest_keeps_cells_on_an_empty_queue() {
    let mut pol = policy();
    pol.min_harvest = 1;
    let p = plan(&observed(vec![], vec![]), &pol, now());
    assert_eq!(names(&p), ["start_harvest"]);
}

#[test]
fn the_pool_shrinks_only_after_the_stabilization_window_and_to_zero_after_the_cooldown() {
    let cells = vec![harvest(1, 0), harvest(2, 0), harvest(3, 0)];
    let mut o = observed(vec![], cells);
    // Inside the window a tick wanted 3: nothing stops.
    o.history = History { max_want_in_window: 3, last_busy_at: Some(now() - Ago::seconds(30)) };
    assert!(plan(&o, &policy(), now()).actions.is_empty());
    // Window passed but the queue was busy 30 s ago: keep one through the cooldown.
    o.history = History { max_want_in_window: 0, last_busy_at: Some(now() - Ago::seconds(30)) };
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["stop_cell", "stop_cell"]);
    assert_eq!(p.report.harvest_floor, 1);
    // Idle past the cooldown: down to zero.
    o.history = History { max_want_in_window: 0, last_busy_at: Some(now() - Ago::seconds(121)) };
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["stop_cell", "stop_cell", "stop_cell"]);
    assert!(matches!(p.actions[0].reason, Reason::IdleCooldown { .. }), "{}", p.actions[0].reason);
}

#[test]
fn scale_down_never_stops_a_busy_cell() {
    let o = observed(vec![], vec![harvest(1, 1), harvest(2, 0), harvest(3, 2)]);
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["stop_cell"]);
    assert!(matches!(p.actions[0].action, Action::StopCell { cell, .. } if cell == id(2)));
}

#[test]
fn a_harvest_cell_that_stopped_heartbeating_is_marked_dead_and_its_leases_rescued() {
    let mut stale = harvest(1, 1);
    stale.last_heartbeat = Some(now() - Ago::seconds(120));
    let mut o = observed(vec![], vec![stale]);
    o.queue.running = 1;
    o.queue.expired_leases = vec![ExpiredLease { job_id: 42, worker: Some(id(1).to_string()) }];
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["mark_dead", "rescue_leases"]);
    assert!(matches!(&p.actions[1].action, Action::RescueLeases { jobs } if jobs == &[42]));
}

/// Defect: after a Postgres outage longer than the lease, every busy harvest
/// cell was marked dead (and killed, with its other healthy jobs) because its
/// lease had expired. An expired lease requeues the job and nothing more; the
/// cell, which heartbeats, stops that job by itself.
#[test]
fn an_expired_lease_requeues_the_job_and_leaves_a_heartbeating_cell_alone() {
    let mut o = observed(vec![], vec![harvest(1, 2)]);
    o.queue.expired_leases = vec![ExpiredLease { job_id: 42, worker: Some(id(1).to_string()) }];
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["rescue_leases"]);
}

/// Defect: a cell that died at start waited out the whole start grace before
/// it was replaced, while its channel's segments left the source's window.
#[test]
fn a_cell_the_backend_reports_exited_is_replaced_at_once_grace_or_not() {
    let young = cell(1, CellKind::Observer, Some(1), 3, None);
    let mut o = observed(vec![channel(1, true)], vec![young.clone()]);
    o.instances.as_mut().unwrap()[0].running = false;
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["replace_observer"], "{:?}", p.actions);
    assert!(
        matches!(&p.actions[0].reason, Reason::Replace { why: Sickness::BackendExited { .. }, .. }),
        "{}",
        p.actions[0].reason
    );
    // A backend that lists at once (process, docker) and no longer shows it: gone too.
    let mut o = observed(vec![channel(1, true)], vec![young.clone()]);
    o.instances = Some(vec![]);
    o.lists_at_once = true;
    assert_eq!(names(&plan(&o, &policy(), now())), ["replace_observer"]);
    // ECS may not list a task it just started: that one gets the grace.
    o.lists_at_once = false;
    assert!(plan(&o, &policy(), now()).actions.is_empty());
}

/// Issue 24, finding 1: a replacement stopped the old observer at once,
/// although the old one, cut only from Postgres, was the only cell still
/// capturing; its replacement could not reach Postgres either, and the
/// source's window moved on in between. Make before break: the silent cell
/// keeps running (and uploading adoptable objects) until a replacement
/// holds the lease and has fetched, through any number of failed
/// replacements; only then is it stopped.
#[test]
fn a_silent_observer_keeps_running_until_its_replacement_has_fetched() {
    let old = observer(10, 1, 61);
    let p = plan(&observed(vec![channel(1, true)], vec![old.clone()]), &policy(), now());
    assert_eq!(names(&p), ["replace_observer"]);
    let Action::ReplaceObserver { old: replaced, stop_old, .. } = &p.actions[0].action else { unreachable!() };
    assert_eq!((*replaced, *stop_old), (id(10), false), "the silent cell must not be stopped by its replacement");

    // The replacement runs but has not fetched yet: nothing is stopped.
    let mut new = cell(11, CellKind::Observer, Some(1), 5, Some(1));
    new.caught_up = false;
    let p = plan(&observed(vec![channel(1, true)], vec![old.clone(), new.clone()]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.report.observers_handing_over, 1);
    let pending = &p.report.skipped[0].reason;
    assert_eq!(pending, &Reason::HandOverPending { old: id(10), why: silent(61), to: Some(id(11)) });
    assert!(pending.to_string().contains("keeps running"), "{pending}");

    // The replacement died before it fetched (it could not reach Postgres
    // either): it is buried and replaced again, and the old one still runs.
    let mut o = observed(vec![channel(1, true)], vec![old.clone(), new.clone()]);
    o.instances.as_mut().unwrap()[1].running = false;
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["replace_observer"], "{:?}", p.actions);
    let Action::ReplaceObserver { old: replaced, stop_old, .. } = &p.actions[0].action else { unreachable!() };
    assert_eq!((*replaced, *stop_old), (id(11), true), "the exited replacement is buried");
    assert!(!p.actions.iter().any(|a| matches!(a.action, Action::MarkDead { cell, .. } if cell == id(10))));

    // The replacement has fetched: now the old one is stopped.
    new.caught_up = true;
    let p = plan(&observed(vec![channel(1, true)], vec![old, new]), &policy(), now());
    assert_eq!(names(&p), ["mark_dead"]);
    assert!(matches!(p.actions[0].action, Action::MarkDead { cell, .. } if cell == id(10)));
    assert_eq!(p.actions[0].reason, Reason::unhealthy_and(silent(61), Reason::HandedOver { to: id(11) }));
}

/// A cell its backend reports gone is not capturing: its replacement
/// buries it at once, as before.
#[test]
fn an_observer_that_is_gone_is_buried_by_its_replacement() {
    let mut o = observed(vec![channel(1, true)], vec![observer(10, 1, 61)]);
    o.instances = Some(vec![]);
    let p = plan(&o, &policy(), now());
    let Action::ReplaceObserver { stop_old, .. } = &p.actions[0].action else { unreachable!() };
    assert!(*stop_old);
    // And a silent observer of a channel that is offline with nothing open is buried.
    let p = plan(&observed(vec![channel(1, false)], vec![observer(10, 1, 61)]), &policy(), now());
    assert_eq!(names(&p), ["mark_dead"]);
}

/// Issue 24, finding 3: an observer finalized a recording after
/// `EXT-X-ENDLIST`, and the next tick started a second observer for the
/// same channel on a probe made before that end; a source that keeps its
/// final playlist up was recorded twice. No start until a newer probe.
#[test]
fn a_probe_older_than_the_last_end_starts_nothing() {
    let mut ch = channel(1, true);
    ch.probed_at = Some(now() - Ago::seconds(20));
    ch.last_ended_at = Some(now() - Ago::seconds(1));
    let p = plan(&observed(vec![ch.clone()], vec![]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.report.live_channels, 0);
    assert!(matches!(&p.report.skipped[0].reason, Reason::ProbePredatesEnd { login, .. } if login == "ch1"));
    // A probe newer than the end that still says live: a new broadcast.
    ch.probed_at = Some(now());
    assert_eq!(names(&plan(&observed(vec![ch.clone()], vec![]), &policy(), now())), ["start_observer"]);
    // A recording left open is finished whatever the probe says.
    ch.probed_at = Some(now() - Ago::seconds(20));
    ch.open_recording = Some(7);
    assert_eq!(names(&plan(&observed(vec![ch], vec![]), &policy(), now())), ["start_observer"]);
}

fn silent(secs: u64) -> Sickness {
    Sickness::Silent {
        silent: std::time::Duration::from_secs(secs),
        timeout: std::time::Duration::from_secs(60),
        since_restart: false,
    }
}

/// Defect: a failing start was tried again on every tick, with no backoff.
#[test]
fn a_start_that_keeps_failing_backs_off_and_says_until_when() {
    let mut ch = channel(1, true);
    ch.start_failures = 3;
    ch.start_retry_at = Some(now() + Ago::seconds(30));
    let p = plan(&observed(vec![ch.clone()], vec![]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.report.skipped[0].subject, "channel ch1");
    assert!(
        matches!(p.report.skipped[0].reason, Reason::BackingOff { failures: 3, .. }),
        "{}",
        p.report.skipped[0].reason
    );
    assert!(p.report.skipped[0].reason.to_string().starts_with("backing off after 3 failed start(s); next try at"));
    // When the backoff has passed, it is tried again.
    ch.start_retry_at = Some(now() - Ago::seconds(1));
    assert_eq!(names(&plan(&observed(vec![ch.clone()], vec![]), &policy(), now())), ["start_observer"]);
    // A dead observer is buried while its replacement waits; a silent one
    // may still be capturing, so it keeps running meanwhile.
    ch.start_retry_at = Some(now() + Ago::seconds(30));
    let mut o = observed(vec![ch.clone()], vec![observer(1, 1, 300)]);
    o.instances = Some(vec![]);
    assert_eq!(names(&plan(&o, &policy(), now())), ["mark_dead"]);
    let p = plan(&observed(vec![ch], vec![observer(1, 1, 300)]), &policy(), now());
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.report.skipped.iter().any(|s| matches!(s.reason, Reason::HandOverPending { .. })));
    // The harvest pool backs off the same way.
    let mut o = observed(vec![], vec![]);
    o.queue.ready = 5;
    (o.harvest_start_failures, o.harvest_retry_at) = (2, Some(now() + Ago::seconds(20)));
    let p = plan(&o, &policy(), now());
    assert!(!names(&p).contains(&"start_harvest"), "{:?}", p.actions);
    assert_eq!(p.report.skipped[0].subject, "harvest pool");
    let base = std::time::Duration::from_secs(10);
    assert_eq!(colony_planner::start_backoff(base, 1), std::time::Duration::from_secs(10));
    assert_eq!(colony_planner::start_backoff(base, 3), std::time::Duration::from_secs(40));
    assert_eq!(colony_planner::start_backoff(base, 30), std::time::Duration::from_secs(600));
}

#[test]
fn orphans_are_reaped_and_nothing_is_judged_when_the_backend_could_not_be_listed() {
    let mut o = observed(vec![channel(1, true)], vec![observer(10, 1, 5)]);
    o.instances.as_mut().unwrap().extend([
        Instance {
            backend_ref: "c-unknown".into(),
            cell_id: Some(id(77)),
            kind: Some(CellKind::Harvest),
            running: true,
        },
        Instance { backend_ref: "c-nolabel".into(), cell_id: None, kind: None, running: true },
        Instance { backend_ref: "c-exited".into(), cell_id: Some(id(78)), kind: None, running: false },
    ]);
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["reap_orphan", "reap_orphan", "reap_orphan"]);
    o.instances = None;
    assert!(plan(&o, &policy(), now()).actions.is_empty());
}

#[test]
fn cells_that_joined_by_themselves_are_never_scaled_down() {
    let mut manual = harvest(1, 0);
    manual.backend = "manual".into();
    let o = observed(vec![], vec![manual]);
    assert!(plan(&o, &policy(), now()).actions.is_empty());
}

// ---- properties -----------------------------------------------------------

/// Carry a plan out the way a tick would, in memory.
fn apply(o: &Observed, p: &Plan, t: DateTime<Utc>) -> Observed {
    let mut next = o.clone();
    let mut n = 1_000_000u128;
    let mut fresh = |kind, channel| {
        n += 1;
        CellView {
            id: Uuid::from_u128(n),
            kind,
            backend: o.backend.clone(),
            backend_ref: Some(format!("new-{n}")),
            channel_id: channel,
            state: ActiveState::Starting,
            started_at: t,
            last_heartbeat: None,
            running_jobs: 0,
            caught_up: false,
        }
    };
    let remove = |next: &mut Observed, cell: Uuid| {
        next.cells.retain(|c| c.id != cell);
        if let Some(i) = next.instances.as_mut() {
            i.retain(|i| i.cell_id != Some(cell));
        }
    };
    for planned in &p.actions {
        match &planned.action {
            Action::StartObserver { channel_id, .. } | Action::ReplaceObserver { channel_id, .. } => {
                if let Action::ReplaceObserver { old, stop_old: true, .. } = &planned.action {
                    remove(&mut next, *old);
                }
                let c = fresh(CellKind::Observer, Some(*channel_id));
                if let Some(i) = next.instances.as_mut() {
                    i.push(Instance {
                        backend_ref: c.backend_ref.clone().unwrap(),
                        cell_id: Some(c.id),
                        kind: Some(c.kind),
                        running: true,
                    });
                }
                let ch = next.channels.iter_mut().find(|ch| ch.id == *channel_id).unwrap();
                ch.open_recording.get_or_insert(1);
                next.cells.push(c);
            }
            Action::StopCell { cell, .. } => {
                next.cells.iter_mut().filter(|c| c.id == *cell).for_each(|c| c.state = ActiveState::Stopping)
            }
            Action::MarkDead { cell, .. } => remove(&mut next, *cell),
            Action::StartHarvest => {
                let c = fresh(CellKind::Harvest, None);
                if let Some(i) = next.instances.as_mut() {
                    i.push(Instance {
                        backend_ref: c.backend_ref.clone().unwrap(),
                        cell_id: Some(c.id),
                        kind: Some(c.kind),
                        running: true,
                    });
                }
                next.cells.push(c);
            }
            Action::RescueLeases { .. } => next.queue.expired_leases.clear(),
            Action::ReapOrphan { backend_ref, .. } => {
                next.instances.as_mut().unwrap().retain(|i| &i.backend_ref != backend_ref)
            }
        }
    }
    next.history.max_want_in_window = next.history.max_want_in_window.max(p.report.harvest_want);
    if p.report.queue_busy {
        next.history.last_busy_at = Some(t);
    }
    next
}

fn healthy_observers(p: &Plan) -> u32 {
    p.report.observers_healthy
}

prop_compose! {
    fn arb_policy()(min in 0u32..4, extra in 0u32..6, jpc in 1u32..6, max_obs in 0u32..12) -> Policy {
        Policy { min_harvest: min, max_harvest: min + extra, jobs_per_harvest_cell: jpc, max_observers: max_obs, ..policy() }
    }
}

prop_compose! {
    fn arb_observed()(
        chans in prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 0..10),
        obs in prop::collection::vec((0usize..12, 0i64..200, any::<bool>(), any::<bool>()), 0..12),
        harv in prop::collection::vec((0u32..3, 0i64..200, any::<bool>(), any::<bool>()), 0..10),
        ready in 0u64..60,
        running in 0u64..10,
        window in 0u32..10,
        busy_ago in prop::option::of(0i64..400),
        listed in any::<bool>(),
        orphans in 0usize..3,
    ) -> Observed {
        let channels: Vec<ChannelView> = chans.iter().enumerate().map(|(i, (live, enabled, open))| {
            let mut c = channel(i as i64 + 1, *live);
            c.enabled = *enabled;
            c.open_recording = open.then_some(i as i64 + 100);
            c
        }).collect();
        let mut cells = Vec::new();
        let mut instances = Vec::new();
        for (i, (ch, beat, stopping, gone)) in obs.iter().enumerate() {
            let mut c = observer(i as u128 + 1, *ch as i64 + 1, *beat);
            if *stopping { c.state = ActiveState::Stopping; }
            if !gone { instances.push(Instance { backend_ref: c.backend_ref.clone().unwrap(), cell_id: Some(c.id), kind: Some(c.kind), running: true }); }
            cells.push(c);
        }
        for (i, (jobs, beat, stopping, gone)) in harv.iter().enumerate() {
            let mut c = harvest(i as u128 + 500, *jobs);
            c.last_heartbeat = Some(now() - Ago::seconds(*beat));
            if *stopping { c.state = ActiveState::Stopping; }
            if !gone { instances.push(Instance { backend_ref: c.backend_ref.clone().unwrap(), cell_id: Some(c.id), kind: Some(c.kind), running: true }); }
            cells.push(c);
        }
        for k in 0..orphans {
            instances.push(Instance { backend_ref: format!("orphan-{k}"), cell_id: Some(Uuid::from_u128(9000 + k as u128)), kind: None, running: k % 2 == 0 });
        }
        Observed {
            backend: "process".into(),
            channels,
            cells,
            instances: listed.then_some(instances),
            queue: QueueView { ready, running, ..Default::default() },
            history: History { max_want_in_window: window, last_busy_at: busy_ago.map(|s| now() - Ago::seconds(s)) },
            ..Default::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_harvest_pool_never_grows_above_max(o in arb_observed(), pol in arb_policy()) {
        let p = plan(&o, &pol, now());
        let starts = p.actions.iter().filter(|a| a.action == Action::StartHarvest).count() as u32;
        prop_assert!(starts == 0 || p.report.harvest_running + starts <= pol.max_harvest,
            "running {} + starts {starts} > max {}", p.report.harvest_running, pol.max_harvest);
    }

    #[test]
    fn observers_never_grow_above_max(o in arb_observed(), pol in arb_policy()) {
        let p = plan(&o, &pol, now());
        let new = p.actions.iter().filter(|a| matches!(a.action, Action::StartObserver { .. } | Action::ReplaceObserver { .. })).count() as u32;
        prop_assert!(new == 0 || healthy_observers(&p) + new <= pol.max_observers);
    }

    #[test]
    fn replanning_after_applying_a_plan_gives_no_actions(o in arb_observed(), pol in arb_policy()) {
        let first = plan(&o, &pol, now());
        let applied = apply(&o, &first, now());
        let second = plan(&applied, &pol, now());
        prop_assert!(second.actions.is_empty(), "first: {:#?}\nsecond: {:#?}", first.actions, second.actions);
    }

    #[test]
    fn every_live_channel_ends_with_exactly_one_observer(o in arb_observed(), mut pol in arb_policy()) {
        pol.max_observers = 1000;
        let applied = apply(&o, &plan(&o, &pol, now()), now());
        // Silent observers left running until their replacement has fetched
        // are not counted: they are fenced out and on their way.
        let silent = |c: &CellView| c.last_heartbeat.is_some_and(|b| now() - b > Ago::seconds(60));
        for ch in applied.channels.iter().filter(|c| c.live && c.enabled) {
            let observers = applied.cells.iter()
                .filter(|c| c.kind == CellKind::Observer && c.channel_id == Some(ch.id) && c.state != ActiveState::Stopping && !silent(c))
                .count();
            prop_assert_eq!(observers, 1, "channel {} has {} observers", ch.id, observers);
        }
    }
}

/// After a Postgres restart every heartbeat is old: nobody could write one
/// while it was down. Silence is counted from when Postgres came back, so
/// an outage longer than the heartbeat timeout kills no healthy cell; a cell
/// that stays silent after it is replaced all the same.
#[test]
fn heartbeats_are_judged_only_over_the_time_postgres_was_up() {
    let quiet = || observed(vec![channel(1, true)], vec![observer(10, 1, 120)]);
    let mut o = quiet();
    o.database_up_since = Some(now() - Ago::seconds(20));
    let p = plan(&o, &policy(), now());
    assert!(p.actions.is_empty(), "replaced a cell that could not heartbeat: {:?}", p.actions);
    o.database_up_since = Some(now() - Ago::seconds(75));
    let p = plan(&o, &policy(), now());
    assert_eq!(names(&p), ["replace_observer"]);
    assert!(
        matches!(&p.actions[0].reason, Reason::Replace { why: Sickness::Silent { since_restart: true, .. }, .. }),
        "{}",
        p.actions[0].reason
    );
    // A restart before its last heartbeat changes nothing.
    let mut o = quiet();
    o.database_up_since = Some(now() - Ago::days(3));
    assert_eq!(names(&plan(&o, &policy(), now())), ["replace_observer"]);
}
