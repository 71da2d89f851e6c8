//! The observer cell end to end: the real binary recording the test live
//! source into real storage (file:// and Garage), with real Postgres and ffmpeg.

use std::collections::BTreeSet;
use std::time::Duration;

use colony::recording::{Assignment, LedgerRow};
use colony::storage::{ObjectKey, get_bytes};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::observer::{Rig, ffmpeg_reads, signal, wait_exit};
use nix::sys::signal::Signal;

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn test_media(container: Container) -> colony_tests::live::Media {
    tokio::task::spawn_blocking(move || media(container, Profile::TEST)).await.unwrap()
}

fn stored(rows: &[LedgerRow], epoch: i32) -> BTreeSet<u64> {
    rows.iter().filter(|r| !r.is_gap && r.epoch == epoch).map(|r| r.media_sequence as u64).collect()
}

fn contiguous(set: &BTreeSet<u64>) -> bool {
    match (set.first(), set.last()) {
        (Some(a), Some(b)) => (b - a + 1) as usize == set.len(),
        _ => true,
    }
}

/// Every stored row's object exists and holds exactly the source's bytes.
async fn objects_match_source(rig: &Rig, rows: &[LedgerRow], source: &LiveSource, name: &str) {
    for row in rows.iter().filter(|r| !r.is_gap) {
        let key = ObjectKey::parse(row.object_key.as_deref().unwrap()).unwrap();
        let body = get_bytes(rig.store.as_ref(), &key).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(body.len() as i64, row.bytes, "{key}");
        if row.epoch == 0 {
            let want = source.segment_bytes(name, row.media_sequence as u64).unwrap();
            assert!(body.as_ref() == want.as_slice(), "{key} differs from the source's segment");
        }
    }
}

async fn playlist_text(rig: &Rig, recording_id: i64, login: &str) -> String {
    let key = ObjectKey::parse(&format!("channels/{login}/{recording_id}/playlist.m3u8")).unwrap();
    String::from_utf8(get_bytes(rig.store.as_ref(), &key).await.unwrap().to_vec()).unwrap()
}

async fn jobs_for(rig: &Rig, recording_id: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM jobs WHERE (args->>'recording_id')::bigint = $1 ORDER BY kind")
        .bind(recording_id)
        .fetch_all(&rig.pool)
        .await
        .unwrap()
}

/// One live channel on its own test source, recorded into file:// storage.
struct Live {
    name: &'static str,
    source: LiveSource,
    rig: Rig,
    channel: i64,
    cell: uuid::Uuid,
    a: Assignment,
}

impl Live {
    /// The channel records the media playlist, or with `master` the master
    /// playlist (exercising variant choice).
    async fn new(name: &'static str, container: Container, window: usize, master: bool) -> Self {
        let media = test_media(container).await;
        let source = LiveSource::start().await;
        source.add(name, &media, window);
        let rig = Rig::file().await;
        let url = if master { source.master_url(name) } else { source.media_url(name) };
        let channel = rig.channel(name, &url).await;
        let (cell, a) = rig.assign(channel).await;
        Self { name, source, rig, channel, cell, a }
    }

    fn observer(&self, extra: &[&str]) -> tokio::process::Child {
        self.rig.observer(self.channel, self.name, self.cell, self.a, extra)
    }

    async fn wait_segments(&self, n: usize) {
        self.rig.wait_segments(self.a.recording_id, n, SECS(30)).await
    }

    async fn rows(&self) -> Vec<LedgerRow> {
        self.rig.rows(self.a.recording_id).await
    }

    async fn state(&self) -> String {
        self.rig.recording_state(self.a.recording_id).await
    }

    async fn playlist(&self) -> String {
        playlist_text(&self.rig, self.a.recording_id, self.name).await
    }

    fn playlist_path(&self) -> std::path::PathBuf {
        self.rig
            .media_root
            .as_ref()
            .unwrap()
            .join(format!("channels/{}/{}/playlist.m3u8", self.name, self.a.recording_id))
    }

