//! Secrets stay secret (issue 12, finding 8): a colony runs against a
//! password-protected Postgres and S3 keys, with source URLs that carry
//! access tokens, through probes that fail, a probe the fetch policy refuses,
//! a backfill, and a wrong password. Then every log line, decision,
//! `tick --json`, `status --json`, listing, cell log and error column is
//! searched for the password, the S3 secret key and the tokens: none may
//! appear. Real Postgres (scram-sha-256), Garage, the process launcher.

use std::time::Duration;

use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::{Colony, ticks_until};
use colony_tests::observer::Rig;
use colony_tests::pg::TestDb;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn secret(what: &str) -> String {
    format!("{what}{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_password_key_or_token_reaches_a_log_a_decision_or_a_listing() {
    let password = secret("Pw");
    let tokens: Vec<String> = (0..4).map(|i| secret(&format!("tok{i}x"))).collect();
    let g = tokio::task::spawn_blocking(colony_tests::garage::garage).await.unwrap();
    let colony = Colony::new(Rig::garage_with(g, TestDb::password_protected(&password).await).await);
    assert!(colony.rig.db.url.contains(&password));

    let source = LiveSource::start().await;
    let clip = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    source.add("sierra", &clip, 4);
    source.add("broken", &clip, 4);
    source.playlist_status("broken", Some(503));
    source.add("past", &clip, 6);
    source.end("past");
    let with_token = |url: String, i: usize| format!("{url}?token={}", tokens[i]);
    let mut transcript = String::new();
    let mut run = |out: std::process::Output| {
        transcript.push_str(&String::from_utf8_lossy(&out.stdout));
        transcript.push_str(&String::from_utf8_lossy(&out.stderr));
        out.status
    };
    for (login, url) in [
        ("sierra", with_token(source.media_url("sierra"), 0)),
        ("broken", with_token(source.media_url("broken"), 1)),
        ("metadata", with_token("http://169.254.169.254/latest/live.m3u8".into(), 2)),
    ] {
        let status = run(colony.run(&["channel", "add", "--login", login, "--source-url", &url]).await);
        assert!(status.success(), "{transcript}");
    }
    let backfill = with_token(source.media_url("past"), 3);
    assert!(
        run(colony.run(&["job", "enqueue", "vod-download", "--url", &backfill, "--channel", "sierra"]).await).success()
    );
    // A URL the CLI refuses, with a token in it.
    run(colony
        .run(&["channel", "add", "--login", "typo", "--source-url", &format!("htp:/x?token={}", tokens[0])])
        .await);

    // Ticks until the live channel records and the backfill is done.
    let tick = |colony: &Colony| {
        let mut cmd = colony.command(&["tick", "--json"]);
        cmd.env("COLONY_MIN_HARVEST", "1");
        cmd
    };
    let deadline = tokio::time::Instant::now() + SECS(90);
    loop {
        let out = tick(&colony).output().await.unwrap();
        run(out);
        let (segments, downloaded): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM segments s JOIN recordings r ON r.id = s.recording_id WHERE r.source = 'live'),
                    (SELECT count(*) FROM jobs WHERE kind = 'vod_download' AND state = 'succeeded')",
        )
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
        if segments >= 5 && downloaded == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the colony never recorded and downloaded\n{transcript}");
        tokio::time::sleep(SECS(2)).await;
    }
    source.end("sierra");
    ticks_until(&colony, "the colony to go idle", SECS(90), |r| {
        r["observers_healthy"] == 0 && r["harvest_running"] == 0
    })
    .await;
    for args in [
        &["status", "--json"][..],
        &["status"],
        &["channel", "list", "--json"],
        &["cells", "--all", "--json"],
        &["decisions", "--json"],
        &["job", "list", "--state", "succeeded", "--json"],
        &["job", "list", "--json"],
    ] {
        run(colony.run(args).await);
    }
    // The wrong password.
    let wrong = secret("Wrong");
    let mut cmd = colony.command(&["status"]);
    cmd.env("DATABASE_URL", colony.rig.db.url.replace(&password, &wrong));
    let status = run(cmd.output().await.unwrap());
    assert!(!status.success());
    assert!(transcript.contains("password authentication failed"), "the wrong password is reported");

    let probe_errors: Vec<Option<String>> = sqlx::query_scalar("SELECT probe_error FROM channels ORDER BY login")
        .fetch_all(&colony.rig.pool)
        .await
        .unwrap();
    assert!(probe_errors.iter().flatten().count() >= 2, "the failing probes were recorded: {probe_errors:?}");
    // What the database holds besides the configured URLs themselves.
    for query in [
        "SELECT coalesce(string_agg(d::text, E'\\n'), '') FROM decisions d",
        "SELECT coalesce(string_agg(concat_ws(' ', probe_error, display_name), E'\\n'), '') FROM channels",
        "SELECT coalesce(string_agg(concat_ws(' ', detail::text, backend_ref, host), E'\\n'), '') FROM cells",
        "SELECT coalesce(string_agg(concat_ws(' ', last_error, progress::text), E'\\n'), '') FROM jobs",
        "SELECT coalesce(string_agg(concat_ws(' ', error, storage_prefix), E'\\n'), '') FROM recordings",
        "SELECT coalesce(string_agg(concat_ws(' ', gap_reason, warning, object_key), E'\\n'), '') FROM segments",
    ] {
        let text: String = sqlx::query_scalar(query).fetch_one(&colony.rig.pool).await.unwrap();
        transcript.push_str(&text);
    }
    let mut logs = 0;
    for entry in std::fs::read_dir(colony.logs.path()).unwrap().flatten() {
        // Lossy, not to_string: a log that is not UTF-8 is searched all the same.
        let log = std::fs::read(entry.path()).unwrap_or_else(|e| panic!("cannot read {}: {e}", entry.path().display()));
        transcript.push_str(&String::from_utf8_lossy(&log));
        logs += 1;
    }
    assert!(logs >= 2, "an observer's and a harvest cell's logs were read");
    assert!(transcript.contains("token=***"), "URLs are still shown, with their tokens masked");

    let mut secrets = vec![("the Postgres password", password.clone()), ("the S3 secret key", g.secret.clone())];
    secrets.extend(tokens.iter().map(|t| ("a source URL's token", t.clone())));
    secrets.push(("the wrong password", wrong));
    for (what, value) in secrets {
        if let Some(at) = transcript.find(&value) {
            let from = transcript[..at].char_indices().rev().nth(300).map_or(0, |(i, _)| i);
            panic!("{what} leaked:\n...{}", &transcript[from..(at + value.len()).min(transcript.len())]);
        }
    }
    colony.kill_cells().await;
}
