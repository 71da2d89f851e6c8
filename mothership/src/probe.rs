//! Liveness probes: is a channel broadcasting right now?
//!
//! A channel is live when its source resolves (directly, or through its
//! resolver command) to a media playlist that has segments, no
//! `EXT-X-ENDLIST`, and has moved on within `--probe-frozen-after`: a source
//! that serves the same playlist forever is frozen, not live. Probes run
//! concurrently with a bound and a timeout each; results are stored as they
//! come, a few at a time, so a tick that dies part-way has still stamped the
//! channels it probed. A panic inside one probe is that channel's error.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use sqlx::PgPool;

use colony::channel::Channel;
use colony::platform::Platform;
use colony::resolver::Resolvers;
use tokio::time::Instant;

use crate::platform_api::{Detectors, PlatformArgs, StreamInfo};
use colony::hls::{FetchLimits, FetchPolicy, HlsClient, VariantChoice};

/// Results stored per statement while probes come in.
const STORE_EVERY: usize = 32;

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Probe a channel's liveness at most this often.
    #[arg(long, env = "COLONY_PROBE_EVERY", default_value = "20s", value_name = "DURATION")]
    pub probe_every: humantime::Duration,
    /// Give up on one probe (resolver plus playlist fetch) after this long.
    #[arg(long, env = "COLONY_PROBE_TIMEOUT", default_value = "10s", value_name = "DURATION")]
    pub probe_timeout: humantime::Duration,
    /// Probes in flight at once.
    #[arg(long, env = "COLONY_PROBE_CONCURRENCY", default_value_t = 16, value_name = "N")]
    pub probe_concurrency: usize,
    /// A playlist whose last segment has not changed for this long is
    /// frozen: the channel counts as offline.
    #[arg(long, env = "COLONY_PROBE_FROZEN_AFTER", default_value = "90s", value_name = "DURATION")]
    pub probe_frozen_after: humantime::Duration,
    #[command(flatten)]
    pub limits: FetchLimits,
    #[command(flatten)]
    pub resolvers: Resolvers,
    #[command(flatten)]
    pub platforms: PlatformArgs,
}

/// What kept a probe from telling whether a channel is live: the label
/// `colony_probe_errors_total` counts it under, beside the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeFailure {
    /// The channel's resolver could not turn its page into a playlist.
    Resolver,
    /// The playlist could not be fetched, was refused, or did not parse.
    Playlist,
    /// No answer within `--probe-timeout`.
    Timeout,
    /// The platform's API could not tell.
    Api,
    /// The source has served the same playlist for too long.
    Frozen,
    /// The probe itself panicked (a bug; the channel counts as offline).
    Panic,
}

impl ProbeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeFailure::Resolver => "resolver",
            ProbeFailure::Playlist => "playlist",
            ProbeFailure::Timeout => "timeout",
            ProbeFailure::Api => "api",
            ProbeFailure::Frozen => "frozen",
            ProbeFailure::Panic => "panic",
        }
    }
}

/// Why a probe failed: its class, and the one line `channels.probe_error` keeps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeError {
    pub class: ProbeFailure,
    pub message: String,
}

impl ProbeError {
    pub fn new(class: ProbeFailure, message: impl Into<String>) -> Self {
        Self { class, message: message.into() }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeResult {
    pub channel_id: i64,
    pub login: String,
    pub live: bool,
    pub error: Option<ProbeError>,
    /// The last segment the playlist offered (sequence and URI path), to
    /// tell a frozen source from a live one.
    #[serde(skip)]
    pub fingerprint: Option<String>,
    /// What the platform's API says of the broadcast, for a channel probed that way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamInfo>,
}

/// Enabled channels whose last probe is older than `every`; YouTube
/// channels probed with their resolver, older than `youtube_every`; and any
/// channel whose last live recording ended after its last probe: the planner
/// will not start it again on a probe older than that end, so it needs a
/// newer one now.
pub async fn due(pool: &PgPool, every: Duration, youtube_every: Option<Duration>) -> Result<Vec<Channel>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {} FROM channels c
          WHERE enabled AND (probed_at IS NULL OR probed_at <= now() - make_interval(secs =>
                CASE WHEN platform = 'youtube' THEN COALESCE($2, $1) ELSE $1 END)
             OR {} >= probed_at)
          ORDER BY probed_at NULLS FIRST, id",
        colony::channel::COLUMNS,
        crate::observe::LAST_LIVE_ENDED_AT
    ))
    .bind(every.as_secs_f64())
    .bind(youtube_every.map(|e| e.as_secs_f64()))
    .fetch_all(pool)
    .await
}

