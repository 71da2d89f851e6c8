//! Hostile, buggy and endless sources against the real observer, probe and
//! mothership: nothing a source sends may panic a process, grow its memory
//! without bound, keep a recording open forever or reach a host it should
//! not. Each test here names the defect it guards against; each failed on
//! the code before the fix.

use std::collections::BTreeSet;
use std::time::Duration;

use colony::recording::LedgerRow;
use colony::storage::{ObjectKey, get_bytes};
use colony_tests::hostile::{self, CHANGE_AFTER_SECS, HostileSource, JUMP_TO, peak_rss_mib};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::{Rig, wait_exit};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The bound on an observer's resident memory, whatever its source sends.
const RSS_BOUND_MIB: f64 = 64.0;

async fn test_media() -> colony_tests::live::Media {
    tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap()
}

/// Follow a process's peak resident memory until it exits.
fn watch_peak(pid: u32) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak: f64 = 0.0;
        while let Some(now) = peak_rss_mib(pid) {
            peak = peak.max(now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

struct Hostile {
    source: HostileSource,
    rig: Rig,
}

impl Hostile {
    async fn new() -> Self {
        Self { source: HostileSource::start(&test_media().await).await, rig: Rig::file().await }
    }

    /// Start an observer on one of the hostile paths; returns it, its
    /// recording and a watch on its peak memory.
    async fn observe(
        &self,
        kind: &str,
        extra_env: &[(&str, &str)],
    ) -> (tokio::process::Child, i64, tokio::task::JoinHandle<f64>) {
        let login = kind.replace('-', "_");
        let channel = self.rig.channel(&login, &self.source.url(kind)).await;
        let (cell, a) = self.rig.assign(channel).await;
        let mut cmd = self.rig.cell("observer-cell");
        cmd.env("OBSERVER_VOD_ID", a.recording_id.to_string())
            .env("OBSERVER_CHANNEL_ID", channel.to_string())
            .env("OBSERVER_CHANNEL_LOGIN", &login)
            .env("OBSERVER_CHANNEL_NAME", &login)
            .env("COLONY_CELL_ID", cell.to_string())
            .env("COLONY_LEASE_TOKEN", a.lease_token.to_string())
            .env("COLONY_SPOOL_DIR", self.rig.spool.path())
            .env("OBSERVER_STANDBY", "3s")
            .env("COLONY_HEARTBEAT_INTERVAL", "1s")
            .env("OBSERVER_OFFLINE_AFTER", "3s")
            .env("OBSERVER_FINALIZE_DEADLINE", "30s")
            .env("OBSERVER_FETCH_TIMEOUT", "2s");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start observer-cell");
        let peak = watch_peak(child.id().unwrap());
        (child, a.recording_id, peak)
    }

    async fn rows(&self, recording: i64) -> Vec<LedgerRow> {
        self.rig.rows(recording).await
    }

    async fn stored(&self, recording: i64) -> BTreeSet<i64> {
        self.rows(recording).await.iter().filter(|r| !r.is_gap).map(|r| r.media_sequence).collect()
    }
}

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "a process panicked:\n{stderr}");
}

