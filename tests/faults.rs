//! Faults that must lose nothing: partitions between a cell and Postgres,
//! zombie cells that wake up after their replacement, leases that expire
//! under a running job, cells the mothership buried, launches that fail and
//! ticks that hang. Real Postgres, ffmpeg, the test live source, the real
//! binaries, and real partitions: the cell under test runs in a network
//! namespace and nftables drops its packets to Postgres ([`CellNet`]). Each
//! test names the defect it guards against; each failed on the code before
//! the fix.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use colony::recording::LedgerRow;
use colony::storage::{ObjectKey, get_bytes};
use colony_tests::bins::bin;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::netns::{CellNet, port_of};
use colony_tests::observer::{Rig, signal, wait_exit};
use colony_tests::pg::Role;
use nix::sys::signal::Signal;

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn test_media() -> colony_tests::live::Media {
    tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap()
}

fn stored(rows: &[LedgerRow]) -> BTreeSet<u64> {
    rows.iter().filter(|r| !r.is_gap).map(|r| r.media_sequence as u64).collect()
}

/// Defect 1: a partition between an observer and Postgres turned stored
/// media into gaps. The old cell queued its rows, the mothership replaced it,
/// the old rows were refused, and the replacement, resuming from the ledger
/// alone, wrote gaps for segments the old cell had uploaded.
#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_adopts_what_a_partitioned_observer_stored() {
    let source = LiveSource::start().await;
    source.add("papa", &test_media().await, 4);
    let rig = Rig::file().await;
    let net = CellNet::create();
    let channel = rig.channel("papa", &net.url(&source.media_url("papa"))).await;
    let observer_url = rig.db.role_url(Role::Observer);
    let (cell_a, a) = rig.assign(channel).await;
    let mut cmd = rig.observer_command_at(&net.wrap(&bin("observer-cell")), channel, "papa", cell_a, a, &[]);
    cmd.env("DATABASE_URL", net.url(&observer_url));
    let old = cmd.spawn().unwrap();
    rig.wait_segments(a.recording_id, 3, SECS(30)).await;

    // Cut: the old observer goes on uploading, its rows go nowhere.
    net.cut(port_of(&observer_url));
    let before = stored(&rig.rows(a.recording_id).await);
    tokio::time::sleep(SECS(10)).await;
    // The mothership replaces it (as a tick would after the heartbeat timeout).
    let (cell_b, b) = rig.assign(channel).await;
    assert_eq!(b.recording_id, a.recording_id);
    let replacement = rig.observer(channel, "papa", cell_b, b, &[]);
    colony_tests::eventually("the replacement to record", SECS(30), || async {
        (stored(&rig.rows(a.recording_id).await).len() > before.len() + 8).then_some(())
    })
    .await;
    net.heal(port_of(&observer_url));
    let (code, stderr) = wait_exit(old, SECS(60)).await;
    assert_eq!(code, Some(3), "the old observer is fenced out once it reaches Postgres again\n{stderr}");

    source.end("papa");
    let (code, stderr) = wait_exit(replacement, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    let published: BTreeSet<u64> = source.published("papa").iter().map(|p| p.0).collect();
    let gaps: Vec<&LedgerRow> = rows.iter().filter(|r| r.is_gap).collect();
    assert!(gaps.is_empty(), "gaps for media the old cell stored: {gaps:?}");
    assert_eq!(stored(&rows), published, "every published segment is in the ledger");
    let adopted = rows.iter().filter(|r| r.warning.as_deref().is_some_and(|w| w.starts_with("adopted"))).count();
    assert!(
        adopted > 0,
        "the partition lasted past the source's window: something had to be adopted\n{rows:#?}\n{stderr}"
    );
}

