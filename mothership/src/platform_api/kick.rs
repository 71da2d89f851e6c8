//! Kick live detection through its public API: one
//! `GET /public/v1/channels?slug=…` for up to 50 channels, with an app
//! access token from the client-credentials flow of `id.kick.com`
//! (<https://docs.kick.com/getting-started/generating-tokens-oauth2-flow>,
//! <https://docs.kick.com/apis/channels>).
//!
//! - The token is cached in Postgres like Twitch's, and renewed on 401.
//! - Kick sends no rate-limit headers, so a 429 is waited out as its
//!   `Retry-After` says, else with a doubling backoff, within the probe's
//!   deadline.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::time::Instant;
use url::Url;

use colony::config::Secret;

use super::StreamInfo;
use super::api::{ApiError, AppToken, clean, get_json};

/// Channels one request may ask about.
pub const BATCH: usize = 50;
/// Requests in flight at once during a probe.
const IN_FLIGHT: usize = 4;
const API: &str = "the Kick API";

/// Kick's public API.
const API_URL: &str = "https://api.kick.com/public/v1";
/// Kick's OAuth token endpoint.
const AUTH_URL: &str = "https://id.kick.com/oauth/token";

/// The Kick application Colony asks the API as.
#[derive(Debug, Clone, clap::Args)]
pub struct KickArgs {
    /// The client id of a Kick application (kick.com/settings/developer).
    /// With the secret, live detection asks the API about 50 Kick channels
    /// a request; without, each Kick channel is probed with its resolver.
    #[arg(id = "kick_client_id", long = "kick-client-id", env = "COLONY_KICK_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// The application's client secret.
    #[arg(
        id = "kick_client_secret",
        long = "kick-client-secret",
        env = "COLONY_KICK_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,
    /// The public API's base URL (a test fake's, in tests).
    #[arg(
        id = "kick_api_url",
        long = "kick-api-url",
        env = "COLONY_KICK_API_URL",
        default_value = API_URL,
        value_name = "URL"
    )]
    pub api_url: Url,
    /// The OAuth token endpoint.
    #[arg(
        id = "kick_auth_url",
        long = "kick-auth-url",
        env = "COLONY_KICK_AUTH_URL",
        default_value = AUTH_URL,
        value_name = "URL"
    )]
    pub auth_url: Url,
}

impl Default for KickArgs {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            api_url: Url::parse(API_URL).expect("a valid URL"),
            auth_url: Url::parse(AUTH_URL).expect("a valid URL"),
        }
    }
}

impl KickArgs {
    pub fn configured(&self) -> bool {
        super::api::credentials_given(self.client_id.as_deref(), self.client_secret.as_ref())
    }
}

#[derive(Debug, Deserialize)]
struct Channels {
    #[serde(default)]
    data: Vec<Channel>,
}

/// A channel as `GET /public/v1/channels` reports it.
#[derive(Debug, Deserialize)]
struct Channel {
    #[serde(default)]
    broadcaster_user_id: serde_json::Value,
    slug: String,
    #[serde(default)]
    stream_title: Option<String>,
    #[serde(default)]
    category: Option<Category>,
    #[serde(default)]
    stream: Option<Stream>,
}

#[derive(Debug, Deserialize)]
struct Category {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    is_live: bool,
    #[serde(default)]
    start_time: Option<String>,
}

/// A Kick API client for one tick.
pub struct Kick {
    http: reqwest::Client,
    channels: Url,
    token: AppToken,
}

impl Kick {
    /// A client, if the application's credentials are configured.
    pub fn new(args: &KickArgs, pool: &PgPool, timeout: Duration) -> Option<Self> {
        if !args.configured() {
            return None;
        }
        let http = super::api::http_client(timeout)?;
        let client_id = args.client_id.clone()?.trim().to_owned();
        let token = AppToken::new(
            "Kick",
            "kick",
            http.clone(),
            client_id,
            args.client_secret.clone()?,
            args.auth_url.clone(),
            pool,
        );
        let mut channels = args.api_url.clone();
        channels.path_segments_mut().ok()?.pop_if_empty().push("channels");
        Some(Self { http, channels, token })
    }

    /// The live broadcasts among `slugs`, one request per 50: slug → broadcast.
    pub async fn live(&self, slugs: &[String], deadline: Instant) -> Result<HashMap<String, StreamInfo>, ApiError> {
        use futures::{StreamExt, TryStreamExt};
        self.token.get().await?;
        let pages: Vec<Channels> = futures::stream::iter(slugs.chunks(BATCH))
            .map(|batch| {
                let query: Vec<(&str, String)> = batch.iter().map(|s| ("slug", s.clone())).collect();
                async move {
                    get_json(&self.http, API, "channels", &self.channels, &query, Some(&self.token), deadline).await
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flat_map(|p| p.data).filter_map(live_broadcast).collect())
    }
}

/// A channel's broadcast, if it is live. Kick gives no broadcast id here,
/// so the broadcaster and the start time name it.
fn live_broadcast(c: Channel) -> Option<(String, StreamInfo)> {
    let stream = c.stream.filter(|s| s.is_live)?;
    let started_at = stream
        .start_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
        .unwrap_or_else(Utc::now);
    let broadcaster = match &c.broadcaster_user_id {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => clean(s, 32),
        _ => String::new(),
    };
    let info = StreamInfo {
        id: clean(&format!("{broadcaster}-{}", started_at.timestamp()), 64),
        title: clean(c.stream_title.as_deref().unwrap_or_default(), 300),
        category: clean(c.category.map(|c| c.name).as_deref().unwrap_or_default(), 200),
        started_at,
    };
    Some((c.slug.to_ascii_lowercase(), info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_channels_become_broadcasts_named_by_broadcaster_and_start() {
        let page: Channels = serde_json::from_str(
            r#"{"data":[
                {"broadcaster_user_id":42,"slug":"Alpha","stream_title":"hi\u0007","category":{"id":1,"name":"Just Chatting"},
                 "stream":{"is_live":true,"start_time":"2026-11-30T10:00:00Z","viewer_count":3}},
                {"broadcaster_user_id":43,"slug":"beta","stream_title":"","stream":{"is_live":false,"start_time":"0001-01-01T00:00:00Z"}},
                {"slug":"gamma"}
            ],"message":"OK"}"#,
        )
        .unwrap();
        let live: Vec<_> = page.data.into_iter().filter_map(live_broadcast).collect();
        assert_eq!(live.len(), 1);
        let (slug, info) = &live[0];
        assert_eq!(slug, "alpha");
        assert_eq!(info.id, "42-1796032800");
        assert_eq!(info.title, "hi");
        assert_eq!(info.category, "Just Chatting");
    }
}
