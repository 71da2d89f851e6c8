//! Hand-overs and endings without a hole (issue 24, findings 1 to 3).
//!
//! In the hand-over test the observers run in a network namespace of the test's making
//! ([`CellNet`]); the mothership runs on the host and is ticked as cron
//! would, once a minute. Cutting the namespace's packets to Postgres cuts
//! the recording observer and every replacement alike, as one host losing
//! its route to the database would. The proof is the source's own: every
//! segment it published is in the ledger, no gap, and every stored object
//! has the bytes the source served.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use colony::storage::{ObjectKey, get_bytes};
use colony_tests::bins::bin;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::netns::{CellNet, port_of};
use colony_tests::observer::{Rig, wait_exit};
use colony_tests::pg::Role;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The source of the setup: 2-second segments, a 6-segment window.
const SOURCE: Profile = Profile { segment_secs: 2, total_secs: 60, ..Profile::TEST };
const WINDOW: usize = 6;
/// Cron's cadence.
const TICK: Duration = Duration::from_secs(60);

/// Issue 24, finding 1: an observer cut from Postgres (but not from its
/// source or storage) was stopped by its replacement at once, and the
/// replacement, behind the same partition, gave up within seconds; the
/// next tick's came a minute later, and the source's 12-second window had
/// moved on. Make before break: the old observer keeps capturing until a
/// replacement holds the lease and has fetched (or until it learns it is
/// fenced), the replacement keeps trying to reach Postgres within the start
/// grace, and the hand-over leaves no hole with a tick every minute.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_over_behind_a_partition_leaves_no_hole_with_a_tick_a_minute() {
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, SOURCE)).await.unwrap();
    let source = LiveSource::start().await;
    source.add("hand", &media, WINDOW);
    let net = CellNet::create();
    let colony = Colony::new(Rig::file().await);
    let rig = &colony.rig;
    let channel = rig.channel("hand", &net.url(&source.media_url("hand"))).await;
    let observer_url = rig.db.role_url(Role::Observer);
    let pg_port = port_of(&observer_url);
    let env = [
        ("COLONY_PROCESS_OBSERVER_BIN", net.wrap(&bin("observer-cell")).display().to_string()),
        ("COLONY_OBSERVER_DATABASE_URL", net.url(&observer_url)),
        ("COLONY_HEARTBEAT_TIMEOUT", "30s".to_owned()),
        ("COLONY_START_GRACE", "2m".to_owned()),
    ];
    let tick = || colony.tick_env(&[], &env);

    let first = tick().await;
    assert_eq!(first["observers_started"], 1, "{first:#}");
    let recording: i64 = sqlx::query_scalar("SELECT id FROM recordings WHERE channel_id = $1")
        .bind(channel)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    rig.wait_segments(recording, 4, SECS(60)).await;
    let started = Instant::now();

    // The namespace loses Postgres: the observer goes on fetching and uploading.
    net.cut(pg_port);
    // Cron's next tick, past the heartbeat timeout: the observer is replaced.
    tokio::time::sleep(SECS(35)).await;
    let replaced = tick().await;
    assert_eq!(replaced["observers_replaced"], 1, "{replaced:#}");
    // The replacement sits behind the same partition for a while.
    tokio::time::sleep(SECS(25)).await;
    net.heal(pg_port);
    // Cron's tick after that: the hand-over is made.
    tokio::time::sleep(TICK.saturating_sub(SECS(25))).await;
    let after = tick().await;
    let active = colony.active("observer").await;
    assert_eq!(active.len(), 1, "one observer once the replacement has fetched: {active:?}\n{after:#}");

    source.end("hand");
    colony_tests::eventually("the recording to be finalized", SECS(90), || async {
        (rig.recording_state(recording).await == "complete").then_some(())
    })
    .await;
    assert!(started.elapsed() < SECS(300));

    // The source's word: everything it published from the recording's start on.
    let rows = rig.rows(recording).await;
    let gaps: Vec<_> = rows.iter().filter(|r| r.is_gap).collect();
    let stored: BTreeSet<u64> = rows.iter().filter(|r| !r.is_gap).map(|r| r.media_sequence as u64).collect();
    let first_seq = *stored.first().expect("something stored");
    let published: BTreeSet<u64> = source.published("hand").iter().map(|p| p.0).filter(|s| *s >= first_seq).collect();
    let missing: Vec<u64> = published.difference(&stored).copied().collect();
    let decisions: Vec<(String, String, serde_json::Value)> =
        sqlx::query_as("SELECT action, reason, detail FROM decisions ORDER BY id").fetch_all(&rig.pool).await.unwrap();
    assert!(
        gaps.is_empty() && missing.is_empty(),
        "the hand-over left a hole: missing {missing:?}, gaps {gaps:?}\ndecisions: {decisions:#?}"
    );
    // And the bytes are the source's.
    for row in rows.iter().filter(|r| !r.is_gap) {
        let key = ObjectKey::parse(row.object_key.as_deref().unwrap()).unwrap();
        let got = get_bytes(rig.store.as_ref(), &key).await.unwrap();
        let served = source.segment_bytes("hand", row.media_sequence as u64).unwrap();
        assert!(got == served, "segment {} differs from what the source served", row.media_sequence);
    }
    // The replacement kept the old cell running, and the old one was
    // stopped (or left fenced) only once the replacement had fetched.
    let replace = decisions.iter().find(|d| d.0 == "replace_observer").expect("a replacement decision");
    assert_eq!(replace.2["old_stopped"], false, "{replace:?}");
    assert!(replace.2["old_kept"].is_string(), "{replace:?}");
    colony.kill_cells().await;
}

