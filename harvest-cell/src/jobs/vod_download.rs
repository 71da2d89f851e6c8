//! `vod_download`: an HLS VOD into a recording in ledger form, the backfill
//! path. Args: `{"url": "...", "channel_id": N}` (or `"channel": "login"`),
//! and optionally `"resolver": "PROFILE"` (a resolver profile of the host,
//! `COLONY_RESOLVER_<PROFILE>`, never a command) to turn a page URL into
//! the HLS URL first.
//!
//! Idempotent and resumable: the recording is found again by (channel, URL);
//! segments already in the ledger are skipped; media is written first, the
//! VOD playlist and the recording's final row last. The recording's lease
//! token is the job's lease generation, which only goes up: a worker that
//! lost its lease cannot write after the one that took over, whatever
//! cancels, retries or rescues happened in between. A download that will not
//! be tried again leaves its recording `failed`, with the error.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tracing::{info, warn};

use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::hls::{FetchPolicy, HlsError, InitRef, MediaPlaylist, Retry, SourceSegment, VariantChoice};
use colony::queue::{Failure, Job, VodDownloadArgs};
use colony::recording::{self, Ledger, LedgerError, LedgerRow, MediaSource, OpenedVod, RecordingState};
use colony::storage::ObjectKey;

fn hls_error(e: HlsError) -> JobError {
    JobError::classified(e)
}

/// A refused row is retried like a database error here: a VOD download
/// writes rows it made itself.
fn ledger_error(e: LedgerError) -> JobError {
    match e {
        LedgerError::Fenced { .. } => JobError::classified(e),
        other => JobError::transient(other),
    }
}

pub async fn run(ctx: &Ctx, job: &Job, args: &VodDownloadArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let url = url::Url::parse(&args.url).map_err(|e| JobError::permanent(format!("args.url is not a URL: {e}")))?;
    let channel_id = channel_of(pool, args).await?;

    // Find or open the recording, then take it under this attempt's token.
    let token = job.lease_generation;
    let broadcast = (args.stream_id.as_deref(), args.title.as_deref());
    let opened = recording::rows::open_vod(pool, channel_id, url.as_str(), token, broadcast)
        .await
        .map_err(JobError::transient)?;
    let Some(OpenedVod { recording_id, state, storage_prefix: prefix, lease_token: current }) = opened else {
        return Err(JobError::permanent(format!("channel {channel_id} does not exist")));
    };
    if current != token {
        return Err(JobError::fenced(format!("a later claim of this job holds recording {recording_id}")));
    }
    if state == RecordingState::Complete {
        info!(recording = recording_id, "already downloaded; nothing to do");
        return Ok(());
    }
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let ledger = Ledger::new(pool.clone(), recording_id, token);
    let result = download(ctx, args, progress, &url, channel_id, &prefix, &ledger).await;
    // The last try, or one that can never succeed: the recording says so.
    let last = match result.as_ref().err().and_then(JobError::failure) {
        Some(Failure::Permanent) => true,
        Some(Failure::Transient) => job.attempt >= job.max_attempts,
        None => false,
    };
    if let (true, Err(e)) = (last, &result)
        && let Err(db) = recording::rows::fail(pool, recording_id, token, &e.to_string()).await
    {
        warn!(recording = recording_id, error = %db, "could not mark the recording failed");
    }
    result
}

/// The channel a download is for: by id, or by login for a row written by hand.
async fn channel_of(pool: &sqlx::PgPool, args: &VodDownloadArgs) -> Result<i64, JobError> {
    match (args.channel_id, &args.channel) {
        (Some(id), _) => Ok(id),
        (None, Some(login)) => sqlx::query_scalar("SELECT id FROM channels WHERE login = $1")
            .bind(login)
            .fetch_optional(pool)
            .await
            .map_err(JobError::transient)?
            .ok_or_else(|| JobError::permanent(format!("channel '{login}' does not exist"))),
        (None, None) => Err(JobError::permanent("args need channel_id or channel")),
    }
}

/// The VOD's media playlist: through the resolver when the job names one, a
/// master resolved to its best variant, and it must have ended. Its
/// variants and segments come from its own host or the channel's allowed hosts.
async fn open_playlist(
    ctx: &Ctx,
    args: &VodDownloadArgs,
    url: &url::Url,
    allowed: &[colony::hls::HostPattern],
) -> Result<(MediaPlaylist, FetchPolicy), JobError> {
    let hls_url = match &args.resolver {
        Some(profile) => {
            let target = colony::resolver::Target { url: url.as_str(), handle: None };
            ctx.args
                .resolvers
                .run_profile(profile, target, Duration::from_secs(120))
                .await
                .map_err(JobError::classified)?
        }
        None => url.clone(),
    };
    let policy = FetchPolicy::for_source(&hls_url, allowed);
    let (_, playlist, _) = ctx.hls.open(&hls_url, &VariantChoice::Best, &policy).await.map_err(hls_error)?;
    if !playlist.ended {
        return Err(JobError::permanent("the URL is a live stream (no EXT-X-ENDLIST); observers record live channels"));
    }
    Ok((playlist, policy))
}