/// Storage that drops packets held segments hostage. An upload had no bound
/// but the S3 client's 60-second read timeout, so every segment handed out
/// during the cut sat in the cell's memory, neither stored nor spooled; a
/// cell killed (or fenced) meanwhile lost them, and a replacement that ran
/// after they left the source's window wrote them off as a gap. The chaos
/// suite found it: three segments of `live1` after `CutCellsStorage` and
/// then `CutEverything` (issue 24). Now an attempt past its deadline spools
/// the segment to this host's disk, and a replacement on the same host
/// counts what the spool holds before it calls anything a gap.
#[tokio::test(flavor = "multi_thread")]
async fn segments_whose_uploads_hang_reach_the_spool_and_survive_a_kill() {
    let g = tokio::task::spawn_blocking(colony_tests::garage::garage).await.unwrap();
    let source = LiveSource::start().await;
    source.add("romeo", &test_media().await, 8);
    let rig = Rig::garage(g).await;
    let net = CellNet::create();
    let channel = rig.channel("romeo", &net.url(&source.media_url("romeo"))).await;
    let observer_url = rig.db.role_url(Role::Observer);
    let in_net = |cell, a| {
        let mut cmd = rig.observer_command_at(&net.wrap(&bin("observer-cell")), channel, "romeo", cell, a, &[]);
        cmd.env("DATABASE_URL", net.url(&observer_url))
            .env("AWS_ENDPOINT_URL", net.url(&g.endpoint))
            .env("OBSERVER_UPLOAD_TIMEOUT", "3s");
        cmd.spawn().unwrap()
    };
    let (cell_a, a) = rig.assign(channel).await;
    let old = in_net(cell_a, a);
    rig.wait_segments(a.recording_id, 3, SECS(30)).await;

    // Storage goes silent for the cell: its uploads hang, they are not refused.
    net.cut(port_of(&g.endpoint));
    let dropped = net.dropped();
    tokio::time::sleep(SECS(14)).await;
    assert!(net.dropped() > dropped, "the cut dropped nothing: the cell never tried to upload");
    let spool = rig.spool.path().join(a.recording_id.to_string());
    let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    signal(&old, Signal::SIGKILL);
    let (_, stderr) = wait_exit(old, SECS(10)).await;
    assert!(spooled > 0, "14 s into the cut nothing was spooled: the segments were only in memory\n{stderr}");

    // A replacement on the same host, after what was spooled has left the
    // source's 8-second window, and while storage is still silent: it must
    // not call the spooled segments a gap because it cannot see them in
    // storage yet.
    let (cell_b, b) = rig.assign(channel).await;
    let replacement = in_net(cell_b, b);
    tokio::time::sleep(SECS(8)).await;
    net.heal(port_of(&g.endpoint));
    rig.wait_segments(a.recording_id, 30, SECS(30)).await;
    source.end("romeo");
    let (code, stderr) = wait_exit(replacement, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    let gaps: Vec<(i64, i32, Option<&str>)> =
        rows.iter().filter(|r| r.is_gap).map(|r| (r.media_sequence, r.gap_count, r.gap_reason.as_deref())).collect();
    assert!(gaps.is_empty(), "gaps for media this host had: {gaps:?}\n{stderr}");
    let adopted: Vec<i64> = rows
        .iter()
        .filter(|r| r.warning.as_deref().is_some_and(|w| w.starts_with("adopted")))
        .map(|r| r.media_sequence)
        .collect();
    assert!(adopted.is_empty(), "spooled rows, not estimates adopted after a gap: {adopted:?}\n{stderr}");
    let published: BTreeSet<u64> = source.published("romeo").iter().map(|p| p.0).collect();
    assert_eq!(stored(&rows), published, "every published segment is stored and in the ledger\n{stderr}");
    for row in &rows {
        let key = ObjectKey::parse(row.object_key.as_deref().unwrap()).unwrap();
        let body = get_bytes(rig.store.as_ref(), &key).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        let served = source.segment_bytes("romeo", row.media_sequence as u64).unwrap();
        assert!(body.as_ref() == served.as_slice(), "{key} is not what the source served");
    }
}

/// Defect 2: a stale observer could overwrite its replacement's playlist:
/// object storage writes carry no fence, and the final VOD playlist was
/// written before the fenced finalize.
#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_observer_never_overwrites_its_replacements_playlist() {
    let source = LiveSource::start().await;
    source.add("zulu", &test_media().await, 4);
    let rig = Rig::file().await;
    let channel = rig.channel("zulu", &source.media_url("zulu")).await;
    let (cell_a, a) = rig.assign(channel).await;
    let mut cmd = rig.observer_command(channel, "zulu", cell_a, a, &[]);
    cmd.env("OBSERVER_WRITE_LEASE", "2s");
    let zombie = cmd.spawn().unwrap();
    rig.wait_segments(a.recording_id, 4, SECS(30)).await;
    signal(&zombie, Signal::SIGSTOP);

    let (cell_b, b) = rig.assign(channel).await;
    let replacement = rig.observer(channel, "zulu", cell_b, b, &[]);
    rig.wait_segments(a.recording_id, 10, SECS(30)).await;
    source.end("zulu");
    let (code, stderr) = wait_exit(replacement, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let key = ObjectKey::parse(&format!("channels/zulu/{}/playlist.m3u8", a.recording_id)).unwrap();
    let vod = get_bytes(rig.store.as_ref(), &key).await.unwrap();
    assert!(String::from_utf8_lossy(&vod).ends_with("#EXT-X-ENDLIST\n"));

    // The zombie wakes with work in hand: fetches, rows, a dirty playlist.
    signal(&zombie, Signal::SIGCONT);
    let (code, stderr) = wait_exit(zombie, SECS(60)).await;
    assert_eq!(code, Some(3), "{stderr}");
    let after = get_bytes(rig.store.as_ref(), &key).await.unwrap();
    assert_eq!(after, vod, "the zombie rewrote the playlist");
}

/// Defect 4: an expired lease did not stop the worker: a failed renewal was
/// only logged, and the job ran on without a lease while another cell could
/// claim it. Now a worker that cannot renew for half the lease stops the job
/// and kills its ffmpeg.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_from_postgres_stops_its_job_and_its_ffmpeg() {
    let rig = Rig::file().await;
    // A recording long enough that re-encoding it takes a while.
    let source = LiveSource::start().await;
    let long = Profile { total_secs: 60, ..Profile::SMALL_480P };
    let media = tokio::task::spawn_blocking(move || media(Container::Ts, long)).await.unwrap();
    source.add("slow", &media, 60);
    let recording = downloaded(&rig, &source, "slow").await;
    let queue = colony::queue::Queue::new(rig.pool.clone());
    let job = queue
        .enqueue(&colony::queue::NewJob::new(
            "reencode",
            serde_json::json!({ "recording_id": recording, "ladder": [480, 360, 240] }),
        ))
        .await
        .unwrap()
        .id();

    let net = CellNet::create();
    let harvest_url = rig.db.role_url(Role::Harvest);
    let mut cmd = rig.cell_at("harvest-cell", &net.wrap(&bin("harvest-cell")));
    cmd.env("DATABASE_URL", net.url(&harvest_url))
        .env("HARVEST_LEASE", "4s")
        .env("HARVEST_POLL", "500ms")
        .arg("--drain");
    let mut worker = cmd.spawn().unwrap();
    let pid = worker.id().unwrap();
    // The worker's child processes (ffmpeg), whichever of its threads started them.
    let ffmpeg = || -> Vec<u32> {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap_or_else(|e| panic!("the worker ({pid}) is gone: {e}"))
            .flatten()
            .collect::<Vec<_>>();
        tasks
            .iter()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
            .collect()
    };
    let started = colony_tests::eventually("ffmpeg to run the job", SECS(30), || async {
        Some(ffmpeg()).filter(|f| !f.is_empty())
    })
    .await;
    net.cut(port_of(&harvest_url));
    let cut = Instant::now();
    // Half the lease (2s) and a renewal attempt later, the job is stopped:
    // the ffmpeg that ran it is gone (not merely no longer the worker's
    // child, as it would be if the worker died and left it running).
    let running = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')))
    };
    colony_tests::eventually("the worker to stop the job and its ffmpeg", SECS(10), || async {
        (!started.iter().any(running) && ffmpeg().is_empty()).then_some(())
    })
    .await;
    assert!(cut.elapsed() < SECS(8), "stopped only after {:?}", cut.elapsed());
    assert_eq!(worker.try_wait().unwrap(), None, "the worker stopped the job by dying");
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1").bind(job).fetch_one(&rig.pool).await.unwrap();
    assert_eq!(state, "running", "nothing was reported for the job: its lease simply runs out");
    let _ = worker.start_kill();
    let _ = worker.wait().await;
}

