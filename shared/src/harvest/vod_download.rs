//! `vod_download`: an HLS VOD into a recording in ledger form, the backfill
//! path. Args: `{"url": "...", "channel_id": N}` (or `"channel": "login"`),
//! and optionally `"resolver": "yt-dlp -g {url}"` to turn a page URL into
//! the HLS URL first.
//!
//! Idempotent and resumable: the recording is found again by (channel, URL);
//! segments already in the ledger are skipped; media is written first, the
//! VOD playlist and the recording's final row last. Writes are fenced on the
//! job attempt, so a worker that lost its lease cannot write after the one
//! that took over.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tracing::{info, warn};

use super::{Ctx, JobError, ProgressSink};
use crate::hls::{HlsError, InitRef, VariantChoice};
use crate::queue::Job;
use crate::recording::{self, Ledger, LedgerError, LedgerRow, MediaSource, PlaylistKind, Progress, RecordingState};
use crate::storage::ObjectKey;

fn hls_error(e: HlsError) -> JobError {
    if e.is_gone() {
        JobError::Permanent(format!("{e}"))
    } else {
        JobError::Transient(format!("{:#}", anyhow::Error::from(e)))
    }
}

fn ledger_error(e: LedgerError) -> JobError {
    JobError::transient(format!("{:#}", anyhow::Error::from(e)))
}

