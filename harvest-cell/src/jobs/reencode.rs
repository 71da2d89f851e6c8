//! `reencode`: one ffmpeg process builds the whole ABR ladder: the decoded
//! video is split and scaled once per rung, every rung gets keyframes at the
//! same forced times (so players can switch at any segment boundary), and
//! `var_stream_map` writes the HLS variants and a master playlist under the
//! recording's `ladder/`. Rungs above the source height are skipped; a source
//! without audio makes video-only variants.

use super::media::{ffmpeg, local_recording, probe, upload_dir};
use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::queue::ReencodeArgs;

pub const DEFAULT_LADDER: &[u32] = &[720, 480, 360];
const SEGMENT_SECS: u32 = 2;

/// The rungs to build for a source of `source_height`: those at or below it,
/// or the source height itself when every rung is above it. Pure.
pub fn rungs(ladder: &[u32], source_height: u32) -> Vec<u32> {
    let mut kept: Vec<u32> = ladder.iter().copied().filter(|h| *h <= source_height).collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    kept.dedup();
    if kept.is_empty() {
        kept.push(source_height / 2 * 2);
    }
    kept
}

fn kbps(height: u32) -> u32 {
    match height {
        h if h >= 1080 => 5000,
        h if h >= 720 => 2800,
        h if h >= 480 => 1400,
        h if h >= 360 => 800,
        h => (h * 2).max(200),
    }
}

/// The ffmpeg arguments for a single-pass ladder. Pure.
pub fn ladder_args(input: &str, out_dir: &str, rungs: &[u32], audio: bool) -> Vec<String> {
    let n = rungs.len();
    let mut filter = format!("[0:v]split={n}");
    for i in 0..n {
        filter.push_str(&format!("[s{i}]"));
    }
    for (i, h) in rungs.iter().enumerate() {
        filter.push_str(&format!(";[s{i}]scale=-2:{h}[v{i}]"));
    }
    let mut args = super::media::hls_input(std::path::Path::new(input));
    args.extend(["-filter_complex".into(), filter]);
    for i in 0..n {
        args.extend(["-map".into(), format!("[v{i}]")]);
        if audio {
            args.extend(["-map".into(), "0:a:0".into()]);
        }
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{SEGMENT_SECS})"),
        ]
        .map(String::from),
    );
    for (i, h) in rungs.iter().enumerate() {
        let rate = kbps(*h);
        args.extend([
            format!("-b:v:{i}"),
            format!("{rate}k"),
            format!("-maxrate:v:{i}"),
            format!("{}k", rate * 3 / 2),
            format!("-bufsize:v:{i}"),
            format!("{}k", rate * 2),
        ]);
    }
    if audio {
        args.extend(["-c:a", "aac", "-b:a", "128k", "-ac", "2"].map(String::from));
    }
    let map: Vec<String> = (0..n)
        .map(|i| if audio { format!("v:{i},a:{i},name:{}p", rungs[i]) } else { format!("v:{i},name:{}p", rungs[i]) })
        .collect();
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &SEGMENT_SECS.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_segment_filename",
            &format!("{out_dir}/%v/seg%05d.ts"),
            "-master_pl_name",
            "master.m3u8",
            "-var_stream_map",
            &map.join(" "),
            &format!("{out_dir}/%v/index.m3u8"),
        ]
        .map(String::from),
    );
    args
}

pub async fn run(ctx: &Ctx, args: &ReencodeArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let rec = local_recording(ctx, ctx.queue.pool(), args.recording_id).await?;
    let ladder: &[u32] = args.ladder.as_deref().unwrap_or(DEFAULT_LADDER);
    let (_, height, audio) = probe(&rec.playlist).await?;
    let rungs = rungs(ladder, height);
    let out = rec.work.path().join("ladder");
    tokio::fs::create_dir_all(&out).await.map_err(JobError::transient)?;
    tracing::info!(?rungs, audio, source_height = height, "building the ladder");
    ffmpeg(
        &ladder_args(&rec.playlist.display().to_string(), &out.display().to_string(), &rungs, audio),
        rec.duration_secs,
        progress,
    )
    .await?;
    let prefix = rec.prefix.join("ladder").map_err(JobError::permanent)?;
    upload_dir(ctx.store.as_ref(), &out, &prefix).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_above_the_source_are_skipped() {
        assert_eq!(rungs(DEFAULT_LADDER, 1080), [720, 480, 360]);
        assert_eq!(rungs(DEFAULT_LADDER, 480), [480, 360]);
        assert_eq!(rungs(DEFAULT_LADDER, 240), [240]);
        assert_eq!(rungs(&[360, 720, 360], 720), [720, 360]);
    }

    #[test]
    fn one_process_maps_every_rung() {
        let a = ladder_args("in.m3u8", "out", &[480, 360], true).join(" ");
        assert!(a.contains("[0:v]split=2[s0][s1];[s0]scale=-2:480[v0];[s1]scale=-2:360[v1]"), "{a}");
        assert!(a.contains("-var_stream_map v:0,a:0,name:480p v:1,a:1,name:360p"), "{a}");
        let silent = ladder_args("in.m3u8", "out", &[360], false).join(" ");
        assert!(!silent.contains("0:a") && silent.contains("-var_stream_map v:0,name:360p"), "{silent}");
    }
}
