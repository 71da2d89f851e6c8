//! The observer's contract with whoever launches it: the assignment and
//! tuning, as flags and as the environment variables DESIGN.md fixes.

use std::path::PathBuf;

use colony::channel::Login;
use colony::hls::{FetchLimits, VariantChoice};
use colony::resolver::Resolvers;

/// The variable that carries the recording id.
pub const RECORDING_ID_VAR: &str = "OBSERVER_RECORDING_ID";
/// Its old name (the seed article's), still accepted when the new one is unset.
pub const RECORDING_ID_ALIAS: &str = "OBSERVER_VOD_ID";

/// Accept the old name of the recording-id variable: when only
/// `OBSERVER_VOD_ID` is set, copy it to `OBSERVER_RECORDING_ID`.
///
/// # Safety
/// Call it before any other thread exists (first thing in `main`), as
/// [`std::env::set_var`] requires.
pub unsafe fn accept_old_names() {
    if std::env::var_os(RECORDING_ID_VAR).is_none()
        && let Some(old) = std::env::var_os(RECORDING_ID_ALIAS)
    {
        // SAFETY: the caller promises no other thread runs yet.
        unsafe { std::env::set_var(RECORDING_ID_VAR, old) };
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ObserverArgs {
    /// The recording to write to (the mothership creates it). The old
    /// names --vod-id and OBSERVER_VOD_ID are still accepted.
    #[arg(long = "recording-id", visible_alias = "vod-id", env = RECORDING_ID_VAR, value_name = "ID")]
    pub recording_id: i64,

    /// The channel being recorded.
    #[arg(long = "channel-id", env = "OBSERVER_CHANNEL_ID", value_name = "ID")]
    pub channel_id: i64,

    /// The channel's login (a-z, 0-9, '_', '-'); names its media in storage.
    #[arg(long = "channel-login", env = "OBSERVER_CHANNEL_LOGIN", value_name = "LOGIN")]
    pub channel_login: Login,

    /// The channel's display name, for logs.
    #[arg(long = "channel-name", env = "OBSERVER_CHANNEL_NAME", value_name = "NAME")]
    pub channel_name: String,

    /// This cell's id (a UUID).
    #[arg(long = "cell-id", env = "COLONY_CELL_ID", value_name = "UUID")]
    pub cell_id: uuid::Uuid,

    /// Fencing token: every write carries it and is refused once the
    /// recording has been handed to a replacement (exit code 3).
    #[arg(long = "lease-token", env = "COLONY_LEASE_TOKEN", value_name = "N")]
    pub lease_token: i64,

    /// How long to wait for an offline source to come back before finalizing.
    /// A return inside the window continues the same recording as a new epoch.
    #[arg(long, env = "OBSERVER_STANDBY", default_value = "2m", value_name = "DURATION")]
    pub standby: humantime::Duration,

    /// Declare the source offline after this long without a new segment.
    /// Default: the larger of 3 target durations and 30s.
    #[arg(long, env = "OBSERVER_OFFLINE_AFTER", value_name = "DURATION")]
    pub offline_after: Option<humantime::Duration>,

    /// Heartbeat interval (cell liveness and recording progress). Keep it
    /// well under the mothership's COLONY_HEARTBEAT_TIMEOUT.
    #[arg(long, env = "COLONY_HEARTBEAT_INTERVAL", default_value = "10s", value_name = "DURATION")]
    pub heartbeat: colony::config::NonZeroDuration,

    /// Variant of a master playlist: best, worst, or a height like 720p.
    /// Default: the channel's own setting.
    #[arg(long, env = "OBSERVER_VARIANT", value_name = "VARIANT")]
    pub variant: Option<VariantChoice>,

    /// Timeout for one playlist or segment request.
    #[arg(long, env = "OBSERVER_FETCH_TIMEOUT", default_value = "10s", value_name = "DURATION")]
    pub fetch_timeout: humantime::Duration,

    /// How long one upload of a segment may take, plus 4 s per MiB, before
    /// the segment goes to the spool and is retried from there. Storage that
    /// drops packets instead of refusing them would otherwise hold each
    /// segment in memory for the S3 client's read timeout (60 s), longer
    /// than a live window: a cell killed meanwhile loses it. Spooled, it is
    /// on this host's disk, where a replacement finds it.
    #[arg(long, env = "OBSERVER_UPLOAD_TIMEOUT", default_value = "10s", value_name = "DURATION")]
    pub upload_timeout: humantime::Duration,

    /// Segments fetched at once (the live window at start is taken in parallel).
    #[arg(long, env = "OBSERVER_CONCURRENCY", default_value_t = 4, value_name = "N")]
    pub concurrency: usize,

    /// Where segments wait while object storage is unreachable, and where
    /// large segments download. Created 0700; it must belong to this user.
    /// Default: $XDG_STATE_HOME/colony/spool (~/.local/state/colony/spool).
    /// In a container, mount a volume here so a restarted cell finds it.
    #[arg(long, env = "COLONY_SPOOL_DIR", value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,

    /// Most the spool may hold, in MiB.
    #[arg(long, env = "COLONY_SPOOL_MAX_MIB", default_value_t = 2048, value_name = "MIB")]
    pub spool_max_mib: u64,

    /// On SIGTERM: how long to flush and finalize before exiting anyway.
    #[arg(long, env = "OBSERVER_SHUTDOWN_DEADLINE", default_value = "20s", value_name = "DURATION")]
    pub shutdown_deadline: humantime::Duration,

    /// At the natural end: how long to wait for storage and Postgres to take
    /// the last segments before giving up. Segments still spooled then are
    /// recorded as gaps (the files stay in the spool) and the recording is
    /// marked interrupted.
    #[arg(long, env = "OBSERVER_FINALIZE_DEADLINE", default_value = "10m", value_name = "DURATION")]
    pub finalize_deadline: humantime::Duration,

    /// Write the live playlist only while Postgres confirmed this cell's
    /// lease within this long. Keep it well under the mothership's
    /// COLONY_HEARTBEAT_TIMEOUT: a cell cut off from Postgres may already be
    /// replaced, and must not overwrite its replacement's playlist.
    #[arg(long, env = "OBSERVER_WRITE_LEASE", default_value = "30s", value_name = "DURATION")]
    pub write_lease: colony::config::NonZeroDuration,

    /// Segments in the live playlist while recording. It is an EVENT
    /// playlist until the recording outgrows it, then a sliding window, so
    /// updating it costs the same on day 7 as in minute 1.
    #[arg(long, env = "OBSERVER_LIVE_WINDOW", default_value_t = 300, value_name = "SEGMENTS")]
    pub live_window: usize,

    #[command(flatten)]
    pub limits: FetchLimits,

    #[command(flatten)]
    pub vod: colony::recording::VodArgs,

    #[command(flatten)]
    pub resolvers: Resolvers,

    #[command(flatten, next_help_heading = "Chat (Twitch channels)")]
    pub chat: crate::chat_capture::ChatArgs,
}
