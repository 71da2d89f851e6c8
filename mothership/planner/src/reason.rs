//! Why the planner proposes an action, or skips one: typed, so tests and
//! code compare variants, and printed (in `mothership decisions`, the tick
//! report and the `ticks` table) as the sentence an operator reads.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use uuid::Uuid;

/// Why a cell counts as dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sickness {
    /// Its launcher lists it as exited.
    BackendExited { backend: String },
    /// Its launcher lists it no more.
    BackendLostIt { backend: String },
    /// Its last heartbeat is older than the timeout. With `since_restart`,
    /// the silence is counted from when Postgres came back.
    Silent { silent: Duration, timeout: Duration, since_restart: bool },
    /// It never sent a heartbeat within the start grace.
    NoFirstHeartbeat { after: Duration, grace: Duration },
}

impl Sickness {
    /// The cell may still be fetching and uploading: it only stopped
    /// answering Postgres (a partition, a half-open connection, a pause).
    /// One its backend reports gone, or that never had its lease, is not.
    pub fn may_be_capturing(&self) -> bool {
        matches!(self, Sickness::Silent { .. })
    }
}

impl fmt::Display for Sickness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = humantime::format_duration;
        match self {
            Sickness::BackendExited { backend } => write!(f, "its {backend} backend reports it exited"),
            Sickness::BackendLostIt { backend } => write!(f, "its {backend} backend no longer runs it"),
            Sickness::Silent { silent, timeout, since_restart: true } => {
                write!(f, "no heartbeat in the {} since Postgres came back (timeout {})", d(*silent), d(*timeout))
            }
            Sickness::Silent { silent, timeout, since_restart: false } => {
                write!(f, "no heartbeat for {} (timeout {})", d(*silent), d(*timeout))
            }
            Sickness::NoFirstHeartbeat { after, grace } => {
                write!(f, "no first heartbeat {} after start (grace {})", d(*after), d(*grace))
            }
        }
    }
}

/// Why an action is planned, or a step waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A live channel has no observer.
    LiveWithoutObserver {
        login: String,
    },
    /// A dead cell left a recording open; an observer will finish it.
    LeftOpen {
        recording: i64,
        login: String,
    },
    /// A channel has more than one healthy observer; the newest stays.
    DuplicateObserver {
        login: String,
        keep: Uuid,
    },
    ChannelRemoved,
    ChannelDisabled {
        login: String,
    },
    /// The cell is dead, and (`and`) what else holds for it.
    Unhealthy {
        why: Sickness,
        and: Option<Box<Reason>>,
    },
    /// A stopping cell stopped answering too.
    StoppingAndUnhealthy(Sickness),
    /// Said of a dead observer whose channel is offline: no replacement.
    ChannelOffline {
        login: String,
    },
    /// Said of a dead observer that a newer one supersedes.
    Superseded,
    /// Said of a dead observer whose replacement waits for the start backoff.
    ReplacementWaits,
    /// Said of a silent observer whose replacement `to` holds the lease and
    /// has fetched: the hand-over is made, the old cell may stop.
    HandedOver {
        to: Uuid,
    },
    /// A silent observer is left running: it may be the only one still
    /// capturing, and its replacement (`to`, if started) has not fetched yet.
    HandOverPending {
        old: Uuid,
        why: Sickness,
        to: Option<Uuid>,
    },
    /// The probe that says live predates the end of the channel's last
    /// recording: no start until a newer probe.
    ProbePredatesEnd {
        login: String,
        ended: DateTime<Utc>,
    },
    /// A dead observer is replaced; the replacement continues the recording.
    Replace {
        old: Uuid,
        why: Sickness,
    },
    /// The last starts failed; the next waits until `retry_at`.
    BackingOff {
        failures: u32,
        retry_at: DateTime<Utc>,
    },
    /// `--max-observers` reached: a replacement (or a start) waits.
    MaxObservers {
        max: u32,
        replacement: bool,
    },
    /// The queue wants more harvest cells.
    HarvestWanted {
        ready: u64,
        want: u32,
        per_cell: u32,
        min: u32,
        max: u32,
        running: u32,
    },
    /// An idle harvest cell goes: the queue was idle for the cooldown.
    IdleCooldown {
        cooldown: Duration,
    },
    /// An idle harvest cell goes: the pool may shrink to `floor`.
    IdleWindow {
        floor: u32,
        window: Duration,
    },
    /// Jobs whose worker stopped renewing their lease go back to the queue.
    LeaseExpired,
    /// Something with this colony's labels but no readable cell id.
    OrphanWithoutId,
    /// A running instance of a cell the database does not count as active.
    OrphanInactive {
        cell: Uuid,
    },
    /// What is left of a finished cell.
    OrphanFinished {
        cell: Uuid,
    },
}