/// Probe one channel, with a client for its allowed hosts
/// ([`HlsClient::for_channel`]).
pub async fn probe(channel: &Channel, client: &HlsClient, timeout: Duration, resolvers: &Resolvers) -> ProbeResult {
    let failed = |class, e: &dyn std::error::Error| ProbeError::new(class, colony::error_chain(e));
    let outcome = tokio::time::timeout(timeout, async {
        let url = channel.resolve(timeout, resolvers).await.map_err(|e| failed(ProbeFailure::Resolver, &e))?;
        let policy = FetchPolicy::for_source(&url, &channel.allowed_hosts());
        let choice: VariantChoice = channel.variant.parse().unwrap_or(VariantChoice::Best);
        let (_, playlist, _) =
            client.open(&url, &choice, &policy).await.map_err(|e| failed(ProbeFailure::Playlist, &e))?;
        let fingerprint = playlist.segments.last().map(|s| format!("{}:{}", s.sequence, s.uri.path()));
        Ok::<_, ProbeError>((!playlist.segments.is_empty() && !playlist.ended, fingerprint))
    });
    let outcome = std::panic::AssertUnwindSafe(outcome).catch_unwind().await;
    let (live, error, fingerprint) = match outcome {
        Ok(Ok(Ok((live, fingerprint)))) => (live, None, fingerprint),
        Ok(Ok(Err(e))) => (false, Some(e), None),
        Ok(Err(_)) => {
            let why = format!("no answer within {}", humantime::format_duration(timeout));
            (false, Some(ProbeError::new(ProbeFailure::Timeout, why)), None)
        }
        Err(_) => {
            let why = "probing this channel panicked; treating it as offline";
            (false, Some(ProbeError::new(ProbeFailure::Panic, why)), None)
        }
    };
    ProbeResult { channel_id: channel.id, login: channel.login.clone(), live, error, fingerprint, stream: None }
}

/// Probe every due channel, `concurrency` at a time, storing the results as
/// they come in. Channels of a platform with API credentials are asked
/// about in batches, the platforms at once; the rest run their resolver.
pub async fn probe_due(pool: &PgPool, args: &ProbeArgs) -> Result<Vec<ProbeResult>, sqlx::Error> {
    let youtube = &args.platforms.youtube;
    let youtube_every = (!youtube.configured()).then(|| youtube.resolver_every.into());
    let channels = due(pool, args.probe_every.into(), youtube_every).await?;
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    // Stored as each probe's time: what it says was true from here on, at
    // the earliest (an end seen after this is newer than the probe).
    let began: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    let timeout: Duration = args.probe_timeout.into();
    let detectors = Detectors::new(&args.platforms, pool, timeout);
    let (by_api, by_source): (Vec<&Channel>, Vec<&Channel>) =
        channels.iter().partition(|c| c.platform().is_some_and(|p| detectors.covers(p)));
    let deadline = Instant::now() + timeout;
    let asked = futures::future::try_join_all(Platform::ALL.into_iter().map(|platform| {
        let mine: Vec<&Channel> = by_api.iter().copied().filter(|c| c.platform() == Some(platform)).collect();
        let detectors = &detectors;
        async move {
            if mine.is_empty() {
                return Ok(Vec::new());
            }
            let verdicts = detectors.live(platform, &mine, deadline).await?;
            Ok::<_, sqlx::Error>(verdicts_to_results(&mine, verdicts))
        }
    }))
    .await?;
    let mut results = Vec::with_capacity(channels.len());
    for probed in asked {
        for batch in probed.chunks(STORE_EVERY * 8) {
            results.extend(crate::channels::store_probes(pool, batch, began, args.probe_frozen_after.into()).await?);
        }
    }
    // One client per distinct allow-list (its names may resolve to private
    // addresses), built once per pass rather than once per channel.
    let base = HlsClient::new(timeout, args.limits);
    let mut clients: std::collections::HashMap<Vec<colony::hls::HostPattern>, HlsClient> = Default::default();
    for channel in &by_source {
        let allowed = channel.allowed_hosts();
        if let std::collections::hash_map::Entry::Vacant(slot) = clients.entry(allowed) {
            let client = base.for_channel(slot.key());
            slot.insert(client);
        }
    }
    let mut batches = futures::stream::iter(by_source)
        .map(|c| probe(c, clients.get(&c.allowed_hosts()).unwrap_or(&base), timeout, &args.resolvers))
        .buffer_unordered(args.probe_concurrency.max(1))
        .ready_chunks(STORE_EVERY);
    while let Some(batch) = batches.next().await {
        let stored = crate::channels::store_probes(pool, &batch, began, args.probe_frozen_after.into()).await?;
        results.extend(stored);
    }
    Ok(results)
}

/// A platform API's verdicts as probe results.
fn verdicts_to_results(channels: &[&Channel], verdicts: Vec<(i64, crate::platform_api::Verdict)>) -> Vec<ProbeResult> {
    let mut verdicts: std::collections::HashMap<i64, crate::platform_api::Verdict> = verdicts.into_iter().collect();
    channels
        .iter()
        .map(|c| {
            let verdict = verdicts.remove(&c.id).unwrap_or_else(|| Err("the platform's API was not asked".into()));
            let (stream, error) = match verdict {
                Ok(stream) => (stream, None),
                Err(e) => (None, Some(ProbeError::new(ProbeFailure::Api, e))),
            };
            ProbeResult {
                channel_id: c.id,
                login: c.login.clone(),
                live: stream.is_some(),
                error,
                fingerprint: None,
                stream,
            }
        })
        .collect()
}
