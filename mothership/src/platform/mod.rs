//! Live detection through the platforms' own APIs, in batches: a request
//! covers many channels, where a resolver probe costs a process per channel.
//! A platform without credentials falls back to the resolver probe (and
//! `status` says so).

pub mod twitch;

use chrono::{DateTime, Utc};

/// The platforms' API credentials and endpoints.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PlatformArgs {
    #[command(flatten)]
    pub twitch: twitch::TwitchArgs,
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
            id: twitch::clean(&s.id, 64),
            title: twitch::clean(&s.title, 300),
            category: twitch::clean(&s.game_name, 200),
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
pub fn detection(args: &PlatformArgs, channels: &[crate::admin::ChannelStatus]) -> Vec<Detection> {
    colony::platform::Platform::ALL
        .into_iter()
        .filter_map(|p| {
            let n = channels.iter().filter(|c| c.platform.as_deref() == Some(p.as_str())).count();
            (n > 0).then_some((p, n))
        })
        .map(|(p, n)| {
            let (var, default) = p.resolver_var();
            let resolver =
                format!("probed with the resolver ({var}, default `{default}`), one process per channel per probe");
            let (method, how) = match p {
                colony::platform::Platform::Twitch if args.twitch.configured() => {
                    ("api", format!("detected through Helix, {} channels a request", twitch::BATCH))
                }
                colony::platform::Platform::Twitch => {
                    ("resolver", format!("no COLONY_TWITCH_CLIENT_ID and COLONY_TWITCH_CLIENT_SECRET: {resolver}"))
                }
                _ => ("resolver", format!("no API detection for {p} yet: {resolver}")),
            };
            Detection { platform: p.as_str().to_owned(), channels: n, method, how }
        })
        .collect()
}