impl Reason {
    /// The cell is dead, and nothing else needs saying.
    pub fn unhealthy(why: Sickness) -> Self {
        Reason::Unhealthy { why, and: None }
    }

    /// The cell is dead, and `and` holds too.
    pub fn unhealthy_and(why: Sickness, and: Reason) -> Self {
        Reason::Unhealthy { why, and: Some(Box::new(and)) }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = humantime::format_duration;
        match self {
            Reason::LiveWithoutObserver { login } => write!(f, "channel {login} is live with no observer"),
            Reason::LeftOpen { recording, login } => write!(
                f,
                "recording {recording} of channel {login} was left open by a dead cell; an observer will finish it"
            ),
            Reason::DuplicateObserver { login, keep } => write!(f, "channel {login} already has observer {keep}"),
            Reason::ChannelRemoved => f.write_str("its channel was removed"),
            Reason::ChannelDisabled { login } => write!(f, "channel {login} is disabled"),
            Reason::Unhealthy { why, and: None } => write!(f, "{why}"),
            Reason::Unhealthy { why, and: Some(and) } => write!(f, "{why}; {and}"),
            Reason::StoppingAndUnhealthy(why) => write!(f, "it was stopping and {why}"),
            Reason::ChannelOffline { login } => write!(f, "channel {login} is offline"),
            Reason::Superseded => f.write_str("superseded"),
            Reason::ReplacementWaits => f.write_str("its replacement waits"),
            Reason::HandedOver { to } => write!(f, "its replacement {to} holds the lease and has fetched"),
            Reason::HandOverPending { old, why, to: Some(to) } => write!(
                f,
                "observer {old} {why}; it keeps running, as it may still be capturing, until its replacement {to} has fetched"
            ),
            Reason::HandOverPending { old, why, to: None } => write!(
                f,
                "observer {old} {why}; it keeps running, as it may still be capturing, until a replacement has fetched"
            ),
            Reason::ProbePredatesEnd { login, ended } => write!(
                f,
                "channel {login}'s last recording ended at {}, after the probe that says live; waiting for a newer probe",
                ended.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Reason::Replace { old, why } => {
                write!(f, "observer {old} {why}; the replacement continues the same recording")
            }
            Reason::BackingOff { failures, retry_at } => write!(
                f,
                "backing off after {failures} failed start(s); next try at {}",
                retry_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Reason::MaxObservers { max, replacement: true } => {
                write!(f, "replacement waits: max observers ({max}) reached")
            }
            Reason::MaxObservers { max, replacement: false } => write!(f, "not started: max observers ({max}) reached"),
            Reason::HarvestWanted { ready, want, per_cell, min, max, running } => write!(
                f,
                "{ready} ready job(s) want {want} harvest cell(s) at {per_cell} per cell (min {min}, max {max}); {running} running"
            ),
            Reason::IdleCooldown { cooldown } => {
                write!(f, "idle; the queue has been idle for the cooldown ({})", d(*cooldown))
            }
            Reason::IdleWindow { floor, window } => {
                write!(f, "idle; the pool may shrink to {floor} (largest want over the last {})", d(*window))
            }
            Reason::LeaseExpired => f.write_str("their lease expired: the worker stopped renewing it"),
            Reason::OrphanWithoutId => f.write_str("it carries this colony's labels but no readable cell id"),
            Reason::OrphanInactive { cell } => {
                write!(f, "cell {cell} is not active in the database (exited, dead or unknown)")
            }
            Reason::OrphanFinished { cell } => write!(f, "cell {cell} has finished; removing what is left of it"),
        }
    }
}

/// Stored and shown as its sentence.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
