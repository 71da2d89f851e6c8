//! Live detection through the platforms' own APIs, in batches: a request
//! covers many channels, where a resolver probe costs a process per channel.
//! A platform without credentials falls back to the resolver probe (and
//! `status` says so).

pub mod api;
pub mod backfill;
pub mod kick;
pub mod twitch;
pub mod youtube;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use colony::channel::Channel;
use colony::platform::Platform;
use sqlx::PgPool;
use tokio::time::Instant;

/// The platforms' API credentials and endpoints.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub twitch: twitch::TwitchArgs,
    #[command(flatten)]
    pub youtube: youtube::YouTubeArgs,
    #[command(flatten)]
    pub kick: kick::KickArgs,
}

/// A channel's broadcast as its platform's API tells it (None: offline), or
/// why the API could not tell.
pub type Verdict = Result<Option<StreamInfo>, String>;

/// The API clients of the platforms with credentials, for one tick.
pub struct Detectors {
    pub twitch: Option<twitch::Helix>,
    pub youtube: Option<youtube::YouTube>,
    pub kick: Option<kick::Kick>,
}

impl Detectors {
    pub fn new(args: &PlatformArgs, pool: &PgPool, timeout: Duration) -> Self {
        Self {
            twitch: twitch::Helix::new(&args.twitch, pool, timeout),
            youtube: youtube::YouTube::new(&args.youtube, pool, timeout),
            kick: kick::Kick::new(&args.kick, pool, timeout),
        }
    }

    /// Whether `platform`'s channels are found live through its API.
    pub fn covers(&self, platform: Platform) -> bool {
        match platform {
            Platform::Twitch => self.twitch.is_some(),
            Platform::YouTube => self.youtube.is_some(),
            Platform::Kick => self.kick.is_some(),
        }
    }

    /// Ask `platform`'s API about `channels`, in batches. If the API cannot
    /// answer, each channel says why (and counts as offline, as after a
    /// failed resolver probe).
    pub async fn live(
        &self,
        platform: Platform,
        channels: &[&Channel],
        deadline: Instant,
    ) -> Result<Vec<(i64, Verdict)>, sqlx::Error> {
        let handles: Vec<String> =
            channels.iter().filter_map(|c| c.platform_handle.as_deref()).map(str::to_ascii_lowercase).collect();
        let by_handle = |answer: Result<HashMap<String, StreamInfo>, api::ApiError>| {
            let answer = answer.map_err(|e| format!("{} API: {}", platform.name(), colony::error_chain(&e)));
            channels
                .iter()
                .map(|c| {
                    let handle = c.platform_handle.as_deref().unwrap_or_default().to_ascii_lowercase();
                    (c.id, answer.as_ref().map(|live| live.get(&handle).cloned()).map_err(Clone::clone))
                })
                .collect()
        };
        Ok(match platform {
            Platform::Twitch => match &self.twitch {
                Some(helix) => by_handle(helix.live_streams(&handles, deadline).await.map(|streams| {
                    streams.into_iter().map(|s| (s.user_login.to_ascii_lowercase(), StreamInfo::from(s))).collect()
                })),
                None => Vec::new(),
            },
            Platform::Kick => match &self.kick {
                Some(kick) => by_handle(kick.live(&handles, deadline).await),
                None => Vec::new(),
            },
            Platform::YouTube => match &self.youtube {
                Some(youtube) => youtube.live(channels, deadline).await?,
                None => Vec::new(),
            },
        })
    }
}

/// What a platform says of a live broadcast.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamInfo {
    /// The platform's id of this broadcast.
    pub id: String,
    pub title: String,
    pub category: String,
    pub started_at: DateTime<Utc>,
}

impl From<twitch::Stream> for StreamInfo {
    fn from(s: twitch::Stream) -> Self {
        StreamInfo {
            id: api::clean(&s.id, 64),
            title: api::clean(&s.title, 300),
            category: api::clean(&s.game_name, 200),
            started_at: s.started_at,
        }
    }
}

/// How one platform's channels are found live, for `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    pub platform: String,
    pub channels: usize,
    /// `api` or `resolver`.
    pub method: &'static str,
    pub how: String,
}

/// How each platform with channels is probed, given these credentials.
pub fn detection(args: &PlatformArgs, channels: &[crate::views::ChannelStatus]) -> Vec<Detection> {
    Platform::ALL
        .into_iter()
        .filter_map(|p| {
            let n = channels.iter().filter(|c| c.platform.as_deref() == Some(p.as_str())).count();
            (n > 0).then_some((p, n))
        })
        .map(|(p, n)| {
            let profile = colony::resolver::ProfileName::live(p);
            let resolver = format!(
                "probed with the resolver profile '{profile}' ({}), one process per channel per probe",
                profile.variable()
            );
            let (method, how) = match p {
                Platform::Twitch if args.twitch.configured() => {
                    ("api", format!("detected through Helix, {} channels a request", twitch::BATCH))
                }
                Platform::Twitch => {
                    ("resolver", format!("no COLONY_TWITCH_CLIENT_ID and COLONY_TWITCH_CLIENT_SECRET: {resolver}"))
                }
                Platform::YouTube if args.youtube.configured() => (
                    "api",
                    format!(
                        "detected through each channel's feed and videos.list, {} videos a call (1 quota unit)",
                        youtube::BATCH
                    ),
                ),
                Platform::YouTube => (
                    "resolver",
                    format!("no COLONY_YOUTUBE_API_KEY: {resolver}, at most every {}", args.youtube.resolver_every),
                ),
                Platform::Kick if args.kick.configured() => {
                    ("api", format!("detected through the Kick API, {} channels a request", kick::BATCH))
                }
                Platform::Kick => {
                    ("resolver", format!("no COLONY_KICK_CLIENT_ID and COLONY_KICK_CLIENT_SECRET: {resolver}"))
                }
            };
            Detection { platform: p.as_str().to_owned(), channels: n, method, how }
        })
        .collect()
}
