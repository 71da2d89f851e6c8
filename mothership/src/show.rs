//! Printing: readable tables for people, JSON (`--json`) for scripts.

use crate::platform_api::Detection;
use crate::tick::TickReport;
use crate::views::{CellStatus, ChannelStatus, Decision, JobRow};
use chrono::{DateTime, Utc};
use colony::queue::KindStats;
use comfy_table::Table;
use comfy_table::presets::ASCII_NO_BORDERS;
use indicatif::{ProgressBar, ProgressStyle};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(ASCII_NO_BORDERS).set_header(header.to_vec());
    t
}

fn json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("serializable"));
}

/// "12s ago", "3m ago", or "never".
fn ago(at: Option<DateTime<Utc>>) -> String {
    match at {
        None => "never".into(),
        Some(at) => {
            let secs = (Utc::now() - at).num_seconds().max(0) as u64;
            format!("{} ago", humantime::format_duration(std::time::Duration::from_secs(secs)))
        }
    }
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

pub fn busy(as_json: bool) {
    if as_json {
        println!("{}", serde_json::json!({ "skipped": true, "reason": "another tick holds the lock" }));
    } else {
        println!("another tick is running (it holds the lock); nothing to do");
    }
}

pub fn tick(r: &TickReport, as_json: bool) {
    if as_json {
        println!("{}", serde_json::to_string(r).expect("serializable"));
        return;
    }
    println!("tick {} ({} launcher) took {} ms", short(&r.tick_id), r.launcher, r.took_ms);
    println!(
        "  channels:  {} live; probed {} ({} live, {} errors)",
        r.live_channels, r.probes.probed, r.probes.live, r.probes.errors
    );
    println!(
        "  observers: {} healthy, {} handing over; started {}, replaced {}, stopped {}",
        r.observers_healthy,
        r.plan.observers_handing_over,
        r.observers_started,
        r.observers_replaced,
        r.observers_stopped
    );
    println!(
        "  harvest:   want {}, running {}; started {}, stopped {} (may shrink to {})",
        r.harvest_wanted, r.harvest_running, r.harvest_started, r.harvest_stopped, r.plan.harvest_floor
    );
    println!(
        "  jobs:      {} ready, {} running, {} delayed, {} dead; {} lease(s) rescued",
        r.jobs_ready, r.jobs_running, r.jobs_delayed, r.jobs_dead, r.leases_rescued
    );
    println!("  cells:     {} marked dead, {} orphan(s) reaped", r.cells_marked_dead, r.orphans_reaped);
    if !r.backend_listed {
        println!("  warning:   the {} backend could not be listed; see the log", r.launcher);
    }
    for a in &r.actions {
        let error = a.outcome.error().map(|e| format!(" [{e}]")).unwrap_or_default();
        println!("  {:<7} {:<16} {}: {}{error}", a.outcome.carried(), a.action, a.subject, a.reason);
    }
    for s in &r.plan.skipped {
        println!("  waiting {}: {}", s.subject, s.reason);
    }
}

pub fn channels(rows: &[ChannelStatus], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    let mut t = table(&["ID", "CHANNEL", "ENABLED", "LIVE", "OBSERVER", "HEARTBEAT", "RECORDING", "SEGMENTS", "PROBE"]);
    for c in rows {
        t.add_row(vec![
            c.id.to_string(),
            c.login.clone(),
            if c.enabled { "yes" } else { "no" }.into(),
            if c.live { "live" } else { "-" }.into(),
            match (c.observer, c.start_retry_at) {
                (Some(o), _) => format!("{} {}", short(&o), c.observer_state.as_deref().unwrap_or("")),
                (None, Some(at)) if c.start_failures > 0 => {
                    format!("{} failed start(s); next try {}", c.start_failures, at.format("%H:%M:%S"))
                }
                (None, _) => "-".into(),
            },
            c.observer.map(|_| ago(c.last_heartbeat)).unwrap_or("-".into()),
            c.recording.map(|r| format!("{r} {}", c.recording_state.as_deref().unwrap_or(""))).unwrap_or("-".into()),
            c.segments.map(|s| s.to_string()).unwrap_or("-".into()),
            match (&c.probe_error, c.probed_at) {
                (Some(e), _) => format!("error: {}", e.chars().take(60).collect::<String>()),
                (None, at) => ago(at),
            },
        ]);
    }
    println!("{t}");
}

pub fn cells(rows: &[CellStatus], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    let mut t = table(&["CELL", "KIND", "STATE", "BACKEND", "REF", "CHANNEL", "JOBS", "HEARTBEAT", "STARTED"]);
    for c in rows {
        let backend_ref =
            c.backend_ref.as_deref().map(|r| r.rsplit('/').next().unwrap_or(r).chars().take(12).collect());
        t.add_row(vec![
            short(&c.id),
            c.kind.clone(),
            match c.exit_code {
                Some(code) => format!("{} ({code})", c.state),
                None => c.state.clone(),
            },
            c.backend.clone(),
            backend_ref.unwrap_or("-".into()),
            c.channel.clone().unwrap_or("-".into()),
            c.running_jobs.to_string(),
            ago(c.last_heartbeat),
            ago(Some(c.started_at)),
        ]);
    }
    println!("{t}");
}

pub fn queue(stats: &[KindStats]) -> Table {
    let mut t = table(&["KIND", "READY", "RUNNING", "DELAYED", "DEAD", "OLDEST READY"]);
    for k in stats {
        t.add_row(vec![
            k.kind.clone(),
            k.ready.to_string(),
            k.running.to_string(),
            k.delayed.to_string(),
            k.dead.to_string(),
            k.oldest_ready_secs
                .map(|s| humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string())
                .unwrap_or("-".into()),
        ]);
    }
    t
}

pub fn status(
    channels_: &[ChannelStatus],
    cells_: &[CellStatus],
    stats: &[KindStats],
    detection: &[Detection],
    as_json: bool,
) {
    if as_json {
        return json(
            &serde_json::json!({ "channels": channels_, "cells": cells_, "queue": stats, "detection": detection }),
        );
    }
    let live = channels_.iter().filter(|c| c.live).count();
    println!("CHANNELS ({} total, {live} live)", channels_.len());
    channels(channels_, false);
    for d in detection {
        println!("{}: {} channel(s); {}", d.platform, d.channels, d.how);
    }
    println!("\nCELLS ({} active)", cells_.len());
    cells(cells_, false);
    println!("\nQUEUE");
    if stats.is_empty() {
        println!("empty");
    } else {
        println!("{}", queue(stats));
    }
}

pub fn decisions(rows: &[Decision], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    let mut t = table(&["AT", "TICK", "ACTION", "SUBJECT", "OUTCOME", "REASON"]);
    for d in rows {
        let outcome = match &d.error {
            Some(e) => format!("{}: {e}", d.outcome),
            None => d.outcome.clone(),
        };
        t.add_row(vec![
            d.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            short(&d.tick_id),
            d.action.clone(),
            d.subject.clone(),
            outcome,
            d.reason.clone(),
        ]);
    }
    println!("{t}");
}

pub fn jobs(rows: &[JobRow], as_json: bool) {
    if as_json {
        return json(&rows);
    }
    let mut t = table(&["ID", "KIND", "STATE", "ATTEMPT", "RUN AT", "WORKER", "LAST ERROR"]);
    for j in rows {
        t.add_row(vec![
            j.id.to_string(),
            j.kind.clone(),
            j.state.clone(),
            format!("{}/{}", j.attempt, j.max_attempts),
            j.run_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            j.attempted_by.as_deref().map(|w| w.chars().take(8).collect()).unwrap_or("-".into()),
            j.last_error.clone().unwrap_or_default().chars().take(80).collect(),
        ]);
    }
    println!("{t}");
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
/// A line that says what a step of unknown length is doing.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner().with_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}
