//! The harvest cell end to end: the real binary working the real queue,
//! downloading VODs from the test source into real storage.

use std::collections::BTreeSet;
use std::time::Duration;

use colony::queue::{NewJob, Queue};
use colony::storage::{get_bytes, ObjectKey};
use colony_tests::live::{media, Container, LiveSource, Profile};
use colony_tests::observer::{signal, wait_exit, Rig};
use nix::sys::signal::Signal;
use serde_json::json;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A finished broadcast of `segments` segments, served as a VOD.
async fn vod(source: &LiveSource, name: &str, segments: usize) {
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    source.add(name, &media, segments);
    source.end(name);
}

async fn enqueue_download(rig: &Rig, url: &str, channel: i64) -> i64 {
    Queue::new(rig.pool.clone())
        .enqueue(&NewJob::new("vod_download", json!({ "url": url, "channel_id": channel })))
        .await
        .unwrap()
        .id()
}

async fn job(rig: &Rig, id: i64) -> (String, i32, Option<String>, Option<serde_json::Value>) {
    sqlx::query_as("SELECT state::text, attempt, last_error, progress FROM jobs WHERE id = $1").bind(id).fetch_one(&rig.pool).await.unwrap()
}

async fn vod_recording(rig: &Rig, channel: i64) -> (i64, String) {
    sqlx::query_as("SELECT id, state::text FROM recordings WHERE channel_id = $1 AND source = 'vod'").bind(channel).fetch_one(&rig.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vod_download_stores_every_segment_once_and_a_rerun_changes_nothing() {
    let source = LiveSource::start().await;
    vod(&source, "past", 30).await;
    let rig = Rig::file().await;
    let channel = rig.channel("past", "http://unused.invalid/").await;
    let id = enqueue_download(&rig, &source.master_url("past"), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
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
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"]).arg(&playlist).args(["-c", "copy", "-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The channel's post-processing is queued for the new recording.
    let followups: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE (args->>'recording_id')::bigint = $1")
        .bind(recording).fetch_one(&rig.pool).await.unwrap();
    assert_eq!(followups, 2);

    // The same download asked for again: one recording, the same rows.
    let again = enqueue_download(&rig, &source.master_url("past"), channel).await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(job(&rig, again).await.0, "succeeded");
    assert_eq!(rig.rows(recording).await.len(), 30);
    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE channel_id = $1").bind(channel).fetch_one(&rig.pool).await.unwrap();
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
    let first = rig.harvest(&["--lease", "2s", "--download-concurrency", "2"]);
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
    let second = rig.harvest(&["--lease", "2s", "--idle-exit", "4s", "--download-concurrency", "4"]);
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
    let listed = rig.store.list(Some(&ObjectKey::parse(&format!("channels/long/{recording}/e0")).unwrap())).await.unwrap();
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
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(60)).await;
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
    let a = rig.harvest(&["--drain", "--concurrency", "2"]);
    let b = rig.harvest(&["--drain", "--concurrency", "2"]);
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

#[tokio::test]
async fn a_kind_this_build_cannot_run_is_refused_at_start() {
    let rig = Rig::file().await;
    let out = rig.harvest(&["--kinds", "vod_download,teleport"]).wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot run 'teleport' jobs"), "{err}");
}
