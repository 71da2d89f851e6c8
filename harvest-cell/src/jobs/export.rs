//! `export`: the recording as one fragmented MP4 under `export/`.
//! `frag_keyframe+empty_moov` makes every fragment self-contained, so a killed
//! ffmpeg still leaves a playable file; an output that is only a header (under
//! 64 KiB) is a failure, never a saved export.

use super::media::{ffmpeg, local_recording};
use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::queue::RecordingArgs;

const MIN_EXPORT_BYTES: u64 = 64 * 1024;

/// The ffmpeg arguments of an export, exposed for the kill-survival test.
pub fn ffmpeg_args(input: &std::path::Path, output: &std::path::Path) -> Vec<String> {
    let mut args = super::media::hls_input(input);
    args.extend([
        "-map".into(),
        "0".into(),
        "-c".into(),
        "copy".into(),
        // MPEG-TS carries AAC in ADTS frames; MP4 wants them without.
        "-bsf:a".into(),
        "aac_adtstoasc".into(),
        "-movflags".into(),
        "frag_keyframe+empty_moov+default_base_moof".into(),
        // Write each fragment out as it is made: a SIGKILL then leaves every
        // finished fragment on disk, not in ffmpeg's buffer.
        "-flush_packets".into(),
        "1".into(),
        "-f".into(),
        "mp4".into(),
        output.display().to_string(),
    ]);
    args
}

pub async fn run(ctx: &Ctx, args: &RecordingArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let rec = local_recording(ctx, ctx.queue.pool(), args.recording_id).await?;
    let output = rec.work.path().join("export.mp4");
    ffmpeg(&ffmpeg_args(&rec.playlist, &output), rec.duration_secs, progress).await?;
    let size = tokio::fs::metadata(&output).await.map(|m| m.len()).unwrap_or(0);
    if size < MIN_EXPORT_BYTES {
        return Err(JobError::permanent(format!(
            "the export is only {size} bytes (a header without media); not saving it"
        )));
    }
    let key = rec.prefix.join(&format!("export/{}.mp4", rec.id)).map_err(JobError::permanent)?;
    ctx.store.put_file(&key, &output).await.map_err(JobError::transient)?;
    tracing::info!(%key, size, "export stored");
    Ok(())
}
