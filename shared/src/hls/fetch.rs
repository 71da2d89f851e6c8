//! Fetching playlists and segments over HTTP, with a timeout per request and
//! errors classified the way the recorder acts on them: gone (404/410 means
//! offline), refused by the [`FetchPolicy`] or over the size cap (never worth
//! a retry), and other HTTP errors and network failures (retried while the
//! source still offers the segment).
//!
//! Every body is streamed under a cap: playlists up to
//! `--max-playlist-mib`, segments up to what `--max-segment-mbps` allows for
//! their duration. A segment is kept in memory up to [`SPILL_AT`] and goes
//! to a file beyond it, so memory stays bounded however large segments are.
//! Redirects are followed by hand, each hop checked by the same policy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::policy::{GuardedResolver, MAX_REDIRECTS};
use super::{
    ByteRange, FetchPolicy, MediaPlaylist, ParseError, ParseLimits, Parsed, Refusal, VariantChoice, parse_media,
    parse_playlist, pick_variant,
};

/// A segment larger than this goes to a file while it downloads.
pub const SPILL_AT: usize = 8 * 1024 * 1024;

/// Init sections (`EXT-X-MAP`) are a few kilobytes; this is generous.
const INIT_CAP: u64 = 16 * 1024 * 1024;

/// Longest duration a segment's cap is computed for, in seconds.
const CAP_SECS: f64 = 60.0;

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
    #[error("{url}")]
    Malformed {
        url: String,
        #[source]
        reason: ParseError,
    },
    #[error("{url}: expected {expected} bytes, got {got}")]
    Truncated { url: String, expected: u64, got: u64 },
    #[error("{url} is larger than the {cap}-byte cap")]
    TooLarge { url: String, cap: u64 },
    #[error("refused to fetch {url}")]
    Refused {
        url: String,
        #[source]
        refusal: Refusal,
    },
    #[error("{what} redirected without a usable Location")]
    BadRedirect { what: String },
    #[error("keeping a large segment in {path} failed")]
    Spill {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HlsError {
    /// 404 or 410: the stream (or this segment) is not there.
    pub fn is_gone(&self) -> bool {
        matches!(self, HlsError::Gone { .. })
    }

    /// Asking again cannot help: gone, refused by policy, over the cap.
    /// 401 or 403: a signed URL that expired, or a token the source no
    /// longer takes. Resolving the channel again may give a fresh one.
    pub fn is_denied(&self) -> bool {
        matches!(self, HlsError::Status { status: 401 | 403, .. })
    }

    pub fn is_final(&self) -> bool {
        matches!(self, HlsError::Gone { .. } | HlsError::Refused { .. } | HlsError::TooLarge { .. })
    }
}

/// How large a response may be.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct FetchLimits {
    /// Largest playlist Colony reads, in MiB. Larger ones are refused, not read.
    #[arg(long = "max-playlist-mib", env = "COLONY_MAX_PLAYLIST_MIB", default_value_t = 4, value_name = "MIB")]
    pub max_playlist_mib: u64,
    /// Highest bitrate a segment may have, in Mbit/s: a segment's cap is
    /// twice what this rate gives for its duration (at most 60 s), plus 1 MiB.
    /// A larger segment is recorded as a gap with that reason.
    #[arg(long = "max-segment-mbps", env = "COLONY_MAX_SEGMENT_MBPS", default_value_t = 50, value_name = "MBPS")]
    pub max_segment_mbps: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self { max_playlist_mib: 4, max_segment_mbps: 50 }
    }
}

impl FetchLimits {
    pub fn playlist_cap(&self) -> u64 {
        self.max_playlist_mib.max(1).saturating_mul(1024 * 1024)
    }

    /// The cap for a segment that claims `duration_secs`.
    pub fn segment_cap(&self, duration_secs: f64) -> u64 {
        let secs = if duration_secs.is_finite() { duration_secs.clamp(1.0, CAP_SECS) } else { CAP_SECS };
        let bytes_per_sec = self.max_segment_mbps.max(1).saturating_mul(1_000_000) / 8;
        ((bytes_per_sec as f64 * secs * 2.0) as u64).saturating_add(1024 * 1024)
    }
}

