//! `repair`: check that every ledger segment of a closed recording exists and
//! decodes; fetch again from the source VOD what is missing or broken where
//! the recording has one; turn what cannot be recovered into explicit gap
//! rows; rebuild the VOD playlist and the recording's totals.
//!
//! Every change to the ledger is fenced on the job's lease generation in the
//! same statement, so a run that lost its lease cannot undo what the run
//! that took over repaired.
//!
//! Repair never deletes media. An object is only replaced by a fetched copy
//! that decodes; a segment ffmpeg decodes with complaints stays as it is and
//! is flagged (`segments.warning`); one that cannot be decoded and has no
//! replacement becomes a gap row that still names its object, so nothing an
//! operator might salvage is thrown away.

use std::path::Path;

use futures::TryStreamExt;
use serde_json::json;
use tokio::process::Command;
use tracing::{info, warn};

use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::hls::{FetchPolicy, MediaPlaylist, VariantChoice};
use colony::queue::{Job, JobFence, RecordingArgs};
use colony::recording::{self, Ledger, LedgerRow, RecordingState, SegmentFix};
use colony::storage::{ObjectKey, get_bytes};

/// What ffmpeg made of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Clean,
    /// Decoded to the end, with complaints (the first of them).
    Warns(String),
    /// ffmpeg gave up on it.
    Broken(String),
}

/// Decode `body` with ffmpeg (`-xerror`: stop at the first decode error).
async fn decode(body: &[u8]) -> Result<Decoded, JobError> {
    let dir = tempfile::tempdir().map_err(JobError::transient)?;
    let path = dir.path().join("segment");
    tokio::fs::write(&path, body).await.map_err(JobError::transient)?;
    decode_file(&path).await
}

/// The ffmpeg arguments that decode one stored MPEG-TS segment. The bytes
/// are the source's: the demuxer is named and only the file itself may be
/// opened, so bytes that look like a playlist are a broken segment, never a
/// fetch elsewhere.
pub fn decode_args(path: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-v", "error", "-xerror"].map(String::from).to_vec();
    args.extend(["-protocol_whitelist", "file", "-f", "mpegts", "-i"].map(String::from));
    args.push(path.display().to_string());
    args.extend(["-f", "null", "-"].map(String::from));
    args
}

pub async fn decode_file(path: &Path) -> Result<Decoded, JobError> {
    let out = colony::child::scrub(&mut Command::new("ffmpeg"))
        .args(decode_args(path))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| JobError::transient(format!("ffmpeg could not start: {e}")))?;
    let first = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect::<String>());
    Ok(match (out.status.success(), first) {
        (true, None) => Decoded::Clean,
        (true, Some(complaint)) => Decoded::Warns(complaint),
        (false, why) => Decoded::Broken(why.unwrap_or_else(|| format!("ffmpeg exited with {}", out.status))),
    })
}

/// Counts the job reports.
#[derive(Debug, Default)]
struct Tally {
    checked: u64,
    refetched: u64,
    gaps: u64,
    flagged: u64,
}

impl Tally {
    fn report(&self, total: i64) -> serde_json::Value {
        json!({
            "segments_checked": self.checked,
            "segments_total": total,
            "refetched": self.refetched,
            "gaps": self.gaps,
            "flagged": self.flagged,
        })
    }
}

