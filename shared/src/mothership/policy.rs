//! The operator's knobs for the reconcile loop, parsed from flags and the
//! environment once, then validated into a [`Policy`] the planner trusts.

use std::time::Duration;

/// How the mothership sizes and heals the colony.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Policy {
    /// A cell whose last heartbeat is older than this is replaced (observer)
    /// or declared dead (harvest).
    pub heartbeat_timeout: Duration,
    /// How long a new cell may take to send its first heartbeat.
    pub start_grace: Duration,
    /// Ready jobs one harvest cell is expected to take.
    pub jobs_per_harvest_cell: u32,
    pub min_harvest: u32,
    pub max_harvest: u32,
    /// Scale down only to the highest pool size wanted over this window.
    pub scale_down_window: Duration,
    /// Keep at least one harvest cell until the queue has been idle this long.
    pub idle_cooldown: Duration,
    /// At most this many observers at once; live channels past it wait.
    pub max_observers: u32,
    /// The wait after the first failed start of a channel's observer (or of
    /// a harvest cell); it doubles with each failure in a row, to 10 minutes.
    pub start_backoff: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(60),
            start_grace: Duration::from_secs(90),
            jobs_per_harvest_cell: 4,
            min_harvest: 0,
            max_harvest: 8,
            scale_down_window: Duration::from_secs(300),
            idle_cooldown: Duration::from_secs(120),
            max_observers: 100,
            start_backoff: Duration::from_secs(10),
        }
    }
}

/// The policy as flags (each with its environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Replace an observer (or declare a harvest cell dead) after this long without a heartbeat.
    #[arg(long, env = "COLONY_HEARTBEAT_TIMEOUT", default_value = "60s", value_name = "DURATION")]
    pub heartbeat_timeout: humantime::Duration,
    /// How long a new cell may take to send its first heartbeat.
    #[arg(long, env = "COLONY_START_GRACE", default_value = "90s", value_name = "DURATION")]
    pub start_grace: humantime::Duration,
    /// Ready jobs per harvest cell: the pool wants ceil(ready / this) cells.
    #[arg(long, env = "COLONY_JOBS_PER_HARVEST_CELL", default_value_t = 4, value_name = "N")]
    pub jobs_per_harvest_cell: u32,
    /// Fewest harvest cells to keep, even with an empty queue.
    #[arg(long, env = "COLONY_MIN_HARVEST", default_value_t = 0, value_name = "N")]
    pub min_harvest: u32,
    /// Most harvest cells at once.
    #[arg(long, env = "COLONY_MAX_HARVEST", default_value_t = 8, value_name = "N")]
    pub max_harvest: u32,
    /// Scale the harvest pool down only to the largest size wanted over this window.
    #[arg(long, env = "COLONY_SCALE_DOWN_WINDOW", default_value = "5m", value_name = "DURATION")]
    pub scale_down_window: humantime::Duration,
    /// Keep one harvest cell until the queue has been idle this long.
    #[arg(long, env = "COLONY_IDLE_COOLDOWN", default_value = "2m", value_name = "DURATION")]
    pub idle_cooldown: humantime::Duration,
    /// Most observer cells at once (live channels past it wait for a free slot).
    #[arg(long, env = "COLONY_MAX_OBSERVERS", default_value_t = 100, value_name = "N")]
    pub max_observers: u32,
    /// After a start fails, wait this long before the next; the wait doubles
    /// with each failure in a row, up to 10 minutes.
    #[arg(long, env = "COLONY_START_BACKOFF", default_value = "10s", value_name = "DURATION")]
    pub start_backoff: humantime::Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("--min-harvest ({min}) is above --max-harvest ({max}); lower the minimum or raise the maximum")]
    MinAboveMax { min: u32, max: u32 },
    #[error("--jobs-per-harvest-cell must be at least 1")]
    ZeroJobsPerCell,
    #[error("--heartbeat-timeout must be longer than zero")]
    ZeroHeartbeatTimeout,
}

impl PolicyArgs {
    pub fn validate(&self) -> Result<Policy, PolicyError> {
        if self.min_harvest > self.max_harvest {
            return Err(PolicyError::MinAboveMax { min: self.min_harvest, max: self.max_harvest });
        }
        if self.jobs_per_harvest_cell == 0 {
            return Err(PolicyError::ZeroJobsPerCell);
        }
        if Duration::from(self.heartbeat_timeout).is_zero() {
            return Err(PolicyError::ZeroHeartbeatTimeout);
        }
        Ok(Policy {
            heartbeat_timeout: self.heartbeat_timeout.into(),
            start_grace: self.start_grace.into(),
            jobs_per_harvest_cell: self.jobs_per_harvest_cell,
            min_harvest: self.min_harvest,
            max_harvest: self.max_harvest,
            scale_down_window: self.scale_down_window.into(),
            idle_cooldown: self.idle_cooldown.into(),
            max_observers: self.max_observers,
            start_backoff: self.start_backoff.into(),
        })
    }
}
