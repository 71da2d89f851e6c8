//! `repair`: check that every ledger segment of a closed recording exists and
//! decodes; fetch again from the source VOD what is missing or broken where
//! the recording has one; turn what cannot be recovered into explicit gap
//! rows; rebuild the VOD playlist and the recording's totals.

use bytes::Bytes;
use serde_json::json;
use tokio::process::Command;
use tracing::{info, warn};

use super::media::recording_id;
use super::{Ctx, JobError, ProgressSink};
use crate::hls::VariantChoice;
use crate::queue::Job;
use crate::recording::{self, Ledger, PlaylistKind, Progress, RecordingState};
use crate::storage::{ObjectKey, get_bytes};

/// Does ffprobe find a decodable stream in these bytes?
async fn decodes(body: &Bytes) -> bool {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(_) => return true,
    };
    let path = dir.path().join("segment");
    if tokio::fs::write(&path, body).await.is_err() {
        return true;
    }
    Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .await
        .map(|o| o.status.success() && o.stderr.is_empty())
        .unwrap_or(true)
}

pub async fn run(ctx: &Ctx, job: &Job, progress: &ProgressSink) -> Result<(), JobError> {
    let pool = ctx.queue.pool();
    let id = recording_id(job)?;
    let row: Option<(RecordingState, String, Option<String>, i64)> =
        sqlx::query_as("SELECT state, storage_prefix, source_url, lease_token FROM recordings WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(JobError::transient)?;
    let (state, prefix, source_url, token) =
        row.ok_or_else(|| JobError::Permanent(format!("recording {id} does not exist")))?;
    if state.is_open() {
        return Err(JobError::Transient(format!(
            "recording {id} is still being recorded; repair runs after it closes"
        )));
    }
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let ledger = Ledger::new(pool.clone(), id, token);
    let rows = ledger.rows().await.map_err(|e| JobError::transient(format!("{:#}", anyhow::Error::from(e))))?;

    // The source VOD's segments by sequence, if there is a source to ask.
    let source = match source_url.as_deref().map(url::Url::parse) {
        Some(Ok(url)) => match ctx.hls.resolve_variant(&url, &VariantChoice::Best).await {
            Ok(media) => ctx.hls.media_playlist(&media).await.ok().map(|(p, _)| p),
            Err(e) => {
                warn!(error = %e, "the source VOD is unavailable; broken segments become gaps");
                None
            }
        },
        _ => None,
    };
    let (mut refetched, mut gapped) = (0u64, 0u64);
    let total = rows.len();
    for (i, row) in rows.iter().enumerate() {
        progress.set(json!({ "segments_checked": i, "segments_total": total, "refetched": refetched, "gaps": gapped }));
        let Some(key) = row.object_key.as_deref() else { continue };
        let key = ObjectKey::parse(key).map_err(JobError::permanent)?;
        let healthy = match get_bytes(ctx.store.as_ref(), &key).await {
            Ok(body) => body.len() as i64 == row.bytes && (row.init_key.is_some() || decodes(&body).await),
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(JobError::transient(e)),
        };
        if healthy {
            continue;
        }
        let again = source.as_ref().and_then(|p| p.segments.iter().find(|s| s.sequence == row.media_sequence as u64));
        let recovered = match again {
            Some(segment) => {
                match ctx.hls.get(&segment.uri, segment.byte_range).await {
                    Ok(body) if decodes(&body).await || row.init_key.is_some() => {
                        ctx.store.put(&key, body.clone()).await.map_err(JobError::transient)?;
                        sqlx::query("UPDATE segments SET bytes = $4 WHERE recording_id = $1 AND epoch = $2 AND media_sequence = $3")
                        .bind(id)
                        .bind(row.epoch)
                        .bind(row.media_sequence)
                        .bind(body.len() as i64)
                        .execute(pool)
                        .await
                        .map_err(JobError::transient)?;
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        };
        if recovered {
            info!(%key, "segment fetched again from the source");
            refetched += 1;
        } else {
            warn!(%key, "segment is missing or broken and cannot be fetched again; marking it as a gap");
            sqlx::query(
                "UPDATE segments SET is_gap = true, gap_count = 1, object_key = NULL, init_key = NULL, bytes = 0, discontinuity = true
                  WHERE recording_id = $1 AND epoch = $2 AND media_sequence = $3",
            )
            .bind(id)
            .bind(row.epoch)
            .bind(row.media_sequence)
            .execute(pool)
            .await
            .map_err(JobError::transient)?;
            let _ = ctx.store.delete(&key).await;
            gapped += 1;
        }
    }
    let rows = ledger.rows().await.map_err(|e| JobError::transient(format!("{:#}", anyhow::Error::from(e))))?;
    let text = recording::render(&rows, prefix.as_str(), PlaylistKind::Vod);
    let playlist = recording::playlist_key(&prefix).map_err(JobError::permanent)?;
    ctx.store.put(&playlist, Bytes::from(text)).await.map_err(JobError::transient)?;
    let p = Progress::of(rows.iter());
    sqlx::query(
        "UPDATE recordings SET segment_count = $2, gap_count = $3, bytes = $4, duration_secs = $5 WHERE id = $1",
    )
    .bind(id)
    .bind(p.segments)
    .bind(p.gaps)
    .bind(p.bytes)
    .bind(p.duration_secs)
    .execute(pool)
    .await
    .map_err(JobError::transient)?;
    progress.set(json!({ "segments_checked": total, "segments_total": total, "refetched": refetched, "gaps": gapped }));
    info!(recording = id, refetched, gapped, "repair finished");
    Ok(())
}