/// Issue 24, finding 2: a fast-forward broadcast ended while the observer
/// was far behind (its in-flight cap reached), and the tail of the final
/// playlist was neither stored nor ledgered as a gap: after
/// `EXT-X-ENDLIST` nothing handed the held-back segments out again. Now
/// every segment of the final playlist, which the source keeps serving, is
/// stored; and every segment the source ever published is stored or is a
/// gap row with its reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_broadcast_that_ends_while_the_observer_is_behind_keeps_its_whole_final_playlist() {
    const FINAL_WINDOW: usize = 600;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let source = LiveSource::start().await;
    source.add("tail", &media, FINAL_WINDOW);
    // 100 one-second segments a second, each answered after a second: four
    // fetches at a time fall further behind with every load.
    source.speed("tail", 100.0);
    source.segment_delay("tail", SECS(1));
    let rig = Rig::file().await;
    let channel = rig.channel("tail", &source.media_url("tail")).await;
    let (cell, a) = rig.assign(channel).await;
    let observer = rig.observer(channel, "tail", cell, a, &["--concurrency", "4", "--standby", "30s"]);
    // Long enough for the observer to hold back more than its in-flight cap.
    tokio::time::sleep(SECS(30)).await;
    source.end("tail");
    source.segment_delay("tail", Duration::ZERO);
    let (code, stderr) = wait_exit(observer, SECS(150)).await;
    assert_eq!(code, Some(0), "{}", tail_of(&stderr));

    let rows = rig.rows(a.recording_id).await;
    let stored: BTreeSet<u64> = rows.iter().filter(|r| !r.is_gap).map(|r| r.media_sequence as u64).collect();
    let mut covered = stored.clone();
    for gap in rows.iter().filter(|r| r.is_gap) {
        assert!(gap.gap_reason.is_some(), "a gap without its reason: {gap:?}");
        let first = gap.media_sequence as u64;
        covered.extend(first..first + gap.gap_count.max(1) as u64);
    }
    let published: Vec<u64> = source.published("tail").iter().map(|p| p.0).collect();
    assert!(published.len() > 2_048 + FINAL_WINDOW, "the source published only {}", published.len());
    let final_playlist = &published[published.len() - FINAL_WINDOW..];
    let lost_tail: Vec<u64> = final_playlist.iter().copied().filter(|s| !stored.contains(s)).collect();
    assert!(
        lost_tail.is_empty(),
        "{} of the final playlist's {FINAL_WINDOW} segments were not stored (first {:?})\n{}",
        lost_tail.len(),
        lost_tail.first(),
        tail_of(&stderr)
    );
    let silent: Vec<u64> = published.iter().copied().filter(|s| !covered.contains(s)).collect();
    assert!(
        silent.is_empty(),
        "{} published segments are neither stored nor a gap (first {:?})",
        silent.len(),
        silent.first()
    );
}