    fn published(&self) -> BTreeSet<u64> {
        self.source.published(self.name).iter().map(|p| p.0).collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_a_live_channel_end_to_end_into_a_playable_vod() {
    let t = Live::new("alpha", Container::Ts, 6, true).await;
    let child = t.observer(&[]);
    t.wait_segments(10).await;

    // The EVENT playlist is kept current while live.
    let live = t.playlist().await;
    assert!(live.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !live.contains("ENDLIST"), "{live}");
    let heartbeat: Option<i64> = sqlx::query_scalar("SELECT segment_count FROM recordings WHERE id = $1")
        .bind(t.a.recording_id)
        .fetch_one(&t.rig.pool)
        .await
        .unwrap();
    assert!(heartbeat.unwrap_or(0) > 0, "heartbeats carry progress");

    t.source.end(t.name);
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");

    let rows = t.rows().await;
    let published = t.published();
    assert_eq!(stored(&rows, 0), published, "every published segment, from the first the window offered, exactly once");
    assert!(rows.iter().all(|r| !r.is_gap && r.program_date_time.is_some()));
    objects_match_source(&t.rig, &rows, &t.source, t.name).await;

    let (state, segments, bytes, duration): (String, i64, i64, f64) =
        sqlx::query_as("SELECT state::text, segment_count, bytes, duration_secs FROM recordings WHERE id = $1")
            .bind(t.a.recording_id)
            .fetch_one(&t.rig.pool)
            .await
            .unwrap();
    assert_eq!(state, "complete");
    assert_eq!(segments as usize, rows.len());
    assert_eq!(bytes, rows.iter().map(|r| r.bytes).sum::<i64>());
    let ledger_secs: f64 = rows.iter().map(|r| r.duration_secs).sum();
    assert!((duration - ledger_secs).abs() < 0.01);

    let vod = t.playlist().await;
    assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD") && vod.ends_with("#EXT-X-ENDLIST\n"), "{vod}");
    let path = t.playlist_path();
    let read = ffmpeg_reads(&path);
    assert!((read - ledger_secs).abs() < 1.5, "ffmpeg read {read:.2}s, the ledger says {ledger_secs:.2}s");
    assert_eq!(jobs_for(&t.rig, t.a.recording_id).await, ["export", "thumbnails"]);
    let cell_state: String = sqlx::query_scalar("SELECT state::text FROM cells WHERE id = $1")
        .bind(t.cell)
        .fetch_one(&t.rig.pool)
        .await
        .unwrap();
    assert_eq!(cell_state, "exited");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_return_inside_the_standby_window_continues_the_recording_as_a_new_epoch() {
    let t = Live::new("bravo", Container::Ts, 6, false).await;
    let child = t.observer(&["--standby", "8s"]);
    t.wait_segments(8).await;
    t.source.go_offline(t.name);
    colony_tests::eventually("standby", SECS(20), || async { (t.state().await == "standby").then_some(()) }).await;
    t.source.come_back(t.name);
    colony_tests::eventually("a second epoch", SECS(20), || async {
        (!stored(&t.rows().await, 1).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(SECS(2)).await;
    t.source.end(t.name);
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");

    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE channel_id = $1")
        .bind(t.channel)
        .fetch_one(&t.rig.pool)
        .await
        .unwrap();
    assert_eq!(recordings, 1, "one broadcast, one recording");
    let rows = t.rows().await;
    assert!(contiguous(&stored(&rows, 0)) && contiguous(&stored(&rows, 1)));
    assert_eq!(rows.iter().map(|r| r.epoch).max(), Some(1));
    let second: BTreeSet<u64> = t.source.published_in(t.name, 1).iter().map(|p| p.0).collect();
    assert_eq!(stored(&rows, 1), second, "the returned stream is recorded from its first segment");
    let vod = t.playlist().await;
    assert_eq!(vod.matches("#EXT-X-DISCONTINUITY").count(), 1, "{vod}");
    assert!(vod.contains("e0/") && vod.contains("e1/"));
    let path = t.playlist_path();
    ffmpeg_reads(&path);
    assert_eq!(t.state().await, "complete");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blip_inside_the_standby_window_continues_the_same_epoch_without_duplicates() {
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    source.add("kilo", &media, 6);
    let rig = Rig::file().await;
    // The source comes from a resolver profile, re-run on every standby probe.
    let channel = rig.channel_with_profile("kilo", &source.media_url("kilo"), "printf").await;
    let (cell, a) = rig.assign(channel).await;
    let child = rig.observer(channel, "kilo", cell, a, &["--standby", "8s"]);
    rig.wait_segments(a.recording_id, 7, SECS(30)).await;
    source.go_offline("kilo");
    colony_tests::eventually("standby", SECS(20), || async {
        (rig.recording_state(a.recording_id).await == "standby").then_some(())
    })
    .await;
    source.resume("kilo");
    tokio::time::sleep(SECS(4)).await;
    source.end("kilo");
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    assert!(rows.iter().all(|r| r.epoch == 0), "a blip is not a new stream\n{stderr}");
    let published: BTreeSet<u64> = source.published("kilo").iter().map(|p| p.0).collect();
    assert_eq!(stored(&rows, 0), published, "nothing lost, nothing twice");
}

/// The source was unreachable long enough to put the observer in standby,
/// kept publishing, and came back with its final playlist: the broadcast
/// ended while the observer could not see it (the 30-minute chaos soak's
/// `CutEverything` at the very end). The segments that final playlist lists
/// are still served, so they are recorded. The old observer ignored any
/// playlist with `EXT-X-ENDLIST` while standing by and finalized `complete`
/// with 0 gaps, the tail neither stored nor a gap row (issue 24).
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_comes_back_ended_during_standby_has_its_tail_recorded() {
    let t = Live::new("tango", Container::Ts, 30, false).await;
    let child = t.observer(&["--offline-after", "4s", "--standby", "12s"]);
    t.wait_segments(5).await;
    t.source.playlist_status(t.name, Some(503));
    colony_tests::eventually("standby", SECS(20), || async { (t.state().await == "standby").then_some(()) }).await;
    // Still publishing behind the error, then the end.
    tokio::time::sleep(SECS(3)).await;
    t.source.end(t.name);
    t.source.playlist_status(t.name, None);
    let (code, stderr) = wait_exit(child, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(t.state().await, "complete");
    let rows = t.rows().await;
    assert!(rows.iter().all(|r| !r.is_gap), "every segment was still served\n{stderr}");
    let published = t.published();
    assert!(published.len() >= 10, "segments were published during the outage: {published:?}");
    assert_eq!(stored(&rows, 0), published, "the tail of the final playlist is recorded\n{stderr}");
    objects_match_source(&t.rig, &rows, &t.source, t.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drop_past_the_standby_window_finalizes_and_enqueues_post_processing() {
    let t = Live::new("charlie", Container::Ts, 6, false).await;
    let child = t.observer(&[]);
    t.wait_segments(7).await;
    t.source.go_offline(t.name);
    let started = std::time::Instant::now();
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(started.elapsed() >= SECS(3), "finalized before the standby window passed");
    assert_eq!(t.state().await, "complete");
    assert_eq!(jobs_for(&t.rig, t.a.recording_id).await, ["export", "thumbnails"]);
    let rows = t.rows().await;
    assert!(contiguous(&stored(&rows, 0)));
    assert!(t.playlist().await.ends_with("#EXT-X-ENDLIST\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finalizes_as_interrupted_and_exits_0() {
    let t = Live::new("delta", Container::Ts, 6, false).await;
    let child = t.observer(&[]);
    t.wait_segments(7).await;
    signal(&child, Signal::SIGTERM);
    let (code, stderr) = wait_exit(child, SECS(20)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(t.state().await, "interrupted");
    let vod = t.playlist().await;
    assert!(vod.ends_with("#EXT-X-ENDLIST\n"));
    let rows = t.rows().await;
    assert_eq!(vod.matches("#EXTINF").count(), rows.len(), "the playlist lists every ledger row");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_after_sigkill_loses_nothing_and_stores_nothing_twice() {
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    source.add("echo", &media, 8);
    let rig = Rig::file().await;
    let channel = rig.channel("echo", &source.media_url("echo")).await;
    let (cell, a) = rig.assign(channel).await;
    let first = rig.observer(channel, "echo", cell, a, &[]);
    rig.wait_segments(a.recording_id, 10, SECS(30)).await;
    signal(&first, Signal::SIGKILL);
    let _ = wait_exit(first, SECS(10)).await;
    // The mothership notices a few seconds later, inside the source's window.
    tokio::time::sleep(SECS(3)).await;
    let (cell2, b) = rig.assign(channel).await;
    assert_eq!(b.recording_id, a.recording_id, "the replacement continues the same recording");
    assert_eq!(b.lease_token, a.lease_token + 1);
    let second = rig.observer(channel, "echo", cell2, b, &[]);
    tokio::time::sleep(SECS(4)).await;
    source.end("echo");
    let (code, stderr) = wait_exit(second, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");

    let rows = rig.rows(a.recording_id).await;
    assert!(rows.iter().all(|r| !r.is_gap), "no gap: the replacement started inside the window");
    let published: BTreeSet<u64> = source.published("echo").iter().map(|p| p.0).collect();
    assert_eq!(stored(&rows, 0), published, "nothing lost");
    assert_eq!(rows.len(), published.len(), "nothing stored twice");
    objects_match_source(&rig, &rows, &source, "echo").await;
    let path = rig.media_root.as_ref().unwrap().join(format!("channels/echo/{}/playlist.m3u8", a.recording_id));
    ffmpeg_reads(&path);
}

#[tokio::test(flavor = "multi_thread")]
async fn garage_down_for_20_seconds_loses_no_segment() {
    let dir = std::env::temp_dir().join(format!("colony-test-garage-outage-{}", uuid::Uuid::new_v4().simple()));
    let dir2 = dir.clone();
    let g = tokio::task::spawn_blocking(move || colony_tests::garage::start(&dir2)).await.unwrap();
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    // A window long enough that nothing falls out of it while storage is down
    // is not needed: segments spool locally. Keep it short on purpose.
    source.add("foxtrot", &media, 4);
    let rig = Rig::garage(&g).await;
    let channel = rig.channel("foxtrot", &source.media_url("foxtrot")).await;
    let (cell, a) = rig.assign(channel).await;
    let child = rig.observer(channel, "foxtrot", cell, a, &[]);
    rig.wait_segments(a.recording_id, 6, SECS(30)).await;

    let g2 = g.clone();
    tokio::task::spawn_blocking(move || g2.stop()).await.unwrap();
    tokio::time::sleep(SECS(20)).await;
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || g2.restart()).await.unwrap();
    tokio::time::sleep(SECS(4)).await;
    source.end("foxtrot");
    let (code, stderr) = wait_exit(child, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("spooling"), "storage was never unavailable?\n{stderr}");

    let rows = rig.rows(a.recording_id).await;
    let published: BTreeSet<u64> = source.published("foxtrot").iter().map(|p| p.0).collect();
    assert_eq!(stored(&rows, 0), published, "no segment lost while storage was down");
    assert!(rows.iter().all(|r| !r.is_gap));
    objects_match_source(&rig, &rows, &source, "foxtrot").await;
    assert_eq!(rig.recording_state(a.recording_id).await, "complete");
    assert_eq!(
        std::fs::read_dir(rig.spool.path().join(a.recording_id.to_string())).unwrap().count(),
        0,
        "spool drained"
    );
    g.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Defect 8 (second half): segments still in the spool when the observer
/// finalized with storage down got no ledger row at all, not even a gap, and
/// the recording said nothing of them.
#[tokio::test(flavor = "multi_thread")]
async fn segments_still_spooled_at_the_finalize_deadline_become_gaps_with_their_reason() {
    let dir = std::env::temp_dir().join(format!("colony-test-garage-down-{}", uuid::Uuid::new_v4().simple()));
    let dir2 = dir.clone();
    let g = tokio::task::spawn_blocking(move || colony_tests::garage::start(&dir2)).await.unwrap();
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    source.add("golf", &media, 4);
    let rig = Rig::garage(&g).await;
    let channel = rig.channel("golf", &source.media_url("golf")).await;
    let (cell, a) = rig.assign(channel).await;
    let child = rig.observer(channel, "golf", cell, a, &["--finalize-deadline", "4s"]);
    rig.wait_segments(a.recording_id, 5, SECS(30)).await;
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || g2.stop()).await.unwrap();
    tokio::time::sleep(SECS(4)).await;
    source.end("golf");
    let (code, stderr) = wait_exit(child, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");

    let rows = rig.rows(a.recording_id).await;
    let published: BTreeSet<u64> = source.published("golf").iter().map(|p| p.0).collect();
    let recorded: BTreeSet<u64> = rows
        .iter()
        .flat_map(|r| r.media_sequence as u64..r.media_sequence as u64 + (r.gap_count.max(1) as u64))
        .collect();
    assert_eq!(recorded, published, "every published segment is stored or an explicit gap");
    let spooled: Vec<&LedgerRow> = rows.iter().filter(|r| r.is_gap).collect();
    assert!(!spooled.is_empty(), "storage was down: some segments stayed in the spool");
    for gap in spooled {
        let reason = gap.gap_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("object storage was unavailable") && reason.contains("spool"), "{reason}");
    }
    assert_eq!(rig.recording_state(a.recording_id).await, "interrupted");
    g.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_fmp4_source_keeps_its_init_section() {
    let t = Live::new("golf", Container::Fmp4, 6, true).await;
    let child = t.observer(&[]);
    t.wait_segments(8).await;
    t.source.end(t.name);
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = t.rows().await;
    assert!(rows.iter().all(|r| r.init_key.is_some() && r.object_key.as_deref().unwrap().ends_with(".m4s")));
    let init = ObjectKey::parse(rows[0].init_key.as_deref().unwrap()).unwrap();
    let stored_init = get_bytes(t.rig.store.as_ref(), &init).await.unwrap();
    let media = test_media(Container::Fmp4).await;
    assert_eq!(stored_init.as_ref(), std::fs::read(media.init.as_ref().unwrap()).unwrap().as_slice());
    let vod = t.playlist().await;
    assert!(vod.contains("#EXT-X-MAP:URI=\"e0/init-0.mp4\""), "{vod}");
    let path = t.playlist_path();
    let read = ffmpeg_reads(&path);
    let ledger_secs: f64 = rows.iter().map(|r| r.duration_secs).sum();
    assert!((read - ledger_secs).abs() < 1.5, "ffmpeg read {read:.2}s, the ledger says {ledger_secs:.2}s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_jump_is_recorded_as_a_gap() {
    let t = Live::new("hotel", Container::Ts, 6, false).await;
    let child = t.observer(&[]);
    t.wait_segments(7).await;
    t.source.jump(t.name, 25);
    tokio::time::sleep(SECS(4)).await;
    t.source.end(t.name);
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = t.rows().await;
    let gaps: Vec<&LedgerRow> = rows.iter().filter(|r| r.is_gap).collect();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    // Exactly the segments the source never offered are the gap.
    let published = t.published();
    let never_stored: BTreeSet<u64> = published.difference(&stored(&rows, 0)).copied().collect();
    let gap = gaps[0].media_sequence as u64..(gaps[0].media_sequence + i64::from(gaps[0].gap_count)) as u64;
    assert_eq!(never_stored, gap.clone().collect(), "the gap row covers exactly what is missing");
    assert!(gaps[0].gap_count >= 15, "{}", gaps[0].gap_count);
    assert!(
        gaps[0].duration_secs >= f64::from(gaps[0].gap_count) * 0.9,
        "estimated seconds: {}",
        gaps[0].duration_secs
    );
    assert!(stderr.contains("explicit gap"), "the gap is logged");
    let gap_count: i64 = sqlx::query_scalar("SELECT gap_count FROM recordings WHERE id = $1")
        .bind(t.a.recording_id)
        .fetch_one(&t.rig.pool)
        .await
        .unwrap();
    assert_eq!(gap_count, i64::from(gaps[0].gap_count));
    let vod = t.playlist().await;
    assert!(
        vod.contains("#EXT-X-DISCONTINUITY") && vod.contains(&format!("## gap: {} segment(s)", gaps[0].gap_count)),
        "{vod}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fenced_out_cell_exits_with_code_3_and_writes_nothing_more() {
    let t = Live::new("india", Container::Ts, 6, false).await;
    let child = t.observer(&[]);
    t.wait_segments(7).await;
    // The mothership hands the recording to a replacement (which never starts).
    let (_, b) = t.rig.assign(t.channel).await;
    assert!(b.lease_token > t.a.lease_token);
    let fenced_at = t.rows().await.len();
    let (code, stderr) = wait_exit(child, SECS(15)).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("fenced out"), "{stderr}");
    tokio::time::sleep(SECS(2)).await;
    let after = t.rows().await.len();
    assert!(after <= fenced_at + 2, "the old cell kept writing: {fenced_at} -> {after}");
    assert_eq!(t.state().await, "recording", "the old cell did not finalize");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_404_and_broken_playlists_do_not_stop_the_recording() {
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    source.add("juliet", &media, 6);
    source.fail_segment("juliet", 9);
    let rig = Rig::file().await;
    let channel = rig.channel("juliet", &source.media_url("juliet")).await;
    let (cell, a) = rig.assign(channel).await;
    // Errors shorter than the offline timeout must not end the live phase.
    let child = rig.observer(channel, "juliet", cell, a, &["--offline-after", "15s"]);
    rig.wait_segments(a.recording_id, 6, SECS(30)).await;
    source.truncate_playlists("juliet", 2);
    tokio::time::sleep(SECS(2)).await;
    source.playlist_status("juliet", Some(503));
    tokio::time::sleep(SECS(2)).await;
    source.playlist_status("juliet", None);
    rig.wait_segments(a.recording_id, 14, SECS(30)).await;
    source.end("juliet");
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    let gap: Vec<&LedgerRow> = rows.iter().filter(|r| r.is_gap).collect();
    assert_eq!(gap.len(), 1, "{:?}\n{stderr}", rows.iter().map(|r| (r.media_sequence, r.is_gap)).collect::<Vec<_>>());
    assert_eq!((gap[0].media_sequence, gap[0].gap_count), (9, 1), "the segment that always 404s is an explicit gap");
    let published: BTreeSet<u64> = source.published("juliet").iter().map(|p| p.0).filter(|s| *s != 9).collect();
    assert_eq!(stored(&rows, 0), published, "everything else was recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_down_for_15_seconds_loses_no_segment() {
    let dir = std::env::temp_dir().join(format!("colony-test-pg-outage-{}", uuid::Uuid::new_v4().simple()));
    let dir2 = dir.clone();
    let admin =
        tokio::task::spawn_blocking(move || colony_tests::pg::start_cluster(&dir2, &["fsync=off"])).await.unwrap();
    let media = test_media(Container::Ts).await;
    let source = LiveSource::start().await;
    source.add("lima", &media, 6);
    let rig = Rig::file_on(&admin).await;
    let channel = rig.channel("lima", &source.media_url("lima")).await;
    let (cell, a) = rig.assign(channel).await;
    let child = rig.observer(channel, "lima", cell, a, &["--db-connect-timeout", "2s"]);
    rig.wait_segments(a.recording_id, 7, SECS(30)).await;

    rig.pool.close().await;
    let d = dir.clone();
    tokio::task::spawn_blocking(move || colony_tests::pg::stop_cluster(&d)).await.unwrap();
    tokio::time::sleep(SECS(15)).await;
    let d = dir.clone();
    tokio::task::spawn_blocking(move || colony_tests::pg::restart_cluster(&d)).await.unwrap();
    let pool = rig.db.pool(4).await;
    tokio::time::sleep(SECS(3)).await;
    source.end("lima");
    let (code, stderr) = wait_exit(child, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("postgres unavailable") && stderr.contains("postgres is back"), "{stderr}");

    let rows: Vec<(i64, bool)> =
        sqlx::query_as("SELECT media_sequence, is_gap FROM segments WHERE recording_id = $1 ORDER BY media_sequence")
            .bind(a.recording_id)
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored: BTreeSet<u64> = rows.iter().filter(|r| !r.1).map(|r| r.0 as u64).collect();
    let published: BTreeSet<u64> = source.published("lima").iter().map(|p| p.0).collect();
    assert_eq!(stored, published, "every segment recorded while Postgres was down reached the ledger");
    let state: String = sqlx::query_scalar("SELECT state::text FROM recordings WHERE id = $1")
        .bind(a.recording_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(state, "complete");
    pool.close().await;
    drop(rig);
    let d = dir.clone();
    let _ = tokio::task::spawn_blocking(move || colony_tests::pg::stop_cluster(&d)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_or_malformed_assignment_is_one_line_and_exit_2() {
    let rig = Rig::file().await;
    let run = |env: Vec<(&str, &str)>| {
        let mut cmd = std::process::Command::new(colony_tests::bins::bin("observer-cell"));
        cmd.env_clear().env("DATABASE_URL", &rig.db.url).env("COLONY_STORAGE_URL", "file:///tmp/colony-test-unused");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let full = vec![
        ("OBSERVER_VOD_ID", "1"),
        ("OBSERVER_CHANNEL_ID", "1"),
        ("OBSERVER_CHANNEL_LOGIN", "mike"),
        ("OBSERVER_CHANNEL_NAME", "Mike"),
        ("COLONY_CELL_ID", "6f1c1d5e-8d6a-4b8e-9d9e-3c1c2f0e4a11"),
        ("COLONY_LEASE_TOKEN", "1"),
    ];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (full.iter().filter(|(k, _)| *k != "OBSERVER_VOD_ID").copied().collect(), "OBSERVER_RECORDING_ID"),
        (
            full.iter().map(|(k, v)| if *k == "OBSERVER_CHANNEL_LOGIN" { (*k, "../Evil") } else { (*k, *v) }).collect(),
            "not a safe channel login",
        ),
        (
            full.iter().map(|(k, v)| if *k == "COLONY_CELL_ID" { (*k, "not-a-uuid") } else { (*k, *v) }).collect(),
            "COLONY_CELL_ID",
        ),
        (
            full.iter()
                .map(|(k, v)| if *k == "OBSERVER_STANDBY" { (*k, "soon") } else { (*k, *v) })
                .chain([("OBSERVER_STANDBY", "soon")])
                .collect(),
            "OBSERVER_STANDBY",
        ),
        (full.clone(), "recording 1 (OBSERVER_RECORDING_ID) does not exist"),
        (
            full.iter()
                .map(|(k, v)| if *k == "OBSERVER_VOD_ID" { ("OBSERVER_RECORDING_ID", *v) } else { (*k, *v) })
                .collect(),
            "recording 1 (OBSERVER_RECORDING_ID) does not exist",
        ),
    ];
    for (env, expect) in cases {
        let out = run(env);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    }
}