/// How often a segment fetch is tried: `attempts` in all, waiting `backoff`
/// times the attempt number between them.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

/// A downloaded segment: in memory, or in a file once it grew past [`SPILL_AT`].
#[derive(Debug)]
pub enum Body {
    Memory(Bytes),
    File { file: tempfile::NamedTempFile, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Store the body under `key`: from memory, or streamed from its file.
    pub async fn upload(
        &self,
        store: &dyn crate::storage::ObjectStore,
        key: &crate::storage::ObjectKey,
    ) -> Result<(), crate::storage::StorageError> {
        match self {
            Body::Memory(bytes) => store.put(key, bytes.clone()).await,
            Body::File { file, .. } => store.put_file(key, file.path()).await.map(|_| ()),
        }
    }

    /// The bytes, reading a spilled file back. For small bodies and tests.
    pub async fn bytes(&self) -> std::io::Result<Bytes> {
        match self {
            Body::Memory(b) => Ok(b.clone()),
            Body::File { file, .. } => Ok(Bytes::from(tokio::fs::read(file.path()).await?)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HlsClient {
    http: reqwest::Client,
    timeout: Duration,
    limits: FetchLimits,
    parse_limits: ParseLimits,
    guard: GuardedResolver,
}

/// The reqwest client under an [`HlsClient`]: redirects are followed by
/// hand (each hop checked), and every name is resolved through `guard`.
fn http_client(timeout: Duration, guard: &GuardedResolver) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(guard.clone()))
        .user_agent(concat!("colony/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS backend is compiled in")
}

/// The [`Refusal`] a [`super::policy::GuardedResolver`] gave, somewhere in
/// a request error's causes.
pub fn refusal_in(e: &reqwest::Error) -> Option<Refusal> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(refusal) = c.downcast_ref::<Refusal>() {
            return Some(refusal.clone());
        }
        cause = c.source();
    }
    None
}

/// Strip the query string from a URL for logs: it often carries a token.
pub fn loggable(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    u.to_string()
}

/// Where a body grows while it streams in.
enum Sink<'a> {
    Memory(BytesMut),
    File { file: tempfile::NamedTempFile, out: tokio::fs::File, len: u64, dir: &'a Path },
}

impl HlsClient {
    /// A client for live sources (observer, probes): live parse limits.
    pub fn new(timeout: Duration, limits: FetchLimits) -> Self {
        Self::with_parse_limits(timeout, limits, ParseLimits::LIVE)
    }

    /// A client for whole VOD playlists (backfill).
    pub fn for_vods(timeout: Duration, limits: FetchLimits) -> Self {
        Self::with_parse_limits(timeout, limits, ParseLimits::VOD)
    }

    fn with_parse_limits(timeout: Duration, limits: FetchLimits, parse_limits: ParseLimits) -> Self {
        let guard = GuardedResolver::default();
        Self { http: http_client(timeout, &guard), timeout, limits, parse_limits, guard }
    }

    /// This client for one channel: names on its allow-list (`--allow-host`)
    /// may resolve to loopback or private addresses; no other name may.
    pub fn for_channel(&self, allowed_hosts: &[super::HostPattern]) -> Self {
        if allowed_hosts.is_empty() {
            return self.clone();
        }
        let guard = GuardedResolver::allowing_private(allowed_hosts.to_vec());
        Self { http: http_client(self.timeout, &guard), guard, ..self.clone() }
    }

    pub fn limits(&self) -> FetchLimits {
        self.limits
    }

    /// Send a GET, following redirects that `policy` allows.
    async fn send(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        policy: &FetchPolicy,
    ) -> Result<(reqwest::Response, String), HlsError> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let shown = loggable(&current);
            policy.check(&current).map_err(|refusal| HlsError::Refused { url: shown.clone(), refusal })?;
            self.guard
                .check_redirect(url, &current)
                .map_err(|refusal| HlsError::Refused { url: shown.clone(), refusal })?;
            let mut req = self.http.get(current.clone()).timeout(self.timeout);
            if let Some(r) = range {
                req = req.header(reqwest::header::RANGE, r.header());
            }
            let resp = req.send().await.map_err(|source| match refusal_in(&source) {
                // The resolver refused the name's addresses: final, and said plainly.
                Some(refusal) => HlsError::Refused { url: shown.clone(), refusal },
                None => HlsError::Network { url: shown.clone(), source: source.without_url() },
            })?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| current.join(l).ok())
                    .ok_or_else(|| HlsError::BadRedirect { what: shown.clone() })?;
                current = next;
                continue;
            }
            if status.as_u16() == 404 || status.as_u16() == 410 {
                return Err(HlsError::Gone { url: shown, status: status.as_u16() });
            }
            if !status.is_success() {
                return Err(HlsError::Status { url: shown, status: status.as_u16() });
            }
            return Ok((resp, shown));
        }
        Err(HlsError::Refused { url: loggable(url), refusal: Refusal::TooManyRedirects })
    }

    /// Stream a response body under `cap`, spilling past [`SPILL_AT`] into
    /// `spill_dir` when one is given.
    async fn read_body(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        policy: &FetchPolicy,
        cap: u64,
        spill_dir: Option<&Path>,
    ) -> Result<Body, HlsError> {
        let (mut resp, shown) = self.send(url, range, policy).await?;
        let expected = resp.content_length().or(range.map(|r| r.length));
        if expected.is_some_and(|n| n > cap) {
            return Err(HlsError::TooLarge { url: shown, cap });
        }
        let net = |source: reqwest::Error| HlsError::Network { url: shown.clone(), source: source.without_url() };
        let mut sink = Sink::Memory(BytesMut::with_capacity(expected.unwrap_or(0).min(SPILL_AT as u64) as usize));
        let mut got: u64 = 0;
        while let Some(chunk) = resp.chunk().await.map_err(net)? {
            got = got.saturating_add(chunk.len() as u64);
            if got > cap {
                return Err(HlsError::TooLarge { url: shown, cap });
            }
            sink = sink.push(&chunk, spill_dir).await?;
        }
        if let Some(expected) = expected
            && got != expected
        {
            return Err(HlsError::Truncated { url: shown, expected, got });
        }
        sink.finish().await
    }

    /// GET a small body (a playlist, an init section) under `cap`.
    pub async fn get(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        policy: &FetchPolicy,
        cap: u64,
    ) -> Result<Bytes, HlsError> {
        match self.read_body(url, range, policy, cap, None).await? {
            Body::Memory(b) => Ok(b),
            // Unreachable without a spill dir; read back rather than panic.
            file => file.bytes().await.map_err(|source| HlsError::Spill { path: PathBuf::new(), source }),
        }
    }

    /// GET an init section.
    pub async fn init_section(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        policy: &FetchPolicy,
    ) -> Result<Bytes, HlsError> {
        self.get(url, range, policy, INIT_CAP).await
    }

    /// GET a media segment under the cap its duration allows, spilling into
    /// `spill_dir` when it is large, retrying as `retry` says every error that
    /// is not final: timeouts, network errors and any status but 404 and 410,
    /// 401 and 403 included (signed-URL CDNs answer them while a token
    /// rotates). Gone (404, 410), refused and too large are final at once.
    pub async fn segment(
        &self,
        url: &Url,
        range: Option<ByteRange>,
        duration_secs: f64,
        policy: &FetchPolicy,
        spill_dir: &Path,
        retry: Retry,
    ) -> Result<Body, HlsError> {
        let cap = self.limits.segment_cap(duration_secs);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.read_body(url, range, policy, cap, Some(spill_dir)).await {
                Ok(b) => return Ok(b),
                Err(e) if e.is_final() || attempt >= retry.attempts => return Err(e),
                Err(e) => {
                    tracing::debug!(url = %loggable(url), attempt, error = %e, "fetch failed; retrying");
                    tokio::time::sleep(retry.backoff * attempt).await;
                }
            }
        }
    }

    /// Load the media playlist `url` names: `url` itself, or the chosen
    /// variant of the master playlist it is (which must pass `policy`).
    /// Returns the media playlist's URL with the playlist, loaded once.
    pub async fn open(
        &self,
        url: &Url,
        choice: &VariantChoice,
        policy: &FetchPolicy,
    ) -> Result<(Url, MediaPlaylist, Bytes), HlsError> {
        let body = self.get(url, None, policy, self.limits.playlist_cap()).await?;
        let parsed = parse_playlist(&body, url, self.parse_limits)
            .map_err(|reason| HlsError::Malformed { url: loggable(url), reason })?;
        match parsed {
            Parsed::Media(playlist) => Ok((url.clone(), playlist, body)),
            Parsed::Master(variants) => {
                let variant = pick_variant(&variants, choice)
                    .ok_or(HlsError::Malformed { url: loggable(url), reason: ParseError::NoVariants })?;
                policy
                    .check(&variant.uri)
                    .map_err(|refusal| HlsError::Refused { url: loggable(&variant.uri), refusal })?;
                let (playlist, body) = self.media_playlist(&variant.uri, policy).await?;
                Ok((variant.uri.clone(), playlist, body))
            }
        }
    }

    pub async fn media_playlist(&self, url: &Url, policy: &FetchPolicy) -> Result<(MediaPlaylist, Bytes), HlsError> {
        let body = self.get(url, None, policy, self.limits.playlist_cap()).await?;
        let parsed = parse_media(&body, url, self.parse_limits)
            .map_err(|reason| HlsError::Malformed { url: loggable(url), reason })?;
        Ok((parsed, body))
    }
}