/// Issue 24, finding 3: the observer finalized a recording after
/// `EXT-X-ENDLIST`, and the next tick started a second observer for the
/// same channel on a probe made before that end: a source that keeps its
/// final playlist up (nginx-rtmp, ffmpeg's HLS muxer, many CDNs) was
/// recorded twice. With probes once a minute, as cron would, a finished
/// broadcast yields exactly one recording.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_keeps_its_final_playlist_up_is_recorded_once() {
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let source = LiveSource::start().await;
    source.add("once", &media, 6);
    let colony = Colony::new(Rig::file().await);
    let rig = &colony.rig;
    rig.channel("once", &source.media_url("once")).await;
    let env = [("COLONY_PROBE_EVERY", "60s".to_owned())];
    let first = colony.tick_env(&[], &env).await;
    assert_eq!(first["observers_started"], 1, "{first:#}");
    let recording: i64 = sqlx::query_scalar("SELECT id FROM recordings").fetch_one(&rig.pool).await.unwrap();
    rig.wait_segments(recording, 3, SECS(30)).await;
    source.end("once");
    colony_tests::eventually("the recording to be finalized", SECS(60), || async {
        (rig.recording_state(recording).await == "complete").then_some(())
    })
    .await;
    // The ticks after the end, well inside the probe interval.
    for _ in 0..4 {
        let report = colony.tick_env(&[], &env).await;
        assert_eq!(report["observers_started"], 0, "a finished broadcast was started again: {report:#}");
        tokio::time::sleep(SECS(1)).await;
    }
    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings").fetch_one(&rig.pool).await.unwrap();
    assert_eq!(recordings, 1);
    colony.kill_cells().await;
}

/// A cell frozen inside a transaction (SIGSTOP between two statements of
/// its heartbeat, found by `a_zombie_observer_never_overwrites_its_replacements_playlist`
/// hanging) held its recording's row lock, and the replacement's hand-over
/// (`assign_live`) waited on it for as long as the cell stayed frozen. A
/// cell's sessions now end after `CELL_IDLE_IN_TRANSACTION` idle in one.
#[tokio::test(flavor = "multi_thread")]
async fn a_cell_frozen_inside_a_transaction_does_not_hold_up_its_hand_over() {
    let rig = Rig::file().await;
    let channel = rig.channel("frozen", "http://unused.invalid/").await;
    let (_, a) = rig.assign(channel).await;
    let args = colony::config::DatabaseArgs {
        database_url: rig.db.role_url(Role::Observer).parse().unwrap(),
        db_max_connections: 1,
        db_connect_timeout: SECS(5).into(),
        statement_timeout: SECS(60).into(),
    };
    let cell = colony::db::connect_within(&args, SECS(5)).await.unwrap();
    let mut frozen = cell.begin().await.unwrap();
    sqlx::query("UPDATE recordings SET segment_count = segment_count WHERE id = $1 AND lease_token = $2")
        .bind(a.recording_id)
        .bind(a.lease_token)
        .execute(&mut *frozen)
        .await
        .unwrap();
    // The cell freezes here, its transaction open. The mothership hands over.
    let started = Instant::now();
    let (_, b) = tokio::time::timeout(SECS(40), rig.assign(channel))
        .await
        .expect("the hand-over waited on the frozen cell's row lock");
    assert!(b.lease_token > a.lease_token);
    assert!(started.elapsed() >= colony::db::CELL_IDLE_IN_TRANSACTION.saturating_sub(SECS(1)));
    // The frozen cell's session is gone: its next statement fails.
    let late = sqlx::query("SELECT 1").execute(&mut *frozen).await;
    assert!(late.is_err(), "the frozen session was not ended");
}

fn tail_of(log: &str) -> &str {
    let mut from = log.len().saturating_sub(4000);
    while !log.is_char_boundary(from) {
        from += 1;
    }
    &log[from..]
}