/// Defect 1: `#EXT-X-PROGRAM-DATE-TIME` and then an absurd `EXTINF` made
/// chrono panic in the parser: the observer crash-looped, and the probe took
/// down the whole tick, so no channel was started or stopped any more.
#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_extinf_after_a_date_panics_neither_the_observer_nor_the_tick() {
    let h = Hostile::new().await;
    let (mut child, recording, peak) = h.observe("overflow", &[]).await;
    colony_tests::eventually("segments of the overflow source", SECS(20), || async {
        (h.stored(recording).await.len() >= 8).then_some(())
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the observer died");
    let rows = h.rows(recording).await;
    let absurd = rows.iter().find(|r| !r.is_gap && r.media_sequence % 5 == 0).expect("an absurd segment stored");
    assert_eq!(absurd.duration_secs, colony::hls::MAX_SEGMENT_SECS, "clamped, not trusted");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(peak.await.unwrap() < RSS_BOUND_MIB);

    // The same source and an honest one under one tick: the tick finishes,
    // both are probed and both get an observer.
    let colony = Colony::new(Rig::file().await);
    let live = LiveSource::start().await;
    live.add("honest", &test_media().await, 4);
    for (login, url) in [("overflow", h.source.url("overflow")), ("honest", live.media_url("honest"))] {
        let out = colony.run(&["channel", "add", "--login", login, "--source-url", &url]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = colony.run(&["tick", "--json"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    no_panic(&stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["probes"]["probed"], 2, "{report:#}");
    assert_eq!(report["observers_started"], 2, "{report:#}");
    colony.kill_cells().await;
}

/// Defect 2: `EXT-X-TARGETDURATION:100000` put the next reload a day away
/// (the observer heartbeated and recorded nothing), and 6.2e18 made
/// `target * 3` panic.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_target_duration_neither_stalls_nor_panics_the_observer() {
    let h = Hostile::new().await;
    for kind in ["huge-target", "huge-target-max"] {
        let (mut child, recording, _) = h.observe(kind, &[]).await;
        let started_at = h.source.now();
        // Segments published well after the start are recorded: the reload
        // cadence follows a clamped target duration.
        colony_tests::eventually(&format!("{kind}: segments published after the start"), SECS(45), || async {
            let stored = h.stored(recording).await;
            stored.iter().any(|s| *s as u64 >= started_at + 8).then_some(())
        })
        .await;
        assert!(child.try_wait().unwrap().is_none(), "{kind}: the observer died");
        child.start_kill().unwrap();
        let out = child.wait_with_output().await.unwrap();
        no_panic(&String::from_utf8_lossy(&out.stderr));
    }
}

/// Defect 3: a jump of the media sequence allocated one entry per skipped
/// number; a packager restarting on epoch-time numbering (850,000,000) got
/// the observer killed for lack of memory, again and again.
#[tokio::test(flavor = "multi_thread")]
async fn a_jump_to_epoch_time_numbering_keeps_recording_in_bounded_memory() {
    let h = Hostile::new().await;
    let (mut child, recording, peak) = h.observe("jump", &[]).await;
    colony_tests::eventually("segments after the jump", SECS(CHANGE_AFTER_SECS + 30), || async {
        let stored = h.stored(recording).await;
        (stored.iter().filter(|s| **s as u64 >= JUMP_TO).count() >= 3).then_some(())
    })
    .await;
    let rows = h.rows(recording).await;
    let epochs: BTreeSet<i32> = rows.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs.len(), 2, "a renumbering is a new epoch, not 850 million gaps: {rows:?}");
    assert!(rows.iter().all(|r| !r.is_gap || r.gap_count < 100), "no gap row counts the renumbering");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let peak = peak.await.unwrap();
    assert!(peak < RSS_BOUND_MIB, "peak RSS {peak:.1} MiB");
}

/// Defect 4: a media sequence at or above 2^63 became a negative sequence
/// that the ledger refused; the writer retried that row forever, heartbeats
/// stopped and the recording never closed.
#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_beyond_two_to_the_63_never_blocks_heartbeats_or_the_end_of_the_recording() {
    let h = Hostile::new().await;
    let (child, recording, _) = h.observe("beyond", &[]).await;
    colony_tests::eventually("the first segments", SECS(20), || async {
        (h.stored(recording).await.len() >= 3).then_some(())
    })
    .await;
    // Past the change the source only offers numbers the ledger cannot hold:
    // the observer sees a source with no usable segment, stands by, finalizes.
    let (code, stderr) = wait_exit(child, SECS(CHANGE_AFTER_SECS + 40)).await;
    no_panic(&stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2^63"), "the reason is logged:\n{stderr}");
    assert_eq!(h.rig.recording_state(recording).await, "complete");
    assert!(h.rows(recording).await.iter().all(|r| r.media_sequence >= 0));
}

/// Defect 5: responses were read whole into memory before any size check:
/// one endless segment or playlist grew the observer without bound.
#[tokio::test(flavor = "multi_thread")]
async fn endless_segments_and_playlists_are_capped_and_memory_stays_bounded() {
    let h = Hostile::new().await;
    // 8 Mbit/s allows a 1-second segment 2 MB plus 1 MiB.
    let (mut child, recording, peak) = h.observe("endless-segment", &[("COLONY_MAX_SEGMENT_MBPS", "8")]).await;
    colony_tests::eventually("gap rows for the endless segments", SECS(30), || async {
        let rows = h.rows(recording).await;
        (rows.iter().filter(|r| r.is_gap).count() >= 3).then_some(rows)
    })
    .await;
    let rows = h.rows(recording).await;
    let reason = rows.iter().find_map(|r| r.gap_reason.clone()).unwrap();
    assert!(reason.contains("cap"), "{reason}");
    assert!(child.try_wait().unwrap().is_none(), "the observer died");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    let peak = peak.await.unwrap();
    assert!(peak < RSS_BOUND_MIB, "endless segment: peak RSS {peak:.1} MiB");

    let (child, _, peak) = h.observe("endless-playlist", &[]).await;
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    no_panic(&stderr);
    assert_eq!(code, Some(0), "an endless playlist is an unusable source: the observer finalizes\n{stderr}");
    let peak = peak.await.unwrap();
    assert!(peak < RSS_BOUND_MIB, "endless playlist: peak RSS {peak:.1} MiB");
}

/// Defect 6: in standby, a source that kept serving its last playlist
/// counted as back, which kept the recording open forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_source_is_offline_and_the_recording_ends() {
    let h = Hostile::new().await;
    let (child, recording, _) = h.observe("frozen", &[]).await;
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    no_panic(&stderr);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(h.rig.recording_state(recording).await, "complete");
    assert_eq!(h.stored(recording).await, BTreeSet::from([0, 1, 2, 3]));
}

/// Defect 10: segment and variant URIs were followed to any host, with
/// redirects, including the cloud's metadata address; whatever came back
/// was stored as media. The refusal must come before any connection.
#[tokio::test(flavor = "multi_thread")]
async fn uris_to_other_hosts_and_metadata_addresses_are_refused_before_any_connection() {
    let h = Hostile::new().await;
    let (mut child, recording, _) = h.observe("foreign", &[]).await;
    colony_tests::eventually("refusals recorded as gaps", SECS(30), || async {
        let rows = h.rows(recording).await;
        let reasons: Vec<String> = rows.iter().filter_map(|r| r.gap_reason.clone()).collect();
        let metadata = reasons.iter().any(|r| r.contains("link-local or cloud-metadata"));
        let foreign = reasons.iter().filter(|r| r.contains("not the source's host")).count() >= 2;
        (metadata && foreign && rows.iter().filter(|r| !r.is_gap).count() >= 2).then_some(())
    })
    .await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert_eq!(h.source.foreign_hits(), 0, "a request reached the other host");
    for row in h.rows(recording).await.iter().filter(|r| !r.is_gap) {
        assert_eq!(row.media_sequence % 4, 0, "only the source's own segments are stored: {row:?}");
    }
}

/// Defect 7: the live playlist held the whole recording and was rewritten
/// every second, so a week-long recording grew a 25 MB PUT per second.
#[tokio::test(flavor = "multi_thread")]
async fn the_live_playlist_is_a_bounded_window_and_the_vod_still_has_everything() {
    let live = LiveSource::start().await;
    live.add("window", &test_media().await, 4);
    let rig = Rig::file().await;
    let channel = rig.channel("window", &live.media_url("window")).await;
    let (cell, a) = rig.assign(channel).await;
    let child = rig.observer(channel, "window", cell, a, &["--live-window", "5"]);
    rig.wait_segments(a.recording_id, 12, SECS(40)).await;
    let key = ObjectKey::parse(&format!("channels/window/{}/playlist.m3u8", a.recording_id)).unwrap();
    let playlist = colony_tests::eventually("the live playlist to slide", SECS(10), || async {
        let text = String::from_utf8(get_bytes(rig.store.as_ref(), &key).await.ok()?.to_vec()).ok()?;
        (!text.contains("#EXT-X-MEDIA-SEQUENCE:0\n")).then_some(text)
    })
    .await;
    assert_eq!(playlist.matches("#EXTINF").count(), 5, "{playlist}");
    assert!(!playlist.contains("PLAYLIST-TYPE") && !playlist.contains("ENDLIST"), "{playlist}");
    live.end("window");
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let vod = String::from_utf8(get_bytes(rig.store.as_ref(), &key).await.unwrap().to_vec()).unwrap();
    let rows = rig.rows(a.recording_id).await;
    assert_eq!(vod.matches("#EXTINF").count(), rows.len(), "{vod}");
    assert!(vod.contains("PLAYLIST-TYPE:VOD") && vod.ends_with("#EXT-X-ENDLIST\n"));
}

/// Defect 8: `Spool::open` imported every `*.json` it found, followed
/// symlinks and never checked the key: a planted symlink to the env file
/// holding DATABASE_URL went into the archive and the ledger.
#[tokio::test(flavor = "multi_thread")]
async fn planted_spool_entries_never_reach_the_archive() {
    let live = LiveSource::start().await;
    live.add("plant", &test_media().await, 4);
    let rig = Rig::file().await;
    let channel = rig.channel("plant", &live.media_url("plant")).await;
    let (cell, a) = rig.assign(channel).await;
    let dir = rig.spool.path().join(a.recording_id.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let secret = rig.spool.path().join("colony.env");
    std::fs::write(&secret, "DATABASE_URL=postgres://colony:hunter2@db/colony\n").unwrap();
    let prefix = format!("channels/plant/{}", a.recording_id);
    let plant = |key: &str, seq: i64| {
        let row = serde_json::json!({
            "epoch": 0, "media_sequence": seq, "duration_secs": 1.0, "bytes": 48, "object_key": key,
            "init_key": null, "program_date_time": null, "source": "live", "is_gap": false, "gap_count": 0,
            "is_ad": false, "discontinuity": false,
        });
        let entry = serde_json::json!({ "key": key, "row": row, "size": 48 });
        let stem = key.replace('/', "__");
        std::fs::write(dir.join(format!("{stem}.json")), entry.to_string()).unwrap();
        stem
    };
    // A symlink to the secret under a key of this recording.
    let stem = plant(&format!("{prefix}/e9/00000001.ts"), 900_001);
    std::os::unix::fs::symlink(&secret, dir.join(format!("{stem}.bin"))).unwrap();
    // The secret copied under a key of another channel.
    let stem = plant("channels/victim/1/e0/00000001.ts", 900_002);
    std::fs::copy(&secret, dir.join(format!("{stem}.bin"))).unwrap();

    let child = rig.observer(channel, "plant", cell, a, &[]);
    rig.wait_segments(a.recording_id, 5, SECS(30)).await;
    live.end("plant");
    let (code, stderr) = wait_exit(child, SECS(40)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    assert!(rows.iter().all(|r| r.media_sequence < 900_000), "a planted row reached the ledger: {rows:?}");
    for object in rig.store.list(None).await.unwrap() {
        let body = get_bytes(rig.store.as_ref(), &object.key).await.unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("hunter2"), "{} holds the secret", object.key);
    }
}

/// A resolver command stored in the database ran on every host that probed
/// or recorded the channel, whatever program it named: write access to
/// Postgres meant command execution everywhere. Now a row names a profile,
/// and even a profile the host defines runs only a program it allows.
#[tokio::test(flavor = "multi_thread")]
async fn a_resolver_program_the_host_does_not_allow_never_runs() {
    let colony = Colony::new(Rig::file().await);
    let marker = colony.logs.path().join("resolver-ran");
    let resolver = format!("touch {}", marker.display());
    let mut add = colony.command(&[
        "channel",
        "add",
        "--login",
        "evil",
        "--source-url",
        "https://example.invalid/x",
        "--resolver",
        "evil",
    ]);
    let out = add.env("COLONY_RESOLVER_EVIL", &resolver).stderr(std::process::Stdio::piped()).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut tick = colony.command(&["tick", "--json"]);
    tick.env("COLONY_RESOLVER_EVIL", &resolver);
    let out = tick.output().await.unwrap();
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default()).unwrap();
    assert_eq!(report["probes"]["errors"], 1, "{report:#}");
    assert!(!marker.exists(), "the stored resolver ran");
    let out = colony.run(&["status", "--json"]).await;
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("COLONY_RESOLVERS"), "status says why: {status}");
}

/// Every hostile source at once, beside an honest channel, under one
/// `mothership run` with the process launcher: the loop survives, nothing
/// panics, the honest channel records every segment, and every observer
/// stays under the memory bound.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_sources_cannot_stop_a_colony_or_cost_an_honest_channel_a_segment() {
    let media = test_media().await;
    let hostile = HostileSource::start(&media).await;
    let live = LiveSource::start().await;
    let colony = Colony::new(Rig::file().await);
    let mut channels = vec![("honest".to_owned(), live.media_url("honest"))];
    channels.extend(hostile::KINDS.iter().map(|k| (k.replace('-', "_"), hostile.url(k))));
    for (login, url) in &channels {
        let out = colony.run(&["channel", "add", "--login", login, "--source-url", url]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // The honest channel goes live only now that the colony is set up, and
    // with a window of 40 one-second segments: its segment 0 must still be
    // published when its observer first fetches. The first tick probes every
    // hostile source (up to the probe timeout) and starts eleven observers at
    // once, on a 2-core machine that may be busy with other tests; a window
    // of 20, counted from before the colony's database and channels were
    // made, was not always enough.
    live.add("honest", &media, 40);
    let mut run = colony
        .command(&["run", "--every", "1s"])
        .env("COLONY_PROBE_FROZEN_AFTER", "5s")
        .env("COLONY_MAX_SEGMENT_MBPS", "8")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mothership_peak = watch_peak(run.id().unwrap());

    // Follow every observer's peak memory while the colony runs.
    let pool = colony.rig.pool.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut peaks: std::collections::HashMap<String, f64> = Default::default();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let cells: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT c.login, cells.backend_ref FROM cells JOIN channels c ON c.id = cells.channel_id
                      WHERE cells.kind = 'observer' AND cells.state IN ('starting', 'running', 'stopping')",
                )
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                for (login, pid) in cells {
                    if let Some(rss) = pid.and_then(|p| p.parse().ok()).and_then(peak_rss_mib) {
                        let peak = peaks.entry(login).or_default();
                        *peak = peak.max(rss);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            peaks
        })
    };

    tokio::time::sleep(SECS(35)).await;
    assert!(run.try_wait().unwrap().is_none(), "mothership run died");
    live.end("honest");
    let honest: i64 = sqlx::query_scalar(
        "SELECT r.id FROM recordings r JOIN channels c ON c.id = r.channel_id WHERE c.login = 'honest'",
    )
    .fetch_one(&colony.rig.pool)
    .await
    .unwrap();
    colony_tests::eventually("the honest recording to complete", SECS(60), || async {
        (colony.rig.recording_state(honest).await == "complete").then_some(())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let peaks = watching.await.unwrap();
    assert!(run.try_wait().unwrap().is_none(), "mothership run died");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id().unwrap() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let out = tokio::time::timeout(SECS(30), run.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    no_panic(&stderr);
    assert!(out.status.success(), "{stderr}");
    colony.kill_cells().await;

    // The honest channel: every published segment, once, no gap.
    let rows = colony.rig.rows(honest).await;
    let published: BTreeSet<i64> = live.published("honest").iter().map(|p| p.0 as i64).collect();
    let stored: BTreeSet<i64> = rows.iter().filter(|r| !r.is_gap).map(|r| r.media_sequence).collect();
    assert_eq!(stored, published, "the honest channel lost segments");
    assert!(rows.iter().all(|r| !r.is_gap && r.epoch == 0));

    // No cell panicked: every cell's log read (lossily: a hostile source's
    // bytes may not be UTF-8), and none says so.
    let mut logs = 0;
    for log in std::fs::read_dir(colony.logs.path()).unwrap().flatten() {
        let bytes = std::fs::read(log.path()).unwrap_or_else(|e| panic!("cannot read {}: {e}", log.path().display()));
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("panicked"), "{} panicked:\n{text}", log.path().display());
        logs += 1;
    }
    assert!(logs >= peaks.len(), "{logs} cell logs for {} observers", peaks.len());
    // Memory stayed bounded everywhere.
    for (login, peak) in &peaks {
        assert!(*peak < RSS_BOUND_MIB, "observer of {login}: peak RSS {peak:.1} MiB");
    }
    for kind in ["overflow", "endless_segment", "jump", "foreign"] {
        assert!(peaks.contains_key(kind), "no observer ran for {kind}: {peaks:?}");
    }
    let mothership_peak = mothership_peak.await.unwrap();
    assert!(mothership_peak < 256.0, "mothership peak RSS {mothership_peak:.1} MiB");
    // The frozen source was found out by the probe.
    let (live_now, error): (bool, Option<String>) =
        sqlx::query_as("SELECT live, probe_error FROM channels WHERE login = 'frozen'")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert!(!live_now && error.unwrap_or_default().contains("same playlist"));
    eprintln!("peak RSS by observer (MiB): {peaks:?}; mothership {mothership_peak:.1}");
}