pub async fn run(ctx: &Ctx, job: &Job, args: &RecordingArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let id = args.recording_id;
    let row: Option<(RecordingState, String, Option<String>, i64, i64)> = sqlx::query_as(
        "SELECT state, storage_prefix, source_url, lease_token, channel_id FROM recordings WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(JobError::transient)?;
    let (state, prefix, source_url, token, channel_id) =
        row.ok_or_else(|| JobError::permanent(format!("recording {id} does not exist")))?;
    if state.is_open() {
        return Err(JobError::transient(format!(
            "recording {id} is still being recorded; repair runs after it closes"
        )));
    }
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let ledger = Ledger::new(pool.clone(), id, token);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM segments WHERE recording_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(JobError::transient)?;

    // The source VOD's segments by sequence, if there is a source to ask.
    let source = match source_url.as_deref().map(url::Url::parse) {
        Some(Ok(url)) => {
            let allowed = colony::channel::allowed_hosts(pool, channel_id).await.map_err(JobError::transient)?;
            let policy = FetchPolicy::for_source(&url, &allowed);
            let hls = ctx.hls.for_channel(&allowed);
            let playlist = match hls.open(&url, &VariantChoice::Best, &policy).await {
                Ok((_, playlist, _)) => Some((playlist, hls)),
                Err(e) => {
                    warn!(error = %e, "the source VOD is unavailable; broken segments are kept and marked as gaps");
                    None
                }
            };
            playlist.map(|(p, hls)| (p, policy, hls))
        }
        _ => None,
    };
    let mut tally = Tally::default();
    let mut rows = ledger.stream();
    while let Some(row) = rows.try_next().await.map_err(JobError::transient)? {
        progress.set(tally.report(total));
        tally.checked += 1;
        if row.is_gap {
            continue;
        }
        let Some(key) = row.object_key.as_deref() else { continue };
        let key = ObjectKey::parse(key).map_err(JobError::permanent)?;
        let found = match get_bytes(ctx.store.as_ref(), &key).await {
            Ok(body) => Some(body),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(JobError::transient(e)),
        };
        let verdict = match &found {
            None => Decoded::Broken("the object is missing from storage".into()),
            Some(body) if body.len() as i64 != row.bytes => {
                Decoded::Broken(format!("the object holds {} bytes, the ledger says {}", body.len(), row.bytes))
            }
            // fMP4 media segments do not decode without their init section.
            Some(_) if row.init_key.is_some() => Decoded::Clean,
            Some(body) => decode(body).await?,
        };
        match verdict {
            Decoded::Clean => {}
            Decoded::Warns(complaint) => {
                warn!(%key, %complaint, "segment decodes with complaints; keeping it and flagging it");
                let warning = SegmentFix::Warning(format!("ffmpeg complains: {complaint}"));
                fix(pool, job, id, &row, &warning).await?;
                tally.flagged += 1;
            }
            Decoded::Broken(why) => {
                if let Some(bytes) = refetch(ctx, source.as_ref(), &row, &key).await? {
                    info!(%key, "segment fetched again from the source");
                    fix(pool, job, id, &row, &SegmentFix::Refetched { bytes }).await?;
                    tally.refetched += 1;
                } else {
                    warn!(%key, %why, "segment is missing or broken and cannot be fetched again; marking it as a gap");
                    let kept = if found.is_some() { format!("; the object is kept at {key}") } else { String::new() };
                    let gap = SegmentFix::Gap { reason: format!("repair: {why}{kept}"), keep_object: found.is_some() };
                    fix(pool, job, id, &row, &gap).await?;
                    tally.gaps += 1;
                }
            }
        }
    }
    drop(rows);
    recording::publish_vod(&ledger, ctx.store.as_ref(), &prefix, ctx.args.vod).await?;
    let p = ledger.totals().await.map_err(|e| JobError::transient(colony::error_chain(&e)))?;
    let written = recording::rows::set_totals(pool, JobFence::of(job), id, &p).await.map_err(JobError::transient)?;
    held(written)?;
    progress.set(tally.report(total));
    info!(recording = id, refetched = tally.refetched, gaps = tally.gaps, flagged = tally.flagged, "repair finished");
    Ok(())
}

/// Fetch the segment again from the source VOD and store it over the old
/// object, only if the copy is verified: it decodes (or, for fMP4 media
/// that needs its init section, is not empty). Returns its size if it did.
async fn refetch(
    ctx: &Ctx,
    source: Option<&(MediaPlaylist, FetchPolicy, colony::hls::HlsClient)>,
    row: &LedgerRow,
    key: &ObjectKey,
) -> Result<Option<i64>, JobError> {
    let Some((playlist, policy, hls)) = source else { return Ok(None) };
    let Some(segment) = playlist.segments.iter().find(|s| s.sequence == row.media_sequence as u64) else {
        return Ok(None);
    };
    let cap = hls.limits().segment_cap(segment.duration);
    let Ok(body) = hls.get(&segment.uri, segment.byte_range, policy, cap).await else { return Ok(None) };
    let verified =
        if row.init_key.is_some() { !body.is_empty() } else { !matches!(decode(&body).await?, Decoded::Broken(_)) };
    if !verified {
        return Ok(None);
    }
    let size = body.len() as i64;
    ctx.store.put(key, body).await.map_err(JobError::transient)?;
    Ok(Some(size))
}

/// Write a verdict on one segment, fenced on this claim of the job.
async fn fix(pool: &sqlx::PgPool, job: &Job, id: i64, row: &LedgerRow, fix: &SegmentFix) -> Result<(), JobError> {
    let written = recording::fix_segment(pool, JobFence::of(job), id, row.epoch, row.media_sequence, fix)
        .await
        .map_err(JobError::transient)?;
    held(written)
}

/// A fenced write that changed nothing: the job is no longer this worker's.
fn held(written: bool) -> Result<(), JobError> {
    if written { Ok(()) } else { Err(JobError::fenced("repair's lease moved on; stopping without another write")) }
}
