//! The harvest cell end to end: the real binary working the real queue,
//! downloading VODs from the test source into real storage.

use std::collections::BTreeSet;
use std::time::Duration;

use colony::queue::{NewJob, Queue};
use colony::storage::{ObjectKey, get_bytes};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::observer::{Rig, ffmpeg_reads, signal, wait_exit};
use nix::sys::signal::Signal;
use serde_json::json;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A finished broadcast of `segments` segments, served as a VOD.
async fn vod(source: &LiveSource, name: &str, segments: usize) {
    vod_of(source, name, segments, Profile::TEST).await
}

async fn vod_of(source: &LiveSource, name: &str, segments: usize, profile: Profile) {
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, profile)).await.unwrap();
    source.add(name, &media, segments);
    source.end(name);
}

/// Download a 480p VOD with the given post-processing pipeline and run
/// everything to the end; returns the recording id.
async fn downloaded_with_pipeline(rig: &Rig, source: &LiveSource, name: &str, profile: Profile, pipeline: &str) -> i64 {
    vod_of(source, name, 12, profile).await;
    let channel = rig.channel(name, "http://unused.invalid/").await;
    sqlx::query("UPDATE channels SET pipeline = $2::jsonb WHERE id = $1")
        .bind(channel)
        .bind(pipeline)
        .execute(&rig.pool)
        .await
        .unwrap();
    enqueue_download(rig, &source.media_url(name), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(120)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let states: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT kind, state::text, last_error FROM jobs ORDER BY id")
            .fetch_all(&rig.pool)
            .await
            .unwrap();
    assert!(states.iter().all(|s| s.1 == "succeeded"), "{states:?}\n{stderr}");
    vod_recording(rig, channel).await.0
}

fn local(rig: &Rig, key: &str) -> std::path::PathBuf {
    rig.media_root.as_ref().unwrap().join(key)
}

/// Keyframe times of a playlist's video, from ffprobe.
fn keyframes(playlist: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-skip_frame",
            "nokey",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(playlist)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

fn streams(path: &std::path::Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_type,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn enqueue_download(rig: &Rig, url: &str, channel: i64) -> i64 {
    Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("vod_download", json!({ "url": url, "channel_id": channel })))
        .await
        .unwrap()
        .id()
}

async fn job(rig: &Rig, id: i64) -> (String, i32, Option<String>, Option<serde_json::Value>) {
    sqlx::query_as("SELECT state::text, attempt, last_error, progress FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&rig.pool)
        .await
        .unwrap()
}

async fn vod_recording(rig: &Rig, channel: i64) -> (i64, String) {
    sqlx::query_as("SELECT id, state::text FROM recordings WHERE channel_id = $1 AND source = 'vod'")
        .bind(channel)
        .fetch_one(&rig.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vod_download_stores_every_segment_once_and_a_rerun_changes_nothing() {
    let source = LiveSource::start().await;
    vod(&source, "past", 30).await;
    let rig = Rig::file().await;
    let channel = rig.channel("past", "http://unused.invalid/").await;
    let id = enqueue_download(&rig, &source.master_url("past"), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");

    let (state, attempt, error, progress) = job(&rig, id).await;
    assert_eq!((state.as_str(), attempt, error), ("succeeded", 1, None));
    let progress = progress.unwrap();
    assert_eq!(progress["segments_done"], 30, "{progress}");
    assert_eq!(progress["segments_total"], 30);
    let (recording, rstate) = vod_recording(&rig, channel).await;
    assert_eq!(rstate, "complete");
    let rows = rig.rows(recording).await;
    let seqs: BTreeSet<u64> = rows.iter().map(|r| r.media_sequence as u64).collect();
    let published: BTreeSet<u64> = source.published("past").iter().map(|p| p.0).collect();
    assert_eq!(seqs, published);
    assert!(rows.iter().all(|r| !r.is_gap && r.source == colony::recording::MediaSource::Vod));
    for row in &rows {
        let key = ObjectKey::parse(row.object_key.as_deref().unwrap()).unwrap();
        let body = get_bytes(rig.store.as_ref(), &key).await.unwrap();
        assert_eq!(body.as_ref(), source.segment_bytes("past", row.media_sequence as u64).unwrap().as_slice(), "{key}");
    }
    let playlist = rig.media_root.as_ref().unwrap().join(format!("channels/past/{recording}/playlist.m3u8"));
    ffmpeg_reads(&playlist);
    // The channel's post-processing is queued for the new recording.
    let followups: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE (args->>'recording_id')::bigint = $1")
        .bind(recording)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    assert_eq!(followups, 2);

    // The same download asked for again: one recording, the same rows.
    let again = enqueue_download(&rig, &source.master_url("past"), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(job(&rig, again).await.0, "succeeded");
    assert_eq!(rig.rows(recording).await.len(), 30);
    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE channel_id = $1")
        .bind(channel)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    assert_eq!(recordings, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cell_killed_mid_download_is_finished_by_another_with_nothing_missing_or_doubled() {
    let source = LiveSource::start().await;
    vod(&source, "long", 40).await;
    source.segment_delay("long", Duration::from_millis(200));
    let rig = Rig::file().await;
    let channel = rig.channel("long", "http://unused.invalid/").await;
    let id = enqueue_download(&rig, &source.media_url("long"), channel).await;
    let first = rig.harvest(&["--lease", "2s", "--download-concurrency", "2", "--kinds", "vod_download"]);
    colony_tests::eventually("the download to be under way", SECS(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM segments").fetch_one(&rig.pool).await.unwrap();
        (n >= 8).then_some(())
    })
    .await;
    signal(&first, Signal::SIGKILL);
    let _ = wait_exit(first, SECS(10)).await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM segments").fetch_one(&rig.pool).await.unwrap();
    assert!(before < 40, "the first cell finished before it was killed");

    // The second cell rescues the job once the dead cell's lease runs out.
    let second =
        rig.harvest(&["--lease", "2s", "--idle-exit", "4s", "--download-concurrency", "4", "--kinds", "vod_download"]);
    let (code, stderr) = wait_exit(second, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("rescued a job whose lease expired"), "{stderr}");
    let (state, attempt, ..) = job(&rig, id).await;
    assert_eq!((state.as_str(), attempt), ("succeeded", 2));
    let (recording, rstate) = vod_recording(&rig, channel).await;
    assert_eq!(rstate, "complete");
    let rows = rig.rows(recording).await;
    assert_eq!(rows.len(), 40, "no duplicate (the ledger's key) and none missing");
    assert!(rows.iter().all(|r| !r.is_gap));
    let listed =
        rig.store.list(Some(&ObjectKey::parse(&format!("channels/long/{recording}/e0")).unwrap())).await.unwrap();
    assert_eq!(listed.len(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_job_ends_dead_with_its_error_while_the_others_finish() {
    let source = LiveSource::start().await;
    vod(&source, "good", 10).await;
    let rig = Rig::file().await;
    let channel = rig.channel("good", "http://unused.invalid/").await;
    let poison = enqueue_download(&rig, &format!("http://{}/nope/index.m3u8", source.addr), channel).await;
    let live = rig.channel("stilllive", "http://unused.invalid/").await;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    source.add("stilllive", &media, 4);
    let not_a_vod = enqueue_download(&rig, &source.media_url("stilllive"), live).await;
    let good = enqueue_download(&rig, &source.media_url("good"), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, attempt, error, _) = job(&rig, poison).await;
    assert_eq!((state.as_str(), attempt), ("dead", 1), "a 404 VOD is permanent: dead at once");
    assert!(error.unwrap().contains("answered 404"));
    let (state, _, error, _) = job(&rig, not_a_vod).await;
    assert_eq!(state, "dead");
    assert!(error.unwrap().contains("live stream"));
    assert_eq!(job(&rig, good).await.0, "succeeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_cells_never_run_the_same_job() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let mut jobs = Vec::new();
    for i in 0..6 {
        let name = format!("vod{i}");
        vod(&source, &name, 6).await;
        source.segment_delay(&name, Duration::from_millis(50));
        let channel = rig.channel(&name, "http://unused.invalid/").await;
        jobs.push(enqueue_download(&rig, &source.media_url(&name), channel).await);
    }
    let a = rig.harvest(&["--drain", "--concurrency", "2", "--kinds", "vod_download"]);
    let b = rig.harvest(&["--drain", "--concurrency", "2", "--kinds", "vod_download"]);
    let (ca, ea) = wait_exit(a, SECS(60)).await;
    let (cb, eb) = wait_exit(b, SECS(60)).await;
    assert_eq!((ca, cb), (Some(0), Some(0)), "{ea}\n{eb}");
    for id in jobs {
        let (state, attempt, ..) = job(&rig, id).await;
        assert_eq!((state.as_str(), attempt), ("succeeded", 1), "job {id}");
    }
    let started = ea.matches("job started").count() + eb.matches("job started").count();
    assert_eq!(started, 6, "each job was started exactly once across both cells");
    let segments: i64 = sqlx::query_scalar("SELECT count(*) FROM segments").fetch_one(&rig.pool).await.unwrap();
    assert_eq!(segments, 36);
}

/// A job row is untrusted: arguments that do not fit the kind (written by
/// hand, or by another build) fail the job for good, with the reason, and
/// never reach the handler.
#[tokio::test]
async fn a_row_whose_arguments_do_not_fit_its_kind_is_dead_with_the_reason() {
    let rig = Rig::file().await;
    let q = Queue::new(rig.pool.clone());
    let no_recording = q.enqueue(&NewJob::new("export", json!({ "recording": 7 }))).await.unwrap().id();
    let not_a_number = q.enqueue(&NewJob::new("repair", json!({ "recording_id": "7" }))).await.unwrap().id();
    let no_channel = q.enqueue(&NewJob::new("vod_download", json!({ "url": "http://x/v.m3u8" }))).await.unwrap().id();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    for (id, why) in [
        (no_recording, "missing field `recording_id`"),
        (not_a_number, "arguments of a repair job do not fit it"),
        (no_channel, "needs channel_id or channel"),
    ] {
        let (state, attempt, error, _) = job(&rig, id).await;
        assert_eq!((state.as_str(), attempt), ("dead", 1), "job {id}");
        let error = error.unwrap_or_default();
        assert!(error.contains(why), "job {id}: {error}");
    }
}

#[tokio::test]
async fn a_kind_this_build_cannot_run_is_refused_at_start() {
    let rig = Rig::file().await;
    let out = rig.harvest(&["--kinds", "vod_download,teleport"]).wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run 'teleport' jobs"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_builds_an_aligned_ladder_an_export_and_thumbnails() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording =
        downloaded_with_pipeline(&rig, &source, "show", Profile::SMALL_480P, r#"["reencode", "export", "thumbnails"]"#)
            .await;
    let base = format!("channels/show/{recording}");

    // Ladder: 720p skipped for a 480p source; 480p and 360p with keyframes at
    // the same times; a master playlist ffmpeg can read.
    let master = std::fs::read_to_string(local(&rig, &format!("{base}/ladder/master.m3u8"))).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
    assert!(!master.contains("720p"));
    let k480 = keyframes(&local(&rig, &format!("{base}/ladder/480p/index.m3u8")));
    let k360 = keyframes(&local(&rig, &format!("{base}/ladder/360p/index.m3u8")));
    assert!(k480.len() >= 5, "{k480:?}");
    assert_eq!(k480, k360, "keyframes are aligned across rungs");
    assert!(streams(&local(&rig, &format!("{base}/ladder/360p/index.m3u8"))).contains("video,360"));
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(local(&rig, &format!("{base}/ladder/master.m3u8")))
        .args(["-map", "0", "-c", "copy", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let progress: serde_json::Value =
        sqlx::query_scalar("SELECT progress FROM jobs WHERE kind = 'reencode'").fetch_one(&rig.pool).await.unwrap();
    assert!(progress["percent"].as_f64().unwrap() > 90.0 && progress.get("speed").is_some(), "{progress}");

    // Export: one fragmented MP4 as long as the recording.
    let export = local(&rig, &format!("{base}/export/{recording}.mp4"));
    assert!(std::fs::metadata(&export).unwrap().len() > 64 * 1024);
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&export)
        .output()
        .unwrap();
    let secs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((secs - 12.0).abs() < 1.0, "export is {secs}s");

    // Thumbnails: a JPEG poster, a sprite and its WebVTT.
    let poster = std::fs::read(local(&rig, &format!("{base}/thumbnails/poster.jpg"))).unwrap();
    assert_eq!(&poster[..2], &[0xFF, 0xD8], "poster is a JPEG");
    assert!(std::fs::metadata(local(&rig, &format!("{base}/thumbnails/sprite.jpg"))).unwrap().len() > 1000);
    let vtt = std::fs::read_to_string(local(&rig, &format!("{base}/thumbnails/sprite.vtt"))).unwrap();
    assert!(vtt.starts_with("WEBVTT") && vtt.matches("sprite.jpg#xywh=").count() == 12, "{vtt}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_without_audio_reencodes() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording = downloaded_with_pipeline(&rig, &source, "silent", Profile::SILENT_480P, r#"["reencode"]"#).await;
    let rung = local(&rig, &format!("channels/silent/{recording}/ladder/480p/index.m3u8"));
    let s = streams(&rung);
    assert!(s.contains("video,480") && !s.contains("audio"), "{s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_killed_midway_is_still_a_valid_file() {
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("partial.mp4");
    // A slow, long input: the whole 120 s test media, read in real time.
    let mut args = harvest_cell::jobs::export::ffmpeg_args(&media.dir.join("index.m3u8"), &output);
    args.insert(0, "-re".into());
    let mut child = std::process::Command::new("ffmpeg").args(["-v", "error", "-y"]).args(&args).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(4));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&output)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "a killed export must stay readable: {}", String::from_utf8_lossy(&out.stderr));
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&output)
        .output()
        .unwrap();
    let secs: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap_or(0.0);
    assert!(secs >= 2.0, "the partial export holds {secs}s of media");
}

#[tokio::test(flavor = "multi_thread")]
async fn media_ffmpeg_cannot_decode_is_a_dead_job_and_no_export_is_saved() {
    let rig = Rig::file().await;
    let channel = rig.channel("junk", "http://unused.invalid/").await;
    let recording: i64 = sqlx::query_scalar(
        "INSERT INTO recordings (channel_id, source, state, storage_prefix) VALUES ($1, 'vod', 'complete', 'channels/junk/x') RETURNING id",
    )
    .bind(channel).fetch_one(&rig.pool).await.unwrap();
    for seq in 0..3i64 {
        let key = format!("channels/junk/x/e0/{seq:08}.ts");
        rig.store.put(&ObjectKey::parse(&key).unwrap(), bytes::Bytes::from(vec![0x42u8; 4000])).await.unwrap();
        sqlx::query("INSERT INTO segments (recording_id, epoch, media_sequence, duration_secs, bytes, object_key, source) VALUES ($1, 0, $2, 1.0, 4000, $3, 'vod')")
            .bind(recording).bind(seq).bind(&key).execute(&rig.pool).await.unwrap();
    }
    let id = Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("export", json!({ "recording_id": recording })))
        .await
        .unwrap()
        .id();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, attempt, error, _) = job(&rig, id).await;
    assert_eq!((state.as_str(), attempt), ("dead", 1), "{error:?}");
    let error = error.unwrap();
    assert!(error.contains("cannot decode") || error.contains("only"), "{error}");
    assert!(rig.store.list(Some(&ObjectKey::parse("channels/junk/x/export").unwrap())).await.unwrap().is_empty());
}

/// A downloaded VOD with segment 3 deleted and segment 5 overwritten by junk.
async fn damaged_recording(rig: &Rig, source: &LiveSource, name: &str) -> i64 {
    vod(source, name, 10).await;
    let channel = rig.channel(name, "http://unused.invalid/").await;
    sqlx::query("UPDATE channels SET pipeline = '[]' WHERE id = $1").bind(channel).execute(&rig.pool).await.unwrap();
    enqueue_download(rig, &source.media_url(name), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let recording = vod_recording(rig, channel).await.0;
    let rows = rig.rows(recording).await;
    rig.store.delete(&ObjectKey::parse(rows[3].object_key.as_deref().unwrap()).unwrap()).await.unwrap();
    rig.store
        .put(&ObjectKey::parse(rows[5].object_key.as_deref().unwrap()).unwrap(), bytes::Bytes::from(vec![7u8; 1000]))
        .await
        .unwrap();
    recording
}

async fn repair(rig: &Rig, recording: i64) -> (String, Option<serde_json::Value>) {
    let id = Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("repair", json!({ "recording_id": recording })))
        .await
        .unwrap()
        .id();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "repair"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, _, error, progress) = job(rig, id).await;
    assert_eq!(state, "succeeded", "{error:?}\n{stderr}");
    (state, progress)
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_fetches_missing_and_broken_segments_again_from_the_source_vod() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording = damaged_recording(&rig, &source, "fixme").await;
    let (_, progress) = repair(&rig, recording).await;
    assert_eq!(progress.unwrap()["refetched"], 2);
    let rows = rig.rows(recording).await;
    assert!(rows.iter().all(|r| !r.is_gap));
    for row in &rows {
        let body = get_bytes(rig.store.as_ref(), &ObjectKey::parse(row.object_key.as_deref().unwrap()).unwrap())
            .await
            .unwrap();
        assert_eq!(body.as_ref(), source.segment_bytes("fixme", row.media_sequence as u64).unwrap().as_slice());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_turns_what_cannot_be_recovered_into_gaps_and_rebuilds_the_playlist() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording = damaged_recording(&rig, &source, "lost").await;
    sqlx::query("UPDATE recordings SET source_url = NULL WHERE id = $1")
        .bind(recording)
        .execute(&rig.pool)
        .await
        .unwrap();
    let (_, progress) = repair(&rig, recording).await;
    assert_eq!(progress.unwrap()["gaps"], 2);
    let rows = rig.rows(recording).await;
    let gaps: Vec<i64> = rows.iter().filter(|r| r.is_gap).map(|r| r.media_sequence).collect();
    assert_eq!(gaps, [3, 5]);
    let (segments, gap_count): (i64, i64) =
        sqlx::query_as("SELECT segment_count, gap_count FROM recordings WHERE id = $1")
            .bind(recording)
            .fetch_one(&rig.pool)
            .await
            .unwrap();
    assert_eq!((segments, gap_count), (8, 2));
    let playlist = local(&rig, &format!("channels/lost/{recording}/playlist.m3u8"));
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert_eq!(text.matches("#EXTINF").count(), 8);
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY").count(), 2, "{text}");
    ffmpeg_reads(&playlist);
}

/// Defect 9: a segment counted as broken when ffmpeg wrote anything at all
/// to stderr, and a segment with no source to fetch again became a gap with
/// its object deleted. Repair never deletes what it cannot replace.
#[tokio::test(flavor = "multi_thread")]
async fn repair_keeps_a_segment_that_merely_warns_and_never_deletes_what_it_cannot_replace() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording = damaged_recording(&rig, &source, "warns").await;
    sqlx::query("UPDATE recordings SET source_url = NULL WHERE id = $1")
        .bind(recording)
        .execute(&rig.pool)
        .await
        .unwrap();
    // Segment 0 carries x264's SEI; claim a longer payload than it has.
    // ffmpeg then complains on stderr and still decodes every frame.
    let rows = rig.rows(recording).await;
    let first = ObjectKey::parse(rows[0].object_key.as_deref().unwrap()).unwrap();
    let mut body = get_bytes(rig.store.as_ref(), &first).await.unwrap().to_vec();
    let sei = body.windows(11).position(|w| w == b"x264 - core").expect("x264's SEI in the first segment");
    body[sei - 17] = body[sei - 17].wrapping_add(30);
    rig.store.put(&first, bytes::Bytes::from(body.clone())).await.unwrap();
    let broken = ObjectKey::parse(rows[5].object_key.as_deref().unwrap()).unwrap();

    let (_, progress) = repair(&rig, recording).await;
    let progress = progress.unwrap();
    assert_eq!((progress["flagged"].as_u64(), progress["gaps"].as_u64()), (Some(1), Some(2)), "{progress}");
    let kept = get_bytes(rig.store.as_ref(), &first).await.expect("the segment that warns is kept");
    assert_eq!(kept.as_ref(), body.as_slice());
    let (is_gap, warning): (bool, Option<String>) =
        sqlx::query_as("SELECT is_gap, warning FROM segments WHERE recording_id = $1 AND media_sequence = 0")
            .bind(recording)
            .fetch_one(&rig.pool)
            .await
            .unwrap();
    assert!(!is_gap);
    assert!(warning.unwrap_or_default().contains("SEI"), "the segment is flagged with what ffmpeg said");
    // The undecodable one is a gap now, but its object is still there.
    assert!(get_bytes(rig.store.as_ref(), &broken).await.is_ok(), "repair deleted media it could not replace");
    let reason: Option<String> =
        sqlx::query_scalar("SELECT gap_reason FROM segments WHERE recording_id = $1 AND media_sequence = 5")
            .bind(recording)
            .fetch_one(&rig.pool)
            .await
            .unwrap();
    assert!(reason.unwrap_or_default().contains("kept at"));
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_tier_moves_old_recordings_to_a_cold_class_on_s3_and_refuses_file_storage() {
    let g = tokio::task::spawn_blocking(colony_tests::garage::garage).await.unwrap();
    let rig = Rig::garage(g).await;
    let channel = rig.channel("cold", "http://unused.invalid/").await;
    let mut ids = Vec::new();
    for (age_days, n) in [(40, 0), (1, 1)] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO recordings (channel_id, source, state, storage_prefix, ended_at)
             VALUES ($1, 'vod', 'complete', 'channels/cold/' || $2, now() - make_interval(days => $3)) RETURNING id",
        )
        .bind(channel)
        .bind(n)
        .bind(age_days)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
        for s in 0..3 {
            rig.store
                .put(
                    &ObjectKey::parse(&format!("channels/cold/{n}/e0/{s:08}.ts")).unwrap(),
                    bytes::Bytes::from(vec![1u8; 100]),
                )
                .await
                .unwrap();
        }
        ids.push(id);
    }
    let job_id = Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("archive_tier", json!({ "older_than": "30d", "storage_class": "STANDARD_IA" })))
        .await
        .unwrap()
        .id();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "archive_tier"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, _, error, progress) = job(&rig, job_id).await;
    assert_eq!(state, "succeeded", "{error:?}");
    assert_eq!(progress.unwrap()["objects_moved"], 3);
    let classes: Vec<Option<String>> =
        sqlx::query_scalar("SELECT storage_class FROM recordings ORDER BY id").fetch_all(&rig.pool).await.unwrap();
    assert_eq!(classes, [Some("STANDARD_IA".to_owned()), None], "only the old recording is tiered");
    let body =
        get_bytes(rig.store.as_ref(), &ObjectKey::parse("channels/cold/0/e0/00000000.ts").unwrap()).await.unwrap();
    assert_eq!(body.len(), 100, "tiered objects stay readable under the same key");

    let local = Rig::file().await;
    let channel = local.channel("warm", "http://unused.invalid/").await;
    let id: i64 = sqlx::query_scalar("INSERT INTO recordings (channel_id, source, state, storage_prefix, ended_at) VALUES ($1, 'vod', 'complete', 'channels/warm/1', now() - interval '40 days') RETURNING id")
        .bind(channel).fetch_one(&local.pool).await.unwrap();
    local
        .store
        .put(&ObjectKey::parse("channels/warm/1/e0/00000000.ts").unwrap(), bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();
    let job_id = Queue::new(local.pool.clone())
        .enqueue(&NewJob::new("archive_tier", json!({ "recording_id": id })))
        .await
        .unwrap()
        .id();
    let (code, stderr) = wait_exit(local.harvest(&["--drain", "--kinds", "archive_tier"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, attempt, error, _) = job(&local, job_id).await;
    assert_eq!((state.as_str(), attempt), ("dead", 1));
    assert!(error.unwrap().contains("needs S3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_a_running_job_back_without_spending_an_attempt() {
    let source = LiveSource::start().await;
    vod(&source, "slow", 40).await;
    source.segment_delay("slow", Duration::from_millis(300));
    let rig = Rig::file().await;
    let channel = rig.channel("slow", "http://unused.invalid/").await;
    // Through a resolver profile, as page URLs are given for yt-dlp.
    let id = Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new(
            "vod_download",
            json!({ "url": source.media_url("slow"), "channel_id": channel, "resolver": "printf" }),
        ))
        .await
        .unwrap()
        .id();
    let cell = rig.harvest(&["--kinds", "vod_download", "--download-concurrency", "1", "--shutdown-deadline", "1s"]);
    colony_tests::eventually("the download to be under way", SECS(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM segments").fetch_one(&rig.pool).await.unwrap();
        (n >= 3).then_some(())
    })
    .await;
    signal(&cell, Signal::SIGTERM);
    let (code, stderr) = wait_exit(cell, SECS(20)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("handing the job back"), "{stderr}");
    let (state, attempt, ..) = job(&rig, id).await;
    assert_eq!((state.as_str(), attempt), ("available", 0), "handed back, no attempt spent");
    let cell_state: String =
        sqlx::query_scalar("SELECT state::text FROM cells WHERE kind = 'harvest'").fetch_one(&rig.pool).await.unwrap();
    assert_eq!(cell_state, "exited");

    // Another cell picks it up and finishes from where it stopped.
    source.segment_delay("slow", Duration::ZERO);
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(job(&rig, id).await.0, "succeeded");
    assert_eq!(rig.rows(vod_recording(&rig, channel).await.0).await.len(), 40);
}

/// Defect 3 (issue 12): the download's recording token was `job.id*1000 +
/// attempt`, kept with GREATEST; after `job retry` set the attempt back to 0,
/// every new attempt was refused with "a later attempt holds the recording".
/// Defect 9: a download that died left its recording in `recording`.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_download_fails_its_recording_and_a_retried_one_still_finishes() {
    let source = LiveSource::start().await;
    vod(&source, "again", 10).await;
    source.playlist_status("again", Some(503));
    let rig = Rig::file().await;
    let channel = rig.channel("again", "http://unused.invalid/").await;
    let queue = Queue::new(rig.pool.clone());
    let id = queue
        .enqueue(
            &NewJob::new("vod_download", json!({ "url": source.media_url("again"), "channel_id": channel }))
                .max_attempts(2),
        )
        .await
        .unwrap()
        .id();
    for _ in 0..2 {
        sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1").bind(id).execute(&rig.pool).await.unwrap();
        let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let (state, attempt, error, _) = job(&rig, id).await;
    assert_eq!((state.as_str(), attempt), ("dead", 2), "{error:?}");
    let (recording, recording_state) = vod_recording(&rig, channel).await;
    assert_eq!(recording_state, "failed", "a dead download's recording says so");

    // The source is back; the operator retries the job.
    source.playlist_status("again", None);
    queue.retry(id).await.unwrap();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "vod_download"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, _, error, _) = job(&rig, id).await;
    assert_eq!(state, "succeeded", "{error:?}\n{stderr}");
    assert_eq!(vod_recording(&rig, channel).await, (recording, "complete".to_owned()));
    assert_eq!(rig.rows(recording).await.iter().filter(|r| !r.is_gap).count(), 10);
}

/// Defect 9 (issue 12): `archive_tier` used one CopyObject per object, which
/// S3 refuses above 5 GB, and a recording that failed failed the whole job,
/// which then tried the same oldest recording first, forever. Here the
/// multipart threshold is 5 MiB: a 12 MiB object must be copied in parts (its
/// new ETag carries the part count, as S3 and Garage write it), and an older
/// recording that cannot be tiered is passed over and marked.
#[tokio::test(flavor = "multi_thread")]
async fn archive_tier_copies_big_objects_in_parts_and_passes_over_a_recording_that_fails() {
    let g = tokio::task::spawn_blocking(colony_tests::garage::garage).await.unwrap();
    let rig = Rig::garage(g).await;
    let channel = rig.channel("big", "http://unused.invalid/").await;
    let old = |prefix: &'static str| {
        let pool = rig.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO recordings (channel_id, source, state, storage_prefix, ended_at, source_url)
                 VALUES ($1, 'vod', 'complete', $2, now() - interval '40 days', $2) RETURNING id",
            )
            .bind(channel)
            .bind(prefix)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // The oldest row is damaged: its prefix is not a key this colony would write.
    let broken = old("channels/big/../../elsewhere").await;
    let good = old("channels/big/2").await;
    let body: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let key = ObjectKey::parse("channels/big/2/e0/00000000.ts").unwrap();
    rig.store.put(&key, bytes::Bytes::from(body.clone())).await.unwrap();
    rig.store.put(&ObjectKey::parse("channels/big/2/playlist.m3u8").unwrap(), "#EXTM3U\n".into()).await.unwrap();

    let job_id = Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("archive_tier", json!({ "older_than": "30d", "storage_class": "STANDARD_IA" })))
        .await
        .unwrap()
        .id();
    let mut cell = rig.harvest(&["--drain", "--kinds", "archive_tier"]);
    let (code, stderr) = wait_exit(cell, SECS(120)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, _, error, progress) = job(&rig, job_id).await;
    assert_eq!(state, "retryable", "the job reports the recording it could not tier: {error:?}");
    assert!(error.unwrap_or_default().contains(&format!("recording {broken}")));
    assert_eq!(progress.unwrap()["objects_moved"], 2);
    let rows: Vec<(i64, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT id, storage_class, error FROM recordings ORDER BY id")
            .fetch_all(&rig.pool)
            .await
            .unwrap();
    assert_eq!(rows[1], (good, Some("STANDARD_IA".to_owned()), None), "the good recording is tiered");
    assert!(rows[0].2.as_deref().unwrap_or_default().starts_with("archive_tier:"), "{rows:?}");
    assert_eq!(get_bytes(rig.store.as_ref(), &key).await.unwrap(), body, "the copy is byte for byte");
    let etag = g.etag(&format!("{}/{key}", rig.bucket_prefix)).await;
    assert!(etag.trim_matches('"').ends_with("-2"), "copied in 2 parts of 8 MiB, got ETag {etag}");
    cell = rig.harvest(&["--drain", "--kinds", "archive_tier"]);
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1").bind(job_id).execute(&rig.pool).await.unwrap();
    let (code, stderr) = wait_exit(cell, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (_, _, _, progress) = job(&rig, job_id).await;
    assert_eq!(progress.unwrap()["objects_moved"], 0, "what was tiered is not copied again");
}
