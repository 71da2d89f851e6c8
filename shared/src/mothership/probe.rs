//! Liveness probes: is a channel broadcasting right now?
//!
//! A channel is live when its source resolves (directly, or through its
//! resolver command) to a media playlist that has segments and no
//! `EXT-X-ENDLIST`. Probes run concurrently with a bound and a timeout each,
//! and every result, good or bad, is stored on the channel row.

use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;

use crate::channel::Channel;
use crate::hls::{HlsClient, VariantChoice};

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
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeResult {
    pub channel_id: i64,
    pub login: String,
    pub live: bool,
    pub error: Option<String>,
}

/// Enabled channels whose last probe is older than `every`.
pub async fn due(pool: &PgPool, every: Duration) -> Result<Vec<Channel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, login, display_name, source_kind, source_url, resolver, variant, enabled, pipeline
           FROM channels
          WHERE enabled AND (probed_at IS NULL OR probed_at <= now() - make_interval(secs => $1))
          ORDER BY probed_at NULLS FIRST, id",
    )
    .bind(every.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Probe one channel.
pub async fn probe(channel: &Channel, client: &HlsClient, timeout: Duration) -> ProbeResult {
    let outcome = tokio::time::timeout(timeout, async {
        let url = channel.resolve(timeout).await.map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
        let choice: VariantChoice = channel.variant.parse().unwrap_or(VariantChoice::Best);
        let media = client.resolve_variant(&url, &choice).await.map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
        let (playlist, _) = client.media_playlist(&media).await.map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
        Ok::<bool, String>(!playlist.segments.is_empty() && !playlist.ended)
    })
    .await;
    let (live, error) = match outcome {
        Ok(Ok(live)) => (live, None),
        Ok(Err(e)) => (false, Some(e)),
        Err(_) => (false, Some(format!("no answer within {}", humantime::format_duration(timeout)))),
    };
    ProbeResult { channel_id: channel.id, login: channel.login.clone(), live, error }
}

/// Probe every due channel, `concurrency` at a time, and store the results.
pub async fn probe_due(pool: &PgPool, args: &ProbeArgs) -> Result<Vec<ProbeResult>, sqlx::Error> {
    let channels = due(pool, args.probe_every.into()).await?;
    if channels.is_empty() {
        return Ok(Vec::new());
    }
    let timeout: Duration = args.probe_timeout.into();
    let client = HlsClient::new(timeout);
    let results: Vec<ProbeResult> = futures::stream::iter(channels.iter())
        .map(|c| probe(c, &client, timeout))
        .buffer_unordered(args.probe_concurrency.max(1))
        .collect()
        .await;
    store(pool, &results).await?;
    Ok(results)
}

pub async fn store(pool: &PgPool, results: &[ProbeResult]) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = results.iter().map(|r| r.channel_id).collect();
    let live: Vec<bool> = results.iter().map(|r| r.live).collect();
    let errors: Vec<Option<String>> = results.iter().map(|r| r.error.clone()).collect();
    sqlx::query(
        "UPDATE channels c
            SET live = p.live,
                live_since = CASE WHEN p.live THEN COALESCE(c.live_since, now()) END,
                probed_at = now(), probe_error = p.error, updated_at = now()
           FROM UNNEST($1::bigint[], $2::bool[], $3::text[]) AS p(id, live, error)
          WHERE c.id = p.id",
    )
    .bind(&ids)
    .bind(&live)
    .bind(&errors)
    .execute(pool)
    .await?;
    Ok(())
}
