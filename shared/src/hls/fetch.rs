//! Fetching playlists and segments over HTTP, with a timeout per request and
//! errors classified the way the recorder acts on them: gone (404/410 means
//! offline), other HTTP errors and network failures (retry), malformed.

use std::time::Duration;

use bytes::Bytes;
use url::Url;

use super::{ByteRange, MediaPlaylist, Parsed, VariantChoice, parse_playlist, pick_variant};

#[derive(Debug, thiserror::Error)]
pub enum HlsError {
    #[error("{url} answered {status}")]
    Gone { url: String, status: u16 },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("fetching {url} failed")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: {reason}")]
    Malformed { url: String, reason: String },
    #[error("{url}: expected {expected} bytes, got {got}")]
    Truncated { url: String, expected: u64, got: u64 },
}

impl HlsError {
    /// 404 or 410: the stream (or this segment) is not there.
    pub fn is_gone(&self) -> bool {
        matches!(self, HlsError::Gone { .. })
    }
}

#[derive(Debug, Clone)]
pub struct HlsClient {
    http: reqwest::Client,
    timeout: Duration,
}

/// Strip the query string from a URL for logs: it often carries a token.
pub fn loggable(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

impl HlsClient {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("colony/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is compiled in");
        Self { http, timeout }
    }

    /// GET a URL (optionally a byte range) with the client's timeout.
    pub async fn get(&self, url: &Url, range: Option<ByteRange>) -> Result<Bytes, HlsError> {
        let shown = loggable(url);
        let mut req = self.http.get(url.clone()).timeout(self.timeout);
        if let Some(r) = range {
            req = req.header(reqwest::header::RANGE, r.header());
        }
        let resp = req.send().await.map_err(|source| HlsError::Network { url: shown.clone(), source })?;
        let status = resp.status().as_u16();
        if status == 404 || status == 410 {
            return Err(HlsError::Gone { url: shown, status });
        }
        if !resp.status().is_success() {
            return Err(HlsError::Status { url: shown, status });
        }
        let expected = resp.content_length();
        let body = resp.bytes().await.map_err(|source| HlsError::Network { url: shown.clone(), source })?;
        if let Some(expected) = expected.or(range.map(|r| r.length))
            && body.len() as u64 != expected
        {
            return Err(HlsError::Truncated { url: shown, expected, got: body.len() as u64 });
        }
        Ok(body)
    }

    /// GET with up to `attempts` tries for timeouts, network errors and 5xx,
    /// waiting `backoff` times the attempt number between them. A 404/410 is
    /// final at once: the object is not there.
    pub async fn get_with_retries(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        attempts: u32,
        backoff: Duration,
    ) -> Result<Bytes, HlsError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.get(url, range).await {
                Ok(b) => return Ok(b),
                Err(e) if e.is_gone() || attempt >= attempts => return Err(e),
                Err(e) => {
                    tracing::debug!(url = %loggable(url), attempt, error = %e, "fetch failed; retrying");
                    tokio::time::sleep(backoff * attempt).await;
                }
            }
        }
    }

    /// Resolve a master playlist to the chosen variant's media playlist URL;
    /// a media playlist URL is returned as it is.
    pub async fn resolve_variant(&self, url: &Url, choice: &VariantChoice) -> Result<Url, HlsError> {
        let body = self.get(url, None).await?;
        match parse_playlist(&body, url).map_err(|reason| HlsError::Malformed { url: loggable(url), reason })? {
            Parsed::Media(_) => Ok(url.clone()),
            Parsed::Master(variants) => Ok(pick_variant(&variants, choice).expect("non-empty").uri.clone()),
        }
    }

    pub async fn media_playlist(&self, url: &Url) -> Result<(MediaPlaylist, Bytes), HlsError> {
        let body = self.get(url, None).await?;
        let parsed =
            super::parse_media(&body, url).map_err(|reason| HlsError::Malformed { url: loggable(url), reason })?;
        Ok((parsed, body))
    }
}