/// Init sections (fMP4) first, once each; their keys by reference.
async fn store_inits(
    ctx: &Ctx,
    playlist: &MediaPlaylist,
    prefix: &ObjectKey,
    policy: &FetchPolicy,
) -> Result<HashMap<InitRef, String>, JobError> {
    let mut inits: HashMap<InitRef, String> = HashMap::new();
    for init in playlist.segments.iter().filter_map(|s| s.init.clone()) {
        if inits.contains_key(&init) {
            continue;
        }
        let key = recording::init_key(prefix, 0, inits.len()).map_err(JobError::permanent)?;
        let body = ctx.hls.init_section(&init.uri, init.byte_range, policy).await.map_err(hls_error)?;
        ctx.store.put(&key, body).await.map_err(JobError::transient)?;
        inits.insert(init, key.to_string());
    }
    Ok(inits)
}

/// One segment into storage, as its ledger row: stored, or an explicit gap
/// when the source can never give it.
async fn fetch_segment(
    ctx: &Ctx,
    segment: &SourceSegment,
    prefix: &ObjectKey,
    inits: &HashMap<InitRef, String>,
    policy: &FetchPolicy,
    spill: &std::path::Path,
    bytes: &AtomicU64,
) -> Result<LedgerRow, JobError> {
    let seq = segment.sequence;
    let retry = Retry { attempts: 3, backoff: Duration::from_millis(500) };
    match ctx.hls.segment(&segment.uri, segment.byte_range, segment.duration, policy, spill, retry).await {
        Ok(body) => {
            let key = recording::segment_key(prefix, 0, seq, segment.extension()).map_err(JobError::permanent)?;
            body.upload(ctx.store.as_ref(), &key).await.map_err(JobError::transient)?;
            bytes.fetch_add(body.len(), Ordering::Relaxed);
            let init_key = segment.init.as_ref().and_then(|i| inits.get(i).cloned());
            Ok(LedgerRow::stored(0, segment, &key, init_key, body.len(), MediaSource::Vod))
        }
        Err(e) if e.is_final() => {
            warn!(seq, error = %e, "segment cannot be fetched from the source; recording an explicit gap");
            Ok(LedgerRow::gap(0, seq, 1, segment.duration, MediaSource::Vod).because(colony::error_chain(&e)))
        }
        Err(e) => Err(hls_error(e)),
    }
}

/// Fetch the VOD into `ledger`'s recording, and publish and close it.
#[allow(clippy::too_many_arguments)]
async fn download(
    ctx: &Ctx,
    args: &VodDownloadArgs,
    progress: &ProgressSink,
    url: &url::Url,
    channel_id: i64,
    prefix: &ObjectKey,
    ledger: &Ledger,
) -> Result<(), JobError> {
    let recording_id = ledger.recording_id();
    // The channel's allowed hosts may resolve to private addresses; no other name may.
    let allowed = colony::channel::allowed_hosts(ctx.queue.pool(), channel_id).await.map_err(JobError::transient)?;
    let ctx = &Ctx { hls: ctx.hls.for_channel(&allowed), ..ctx.clone() };
    let (playlist, policy) = open_playlist(ctx, args, url, &allowed).await?;
    let existing = ledger.rows().await.map_err(ledger_error)?;
    let have: BTreeSet<i64> = existing.iter().map(|r| r.media_sequence).collect();
    let todo: Vec<_> = playlist.segments.iter().filter(|s| !have.contains(&(s.sequence as i64))).cloned().collect();
    let total = playlist.segments.len() as u64;
    info!(recording = recording_id, total, already = have.len(), "downloading VOD");

    let inits = store_inits(ctx, &playlist, prefix, &policy).await?;
    let done = Arc::new(AtomicU64::new(have.len() as u64));
    let bytes = Arc::new(AtomicU64::new(existing.iter().map(|r| r.bytes as u64).sum()));
    let inits = Arc::new(inits);
    let spill = tempfile::Builder::new().prefix("colony-download-").tempdir().map_err(JobError::transient)?;
    futures::stream::iter(todo)
        .map(|segment| {
            let (ctx, ledger, prefix, inits, done, bytes, policy, spill) = (
                ctx.clone(),
                ledger.clone(),
                prefix.clone(),
                inits.clone(),
                done.clone(),
                bytes.clone(),
                policy.clone(),
                spill.path().to_owned(),
            );
            async move {
                let row = fetch_segment(&ctx, &segment, &prefix, &inits, &policy, &spill, &bytes).await?;
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
    recording::publish_vod(ledger, ctx.store.as_ref(), prefix, ctx.args.vod).await?;
    let (jobs, progress_row) = ledger.finalize(RecordingState::Complete).await.map_err(ledger_error)?;
    info!(recording = recording_id, segments = progress_row.segments, bytes = progress_row.bytes, jobs = ?jobs, "VOD downloaded");
    Ok(())
}
