//! Twitch live detection through Helix: one `GET /helix/streams` for up to
//! 100 channels, with an app access token from the client-credentials flow.
//!
//! - The token is cached in Postgres (`platform_tokens`), so a tick run by
//!   cron every minute does not ask for a new one each time; it is renewed
//!   when it nears expiry or Helix answers 401 (revoked, secret rotated).
//! - `Ratelimit-Remaining` and `Ratelimit-Reset` are honoured: an empty
//!   bucket waits for its reset, and a 429 waits and tries again, both within
//!   the probe's deadline. The bucket is 800 points a minute; a request
//!   costs one, so 10,000 channels at a 15 s interval cost 400 a minute.
//! - Every answer is untrusted: bodies are read under a cap, and fields are
//!   checked before they are stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use tokio::time::Instant;
use tracing::{debug, warn};
use url::Url;

use colony::config::Secret;

use super::api::{ApiError, AppToken, clean, message_of, read_capped};

/// How Helix errors name it.
const API: &str = "Helix";

/// Channels one Helix request may ask about.
pub const BATCH: usize = 100;
/// Helix requests in flight at once during a probe.
const IN_FLIGHT: usize = 8;

/// Helix's base URL.
const API_URL: &str = "https://api.twitch.tv/helix";
/// Twitch's OAuth token endpoint.
const AUTH_URL: &str = "https://id.twitch.tv/oauth2/token";

/// The Twitch application Colony asks Helix as.
#[derive(Debug, Clone, clap::Args)]
pub struct TwitchArgs {
    /// The client id of a Twitch application (dev.twitch.tv/console). With
    /// the secret, live detection asks Helix about 100 Twitch channels a
    /// request; without, each Twitch channel is probed with its resolver.
    #[arg(long = "twitch-client-id", env = "COLONY_TWITCH_CLIENT_ID", value_name = "ID")]
    pub client_id: Option<String>,
    /// The application's client secret.
    #[arg(
        long = "twitch-client-secret",
        env = "COLONY_TWITCH_CLIENT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub client_secret: Option<Secret>,
    /// Helix's base URL (a test fake's, in tests).
    #[arg(
        long = "twitch-api-url",
        env = "COLONY_TWITCH_API_URL",
        default_value = API_URL,
        value_name = "URL"
    )]
    pub api_url: Url,
    /// The OAuth token endpoint.
    #[arg(
        long = "twitch-auth-url",
        env = "COLONY_TWITCH_AUTH_URL",
        default_value = AUTH_URL,
        value_name = "URL"
    )]
    pub auth_url: Url,
}

impl Default for TwitchArgs {
    /// No credentials, Twitch's own endpoints.
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            api_url: Url::parse(API_URL).expect("a valid URL"),
            auth_url: Url::parse(AUTH_URL).expect("a valid URL"),
        }
    }
}

impl TwitchArgs {
    pub fn configured(&self) -> bool {
        super::api::credentials_given(self.client_id.as_deref(), self.client_secret.as_ref())
    }
}

/// A live stream as Helix reports it (`GET /helix/streams`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Stream {
    pub id: String,
    pub user_id: String,
    pub user_login: String,
    #[serde(default)]
    pub game_name: String,
    #[serde(default)]
    pub title: String,
    pub started_at: DateTime<Utc>,
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    pagination: Pagination,
}

#[derive(Debug, Default, Deserialize)]
struct Pagination {
    #[serde(default)]
    cursor: Option<String>,
}

/// A user (a channel) as Helix reports it (`GET /helix/users`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    pub id: String,
    pub login: String,
}

/// A past broadcast as Helix reports it (`GET /helix/videos?type=archive`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Video {
    pub id: String,
    #[serde(default)]
    pub stream_id: Option<String>,
    #[serde(default)]
    pub title: String,
    pub created_at: DateTime<Utc>,
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// What the bucket said last.
#[derive(Debug, Default)]
struct Bucket {
    remaining: Option<u32>,
    reset_at: Option<DateTime<Utc>>,
}

/// A Helix client for one tick.
pub struct Helix {
    http: reqwest::Client,
    api: Url,
    token: AppToken,
    bucket: std::sync::Mutex<Bucket>,
}

impl Helix {
    /// A client, if the application's credentials are configured.
    pub fn new(args: &TwitchArgs, pool: &PgPool, timeout: Duration) -> Option<Self> {
        if !args.configured() {
            return None;
        }
        let http = super::api::http_client(timeout)?;
        let client_id = args.client_id.clone()?.trim().to_owned();
        let secret: Secret = args.client_secret.clone()?;
        let token = AppToken::new("Twitch", "twitch", http.clone(), client_id, secret, args.auth_url.clone(), pool);
        Some(Self { http, api: args.api_url.clone(), token, bucket: std::sync::Mutex::default() })
    }

