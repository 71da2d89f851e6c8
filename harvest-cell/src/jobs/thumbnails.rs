//! `thumbnails`: a poster, a storyboard sprite (a grid of small frames at a
//! fixed interval) and the WebVTT that maps time ranges to sprite tiles, under
//! `thumbnails/`. Players use the pair for seek previews.

use std::fmt::Write;

use super::media::{ffmpeg, local_recording, probe, upload_dir};
use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::queue::RecordingArgs;

const TILE_WIDTH: u32 = 160;
const COLUMNS: u32 = 10;
const MAX_TILES: f64 = 100.0;

/// The storyboard's WebVTT: one cue per tile. Pure.
pub fn storyboard_vtt(duration: f64, interval: f64, tiles: u32, tile_w: u32, tile_h: u32) -> String {
    let stamp = |t: f64| {
        let ms = (t * 1000.0).round() as u64;
        format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
    };
    let mut out = String::from("WEBVTT\n");
    for i in 0..tiles {
        let start = f64::from(i) * interval;
        if start >= duration {
            break;
        }
        let end = (start + interval).min(duration);
        let (x, y) = ((i % COLUMNS) * tile_w, (i / COLUMNS) * tile_h);
        let _ = write!(out, "\n{} --> {}\nsprite.jpg#xywh={x},{y},{tile_w},{tile_h}\n", stamp(start), stamp(end));
    }
    out
}

pub async fn run(ctx: &Ctx, args: &RecordingArgs, progress: &ProgressSink) -> Result<(), JobError> {
    let rec = local_recording(ctx, ctx.queue.pool(), args.recording_id).await?;
    let first = rec.rows.iter().find_map(|r| r.object_key.clone()).unwrap_or_default();
    let (w, h, _) = probe(&rec.playlist).await.or(Err(JobError::permanent(format!("cannot probe {first}"))))?;
    let tile_h = ((f64::from(TILE_WIDTH) * f64::from(h) / f64::from(w.max(1))).round() as u32 / 2 * 2).max(2);
    let interval = (rec.duration_secs / MAX_TILES).max(1.0).ceil();
    let tiles = (rec.duration_secs / interval).ceil().max(1.0) as u32;
    let rows = tiles.div_ceil(COLUMNS);
    let out = rec.work.path().join("thumbnails");
    tokio::fs::create_dir_all(&out).await.map_err(JobError::transient)?;
    let input = super::media::hls_input(&rec.playlist);
    let poster_at = format!("{:.3}", (rec.duration_secs * 0.1).min(rec.duration_secs - 0.5).max(0.0));
    let s = |v: &str| v.to_owned();
    let poster: Vec<String> = [s("-ss"), poster_at]
        .into_iter()
        .chain(input.iter().cloned())
        .chain([s("-frames:v"), s("1"), s("-q:v"), s("3"), out.join("poster.jpg").display().to_string()])
        .collect();
    ffmpeg(&poster, 0.0, progress).await?;
    let filter = format!("fps=1/{interval},scale={TILE_WIDTH}:{tile_h},tile={COLUMNS}x{rows}");
    let sprite: Vec<String> = input
        .into_iter()
        .chain([
            s("-vf"),
            filter,
            s("-frames:v"),
            s("1"),
            s("-q:v"),
            s("5"),
            out.join("sprite.jpg").display().to_string(),
        ])
        .collect();
    ffmpeg(&sprite, rec.duration_secs, progress).await?;
    let vtt = storyboard_vtt(rec.duration_secs, interval, tiles, TILE_WIDTH, tile_h);
    tokio::fs::write(out.join("sprite.vtt"), vtt).await.map_err(JobError::transient)?;
    let prefix = rec.prefix.join("thumbnails").map_err(JobError::permanent)?;
    upload_dir(ctx.store.as_ref(), &out, &prefix).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtt_cues_tile_the_sprite_in_reading_order() {
        let vtt = storyboard_vtt(25.0, 2.0, 13, 160, 90);
        assert!(vtt.starts_with("WEBVTT\n"));
        assert_eq!(vtt.matches(" --> ").count(), 13);
        assert!(vtt.contains("00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n"));
        assert!(vtt.contains("00:00:20.000 --> 00:00:22.000\nsprite.jpg#xywh=0,90,160,90\n"));
        assert!(vtt.contains("00:00:24.000 --> 00:00:25.000\nsprite.jpg#xywh=320,90,160,90\n"));
    }
}
