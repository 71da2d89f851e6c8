//! What the ffmpeg jobs share: a recording made readable as a local VOD
//! playlist (in place for `file://` storage, downloaded for S3), ffprobe
//! facts, ffmpeg runs with `-progress` parsed into the job's progress, and
//! uploading a directory of outputs (media first, playlists last).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{JobError, ProgressSink};
use crate::Ctx;
use colony::recording::{self, Ledger, LedgerRow, PlaylistKind};
use colony::storage::{ObjectKey, ObjectStore};

/// A recording ready for ffmpeg.
pub struct LocalRecording {
    pub id: i64,
    pub prefix: ObjectKey,
    pub playlist: PathBuf,
    pub duration_secs: f64,
    pub rows: Vec<LedgerRow>,
    /// Holds the playlist (and downloaded segments) until dropped.
    pub work: tempfile::TempDir,
}

/// Make a recording's media readable by ffmpeg from a local playlist.
pub async fn local_recording(ctx: &Ctx, pool: &PgPool, id: i64) -> Result<LocalRecording, JobError> {
    let prefix: Option<String> = sqlx::query_scalar("SELECT storage_prefix FROM recordings WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(JobError::transient)?;
    let prefix = prefix.ok_or_else(|| JobError::permanent(format!("recording {id} does not exist")))?;
    let prefix = ObjectKey::parse(&prefix).map_err(JobError::permanent)?;
    let rows = Ledger::new(pool.clone(), id, 0)
        .rows()
        .await
        .map_err(|e| JobError::transient(format!("{:#}", anyhow::Error::from(e))))?;
    if rows.iter().all(|r| r.is_gap) {
        return Err(JobError::permanent(format!("recording {id} has no stored segments")));
    }
    let work = tempfile::Builder::new().prefix("colony-job-").tempdir().map_err(JobError::transient)?;
    // Every key the playlist names, resolved to a local file.
    let mut local: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let keys: std::collections::BTreeSet<String> =
        rows.iter().filter(|r| !r.is_gap).flat_map(|r| [r.object_key.clone(), r.init_key.clone()]).flatten().collect();
    for key in keys {
        let object = ObjectKey::parse(&key).map_err(JobError::permanent)?;
        let path = match ctx.store.local_path(&object) {
            Some(path) => path,
            None => {
                let path = work.path().join(&key);
                if let Some(dir) = path.parent() {
                    tokio::fs::create_dir_all(dir).await.map_err(JobError::transient)?;
                }
                let body = colony::storage::get_bytes(ctx.store.as_ref(), &object).await.map_err(|e| {
                    if e.is_not_found() {
                        JobError::permanent(format!("{e}; run a repair job"))
                    } else {
                        JobError::transient(e)
                    }
                })?;
                tokio::fs::write(&path, &body).await.map_err(JobError::transient)?;
                path
            }
        };
        local.insert(key, path.display().to_string());
    }
    let text = recording::render_with(&rows, PlaylistKind::Vod, &|key: &str| {
        local.get(key).cloned().unwrap_or_else(|| key.to_owned())
    });
    let playlist = work.path().join("recording.m3u8");
    tokio::fs::write(&playlist, text).await.map_err(JobError::transient)?;
    let duration_secs = rows.iter().filter(|r| !r.is_gap).map(|r| r.duration_secs).sum();
    Ok(LocalRecording { id, prefix, playlist, duration_secs, rows, work })
}

/// How ffmpeg and ffprobe open a recording's local playlist. Every byte of
/// the media is the source's, so nothing is left to probing: the demuxer is
/// named (HLS, whose playlist Colony wrote and whose segments keep the
/// default extension check, never `-allowed_extensions ALL`), and the only
/// protocol allowed is `file`, so a segment that pretends to be a playlist
/// cannot send ffmpeg to the network or another demuxer.
pub fn hls_input(playlist: &Path) -> Vec<String> {
    ["-f", "hls", "-protocol_whitelist", "file", "-i"]
        .into_iter()
        .map(str::to_owned)
        .chain([playlist.display().to_string()])
        .collect()
}

/// Width, height and whether there is audio, from ffprobe.
pub async fn probe(input: &Path) -> Result<(u32, u32, bool), JobError> {
    let out = colony::child::scrub(&mut Command::new("ffprobe"))
        .args(["-v", "error", "-show_entries", "stream=codec_type,width,height", "-of", "json"])
        .args(hls_input(input))
        .output()
        .await
        .map_err(|e| JobError::transient(format!("ffprobe could not start: {e}")))?;
    if !out.status.success() {
        return Err(JobError::permanent(format!("ffprobe cannot read the media: {}", last_line(&out.stderr))));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(JobError::permanent)?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .ok_or_else(|| JobError::permanent("the media has no video stream"))?;
    let audio = streams.iter().any(|s| s["codec_type"] == "audio");
    Ok((video["width"].as_u64().unwrap_or(0) as u32, video["height"].as_u64().unwrap_or(0) as u32, audio))
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .chars()
        .take(300)
        .collect()
}

/// Run ffmpeg with `args`, reporting frame, fps, speed and percent of
/// `total_secs` from `-progress` as it goes. Undecodable input is permanent.
pub async fn ffmpeg(args: &[String], total_secs: f64, progress: &ProgressSink) -> Result<(), JobError> {
    let mut child = colony::child::scrub(&mut Command::new("ffmpeg"))
        .args(["-hide_banner", "-nostdin", "-nostats", "-v", "error", "-progress", "pipe:1", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| JobError::transient(format!("ffmpeg could not start: {e}")))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut BufReader::new(stderr), &mut buf).await;
        buf
    });
    let mut state = serde_json::Map::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((k, v)) = line.split_once('=') else { continue };
        match k {
            "frame" | "fps" | "speed" => {
                state.insert(k.into(), json!(v.trim()));
            }
            "out_time_us" => {
                if let Ok(us) = v.parse::<f64>() {
                    let pct = if total_secs > 0.0 { (us / 1e6 / total_secs * 100.0).clamp(0.0, 100.0) } else { 0.0 };
                    state.insert("percent".into(), json!((pct * 10.0).round() / 10.0));
                }
            }
            "progress" => progress.set(serde_json::Value::Object(state.clone())),
            _ => {}
        }
    }
    let status = child.wait().await.map_err(JobError::transient)?;
    let stderr = errors.await.unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let why = last_line(&stderr);
    if why.contains("Invalid data")
        || why.contains("could not find codec")
        || why.contains("no video")
        || why.contains("does not contain any stream")
    {
        Err(JobError::permanent(format!("ffmpeg cannot decode the media: {why}")))
    } else {
        Err(JobError::transient(format!("ffmpeg failed ({status}): {why}")))
    }
}