/// Defect 6: `harvest::register` and the observer's start-up upsert revived
/// a cell row the mothership had marked dead.
#[tokio::test(flavor = "multi_thread")]
async fn a_cell_the_mothership_buried_stays_buried() {
    let source = LiveSource::start().await;
    source.add("tango", &test_media().await, 4);
    let rig = Rig::file().await;
    let bury = |cell: uuid::Uuid, kind: &'static str| {
        let pool = rig.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO cells (id, kind, backend, state, exited_at) VALUES ($1, $2::cell_kind, 'process', 'dead', now())
                 ON CONFLICT (id) DO UPDATE SET state = 'dead'",
            )
            .bind(cell)
            .bind(kind)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let state = |cell: uuid::Uuid| {
        let pool = rig.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state::text FROM cells WHERE id = $1")
                .bind(cell)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let harvest = uuid::Uuid::new_v4();
    bury(harvest, "harvest").await;
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--cell-id", &harvest.to_string()]), SECS(30)).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(state(harvest).await, "dead");

    let channel = rig.channel("tango", &source.media_url("tango")).await;
    let (cell, a) = rig.assign(channel).await;
    bury(cell, "observer").await;
    let (code, stderr) = wait_exit(rig.observer(channel, "tango", cell, a, &[]), SECS(30)).await;
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(state(cell).await, "dead");
    assert!(rig.rows(a.recording_id).await.is_empty(), "a buried observer recorded");
}