    /// Wait while the bucket is empty, until its reset (or the deadline).
    async fn wait_for_bucket(&self, deadline: Instant) -> Result<(), ApiError> {
        let wait = {
            let b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
            match (b.remaining, b.reset_at) {
                (Some(0), Some(reset)) => (reset - Utc::now()).to_std().ok(),
                _ => None,
            }
        };
        if let Some(wait) = wait {
            let wait = wait.min(Duration::from_secs(60));
            if Instant::now() + wait > deadline {
                return Err(ApiError::RateLimited { api: API });
            }
            debug!(?wait, "Helix bucket is empty; waiting for its reset");
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    fn note_bucket(&self, headers: &reqwest::header::HeaderMap) {
        let number =
            |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = number("ratelimit-remaining") {
            b.remaining = Some(r.clamp(0, u32::MAX as i64) as u32);
        }
        if let Some(at) = number("ratelimit-reset").and_then(|s| DateTime::from_timestamp(s, 0)) {
            // A reset far in the future is not believed: at most a minute.
            b.reset_at = Some(at.min(Utc::now() + chrono::TimeDelta::seconds(60)));
        }
    }

    /// GET a Helix resource, riding out an empty bucket, 429s, a revoked
    /// token and 5xx answers until `deadline`.
    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
        query: &[(&str, String)],
        deadline: Instant,
    ) -> Result<Page<T>, ApiError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|_| ApiError::Malformed { api: API, what, why: "bad API URL".into() })?
            .push(path);
        let mut renewed = false;
        let mut failures = 0u32;
        loop {
            self.wait_for_bucket(deadline).await?;
            let token = self.token.get().await?;
            let send = self
                .http
                .get(url.clone())
                .query(query)
                .header("Client-Id", &self.token.client_id)
                .bearer_auth(&token)
                .send();
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match tokio::time::timeout(left, send).await {
                Err(_) => return Err(ApiError::Deadline { api: API, what }),
                Ok(Err(source)) if failures < 3 && (source.is_timeout() || source.is_connect()) => {
                    failures += 1;
                    warn!(error = %source, "asking Helix failed; trying again");
                    tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
                    continue;
                }
                Ok(Err(source)) => return Err(ApiError::Http { api: API, what, source }),
                Ok(Ok(answer)) => answer,
            };
            self.note_bucket(answer.headers());
            let status = answer.status().as_u16();
            match status {
                200..=299 => {
                    let body = read_capped(answer, API, what).await?;
                    return serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
                        api: API,
                        what,
                        why: e.to_string(),
                    });
                }
                401 if !renewed => {
                    self.token.renew(&token).await?;
                    renewed = true;
                }
                429 => {
                    // The bucket headers of the 429 say when it refills; if they
                    // did not, wait a second.
                    {
                        let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                        b.remaining = Some(0);
                        if b.reset_at.is_none_or(|at| at <= Utc::now()) {
                            b.reset_at = Some(Utc::now() + chrono::TimeDelta::seconds(1));
                        }
                    }
                    debug!("Helix answered 429; waiting for the bucket");
                }
                500..=599 if failures < 3 => {
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                }
                _ => {
                    let body = read_capped(answer, API, what).await.unwrap_or_default();
                    return Err(ApiError::Status { api: API, what, status, message: message_of(&body) });
                }
            }
        }
    }

    /// The id of the user (channel) `login`, if it exists.
    pub async fn user_id(&self, login: &str, deadline: Instant) -> Result<Option<String>, ApiError> {
        let page: Page<User> = self.get("a user", "users", &[("login", login.to_owned())], deadline).await?;
        Ok(page.data.into_iter().find(|u| u.login.eq_ignore_ascii_case(login)).map(|u| clean(&u.id, 64)))
    }

    /// A channel's past broadcasts, newest first, 100 a request, following
    /// the cursor: those created after `since`, at most `limit`.
    pub async fn archives(
        &self,
        user_id: &str,
        since: Option<DateTime<Utc>>,
        limit: usize,
        deadline: Instant,
        mut listed: impl FnMut(usize),
    ) -> Result<Vec<Video>, ApiError> {
        let mut videos: Vec<Video> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query =
                vec![("user_id", user_id.to_owned()), ("type", "archive".to_owned()), ("first", BATCH.to_string())];
            if let Some(c) = &cursor {
                query.push(("after", c.clone()));
            }
            let page: Page<Video> = self.get("past broadcasts", "videos", &query, deadline).await?;
            let before = videos.len();
            let mut older = false;
            for v in page.data.into_iter().filter(|v| v.kind.is_empty() || v.kind == "archive") {
                if since.is_some_and(|s| v.created_at < s) {
                    older = true;
                    continue;
                }
                if videos.len() < limit && !videos.iter().any(|seen| seen.id == v.id) {
                    videos.push(v);
                }
            }
            listed(videos.len());
            // Newest first: once one is older than `since`, the rest are too.
            let next = page.pagination.cursor.filter(|c| !c.is_empty() && Some(c) != cursor.as_ref());
            match next {
                Some(c) if !older && videos.len() < limit && videos.len() > before => cursor = Some(c),
                _ => return Ok(videos),
            }
        }
    }

    /// The live streams among `logins`, one request per 100, a few requests
    /// in flight at once (10,000 channels are 100 requests: one after the
    /// other they would not fit in a 15 s probe interval).
    pub async fn live_streams(&self, logins: &[String], deadline: Instant) -> Result<Vec<Stream>, ApiError> {
        use futures::{StreamExt, TryStreamExt};
        // Get the token once, before the requests race for it.
        self.token.get().await?;
        let pages: Vec<Page<Stream>> = futures::stream::iter(logins.chunks(BATCH))
            .map(|batch| {
                let mut query: Vec<(&str, String)> = vec![("first", BATCH.to_string())];
                query.extend(batch.iter().map(|l| ("user_login", l.clone())));
                async move { self.get("live streams", "streams", &query, deadline).await }
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flat_map(|p| p.data).filter(|s| s.kind.is_empty() || s.kind == "live").collect())
    }
}