/// Upload every file under `dir` to `prefix/...`; playlists (`.m3u8`,
/// `.vtt`) after everything else, so no playlist names a missing object.
pub async fn upload_dir(store: &dyn ObjectStore, dir: &Path, prefix: &ObjectKey) -> Result<u64, JobError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let mut entries = tokio::fs::read_dir(&d).await.map_err(JobError::transient)?;
        while let Some(e) = entries.next_entry().await.map_err(JobError::transient)? {
            let path = e.path();
            if e.file_type().await.map_err(JobError::transient)?.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let is_index = |p: &PathBuf| p.extension().is_some_and(|e| e == "m3u8" || e == "vtt");
    files.sort_by_key(|p| (is_index(p), p.file_name().is_some_and(|n| n == "master.m3u8"), p.clone()));
    let mut bytes = 0;
    for file in files {
        let rel = file.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        let key = prefix.join(&rel).map_err(JobError::permanent)?;
        bytes += store.put_file(&key, &file).await.map_err(JobError::transient)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Defect: ffmpeg read stored, source-controlled bytes with
    /// `-allowed_extensions ALL` and let them pick their own demuxer and
    /// protocols. Every command over stored media now names the demuxer and
    /// allows the `file` protocol alone.
    #[test]
    fn every_ffmpeg_over_stored_bytes_names_its_demuxer_and_protocols() {
        let playlist = Path::new("/work/recording.m3u8");
        let commands = [
            super::hls_input(playlist),
            crate::jobs::export::ffmpeg_args(playlist, Path::new("/work/out.mp4")),
            crate::jobs::reencode::ladder_args("/work/recording.m3u8", "/work/ladder", &[480, 360], true),
        ];
        for args in &commands {
            let joined = args.join(" ");
            assert!(!joined.contains("allowed_extensions"), "{joined}");
            assert!(joined.contains("-f hls -protocol_whitelist file -i /work/recording.m3u8"), "{joined}");
        }
        let decode = crate::jobs::repair::decode_args(Path::new("/work/segment")).join(" ");
        assert!(decode.contains("-protocol_whitelist file -f mpegts -i /work/segment"), "{decode}");
    }
}
