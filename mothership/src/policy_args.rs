//! The policy as flags and environment variables, parsed once at the
//! boundary and validated into the planner's [`Policy`].

use colony_planner::policy::{Policy, PolicyError};

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

impl PolicyArgs {
    pub fn validate(&self) -> Result<Policy, PolicyError> {
        Policy {
            heartbeat_timeout: self.heartbeat_timeout.into(),
            start_grace: self.start_grace.into(),
            jobs_per_harvest_cell: self.jobs_per_harvest_cell,
            min_harvest: self.min_harvest,
            max_harvest: self.max_harvest,
            scale_down_window: self.scale_down_window.into(),
            idle_cooldown: self.idle_cooldown.into(),
            max_observers: self.max_observers,
            start_backoff: self.start_backoff.into(),
        }
        .validate()
    }
}
