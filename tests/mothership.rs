//! The mothership end to end with the `process` launcher: the real binary
//! ticking against real Postgres, Garage and the test live source, starting
//! real observer and harvest cells.

use std::time::Duration;

use colony_tests::garage::garage;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::{Colony, ticks_until};
use colony_tests::observer::Rig;

const SECS: fn(u64) -> Duration = Duration::from_secs;

async fn test_media() -> colony_tests::live::Media {
    tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap()
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v:#}"))
}

async fn add_channel(colony: &Colony, login: &str, url: &str) -> i64 {
    let out = colony.run(&["channel", "add", "--login", login, "--source-url", url, "--name", "Alpha Live"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("channel add prints the id")
}

async fn segments(colony: &Colony, recording: i64) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM segments WHERE recording_id = $1 AND NOT is_gap")
        .bind(recording)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_channel_is_recorded_healed_and_finished_then_its_jobs_drain_to_zero_cells() {
    let colony = Colony::new(Rig::garage(garage()).await);
    let source = LiveSource::start().await;
    source.add("alpha", &test_media().await, 4);
    let channel = add_channel(&colony, "alpha", &source.media_url("alpha")).await;

    // One tick: the channel is probed live and an observer starts and records.
    let first = colony.tick(&[]).await;
    assert_eq!(n(&first, "live_channels"), 1, "{first:#}");
    assert_eq!(n(&first, "observers_started"), 1, "{first:#}");
    assert_eq!(first["actions"][0]["reason"], "channel alpha is live with no observer");
    let (cell, pid, _) = colony.active("observer").await.pop().expect("an observer row");
    let recording: i64 = sqlx::query_scalar("SELECT recording_id FROM cells WHERE id = $1")
        .bind(cell)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    colony.rig.wait_segments(recording, 4, SECS(30)).await;

    // A second tick changes nothing: the observer is healthy.
    let calm = colony.tick(&[]).await;
    assert_eq!(n(&calm, "observers_started") + n(&calm, "observers_replaced"), 0, "{calm:#}");

    // Kill it hard. After the heartbeat timeout a tick replaces it, and the
    // replacement continues the same recording under a new lease token.
    let pid: i32 = pid.unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let before = segments(&colony, recording).await;
    tokio::time::sleep(SECS(4)).await;
    let healed =
        ticks_until(&colony, "the observer to be replaced", SECS(30), |r| n(r, "observers_replaced") == 1).await;
    let replace = healed["actions"].as_array().unwrap().iter().find(|a| a["action"] == "replace_observer").unwrap();
    assert_eq!(replace["detail"]["recording"], recording, "{replace:#}");
    assert_eq!(replace["detail"]["new_recording"], false);
    let dead: String = sqlx::query_scalar("SELECT state::text FROM cells WHERE id = $1")
        .bind(cell)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(dead, "dead");
    colony.rig.wait_segments(recording, before as usize + 3, SECS(30)).await;

    // The source ends: the observer finalizes on its own after the standby
    // window, and the tick starts nothing new.
    source.end("alpha");
    colony_tests::eventually("the recording to complete", SECS(60), || async {
        (colony.rig.recording_state(recording).await == "complete").then_some(())
    })
    .await;
    colony_tests::eventually("the observer to exit", SECS(30), || async {
        colony.active("observer").await.is_empty().then_some(())
    })
    .await;
    let recordings: i64 = sqlx::query_scalar("SELECT count(*) FROM recordings WHERE channel_id = $1")
        .bind(channel)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(recordings, 1, "the kill and the replacement left one recording, not fragments");

    // Finalizing enqueued the channel's pipeline; add a backfill of the ended
    // playlist too. Ticks start harvest cells that drain the queue and exit.
    let list = colony.logs.path().join("urls.txt");
    std::fs::write(
        &list,
        format!("# backfill\n{}\n\n{}?copy=2\n", source.media_url("alpha"), source.media_url("alpha")),
    )
    .unwrap();
    let out = colony.run(&["backfill", "--channel", "alpha", "--urls-from", list.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("enqueued 2 VOD download(s)"));
    let scaled = colony.tick(&[]).await;
    assert!(n(&scaled, "jobs_ready") >= 3, "{scaled:#}");
    assert!(n(&scaled, "harvest_started") >= 2, "ceil(3 ready / 2 per cell): {scaled:#}");
    colony_tests::eventually("the queue to drain", SECS(120), || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'succeeded'")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await;
    colony_tests::eventually("every cell to leave", SECS(60), || async {
        (colony.active_count().await == 0).then_some(())
    })
    .await;
    let idle = colony.tick(&[]).await;
    assert_eq!(n(&idle, "harvest_wanted") + n(&idle, "harvest_started") + n(&idle, "observers_started"), 0, "{idle:#}");

    // Every action is on record with its reason.
    let out = colony.run(&["decisions", "--json"]).await;
    let decisions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<&str> = decisions.as_array().unwrap().iter().map(|d| d["action"].as_str().unwrap()).collect();
    for want in ["start_observer", "replace_observer", "start_harvest"] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    colony.kill_cells().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_ticks_never_launch_twice() {
    let colony = Colony::new(Rig::file().await);
    let source = LiveSource::start().await;
    let media = test_media().await;
    for i in 0..5 {
        let name = format!("ch{i}");
        source.add(&name, &media, 3);
        add_channel(&colony, &name, &source.media_url(&name)).await;
    }
    let ticks: Vec<_> = (0..4).map(|_| colony.command(&["tick", "--json"]).output()).collect();
    let outs = futures::future::join_all(ticks).await;
    let mut started = 0;
    let mut busy = 0;
    for out in outs {
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["skipped"] == true {
            busy += 1;
        } else {
            started += n(&v, "observers_started");
        }
    }
    assert_eq!(started, 5, "five live channels, five observers in all ({busy} tick(s) found the lock taken)");
    let per_channel: Vec<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM cells WHERE kind = 'observer' AND state IN ('starting', 'running') GROUP BY channel_id",
    )
    .fetch_all(&colony.rig.pool)
    .await
    .unwrap();
    assert_eq!(per_channel, vec![1; 5]);
    colony.kill_cells().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_that_finds_the_lock_taken_exits_0_and_says_so() {
    let colony = Colony::new(Rig::file().await);
    let mut holder = colony.rig.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)").bind(mothership::tick::TICK_LOCK).execute(&mut *holder).await.unwrap();
    let out = colony.run(&["tick"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("another tick is running"));
    let ticks: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(ticks, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_ticks_in_a_loop_and_stops_cleanly_on_sigterm() {
    let colony = Colony::new(Rig::file().await);
    let child = colony.command(&["run", "--every", "200ms", "--json"]).spawn().unwrap();
    colony_tests::eventually("two ticks", SECS(20), || async {
        let ticks: i64 = sqlx::query_scalar("SELECT count(*) FROM ticks").fetch_one(&colony.rig.pool).await.unwrap();
        (ticks >= 2).then_some(())
    })
    .await;
    colony_tests::observer::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = tokio::time::timeout(SECS(10), child.wait_with_output()).await.expect("run stops on SIGTERM").unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn one_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "expected one line on stderr, got:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_one_line_a_non_zero_exit_and_nothing_written() {
    let colony = Colony::new(Rig::file().await);
    let cases: &[(&[&str], &str)] = &[
        (
            &["tick", "--launcher", "kubernetes"],
            "--launcher <LAUNCHER> (env COLONY_LAUNCHER): use one of process, docker, ecs",
        ),
        (&["tick", "--min-harvest", "5", "--max-harvest", "2"], "--min-harvest (5) is above --max-harvest (2)"),
        (&["run", "--min-harvest", "3", "--max-harvest", "1"], "--min-harvest (3) is above --max-harvest (1)"),
        (&["channel", "add", "--login", "Bad Name", "--source-url", "http://x/y.m3u8"], "not a safe channel login"),
        (&["channel", "add", "--login", "../etc", "--source-url", "http://x/y.m3u8"], "not a safe channel login"),
        (&["channel", "add", "--login", "ok", "--source-url", "not a url"], "is not a valid URL"),
        (&["channel", "add", "--login", "ok", "--source-url", "file:///etc/passwd"], "not an http(s) URL"),
        (&["job", "enqueue", "mine-bitcoin"], "not a job kind"),
        (&["job", "enqueue", "vod-download", "--url", "http://x/v.m3u8", "--channel", "nobody"], "no channel named"),
        // Arguments are checked against the kind before anything is queued.
        (&["job", "enqueue", "repair", "--args", "{}"], "missing field `recording_id`"),
        (&["job", "enqueue", "reencode", "--args", r#"{"recording_id": "7"}"#], "arguments of a reencode job"),
    ];
    for (args, want) in cases {
        let out = colony.run(args).await;
        assert_ne!(out.status.code(), Some(0), "{args:?} should fail");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line(&out);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    let list = colony.logs.path().join("bad.txt");
    std::fs::write(&list, "http://ok/1.m3u8\nnot a url\n").unwrap();
    add_channel(&colony, "real", "http://127.0.0.1:9/live.m3u8").await;
    let out = colony.run(&["backfill", "--channel", "real", "--urls-from", list.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("line 2"));
    let written: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM channels), (SELECT count(*) FROM jobs),
                (SELECT count(*) FROM ticks), (SELECT count(*) FROM decisions)",
    )
    .fetch_one(&colony.rig.pool)
    .await
    .unwrap();
    assert_eq!(written, (1, 0, 0, 0), "only the one good channel was written");
}

#[tokio::test(flavor = "multi_thread")]
async fn channel_commands_list_update_disable_and_refuse_to_remove_recorded_channels() {
    let colony = Colony::new(Rig::file().await);
    let id = add_channel(&colony, "beta", "http://127.0.0.1:9/beta.m3u8").await;
    let dup = colony.run(&["channel", "add", "--login", "beta", "--source-url", "http://127.0.0.1:9/b.m3u8"]).await;
    assert_eq!(dup.status.code(), Some(2));
    assert!(one_line(&dup).contains("already exists"));
    let out = colony.run(&["channel", "update", "beta", "--resolver", "printf", "--name", "Beta"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = colony.run(&["channel", "disable", "beta"]).await;
    assert!(out.status.success());
    let out = colony.run(&["channel", "list", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["source_kind"], "command");
    assert_eq!(rows[0]["display_name"], "Beta");
    assert_eq!(rows[0]["enabled"], false);
    // A recorded channel keeps its recordings: removing it is refused.
    colony.rig.assign(id).await;
    let out = colony.run(&["channel", "remove", "beta"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("recording(s), which are kept"));
    let gamma = add_channel(&colony, "gamma", "http://127.0.0.1:9/g.m3u8").await;
    assert!(colony.run(&["channel", "remove", "gamma"]).await.status.success());
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM channels WHERE id = $1")
        .bind(gamma)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let status = colony.run(&["status"]).await;
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("CHANNELS (1 total, 0 live)") && text.contains("beta"), "{text}");
}

/// One rule in two places: the planner will not start an observer on a
/// probe that predates the channel's last live end
/// (`ChannelView::probe_predates_end`, in Rust), and the probe pass asks
/// such a channel again at once (`probe::due`, in SQL, through
/// `observe::LAST_LIVE_ENDED_AT`). If the two disagreed, a channel would
/// either wait a whole probe interval after every broadcast, or be probed
/// on every tick for nothing. Each case is one channel, probed recently
/// enough that only the end can make it due.
#[tokio::test(flavor = "multi_thread")]
async fn the_probe_pass_and_the_planner_agree_on_which_probe_predates_an_end() {
    let rig = Rig::file().await;
    let pool = &rig.pool;
    // (name, probed seconds ago, [(started, ended) seconds ago of its live recordings], predates?)
    type Case = (&'static str, Option<i64>, &'static [(i64, Option<i64>)], bool);
    let cases: [Case; 7] = [
        ("never-recorded", Some(10), &[], false),
        ("ended-after-probe", Some(10), &[(100, Some(5))], true),
        ("probed-after-end", Some(5), &[(100, Some(10))], false),
        ("probed-at-the-end", Some(7), &[(100, Some(7))], true),
        ("open-recording-is-the-last", Some(10), &[(100, Some(5)), (50, None)], false),
        ("the-last-started-counts", Some(10), &[(300, Some(5)), (100, Some(20))], false),
        ("never-probed-after-an-end", None, &[(100, Some(5))], true),
    ];
    // One instant for every timestamp, so that "at the end" is exactly equal.
    let base = chrono::Utc::now();
    let ago = |secs: i64| base - chrono::Duration::seconds(secs);
    let mut ids = std::collections::BTreeMap::new();
    for (name, probed, recordings, _) in cases {
        let id = rig.channel(name, "http://127.0.0.1:9/never-fetched.m3u8").await;
        ids.insert(id, name);
        sqlx::query("UPDATE channels SET probed_at = $2 WHERE id = $1")
            .bind(id)
            .bind(probed.map(ago))
            .execute(pool)
            .await
            .unwrap();
        for (i, (started, ended)) in recordings.iter().enumerate() {
            sqlx::query(
                "INSERT INTO recordings (channel_id, source, state, source_url, storage_prefix, started_at, ended_at)
                 VALUES ($1, 'live', CASE WHEN $3::timestamptz IS NULL THEN 'recording' ELSE 'complete' END::recording_state,
                         'http://127.0.0.1:9/never-fetched.m3u8', $4, $2, $3)",
            )
            .bind(id)
            .bind(ago(*started))
            .bind(ended.map(ago))
            .bind(format!("channels/{name}/{i}"))
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let due: std::collections::BTreeSet<i64> =
        mothership::probe::due(pool, SECS(3600), None).await.unwrap().into_iter().map(|c| c.id).collect();
    let views = mothership::observe::channels(pool).await.unwrap();
    for (name, _, _, predates) in cases {
        let view = views.iter().find(|v| ids.get(&v.id) == Some(&name)).unwrap_or_else(|| panic!("{name} not listed"));
        assert_eq!(view.probe_predates_end(), predates, "{name}: the planner's rule");
        assert_eq!(due.contains(&view.id), predates, "{name}: the probe pass disagrees with the planner");
    }
}
