//! Platform channels (issue 14): channels named by their Twitch, YouTube or
//! Kick page, live detection through Helix in batches, and the recording of a
//! Twitch channel with its title and chapters.
//!
//! The Twitch API cannot be reached from here: these tests run against
//! `colony_tests::twitch::FakeTwitch`, a local fake that follows the Helix
//! reference (token grant, `/helix/streams`, rate-limit headers, 401 and 429
//! answers). The stream itself comes from the live test source, and the
//! platform's resolver template points at it (`live-source resolve`), as
//! `streamlink --stream-url` would.

use std::collections::BTreeSet;
use std::time::Duration;

use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::twitch::FakeTwitch;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn one_line(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    err
}

async fn live_logins(colony: &Colony) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT login FROM channels WHERE live")
        .fetch_all(&colony.rig.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// A channel's broadcast as the probe stored it: (title, category, stream id).
async fn broadcast(colony: &Colony, login: &str) -> (Option<String>, Option<String>, Option<String>) {
    sqlx::query_as("SELECT stream_title, stream_category, stream_id FROM channels WHERE login = $1")
        .bind(login)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap()
}

/// A channel's last probe error.
async fn probe_error(colony: &Colony, login: &str) -> Option<String> {
    sqlx::query_scalar("SELECT probe_error FROM channels WHERE login = $1")
        .bind(login)
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn platform_channels_are_recognised_from_their_pages_and_bad_ones_refused() {
    let colony = Colony::new(Rig::file().await);
    for args in [
        vec!["channel", "add", "https://www.twitch.tv/SomeStreamer"],
        vec!["channel", "add", "--platform", "twitch", "--login", "other_one"],
        vec!["channel", "add", "https://www.youtube.com/@Some.Handle"],
        vec!["channel", "add", "https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv", "--login", "yt2"],
        vec!["channel", "add", "https://kick.com/kicker"],
        vec!["channel", "add", "http://127.0.0.1:9/live/index.m3u8", "--login", "plain"],
        vec!["channel", "add", "--login", "old-style", "--source-url", "http://127.0.0.1:9/x.m3u8"],
    ] {
        let out = colony.run(&args).await;
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    type Row = (String, String, Option<String>, Option<String>, Option<String>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT login, source_kind, platform, platform_handle, platform_id, source_url FROM channels ORDER BY id",
    )
    .fetch_all(&colony.rig.pool)
    .await
    .unwrap();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        rows[0],
        (
            "somestreamer".into(),
            "platform".into(),
            s("twitch"),
            s("somestreamer"),
            None,
            "https://www.twitch.tv/SomeStreamer".into()
        )
    );
    assert_eq!(rows[1].0, "other_one");
    assert_eq!(
        (rows[1].2.clone(), rows[1].3.clone(), rows[1].5.clone()),
        (s("twitch"), s("other_one"), "https://www.twitch.tv/other_one".into())
    );
    assert_eq!((rows[2].0.as_str(), rows[2].3.clone()), ("some-handle", s("some.handle")));
    assert_eq!((rows[3].0.as_str(), rows[3].4.clone()), ("yt2", s("UCabcdefghijklmnopqrstuv")));
    assert_eq!((rows[4].0.as_str(), rows[4].2.clone()), ("kicker", s("kick")));
    assert_eq!((rows[5].1.as_str(), rows[5].2.clone()), ("hls", None));
    assert_eq!((rows[6].1.as_str(), rows[6].2.clone()), ("hls", None));

    let cases: &[(&[&str], &str)] = &[
        (&["channel", "add", "https://www.twitch.tv/videos/123456"], "is a twitch page but not a channel's"),
        (&["channel", "add", "https://www.youtube.com/watch?v=abc"], "a video"),
        (&["channel", "add", "https://www.twitch.tv/has-a-dash"], "not a valid twitch channel name"),
        (&["channel", "add", "--platform", "myspace", "--login", "x"], "not a platform Colony knows"),
        (&["channel", "add", "--platform", "twitch"], "needs --login"),
        (&["channel", "add", "http://127.0.0.1:9/live/index.m3u8"], "needs --login NAME"),
        (
            &["channel", "add", "https://www.twitch.tv/somestreamer", "--login", "again"],
            "already in the archive as 'somestreamer'",
        ),
        (&["channel", "add"], "give the channel's URL"),
    ];
    for (args, want) in cases {
        let out = colony.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let line = one_line(&out);
        assert!(line.contains(want), "{args:?}: {line}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM channels").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(count, 7, "nothing was written by the refused commands");
}

/// 1,000 Twitch channels, 50 of them live: one probe costs ceil(1000/100) =
/// 10 Helix requests and one token, which the next tick (a new process, as
/// under cron) takes from Postgres instead of asking again.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_twitch_channels_cost_ten_helix_requests_a_probe() {
    let twitch = FakeTwitch::start().await;
    let colony = Colony::new(Rig::file().await);
    let logins: Vec<String> = (0..1000).map(|i| format!("streamer{i:04}")).collect();
    for l in &logins {
        twitch.add_user(l);
    }
    add_twitch_channels(&colony, &logins).await;
    let live: BTreeSet<String> = logins.iter().step_by(20).cloned().collect();
    for l in &live {
        twitch.go_live(l, &format!("{l} plays"), "Just Chatting");
    }
    let env = twitch.env();
    let report = tick_with(&colony, &env).await;
    assert_eq!(twitch.requests("/helix/streams"), 10, "{report:#}");
    assert_eq!(twitch.requests("/oauth2/token"), 1);
    assert_eq!(live_logins(&colony).await, live);
    let (title, category, _) = broadcast(&colony, "streamer0000").await;
    assert_eq!((title.as_deref(), category.as_deref()), (Some("streamer0000 plays"), Some("Just Chatting")));

    // Ten go offline, five others go live.
    let gone: Vec<String> = live.iter().take(10).cloned().collect();
    for l in &gone {
        twitch.go_offline(l);
    }
    let new: Vec<String> = logins.iter().skip(1).step_by(200).cloned().collect();
    for l in &new {
        twitch.go_live(l, "hello", "Music");
    }
    tick_with(&colony, &env).await;
    assert_eq!(twitch.requests("/helix/streams"), 20);
    assert_eq!(twitch.requests("/oauth2/token"), 1, "the second tick used the token cached in Postgres");
    let want: BTreeSet<String> =
        live.iter().filter(|l| !gone.contains(l)).cloned().chain(new.iter().cloned()).collect();
    assert_eq!(live_logins(&colony).await, want);
    let (offline_title, _, _) = broadcast(&colony, &gone[0]).await;
    assert_eq!(offline_title, None, "an offline channel has no broadcast");
}

/// A 429 storm is waited out within the probe, and a revoked token is
/// replaced once: the probe still gives the right answer.
#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_and_a_revoked_token_are_ridden_out() {
    let twitch = FakeTwitch::start().await;
    let colony = Colony::new(Rig::file().await);
    let logins: Vec<String> = (0..250).map(|i| format!("ch{i:03}")).collect();
    for l in &logins {
        twitch.add_user(l);
    }
    add_twitch_channels(&colony, &logins).await;
    let live: BTreeSet<String> = ["ch001", "ch120", "ch249"].iter().map(|s| s.to_string()).collect();
    for l in &live {
        twitch.go_live(l, "t", "c");
    }
    let env: Vec<(&str, String)> =
        twitch.env().into_iter().chain([("COLONY_PROBE_TIMEOUT", "15s".to_owned())]).collect();
    twitch.storm(4);
    tick_with(&colony, &env).await;
    assert_eq!(live_logins(&colony).await, live, "the storm was waited out");
    assert_eq!(twitch.requests("/helix/streams"), 3 + 4, "three batches, four of the answers 429");
    let error = probe_error(&colony, "ch001").await;
    assert_eq!(error, None);

    twitch.revoke_tokens();
    twitch.go_offline("ch120");
    tick_with(&colony, &env).await;
    assert_eq!(twitch.requests("/oauth2/token"), 2, "a revoked token is replaced once");
    let want: BTreeSet<String> = ["ch001", "ch249"].iter().map(|s| s.to_string()).collect();
    assert_eq!(live_logins(&colony).await, want);

    // Credentials Twitch refuses: every Twitch channel says why, one line each,
    // and the tick itself still runs.
    let wrong: Vec<(&str, String)> =
        twitch.env().into_iter().chain([("COLONY_TWITCH_CLIENT_SECRET", "wrong".to_owned())]).collect();
    sqlx::query("DELETE FROM platform_tokens").execute(&colony.rig.pool).await.unwrap();
    tick_with(&colony, &wrong).await;
    let error = probe_error(&colony, "ch001").await;
    let error = error.unwrap_or_default();
    assert!(error.contains("Twitch refused the application's credentials (403)"), "{error}");
    assert!(!error.contains("wrong"), "the secret is never shown: {error}");
}

/// A live Twitch channel under `mothership run`: one observer, which turns
/// the channel page into its HLS URL with the platform's resolver template;
/// the recording carries the stream's id, title and category, and a title
/// change during the broadcast becomes a second chapter.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_twitch_channel_is_recorded_with_its_title_and_chapters() {
    let twitch = FakeTwitch::start().await;
    let source = LiveSource::start().await;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let colony = Colony::new(Rig::file().await);
    for name in ["alpha", "beta"] {
        twitch.add_user(name);
        let out = colony.run(&["channel", "add", &format!("https://www.twitch.tv/{name}")]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        source.add(name, &media, 6);
        twitch.go_live(name, &format!("{name} live"), "Science & Technology");
    }
    let resolver = colony_tests::bins::bin("live-source");
    let template = format!("{} resolve http://{} {{url}}", resolver.display(), source.addr);
    let mut cmd = colony.command(&["run", "--every", "1s"]);
    for (k, v) in twitch.env() {
        cmd.env(k, v);
    }
    cmd.env("COLONY_RESOLVER_TWITCH", &template)
        .env("COLONY_RESOLVERS", resolver.display().to_string())
        .stderr(std::process::Stdio::piped());
    let mut run = cmd.spawn().unwrap();

    let recording = |login: &'static str| {
        let pool = colony.rig.pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT r.id, r.segment_count FROM recordings r JOIN channels c ON c.id = r.channel_id
                  WHERE c.login = $1 AND r.source = 'live'",
            )
            .bind(login)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };
    for login in ["alpha", "beta"] {
        colony_tests::eventually(&format!("{login} recording segments"), SECS(60), || async {
            recording(login).await.filter(|(_, n)| *n >= 2).map(|_| ())
        })
        .await;
    }
    twitch.retitle("alpha", "alpha: part two", "Science & Technology");
    let (alpha, _) = recording("alpha").await.unwrap();
    colony_tests::eventually("a second chapter", SECS(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM chapters WHERE recording_id = $1")
            .bind(alpha)
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
        (n >= 2).then_some(())
    })
    .await;
    for login in ["alpha", "beta"] {
        twitch.go_offline(login);
        source.end(login);
    }
    for login in ["alpha", "beta"] {
        let (id, _) = recording(login).await.unwrap();
        colony_tests::eventually(&format!("{login} complete"), SECS(60), || async {
            (colony.rig.recording_state(id).await == "complete").then_some(())
        })
        .await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(run.id().unwrap() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let _ = tokio::time::timeout(SECS(30), run.wait()).await;
    colony.kill_cells().await;

    let (stream_id, title, category): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT stream_id, title, category FROM recordings WHERE id = $1")
            .bind(alpha)
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert!(stream_id.is_some_and(|s| s.len() > 5));
    assert_eq!((title.as_deref(), category.as_deref()), (Some("alpha live"), Some("Science & Technology")));
    let chapters: Vec<String> = sqlx::query_scalar("SELECT title FROM chapters WHERE recording_id = $1 ORDER BY at")
        .bind(alpha)
        .fetch_all(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(chapters, ["alpha live", "alpha: part two"]);
    // One observer per live channel (a cell the mothership had to replace
    // under load would say why in its detail).
    let observers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM cells WHERE kind = 'observer' AND NOT (detail ? 'dead_because')")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(observers, 2, "one observer per live channel");
}

/// `backfill --from-platform`: 250 past broadcasts, listed 100 a page
/// through Helix's cursor, become 250 downloads keyed by the video id; a
/// second run queues none; the one that was also recorded live carries that
/// recording's id; `--since` and `--limit` bound the listing.
#[tokio::test(flavor = "multi_thread")]
async fn a_platform_backfill_queues_each_past_broadcast_once() {
    use colony_tests::twitch::Video;
    let twitch = FakeTwitch::start().await;
    let colony = Colony::new(Rig::file().await);
    let user = twitch.add_user("archivist");
    let out = colony.run(&["channel", "add", "https://www.twitch.tv/archivist"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let now = chrono::Utc::now();
    let videos: Vec<Video> = (0..250u64)
        .map(|i| Video {
            id: (2_000_000_000 - i).to_string(),
            stream_id: Some((40_000_000_000 - i).to_string()),
            title: format!("broadcast {i}"),
            created_at: (now - chrono::TimeDelta::days(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            duration: "1h2m3s".into(),
        })
        .collect();
    twitch.set_videos("archivist", videos);
    let live: i64 = sqlx::query_scalar(
        "INSERT INTO recordings (channel_id, source, state, storage_prefix, stream_id)
         SELECT id, 'live', 'complete', 'channels/archivist/x', '40000000000' FROM channels WHERE login = 'archivist'
         RETURNING id",
    )
    .fetch_one(&colony.rig.pool)
    .await
    .unwrap();
    let backfill = |extra: &[&str], with_credentials: bool| {
        let mut args = vec!["backfill", "--channel", "archivist", "--from-platform"];
        args.extend_from_slice(extra);
        let mut cmd = colony.command(&args);
        if with_credentials {
            for (k, v) in twitch.env() {
                cmd.env(k, v);
            }
        }
        cmd.stderr(std::process::Stdio::piped()).output()
    };
    let out = backfill(&[], true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("250 past broadcast(s) of archivist: enqueued 250 VOD download(s)"), "{stdout}");
    assert!(stdout.contains("1 were also recorded live"), "{stdout}");
    assert_eq!(twitch.requests("/helix/videos"), 3, "250 broadcasts, 100 a page");
    assert_eq!(twitch.requests("/helix/users"), 1);
    let platform_id: Option<String> = sqlx::query_scalar("SELECT platform_id FROM channels WHERE login = 'archivist'")
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
    assert_eq!(platform_id, Some(user));
    let newest: serde_json::Value =
        sqlx::query_scalar("SELECT args FROM jobs WHERE unique_key = 'vod_download:twitch:2000000000'")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(newest["url"], "https://www.twitch.tv/videos/2000000000");
    assert_eq!(newest["stream_id"], "40000000000");
    assert_eq!(newest["live_recording_id"], live);
    // The job names the platform's VOD resolver profile; the harvest cell's host holds the command.
    assert_eq!(newest["resolver"], "twitch_vod", "{newest}");

    let out = backfill(&[], true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("enqueued 0 VOD download(s), 250 already queued or done"), "{stdout}");
    assert_eq!(twitch.requests("/helix/users"), 1, "the channel's Twitch id was kept");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(jobs, 250);

    let since = (now - chrono::TimeDelta::hours(9 * 24 + 12)).to_rfc3339();
    let out = backfill(&["--since", &since], true).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10 past broadcast(s)"), "{out:?}");
    let out = backfill(&["--limit", "5"], true).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 past broadcast(s)"), "{out:?}");

    let out = backfill(&[], false).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("set COLONY_TWITCH_CLIENT_ID"));
    let out = colony.run(&["channel", "add", "http://127.0.0.1:9/x.m3u8", "--login", "plain"]).await;
    assert!(out.status.success());
    let mut cmd = colony.command(&["backfill", "--channel", "plain", "--from-platform"]);
    for (k, v) in twitch.env() {
        cmd.env(k, v);
    }
    let out = cmd.stderr(std::process::Stdio::piped()).output().await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("is not on a platform"));
    let out = colony.run(&["backfill", "--channel", "archivist"]).await;
    assert_eq!(out.status.code(), Some(2), "neither --urls-from nor --from-platform");
}

/// Twitch's stitched ads, in playlists shaped like Twitch's (a date range of
/// class `twitch-stitched-ad`, `Amazon|…` titles, a discontinuity on each
/// side of the break): recorded and ledgered as ads, and left out of the VOD
/// playlist with a discontinuity where the break was; `COLONY_KEEP_ADS`
/// keeps them.
#[tokio::test(flavor = "multi_thread")]
async fn stitched_ads_are_recorded_as_ads_and_left_out_of_the_vod() {
    use colony::storage::{ObjectKey, get_bytes};
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    for keep in [false, true] {
        let source = LiveSource::start().await;
        source.add("adbreak", &media, 6);
        source.ads("adbreak", 8..11);
        let rig = Rig::file().await;
        let channel = rig.channel("adbreak", &source.media_url("adbreak")).await;
        let (cell, a) = rig.assign(channel).await;
        let mut cmd = rig.observer_command(channel, "adbreak", cell, a, &[]);
        if keep {
            cmd.env("COLONY_KEEP_ADS", "true");
        }
        let child = cmd.spawn().unwrap();
        rig.wait_segments(a.recording_id, 14, SECS(60)).await;
        source.end("adbreak");
        let (code, stderr) = colony_tests::observer::wait_exit(child, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");
        let rows = rig.rows(a.recording_id).await;
        let ads: BTreeSet<i64> = rows.iter().filter(|r| r.is_ad).map(|r| r.media_sequence).collect();
        assert_eq!(ads, (8..11).collect(), "the break is ledgered as ads");
        let key = ObjectKey::parse(&format!("channels/adbreak/{}/playlist.m3u8", a.recording_id)).unwrap();
        let vod = String::from_utf8(get_bytes(rig.store.as_ref(), &key).await.unwrap().to_vec()).unwrap();
        let names = |seq: i64| format!("e0/{seq:08}.ts");
        if keep {
            assert!((8..11).all(|s| vod.contains(&names(s))), "{vod}");
            assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{vod}");
        } else {
            assert!((8..11).all(|s| !vod.contains(&names(s))), "{vod}");
            assert!(vod.contains(&names(7)) && vod.contains(&names(11)), "{vod}");
            assert!(vod.contains("## ad break left out: 3 segment(s)"), "{vod}");
            assert_eq!(vod.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{vod}");
        }
    }
}

/// A platform's signed playlist URL expires mid-broadcast (403): the
/// observer resolves the channel again and goes on, with no gap and no
/// standby; every published segment is stored.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_playlist_url_is_resolved_again_without_losing_a_segment() {
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let source = LiveSource::start().await;
    source.add("signed", &media, 6);
    source.rotate_token("signed");
    let rig = Rig::file().await;
    let channel: i64 = sqlx::query_scalar(
        "INSERT INTO channels (login, display_name, source_kind, source_url, platform, platform_handle)
         VALUES ('signed', 'signed', 'platform', 'https://www.twitch.tv/signed', 'twitch', 'signed') RETURNING id",
    )
    .fetch_one(&rig.pool)
    .await
    .unwrap();
    let (cell, a) = rig.assign(channel).await;
    let resolver = colony_tests::bins::bin("live-source");
    let mut cmd = rig.observer_command(channel, "signed", cell, a, &[]);
    cmd.env("COLONY_RESOLVER_TWITCH", format!("{} resolve http://{} {{url}}", resolver.display(), source.addr))
        .env("COLONY_RESOLVERS", resolver.display().to_string());
    let child = cmd.spawn().unwrap();
    rig.wait_segments(a.recording_id, 4, SECS(60)).await;
    source.rotate_token("signed");
    let before = rig.rows(a.recording_id).await.len();
    rig.wait_segments(a.recording_id, before + 4, SECS(60)).await;
    assert_eq!(rig.recording_state(a.recording_id).await, "recording", "no standby");
    source.end("signed");
    let (code, stderr) = colony_tests::observer::wait_exit(child, SECS(60)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("resolving the channel again"), "{stderr}");
    let rows = rig.rows(a.recording_id).await;
    assert!(rows.iter().all(|r| !r.is_gap && r.epoch == 0), "no gap, one epoch");
    let published: BTreeSet<i64> = source.published("signed").iter().map(|p| p.0 as i64).collect();
    let stored: BTreeSet<i64> = rows.iter().map(|r| r.media_sequence).collect();
    assert_eq!(stored, published);
}

/// `mothership tick --json` with this environment, starting no observer:
/// these tests are about detection.
async fn tick_with(colony: &Colony, env: &[(&str, String)]) -> serde_json::Value {
    colony.tick_env(&["--max-observers", "0"], env).await
}

/// Twitch channels straight into the database, as `channel add` writes them.
async fn add_twitch_channels(colony: &Colony, logins: &[String]) {
    let rows: Vec<(String, String, Option<String>)> = logins.iter().map(|l| (l.clone(), l.clone(), None)).collect();
    colony.add_platform_channels("twitch", "https://www.twitch.tv/", &rows).await;
}

/// `status --json`'s detection line for `platform`.
async fn detection(colony: &Colony, env: &[(&str, String)], platform: &str) -> serde_json::Value {
    let mut cmd = colony.command(&["status", "--json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["detection"].as_array().unwrap().iter().find(|d| d["platform"] == platform).cloned().unwrap()
}

/// YouTube without `search.list`: 120 channels (20 known only by handle),
/// each with three old uploads, five of them live. A probe reads each feed
/// and asks `videos.list` about the three newest videos of each, 50 a call:
/// ceil(120 × 3 / 50) = 8 quota units, plus one `channels.list` per handle
/// the first time only (the `UC…` id is kept). Runs against
/// `colony_tests::youtube::FakeYouTube`, a local fake of the feed and the
/// Data API v3 (the real ones cannot be reached from here).
#[tokio::test(flavor = "multi_thread")]
async fn youtube_channels_are_found_live_through_their_feeds_and_videos_list_in_batches() {
    use colony_tests::youtube::{FakeYouTube, Video};
    let youtube = FakeYouTube::start().await;
    let colony = Colony::new(Rig::file().await);
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for i in 0..120 {
        let handle = format!("tuber{i:03}");
        let id = youtube.add_channel(&handle);
        for n in 0..3 {
            let old = "2026-01-01T00:00:00Z".to_owned();
            youtube.upload(
                &id,
                Video {
                    id: format!("old{i:03}x{n}abcd"),
                    title: "an upload".into(),
                    state: "none",
                    started_at: None,
                    ended_at: None,
                    published_at: old,
                },
            );
        }
        rows.push((handle.clone(), handle, (i >= 20).then(|| id.clone())));
        ids.push(id);
    }
    colony.add_platform_channels("youtube", "https://www.youtube.com/@", &rows).await;
    let live: BTreeSet<String> = [3, 20, 64, 100, 119].iter().map(|i| format!("tuber{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        if live.contains(&format!("tuber{i:03}")) {
            youtube.go_live(id, &format!("live{i:03}vid"), &format!("Live now {i}"));
        }
    }
    let env: Vec<(&str, String)> = youtube.env();
    let report = tick_with(&colony, &env).await;
    assert_eq!(live_logins(&colony).await, live, "{report:#}");
    assert_eq!(youtube.requests("/feeds/videos.xml"), 120);
    assert_eq!(youtube.requests("/youtube/v3/videos"), 8, "120 × 3 = 360 ids, 50 a call");
    assert_eq!(youtube.requests("/youtube/v3/channels"), 20, "one per channel known only by its handle");
    let (title, _, stream) = broadcast(&colony, "tuber064").await;
    assert_eq!((title.as_deref(), stream.as_deref()), (Some("Live now 64"), Some("live064vid")));

    // The broadcast on tuber064 ends; tuber005 goes live.
    youtube.clear_requests();
    youtube.end_live(&ids[64]);
    youtube.go_live(&ids[5], "live005vid", "Second");
    tick_with(&colony, &env).await;
    let want: BTreeSet<String> = [3, 5, 20, 100, 119].iter().map(|i| format!("tuber{i:03}")).collect();
    assert_eq!(live_logins(&colony).await, want);
    assert_eq!(youtube.requests("/youtube/v3/channels"), 0, "the UC… ids were kept");
    assert_eq!(youtube.units(), 8, "ceil(120 × 3 / 50) quota units a probe");

    let d = detection(&colony, &env, "youtube").await;
    assert_eq!(d["method"], "api", "{d}");
    let d = detection(&colony, &[], "youtube").await;
    assert_eq!(d["method"], "resolver", "{d}");
    assert!(d["how"].as_str().unwrap_or_default().contains("no COLONY_YOUTUBE_API_KEY"), "{d}");

    // A key YouTube refuses: every YouTube channel says why, and the tick runs.
    let bad: Vec<(&str, String)> = env
        .iter()
        .map(|(k, v)| if *k == "COLONY_YOUTUBE_API_KEY" { (*k, "wrong".to_owned()) } else { (*k, v.clone()) })
        .collect();
    tick_with(&colony, &bad).await;
    let error = probe_error(&colony, "tuber003").await;
    let error = error.unwrap_or_default();
    assert!(error.contains("API key not valid"), "{error}");
    assert!(!error.contains("wrong"), "the key is never shown: {error}");
    assert!(live_logins(&colony).await.is_empty());
}

/// Kick through its public API: 120 channels cost ceil(120/50) = 3 requests
/// a probe and one app token, kept in Postgres for the next tick; a 429
/// storm (Kick sends no rate-limit headers) is backed off and ridden out,
/// and a revoked token is replaced once. Runs against
/// `colony_tests::kick::FakeKick`, a local fake of the public API (the real
/// one cannot be reached from here).
#[tokio::test(flavor = "multi_thread")]
async fn kick_channels_are_found_live_fifty_a_request_through_storms_and_revoked_tokens() {
    use colony_tests::kick::FakeKick;
    let kick = FakeKick::start().await;
    let colony = Colony::new(Rig::file().await);
    let rows: Vec<(String, String, Option<String>)> = (0..120)
        .map(|i| {
            let slug = format!("kicker-{i:03}");
            kick.add_channel(&slug);
            (slug.clone(), slug, None)
        })
        .collect();
    colony.add_platform_channels("kick", "https://kick.com/", &rows).await;
    let live: BTreeSet<String> = ["kicker-007", "kicker-050", "kicker-119"].iter().map(|s| s.to_string()).collect();
    for l in &live {
        kick.go_live(l, &format!("{l} on Kick"), "Slots");
    }
    let env: Vec<(&str, String)> = kick.env();
    let env_long: Vec<(&str, String)> =
        env.iter().cloned().chain([("COLONY_PROBE_TIMEOUT", "20s".to_owned())]).collect();
    tick_with(&colony, &env).await;
    assert_eq!(live_logins(&colony).await, live);
    assert_eq!(kick.requests("/public/v1/channels"), 3);
    assert_eq!(kick.requests("/oauth/token"), 1);
    let (title, category, _) = broadcast(&colony, "kicker-050").await;
    assert_eq!((title.as_deref(), category.as_deref()), (Some("kicker-050 on Kick"), Some("Slots")));

    kick.clear_requests();
    kick.storm(3);
    kick.go_offline("kicker-050");
    tick_with(&colony, &env_long).await;
    let want: BTreeSet<String> = ["kicker-007", "kicker-119"].iter().map(|s| s.to_string()).collect();
    assert_eq!(live_logins(&colony).await, want, "the storm was ridden out");
    assert_eq!(kick.requests("/public/v1/channels"), 3 + 3, "three batches, three answers 429");
    assert_eq!(kick.requests("/oauth/token"), 0, "the token cached in Postgres was used");

    kick.revoke_tokens();
    tick_with(&colony, &env).await;
    assert_eq!(kick.requests("/oauth/token"), 1, "a revoked token is replaced once");
    assert_eq!(live_logins(&colony).await, want);
    let error = probe_error(&colony, "kicker-007").await;
    assert_eq!(error, None);

    let d = detection(&colony, &env, "kick").await;
    assert_eq!(d["method"], "api", "{d}");
    let d = detection(&colony, &[], "kick").await;
    assert_eq!(d["method"], "resolver", "{d}");
}

/// `backfill --from-platform` for a YouTube channel: its uploads playlist,
/// 50 a page, of which only the past broadcasts (videos with an
/// `actualEndTime`) are queued, keyed by the video id, so a second run
/// queues none; the broadcast also recorded live carries that recording.
/// Runs against `colony_tests::youtube::FakeYouTube`.
#[tokio::test(flavor = "multi_thread")]
async fn a_youtube_backfill_queues_each_past_broadcast_once() {
    use colony_tests::youtube::{FakeYouTube, Video};
    let youtube = FakeYouTube::start().await;
    let colony = Colony::new(Rig::file().await);
    let id = youtube.add_channel("keeper");
    let out = colony.run(&["channel", "add", "https://www.youtube.com/@keeper"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let day =
        |d: i64| (chrono::Utc::now() - chrono::TimeDelta::days(d)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // 130 videos, oldest first: every third an upload, the rest past broadcasts.
    for i in (0..130i64).rev() {
        let broadcast = i % 3 != 0;
        youtube.upload(
            &id,
            Video {
                id: format!("vid{i:04}abcd"),
                title: format!("video {i}"),
                state: "none",
                started_at: broadcast.then(|| day(i)),
                ended_at: broadcast.then(|| day(i)),
                published_at: day(i),
            },
        );
    }
    let broadcasts = (0..130).filter(|i| i % 3 != 0).count();
    let live: i64 = sqlx::query_scalar(
        "INSERT INTO recordings (channel_id, source, state, storage_prefix, stream_id)
         SELECT id, 'live', 'complete', 'channels/keeper/x', 'vid0001abcd' FROM channels WHERE login = 'keeper'
         RETURNING id",
    )
    .fetch_one(&colony.rig.pool)
    .await
    .unwrap();
    let backfill = |extra: &[&str]| {
        let mut args = vec!["backfill", "--channel", "keeper", "--from-platform"];
        args.extend_from_slice(extra);
        let mut cmd = colony.command(&args);
        for (k, v) in youtube.env() {
            cmd.env(k, v);
        }
        cmd.stderr(std::process::Stdio::piped()).output()
    };
    let out = backfill(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains(&format!("{broadcasts} past broadcast(s) of keeper: enqueued {broadcasts} VOD download(s)")),
        "{stdout}"
    );
    assert!(stdout.contains("1 were also recorded live"), "{stdout}");
    assert_eq!(youtube.requests("/youtube/v3/playlistItems"), 3, "130 uploads, 50 a page");
    let newest: serde_json::Value =
        sqlx::query_scalar("SELECT args FROM jobs WHERE unique_key = 'vod_download:youtube:vid0001abcd'")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(newest["url"], "https://www.youtube.com/watch?v=vid0001abcd");
    assert_eq!(newest["live_recording_id"], live);
    let uploads: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE unique_key = 'vod_download:youtube:vid0003abcd'")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(uploads, 0, "a plain upload is no past broadcast");

    let out = backfill(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("enqueued 0 VOD download(s), {broadcasts} already queued or done")), "{stdout}");
    let out = backfill(&["--limit", "7"]).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("7 past broadcast(s)"), "{out:?}");
    let out = colony.run(&["backfill", "--channel", "keeper", "--from-platform"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(one_line(&out).contains("set COLONY_YOUTUBE_API_KEY"));
}