/// Defect 7: a tick exited 0 when actions failed, retried a failing start on
/// every tick, and left open the recording it made for a launch that failed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_exits_4_backs_off_and_leaves_no_recording_open() {
    let source = LiveSource::start().await;
    source.add("lima", &test_media().await, 4);
    let colony = Colony::new(Rig::file().await);
    let out = colony.run(&["channel", "add", "--login", "lima", "--source-url", &source.media_url("lima")]).await;
    assert!(out.status.success());
    let tick = |extra: &'static [(&'static str, &'static str)]| {
        let mut cmd = colony.command(&["tick", "--json"]);
        cmd.env("COLONY_PROCESS_OBSERVER_BIN", "/nonexistent/observer-cell").env("COLONY_START_BACKOFF", "30s");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.stderr(std::process::Stdio::piped()).output()
    };
    let out = tick(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 action(s) failed"));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["failed_actions"], 1, "{report:#}");
    let error = report["actions"][0]["error"].as_str().unwrap();
    assert!(error.contains("was not found") && error.contains("next try at"), "{error}");
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE state IN ('recording', 'standby')")
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(open, 0, "the recording made for the failed launch is left open");

    // The next tick does not try again before the backoff ends, and says so.
    let out = tick(&[]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["observers_started"], 0, "{report:#}");
    assert!(report["plan"]["skipped"][0]["reason"].as_str().unwrap().contains("backing off after 1 failed start(s)"));
    let status = colony.run(&["status", "--json"]).await;
    assert!(String::from_utf8_lossy(&status.stdout).contains("start_retry_at"), "status shows the next try");
}

/// Defect 7 (deadline): with no statement timeout and no deadline, a tick
/// stuck on a lock held the tick lock forever, and every later tick said
/// "busy".
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_tick_gives_up_and_releases_the_tick_lock() {
    let colony = Colony::new(Rig::file().await);
    let mut blocker = colony.rig.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE channels IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let started = Instant::now();
    let mut cmd = colony.command(&["tick"]);
    cmd.env("COLONY_STATEMENT_TIMEOUT", "2s").env("COLONY_TICK_DEADLINE", "10s");
    let out = tokio::time::timeout(SECS(30), cmd.output()).await.expect("the tick hung").unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < SECS(20));
    blocker.rollback().await.unwrap();
    let report = colony.tick(&[]).await;
    assert!(report["tick_id"].is_string(), "the lock was released: {report:#}");
}

