//! The harvest cell's settings: its flags and environment variables, and
//! the checks that turn them into what the worker uses (the kinds to claim,
//! each kind's timeout).

use std::time::Duration;

use colony::exit::{Classify, ErrorClass};
use colony::queue::{JobKind, KindFilter};

#[derive(Debug, Clone, clap::Args)]
pub struct HarvestArgs {
    /// Job kinds to take, comma-separated. Default: every kind this build runs.
    #[arg(long, env = "HARVEST_KINDS", value_delimiter = ',', value_name = "KINDS")]
    pub kinds: Vec<String>,

    /// Jobs run at once.
    #[arg(long, env = "HARVEST_CONCURRENCY", default_value_t = 2, value_name = "N")]
    pub concurrency: usize,

    /// Exit after this long with nothing to do.
    #[arg(long, env = "HARVEST_IDLE_EXIT", default_value = "2m", value_name = "DURATION")]
    pub idle_exit: humantime::Duration,

    /// Work until the queue has nothing ready, then exit.
    #[arg(long, env = "HARVEST_DRAIN")]
    pub drain: bool,

    /// Never leave for lack of work (--idle-exit does not apply); only
    /// SIGTERM ends the cell. The mothership starts cells this way when it
    /// keeps a minimum pool (COLONY_MIN_HARVEST), so none leaves only to be
    /// started again.
    #[arg(long, env = "HARVEST_STAY")]
    pub stay: bool,

    /// Lease length; heartbeats renew it every third of it, and a job whose
    /// lease could not be renewed for half of it is stopped.
    #[arg(long, env = "HARVEST_LEASE", default_value = "60s", value_name = "DURATION")]
    pub lease: colony::config::NonZeroDuration,

    /// On SIGTERM: how long running jobs may take before they are handed back.
    #[arg(long, env = "HARVEST_SHUTDOWN_DEADLINE", default_value = "30s", value_name = "DURATION")]
    pub shutdown_deadline: humantime::Duration,

    /// Longest wait between queue polls when no notification arrives.
    #[arg(long, env = "HARVEST_POLL", default_value = "5s", value_name = "DURATION")]
    pub poll: colony::config::NonZeroDuration,

    /// Segments a VOD download fetches at once.
    #[arg(long, env = "HARVEST_DOWNLOAD_CONCURRENCY", default_value_t = 8, value_name = "N")]
    pub download_concurrency: usize,

    /// Timeout for one HTTP request.
    #[arg(long, env = "HARVEST_FETCH_TIMEOUT", default_value = "30s", value_name = "DURATION")]
    pub fetch_timeout: humantime::Duration,

    /// A job running longer than this fails (and is retried with backoff).
    #[arg(long, env = "HARVEST_JOB_TIMEOUT", default_value = "6h", value_name = "DURATION")]
    pub job_timeout: colony::config::NonZeroDuration,

    /// Timeouts for some kinds, overriding --job-timeout: kind=duration,
    /// comma-separated, e.g. reencode=12h,thumbnails=30m.
    #[arg(long, env = "HARVEST_JOB_TIMEOUTS", value_delimiter = ',', value_name = "KIND=DURATION")]
    pub job_timeouts: Vec<KindTimeout>,

    #[command(flatten)]
    pub limits: colony::hls::FetchLimits,

    #[command(flatten)]
    pub vod: colony::recording::VodArgs,

    #[command(flatten)]
    pub resolvers: colony::resolver::Resolvers,

    /// How often the cell tells the mothership it is alive.
    #[arg(long, env = "COLONY_HEARTBEAT_INTERVAL", default_value = "10s", value_name = "DURATION")]
    pub heartbeat: colony::config::NonZeroDuration,

    /// This cell's id; the mothership sets it, a joining laptop gets a fresh one.
    #[arg(long = "cell-id", env = "COLONY_CELL_ID", value_name = "UUID")]
    pub cell_id: Option<uuid::Uuid>,
}

/// A job kind's timeout: `reencode=12h`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindTimeout {
    pub kind: JobKind,
    pub timeout: Duration,
}

impl std::str::FromStr for KindTimeout {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let (kind, duration) = raw.split_once('=').ok_or("expected kind=duration, e.g. reencode=12h")?;
        let kind: JobKind = kind.parse().map_err(|e: colony::queue::UnknownKind| e.to_string())?;
        let timeout = duration.trim().parse::<colony::config::NonZeroDuration>()?.get();
        Ok(Self { kind, timeout })
    }
}

impl HarvestArgs {
    /// How long a job of `kind` may run.
    pub fn timeout_for(&self, kind: JobKind) -> Duration {
        self.job_timeouts.iter().find(|t| t.kind == kind).map_or(self.job_timeout.get(), |t| t.timeout)
    }

    /// The kinds to claim, refusing kinds this build cannot run. Webhook
    /// deliveries are never a harvest cell's: the mothership signs and
    /// sends them, so a cell never holds a webhook's secret.
    pub fn kind_filter(&self) -> Result<KindFilter, KindsError> {
        let runs = |k: &JobKind| *k != JobKind::Webhook;
        if self.kinds.is_empty() {
            return Ok(KindFilter::Only(JobKind::ALL.iter().filter(|k| runs(k)).map(|k| k.to_string()).collect()));
        }
        let mut kinds = Vec::new();
        for kind in &self.kinds {
            let kind: JobKind = kind.parse().map_err(|_| KindsError::Unknown(kind.clone()))?;
            if !runs(&kind) {
                return Err(KindsError::Webhook);
            }
            kinds.push(kind.to_string());
        }
        Ok(KindFilter::Only(kinds))
    }
}

/// Why `--kinds` (HARVEST_KINDS) cannot be claimed as given: the operator's
/// to fix, before the cell connects to anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindsError {
    #[error("this build cannot run '{}' jobs; it runs: {}", .0.escape_debug(), JobKind::cli_list())]
    Unknown(String),
    #[error("webhook deliveries are the mothership's (it holds the signing secrets); drop webhook from HARVEST_KINDS")]
    Webhook,
}

impl Classify for KindsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Config
    }
}
