//! What the platforms' API clients share: one error type, an app token
//! cached in Postgres, GET with retries under a deadline, and answers read
//! under a cap. Every answer is untrusted: bodies are capped, and fields are
//! checked (and [`clean`]ed) before they are stored.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use colony::config::Secret;

/// The largest answer read (100 Helix streams are about 100 KiB).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Renew a cached token this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(600);
/// Connection failures and 5xx answers tried again within one request.
const RETRIES: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{api} refused the application's credentials ({status}): {message}")]
    Credentials { api: &'static str, status: u16, message: String },
    #[error("{api} answered {status} to {what}: {message}")]
    Status { api: &'static str, what: &'static str, status: u16, message: String },
    #[error("{api} kept answering 429 (rate limited) until the probe's deadline")]
    RateLimited { api: &'static str },
    #[error("{api} did not answer {what} within the probe's deadline")]
    Deadline { api: &'static str, what: &'static str },
    #[error("asking {api} for {what} failed")]
    Http {
        api: &'static str,
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{api}'s answer to {what} is not what its reference describes: {why}")]
    Malformed { api: &'static str, what: &'static str, why: String },
    #[error("caching the token failed")]
    Db(#[from] sqlx::Error),
}

/// Whether an application's client id (not blank) and secret are both given.
pub fn credentials_given(client_id: Option<&str>, secret: Option<&Secret>) -> bool {
    client_id.is_some_and(|c| !c.trim().is_empty()) && secret.is_some()
}

/// An HTTP client for a platform API: no redirects, a timeout per request.
pub fn http_client(timeout: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("colony/", env!("CARGO_PKG_VERSION")))
        .build()
        .ok()
}

/// Read an answer's body, refusing one larger than [`MAX_BODY`].
pub async fn read_capped(
    mut answer: reqwest::Response,
    api: &'static str,
    what: &'static str,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) =
        answer.chunk().await.map_err(|source| ApiError::Http { api, what, source: source.without_url() })?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::Malformed { api, what, why: format!("the answer is larger than {MAX_BODY} bytes") });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The message of an error body, shortened; never the whole body. Twitch
/// and Kick say `{"message"}`, Google `{"error": {"message"}}`.
pub fn message_of(body: &[u8]) -> String {
    let v = serde_json::from_slice::<serde_json::Value>(body).ok();
    v.as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("error").and_then(|e| e.get("message"))))
        .and_then(|m| m.as_str())
        .unwrap_or("no message")
        .chars()
        .take(200)
        .collect()
}

/// A field as stored: trimmed to `max` characters, without control characters.
pub fn clean(raw: &str, max: usize) -> String {
    raw.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// How long a 429 asks to wait: `Retry-After` in seconds when given (at
/// most a minute), else a doubling backoff from one second.
pub fn retry_after(headers: &reqwest::header::HeaderMap, attempt: u32) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(1, 60)))
        .unwrap_or_else(|| Duration::from_secs(1u64 << attempt.min(5)))
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

/// An app access token by the client-credentials grant (Twitch, Kick),
/// cached in Postgres (`platform_tokens`) so a tick run by cron every
/// minute does not ask for a new one each time, and renewed when it nears
/// expiry or the API refuses it.
pub struct AppToken {
    pub api: &'static str,
    /// The `platform_tokens` row: `twitch`, `kick`.
    platform: &'static str,
    http: reqwest::Client,
    pub client_id: String,
    secret: Secret,
    auth: Url,
    pool: PgPool,
    held: Mutex<Option<String>>,
}

impl AppToken {
    pub fn new(
        api: &'static str,
        platform: &'static str,
        http: reqwest::Client,
        client_id: String,
        secret: Secret,
        auth: Url,
        pool: &PgPool,
    ) -> Self {
        Self { api, platform, http, client_id, secret, auth, pool: pool.clone(), held: Mutex::new(None) }
    }