impl<'a> Sink<'a> {
    async fn push(self, chunk: &[u8], spill_dir: Option<&'a Path>) -> Result<Sink<'a>, HlsError> {
        match self {
            Sink::Memory(mut buf) => match spill_dir {
                Some(dir) if buf.len() + chunk.len() > SPILL_AT => {
                    let spill = |source| HlsError::Spill { path: dir.to_owned(), source };
                    let file = tempfile::Builder::new().prefix("segment-").tempfile_in(dir).map_err(spill)?;
                    let mut out = tokio::fs::File::from_std(file.reopen().map_err(spill)?);
                    out.write_all(&buf).await.map_err(spill)?;
                    out.write_all(chunk).await.map_err(spill)?;
                    let len = (buf.len() + chunk.len()) as u64;
                    Ok(Sink::File { file, out, len, dir })
                }
                _ => {
                    buf.extend_from_slice(chunk);
                    Ok(Sink::Memory(buf))
                }
            },
            Sink::File { file, mut out, len, dir } => {
                out.write_all(chunk).await.map_err(|source| HlsError::Spill { path: dir.to_owned(), source })?;
                Ok(Sink::File { file, out, len: len + chunk.len() as u64, dir })
            }
        }
    }

    async fn finish(self) -> Result<Body, HlsError> {
        match self {
            Sink::Memory(buf) => Ok(Body::Memory(buf.freeze())),
            Sink::File { file, mut out, len, dir } => {
                out.flush().await.map_err(|source| HlsError::Spill { path: dir.to_owned(), source })?;
                Ok(Body::File { file, len })
            }
        }
    }
}

/// Gone, refused and too large are final at once; the rest may pass.
impl crate::exit::Classify for HlsError {
    fn class(&self) -> crate::exit::ErrorClass {
        if self.is_final() { crate::exit::ErrorClass::Permanent } else { crate::exit::ErrorClass::Transient }
    }
}
