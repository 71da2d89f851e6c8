//! The operator's knobs for the reconcile loop, validated into a [`Policy`]
//! the planner trusts. The mothership parses them from flags and the
//! environment (`PolicyArgs`).

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

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("--min-harvest ({min}) is above --max-harvest ({max}); lower the minimum or raise the maximum")]
    MinAboveMax { min: u32, max: u32 },
    #[error("--jobs-per-harvest-cell must be at least 1")]
    ZeroJobsPerCell,
    #[error("--heartbeat-timeout must be longer than zero")]
    ZeroHeartbeatTimeout,
}

impl Policy {
    /// The policy if its knobs agree with each other.
    pub fn validate(self) -> Result<Policy, PolicyError> {
        if self.min_harvest > self.max_harvest {
            return Err(PolicyError::MinAboveMax { min: self.min_harvest, max: self.max_harvest });
        }
        if self.jobs_per_harvest_cell == 0 {
            return Err(PolicyError::ZeroJobsPerCell);
        }
        if self.heartbeat_timeout.is_zero() {
            return Err(PolicyError::ZeroHeartbeatTimeout);
        }
        Ok(self)
    }
}

/// Knobs that disagree are the operator's to fix.
impl colony_vocab::exit::Classify for PolicyError {
    fn class(&self) -> colony_vocab::exit::ErrorClass {
        colony_vocab::exit::ErrorClass::Config
    }
}