    /// This tick's token, the one cached in Postgres, or a new one.
    pub async fn get(&self) -> Result<String, ApiError> {
        let mut held = self.held.lock().await;
        if let Some(t) = held.as_ref() {
            return Ok(t.clone());
        }
        let cached: Option<String> = sqlx::query_scalar(
            "SELECT access_token FROM platform_tokens
              WHERE platform = $1 AND client_id = $2 AND expires_at > now() + make_interval(secs => $3)",
        )
        .bind(self.platform)
        .bind(&self.client_id)
        .bind(RENEW_BEFORE.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let token = match cached {
            Some(t) => t,
            None => self.new_token().await?,
        };
        *held = Some(token.clone());
        Ok(token)
    }

    /// The API refused `stale`: get a new token, once, however many
    /// requests in flight were refused with it.
    pub async fn renew(&self, stale: &str) -> Result<String, ApiError> {
        let mut held = self.held.lock().await;
        if let Some(t) = held.as_ref().filter(|t| *t != stale) {
            return Ok(t.clone());
        }
        info!(api = self.api, "the API refused the app token (401); getting a new one");
        let token = self.new_token().await?;
        *held = Some(token.clone());
        Ok(token)
    }

    async fn new_token(&self) -> Result<String, ApiError> {
        let (api, what) = (self.api, "an app token");
        let answer = self
            .http
            .post(self.auth.clone())
            .form(&[
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .map_err(|source| ApiError::Http { api, what, source })?;
        let status = answer.status().as_u16();
        let body = read_capped(answer, api, what).await?;
        if !(200..300).contains(&status) {
            return Err(ApiError::Credentials { api, status, message: message_of(&body) });
        }
        let token: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| ApiError::Malformed { api, what, why: e.to_string() })?;
        if token.access_token.is_empty() || token.access_token.len() > 512 {
            return Err(ApiError::Malformed { api, what, why: "the token is empty or too long".into() });
        }
        let lifetime = token.expires_in.min(100 * 24 * 3600);
        sqlx::query(
            "INSERT INTO platform_tokens (platform, client_id, access_token, expires_at)
             VALUES ($1, $2, $3, now() + make_interval(secs => $4))
             ON CONFLICT (platform) DO UPDATE SET client_id = EXCLUDED.client_id,
                    access_token = EXCLUDED.access_token, expires_at = EXCLUDED.expires_at, updated_at = now()",
        )
        .bind(self.platform)
        .bind(&self.client_id)
        .bind(&token.access_token)
        .bind(lifetime as f64)
        .execute(&self.pool)
        .await?;
        info!(api, expires_in = lifetime, "got an app access token");
        Ok(token.access_token)
    }
}

/// GET `url` and parse its JSON, riding out 429s (waiting as `Retry-After`
/// says), connection failures and 5xx answers until `deadline`. With a
/// token, a 401 renews it once. For APIs without rate-limit headers (Kick,
/// YouTube); Helix keeps its own bucket.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    api: &'static str,
    what: &'static str,
    url: &Url,
    query: &[(&str, String)],
    token: Option<&AppToken>,
    deadline: Instant,
) -> Result<T, ApiError> {
    let mut renewed = false;
    let mut failures = 0u32;
    let mut limited = 0u32;
    loop {
        let mut request = http.get(url.clone()).query(query);
        let bearer = match token {
            Some(t) => Some(t.get().await?),
            None => None,
        };
        if let Some(b) = &bearer {
            request = request.bearer_auth(b);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = match tokio::time::timeout(left, request.send()).await {
            Err(_) => return Err(ApiError::Deadline { api, what }),
            Ok(Err(source)) if failures < RETRIES && (source.is_timeout() || source.is_connect()) => {
                failures += 1;
                warn!(api, error = %source.without_url(), "asking the API failed; trying again");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(failures))).await;
                continue;
            }
            // The URL may carry a key (YouTube's): never in a message.
            Ok(Err(source)) => return Err(ApiError::Http { api, what, source: source.without_url() }),
            Ok(Ok(answer)) => answer,
        };
        let status = answer.status().as_u16();
        match status {
            200..=299 => {
                let body = read_capped(answer, api, what).await?;
                return serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
                    api,
                    what,
                    why: e.to_string(),
                });
            }
            401 if !renewed && token.is_some() => {
                if let (Some(t), Some(stale)) = (token, bearer.as_deref()) {
                    t.renew(stale).await?;
                }
                renewed = true;
            }
            429 => {
                let wait = retry_after(answer.headers(), limited);
                limited += 1;
                if Instant::now() + wait > deadline {
                    return Err(ApiError::RateLimited { api });
                }
                debug!(api, ?wait, "429: waiting before trying again");
                tokio::time::sleep(wait).await;
            }
            500..=599 if failures < RETRIES => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
            }
            _ => {
                let body = read_capped(answer, api, what).await.unwrap_or_default();
                return Err(ApiError::Status { api, what, status, message: message_of(&body) });
            }
        }
    }
}

/// Credentials are the operator's to fix; an answer the reference does not
/// describe will not change on a retry; the rest may pass.
impl colony::exit::Classify for ApiError {
    fn class(&self) -> colony::exit::ErrorClass {
        use colony::exit::ErrorClass;
        match self {
            ApiError::Credentials { .. } => ErrorClass::Config,
            ApiError::Malformed { .. } => ErrorClass::Permanent,
            ApiError::Status { status, .. } if (400..500).contains(status) && *status != 429 => ErrorClass::Permanent,
            ApiError::Status { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Deadline { .. }
            | ApiError::Http { .. }
            | ApiError::Db(_) => ErrorClass::Transient,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_taken_from_either_shape_and_shortened() {
        assert_eq!(
            message_of(br#"{"error":"Unauthorized","status":401,"message":"Invalid OAuth token"}"#),
            "Invalid OAuth token"
        );
        assert_eq!(message_of(br#"{"error":{"code":403,"message":"quota exceeded"}}"#), "quota exceeded");
        assert_eq!(message_of(b"<html>"), "no message");
        assert_eq!(message_of(format!(r#"{{"message":"{}"}}"#, "x".repeat(5000)).as_bytes()).len(), 200);
    }

    #[test]
    fn a_429_waits_as_retry_after_says_within_a_minute() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h, 0), Duration::from_secs(1));
        assert_eq!(retry_after(&h, 3), Duration::from_secs(8));
        assert_eq!(retry_after(&h, 40), Duration::from_secs(32));
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h, 0), Duration::from_secs(7));
        h.insert(reqwest::header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h, 0), Duration::from_secs(60));
    }

    #[test]
    fn stored_fields_lose_control_characters_and_length() {
        assert_eq!(clean("a\u{1b}[31mb\nc", 10), "a[31mbc");
        assert_eq!(clean("ééé", 2), "éé");
    }
}