/// Defect 7 (start grace): a cell that died at start waited out the whole
/// start grace before it was replaced, while its channel went unrecorded.
#[tokio::test(flavor = "multi_thread")]
async fn an_observer_that_dies_at_start_is_replaced_at_the_next_tick() {
    let source = LiveSource::start().await;
    source.add("echo", &test_media().await, 4);
    let colony = Colony::new(Rig::file().await);
    let out = colony.run(&["channel", "add", "--login", "echo", "--source-url", &source.media_url("echo")]).await;
    assert!(out.status.success());
    let mut cmd = colony.command(&["tick", "--json"]);
    // The first observer cannot start: its storage URL is malformed (exit 2).
    cmd.env("COLONY_CELL_ENV", "COLONY_STORAGE_URL=nowhere").env("COLONY_START_GRACE", "5m");
    assert!(cmd.output().await.unwrap().status.success());
    let (first, pid, _) = colony.active("observer").await.pop().unwrap();
    let pid: i32 = pid.unwrap().parse().unwrap();
    // Cell logs may quote a cell's environment: only the colony's user reads them.
    let log = colony.logs.path().join(format!("observer-{first}.log"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    colony_tests::eventually("the first observer to die", SECS(20), || async {
        (nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()).then_some(())
    })
    .await;
    let mut cmd = colony.command(&["tick", "--json"]);
    cmd.env("COLONY_START_GRACE", "5m");
    let out = cmd.output().await.unwrap();
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["observers_replaced"], 1, "replaced within the 5-minute grace: {report:#}");
    let replace = &report["actions"][0];
    assert_eq!(replace["detail"]["replaced"], first.to_string());
    colony.kill_cells().await;
}

/// Defect 9: with COLONY_MIN_HARVEST above 0, harvest cells left when idle
/// and the next tick started another: churn.
#[tokio::test(flavor = "multi_thread")]
async fn the_harvest_minimum_keeps_its_cells_instead_of_churning() {
    let colony = Colony::new(Rig::file().await);
    let mut ids = BTreeSet::new();
    for _ in 0..4 {
        let mut cmd = colony.command(&["tick", "--json"]);
        cmd.env("COLONY_MIN_HARVEST", "1");
        assert!(cmd.output().await.unwrap().status.success());
        for (id, _, _) in colony.active("harvest").await {
            ids.insert(id);
        }
        // Longer than HARVEST_IDLE_EXIT (2s here).
        tokio::time::sleep(SECS(3)).await;
    }
    assert_eq!(ids.len(), 1, "one cell kept, not {} started one after the other", ids.len());
    assert_eq!(colony.active("harvest").await.len(), 1);
    colony.kill_cells().await;
}

/// Defect 7 (process launcher): it signalled by instance marker alone, so a
/// pid reused by another of this colony's cells got that healthy cell killed.
#[tokio::test(flavor = "multi_thread")]
async fn the_process_launcher_never_signals_another_cell_behind_a_reused_pid() {
    use mothership::launcher::Launcher;
    use mothership::launcher::process::{ProcessArgs, ProcessLauncher};
    let logs = tempfile::tempdir().unwrap();
    let instance = uuid::Uuid::new_v4();
    let (ours, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // A healthy cell of the same colony now lives at the pid `ours` had.
    let mut healthy = tokio::process::Command::new("sleep")
        .arg("30")
        .env("COLONY_INSTANCE_ID", instance.to_string())
        .env("COLONY_CELL_ID", other.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = healthy.id().unwrap().to_string();
    let args = ProcessArgs {
        process_observer_bin: None,
        process_harvest_bin: None,
        process_log_dir: Some(logs.path().into()),
    };
    let launcher = ProcessLauncher::new(instance, &args).unwrap();
    launcher.reap(&pid, Some(ours), "its heartbeat is stale").await.unwrap();
    let died = tokio::time::timeout(SECS(2), healthy.wait()).await;
    assert!(died.is_err(), "the healthy cell behind the reused pid was killed: {died:?}");
    launcher.reap(&pid, Some(other), "test done").await.unwrap();
    assert!(tokio::time::timeout(SECS(5), healthy.wait()).await.is_ok(), "its own cell id is signalled");
}

/// The source's stream `name`, ended and downloaded by a harvest cell into
/// a new channel's recording (with no pipeline after it): its id.
async fn downloaded(rig: &Rig, source: &LiveSource, name: &str) -> i64 {
    source.end(name);
    let channel = rig.channel(name, "http://unused.invalid/").await;
    sqlx::query("UPDATE channels SET pipeline = '[]' WHERE id = $1").bind(channel).execute(&rig.pool).await.unwrap();
    let download = serde_json::json!({ "url": source.media_url(name), "channel_id": channel });
    let queue = colony::queue::Queue::new(rig.pool.clone());
    queue.enqueue(&colony::queue::NewJob::new("vod_download", download)).await.unwrap();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain"]), SECS(120)).await;
    assert_eq!(code, Some(0), "{stderr}");
    sqlx::query_scalar("SELECT id FROM recordings WHERE channel_id = $1")
        .bind(channel)
        .fetch_one(&rig.pool)
        .await
        .unwrap()
}

/// A VOD of 8 test segments downloaded into a fresh recording,
/// with one segment deleted from storage and one overwritten with junk.
async fn damaged(rig: &Rig, source: &LiveSource, name: &str) -> i64 {
    source.add(name, &test_media().await, 8);
    let recording = downloaded(rig, source, name).await;
    let rows = rig.rows(recording).await;
    rig.store.delete(&ObjectKey::parse(rows[3].object_key.as_deref().unwrap()).unwrap()).await.unwrap();
    recording
}

/// Defect 4 (repair): repair's ledger writes were not fenced, so a run that
/// lost its lease (a paused VM, a long GC) could wake up and undo what the
/// run that took over had repaired: here it would mark the segment the
/// second run fetched again as a gap.
#[tokio::test(flavor = "multi_thread")]
async fn a_repair_that_lost_its_lease_cannot_undo_the_repair_that_took_over() {
    let source = LiveSource::start().await;
    let rig = Rig::file().await;
    let recording = damaged(&rig, &source, "mend").await;
    let queue = colony::queue::Queue::new(rig.pool.clone());
    let job = queue
        .enqueue(&colony::queue::NewJob::new("repair", serde_json::json!({ "recording_id": recording })))
        .await
        .unwrap()
        .id();
    // The stale run will be told the segment is gone, after a while.
    source.fail_segment("mend", 3);
    source.segment_delay("mend", SECS(4));
    let requests = source.segment_requests("mend").len();
    let mut cmd = rig.cell("harvest-cell");
    cmd.env("HARVEST_LEASE", "3s").args(["--drain", "--kinds", "repair"]);
    let stale = cmd.spawn().unwrap();
    colony_tests::eventually("the first run to ask the source again", SECS(30), || async {
        (source.segment_requests("mend").len() > requests).then_some(())
    })
    .await;
    signal(&stale, Signal::SIGSTOP);

    // Its lease runs out; the mothership rescues the job; another cell repairs.
    tokio::time::sleep(SECS(4)).await;
    assert_eq!(queue.rescue_expired().await.unwrap().len(), 1);
    source.segment_delay("mend", Duration::ZERO);
    source.heal_segment("mend", 3);
    sqlx::query("UPDATE jobs SET run_at = now() WHERE id = $1").bind(job).execute(&rig.pool).await.unwrap();
    let (code, stderr) = wait_exit(rig.harvest(&["--drain", "--kinds", "repair"]), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let state: String =
        sqlx::query_scalar("SELECT state::text FROM jobs WHERE id = $1").bind(job).fetch_one(&rig.pool).await.unwrap();
    assert_eq!(state, "succeeded");
    assert!(rig.rows(recording).await.iter().all(|r| !r.is_gap), "the second run repaired everything");

    // The first run wakes up to a 404 for the segment it was fetching.
    signal(&stale, Signal::SIGCONT);
    let (_, stderr) = wait_exit(stale, SECS(60)).await;
    let gaps: Vec<i64> = rig.rows(recording).await.iter().filter(|r| r.is_gap).map(|r| r.media_sequence).collect();
    assert!(gaps.is_empty(), "the stale run wrote gaps over repaired segments {gaps:?}\n{stderr}");
    let gap_count: i64 = sqlx::query_scalar("SELECT gap_count::int8 FROM recordings WHERE id = $1")
        .bind(recording)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    assert_eq!(gap_count, 0, "the stale run rewrote the totals");
}

/// Defect 4 (complete): a `complete` that hit a transient error was only
/// logged; the job stayed `running` until its lease ran out, and then ran
/// again from the start. Postgres itself refuses the first two attempts
/// here (a trigger raising a serialization failure, SQLSTATE 40001).
#[tokio::test(flavor = "multi_thread")]
async fn a_complete_that_fails_for_a_moment_is_retried_not_the_job() {
    let source = LiveSource::start().await;
    source.add("once", &test_media().await, 6);
    source.end("once");
    let rig = Rig::file().await;
    let channel = rig.channel("once", "http://unused.invalid/").await;
    sqlx::query("UPDATE channels SET pipeline = '[]' WHERE id = $1").bind(channel).execute(&rig.pool).await.unwrap();
    for statement in [
        "CREATE SEQUENCE complete_faults",
        "CREATE FUNCTION refuse_complete() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('complete_faults') <= 2 THEN
             RAISE EXCEPTION 'injected fault' USING ERRCODE = '40001';
           END IF;
           RETURN NEW;
         END $$",
        "CREATE TRIGGER refuse_complete BEFORE UPDATE ON jobs FOR EACH ROW
           WHEN (NEW.state = 'succeeded') EXECUTE FUNCTION refuse_complete()",
        // The cell runs as its role, which must be able to count the faults.
        "GRANT USAGE ON SEQUENCE complete_faults TO colony_harvest",
    ] {
        sqlx::query(statement).execute(&rig.pool).await.unwrap();
    }
    let queue = colony::queue::Queue::new(rig.pool.clone());
    let download = serde_json::json!({ "url": source.media_url("once"), "channel_id": channel });
    let job = queue.enqueue(&colony::queue::NewJob::new("vod_download", download)).await.unwrap().id();
    let mut cmd = rig.cell("harvest-cell");
    cmd.env("HARVEST_LEASE", "30s").args(["--drain", "--kinds", "vod_download"]);
    let (code, stderr) = wait_exit(cmd.spawn().unwrap(), SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    let (state, attempt): (String, i32) = sqlx::query_as("SELECT state::text, attempt FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    assert_eq!((state.as_str(), attempt), ("succeeded", 1), "{stderr}");
    assert!(stderr.contains("trying again"), "{stderr}");
    assert_eq!(source.segment_requests("once").len(), 6, "the download ran once");
}