pub async fn run(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let url = job
        .args
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or_else(|| JobError::Permanent("args.url is missing".into()))?;
    let url = url::Url::parse(url).map_err(|e| JobError::Permanent(format!("args.url is not a URL: {e}")))?;
    let channel_id: i64 =
        match (job.args.get("channel_id").and_then(|c| c.as_i64()), job.args.get("channel").and_then(|c| c.as_str())) {
            (Some(id), _) => id,
            (None, Some(login)) => sqlx::query_scalar("SELECT id FROM channels WHERE login = $1")
                .bind(login)
                .fetch_optional(pool)
                .await
                .map_err(JobError::transient)?
                .ok_or_else(|| JobError::Permanent(format!("channel '{login}' does not exist")))?,
            _ => return Err(JobError::Permanent("args need channel_id or channel".into())),
        };

    // Find or open the recording, then take it under this attempt's token.
    sqlx::query(
        "INSERT INTO recordings (channel_id, source, state, source_url, storage_prefix)
         VALUES ($1, 'vod', 'recording', $2, '')
         ON CONFLICT (channel_id, source_url) WHERE source = 'vod' DO NOTHING",
    )
    .bind(channel_id)
    .bind(url.as_str())
    .execute(pool)
    .await
    .map_err(JobError::transient)?;
    let token = i64::from(job.attempt) + job.id * 1_000;
    let row: Option<(i64, RecordingState, String, i64)> = sqlx::query_as(
        "UPDATE recordings r SET lease_token = GREATEST(r.lease_token, $3),
                storage_prefix = CASE WHEN r.storage_prefix = '' THEN 'channels/' || c.login || '/' || r.id ELSE r.storage_prefix END
           FROM channels c
          WHERE r.channel_id = $1 AND r.source_url = $2 AND r.source = 'vod' AND c.id = r.channel_id
         RETURNING r.id, r.state, r.storage_prefix, r.lease_token",
    )
    .bind(channel_id)
    .bind(url.as_str())
    .bind(token)
    .fetch_optional(pool)
    .await
    .map_err(JobError::transient)?;
    let Some((recording_id, state, prefix, current)) = row else {
        return Err(JobError::Permanent(format!("channel {channel_id} does not exist")));
    };
    if current != token {
        return Err(JobError::transient("a later attempt of this download holds the recording"));
    }
    if state == RecordingState::Complete {
        info!(recording = recording_id, "already downloaded; nothing to do");
        return Ok(());
    }
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let ledger = Ledger::new(pool.clone(), recording_id, token);

    // The playlist: a master resolves to its best variant; it must be a VOD.
    let hls_url = match job.args.get("resolver").and_then(|r| r.as_str()) {
        Some(resolver) => crate::channel::run_resolver(resolver, url.as_str(), Duration::from_secs(120))
            .await
            .map_err(|e| JobError::transient(format!("{:#}", anyhow::Error::from(e))))?,
        None => url.clone(),
    };
    let media_url = ctx.hls.resolve_variant(&hls_url, &VariantChoice::Best).await.map_err(hls_error)?;
    let (playlist, _) = ctx.hls.media_playlist(&media_url).await.map_err(hls_error)?;
    if !playlist.ended {
        return Err(JobError::Permanent(
            "the URL is a live stream (no EXT-X-ENDLIST); observers record live channels".into(),
        ));
    }
    let existing = ledger.rows().await.map_err(ledger_error)?;
    let have: BTreeSet<i64> = existing.iter().map(|r| r.media_sequence).collect();
    let todo: Vec<_> = playlist.segments.iter().filter(|s| !have.contains(&(s.sequence as i64))).cloned().collect();
    let total = playlist.segments.len() as u64;
    info!(recording = recording_id, total, already = have.len(), "downloading VOD");

    // Init sections (fMP4) first, once each.
    let mut inits: HashMap<InitRef, String> = HashMap::new();
    for init in playlist.segments.iter().filter_map(|s| s.init.clone()) {
        if inits.contains_key(&init) {
            continue;
        }
        let key = recording::init_key(&prefix, 0, inits.len()).map_err(JobError::permanent)?;
        let body = ctx.hls.get(&init.uri, init.byte_range).await.map_err(hls_error)?;
        ctx.store.put(&key, body).await.map_err(JobError::transient)?;
        inits.insert(init, key.to_string());
    }

    let done = Arc::new(AtomicU64::new(have.len() as u64));
    let bytes = Arc::new(AtomicU64::new(existing.iter().map(|r| r.bytes as u64).sum()));
    let inits = Arc::new(inits);
    futures::stream::iter(todo)
        .map(|segment| {
            let (ctx, ledger, prefix, inits, done, bytes) =
                (ctx.clone(), ledger.clone(), prefix.clone(), inits.clone(), done.clone(), bytes.clone());
            async move {
                let seq = segment.sequence;
                let body =
                    ctx.hls.get_with_retries(&segment.uri, segment.byte_range, 3, Duration::from_millis(500)).await;
                let row = match body {
                    Ok(body) => {
                        let key = recording::segment_key(&prefix, 0, seq, segment.extension())
                            .map_err(JobError::permanent)?;
                        ctx.store.put(&key, body.clone()).await.map_err(JobError::transient)?;
                        bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                        LedgerRow {
                            epoch: 0,
                            media_sequence: seq as i64,
                            duration_secs: segment.duration,
                            bytes: body.len() as i64,
                            object_key: Some(key.to_string()),
                            init_key: segment.init.as_ref().and_then(|i| inits.get(i).cloned()),
                            program_date_time: segment.program_date_time,
                            source: MediaSource::Vod,
                            is_gap: false,
                            gap_count: 0,
                            is_ad: segment.is_ad,
                            discontinuity: segment.discontinuity,
                        }
                    }
                    Err(e) if e.is_gone() => {
                        warn!(seq, error = %e, "segment is gone from the source; recording an explicit gap");
                        LedgerRow::gap(0, seq, 1, segment.duration, MediaSource::Vod)
                    }
                    Err(e) => return Err(hls_error(e)),
                };
                ledger.insert(&row).await.map_err(ledger_error)?;
                done.fetch_add(1, Ordering::Relaxed);
                Ok::<(), JobError>(())
            }
        })
        .buffer_unordered(ctx.args.download_concurrency.max(1))
        .inspect(|_| {
            progress.set(json!({
                "recording_id": recording_id,
                "segments_done": done.load(Ordering::Relaxed),
                "segments_total": total,
                "bytes": bytes.load(Ordering::Relaxed),
            }))
        })
        .try_collect::<()>()
        .await?;

    // Playlist and final row last.
    let rows = ledger.rows().await.map_err(ledger_error)?;
    let text = recording::render(&rows, prefix.as_str(), PlaylistKind::Vod);
    let key = recording::playlist_key(&prefix).map_err(JobError::permanent)?;
    ctx.store.put(&key, Bytes::from(text)).await.map_err(JobError::transient)?;
    let progress_row = Progress::of(rows.iter());
    let jobs =
        ledger.finalize(uuid::Uuid::nil(), &progress_row, RecordingState::Complete).await.map_err(ledger_error)?;
    info!(recording = recording_id, segments = progress_row.segments, bytes = progress_row.bytes, jobs = ?jobs, "VOD downloaded");
    Ok(())
}
