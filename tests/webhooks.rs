//! Signed webhooks (issue 15), end to end: `mothership webhook add` (the
//! real binary) registers a receiver on loopback that checks every
//! signature itself, with the secret `add` printed, and answers 500 to its
//! first deliveries. Real events then happen: a channel on the live test
//! source goes live and offline under real ticks, its observer records and
//! completes the recording, another recording fails, a job dies, a cell is
//! buried. The ticks queue the deliveries and sign and send them (no cell
//! ever holds a webhook's secret).
//!
//! What this proves:
//! - every event is delivered exactly once with a 2xx despite the 500s,
//!   each with a valid HMAC-SHA256 signature and a `webhook-id` that stays
//!   the same across the retries of one event;
//! - a hook gets only the events it subscribed to, in its format (Discord:
//!   one `content` line);
//! - a second scan over the same window queues nothing;
//! - no secret is printed by `webhook list --json` or `job list --json`;
//! - a receiver that is down for good ends as a dead job with its error,
//!   holding up nothing, is never queued again and raises no event of its own;
//! - a bad `--events` value exits 2 with one line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use colony::cells::{CellKind, Registration};
use colony::queue::{Failure, KindFilter, NewJob, Queue};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::webhook_receiver::{Delivery, Receiver};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `mothership webhook add --allow-private` (the receivers listen on
/// loopback); the id and the secret it printed.
async fn add_hook(colony: &Colony, url: &str, extra: &[&str]) -> (i64, String) {
    let mut args = vec!["webhook", "add", url, "--allow-private"];
    args.extend_from_slice(extra);
    let out = colony.run(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let id = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no id in: {stdout}"));
    let secret = stdout
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret in: {stdout}"))
        .trim()
        .to_owned();
    assert!(stdout.contains("will not be shown again"), "{stdout}");
    (id, secret)
}

/// A job that dies, through the queue as a worker would fail it; its event id.
async fn a_job_dies(pool: &sqlx::PgPool) -> String {
    let queue = Queue::new(pool.clone());
    let id = queue.enqueue(&NewJob::new("test_doomed", serde_json::json!({}))).await.unwrap().id();
    let job = queue.claim("test", &KindFilter::Only(vec!["test_doomed".into()]), 1, SECS(60)).await.unwrap().remove(0);
    assert_eq!(job.id, id);
    queue.fail(job.lease(), "the test doomed it", Failure::Permanent).await.unwrap();
    let ms: i64 =
        sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM finalized_at) * 1000)::bigint FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
    format!("job.dead:{id}:{ms}")
}

/// Successful deliveries by webhook-id.
fn delivered(deliveries: &[Delivery]) -> BTreeMap<String, usize> {
    let mut ok = BTreeMap::new();
    for d in deliveries.iter().filter(|d| d.status == 200) {
        *ok.entry(d.id.clone()).or_insert(0) += 1;
    }
    ok
}

async fn channel_event(pool: &sqlx::PgPool, column: &str, channel: i64) -> Option<i64> {
    sqlx::query_scalar(&format!("SELECT (EXTRACT(EPOCH FROM {column}) * 1000)::bigint FROM channels WHERE id = $1"))
        .bind(channel)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_is_delivered_once_signed_despite_a_failing_receiver() {
    let colony = Colony::new(Rig::file().await);
    let pool = colony.rig.pool.clone();
    let source = LiveSource::start().await;
    let segments = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    source.add("alpha", &segments, 4);

    // Two receivers: one for every event (500 to its first three
    // deliveries), one for dead jobs only, in Discord's format.
    let all = Receiver::start(3).await;
    let (all_id, all_secret) = add_hook(&colony, &all.url, &[]).await;
    all.set_secret(&all_secret);
    let discord = Receiver::start(1).await;
    let (_, discord_secret) = add_hook(&colony, &discord.url, &["--events", "job.dead", "--format", "discord"]).await;
    discord.set_secret(&discord_secret);

    let out = colony.run(&["channel", "add", "--login", "alpha", "--source-url", &source.media_url("alpha")]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let alpha: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // No post-processing: only the events this test makes.
    sqlx::query("UPDATE channels SET pipeline = '[]' WHERE id = $1").bind(alpha).execute(&pool).await.unwrap();

    // Live: a tick probes the channel and starts an observer, which records.
    let first = colony.tick(&[]).await;
    assert_eq!(first["observers_started"], 1, "{first:#}");
    let recording: i64 = sqlx::query_scalar("SELECT id FROM recordings WHERE channel_id = $1")
        .bind(alpha)
        .fetch_one(&pool)
        .await
        .unwrap();
    colony.rig.wait_segments(recording, 2, SECS(30)).await;
    let live_ms = channel_event(&pool, "live_since", alpha).await.expect("live_since");

    // Offline: ticks see it, and the observer completes the recording.
    source.go_offline("alpha");
    let deadline = tokio::time::Instant::now() + SECS(60);
    while colony.rig.recording_state(recording).await != "complete"
        || channel_event(&pool, "offline_since", alpha).await.is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "the recording did not complete");
        colony.tick(&[]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let offline_ms = channel_event(&pool, "offline_since", alpha).await.unwrap();

    // A recording that fails, a job that dies, a cell that is buried.
    let beta = colony.rig.channel("beta", "http://unused.invalid/").await;
    let (_, failing) = colony.rig.assign(beta).await;
    colony::recording::rows::fail(&pool, failing.recording_id, failing.lease_token, "the source vanished")
        .await
        .unwrap();
    let dead_job = a_job_dies(&pool).await;
    let cell = uuid::Uuid::new_v4();
    let me =
        Registration { id: cell, role: CellKind::Harvest, channel_id: None, recording_id: None, lease_token: None };
    assert!(colony::cells::register(&pool, me).await.unwrap());
    colony::cells::mark_dead(&pool, cell, "stopped heartbeating (test)").await.unwrap();

    let expected: BTreeSet<String> = [
        format!("channel.live:{alpha}:{live_ms}"),
        format!("recording.started:{recording}"),
        format!("channel.offline:{alpha}:{offline_ms}"),
        format!("recording.completed:{recording}"),
        format!("recording.started:{}", failing.recording_id),
        format!("recording.failed:{}", failing.recording_id),
        dead_job.clone(),
        format!("cell.dead:{cell}"),
    ]
    .into();

    // Ticks queue the deliveries and send them, retrying the 500s.
    let deadline = tokio::time::Instant::now() + SECS(120);
    loop {
        colony.tick(&[]).await;
        let (got_all, got_discord) = (delivered(&all.deliveries()), delivered(&discord.deliveries()));
        if expected.iter().all(|e| got_all.contains_key(e)) && got_discord.contains_key(&dead_job) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every event was delivered: {:?} of {expected:?}",
            got_all.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let deliveries = all.deliveries();
    assert!(deliveries.iter().all(|d| d.verified), "a signature did not verify: {deliveries:#?}");
    assert!(deliveries.iter().all(|d| d.content_type.as_deref() == Some("application/json")));
    // Exactly once each, and the 500s were retried under the same id.
    let ok = delivered(&deliveries);
    assert!(ok.values().all(|n| *n == 1), "delivered twice: {ok:?}");
    let refused: Vec<&Delivery> = deliveries.iter().filter(|d| d.status == 500).collect();
    assert_eq!(refused.len(), 3);
    for r in &refused {
        assert!(ok.contains_key(&r.id), "{} was refused and never delivered", r.id);
    }
    // The body is the event the id names, and holds no secret.
    for d in deliveries.iter().filter(|d| d.status == 200) {
        let kind = d.body["type"].as_str().unwrap();
        assert!(d.id.starts_with(&format!("{kind}:")), "{d:?}");
        assert!(d.body["timestamp"].is_string() && d.body["data"].is_object(), "{d:?}");
        assert!(!d.body.to_string().contains(&all_secret[6..]));
    }
    let completed = deliveries.iter().find(|d| d.id == format!("recording.completed:{recording}")).unwrap();
    assert_eq!(completed.body["data"]["channel"], "alpha");
    assert_eq!(completed.body["data"]["state"], "complete");
    assert!(completed.body["data"]["segments"].as_i64().unwrap() >= 2, "{completed:?}");
    let failed = deliveries.iter().find(|d| d.id.starts_with("recording.failed:")).unwrap();
    assert_eq!(failed.body["data"]["error"], "the source vanished");
    let job = deliveries.iter().find(|d| d.id == dead_job).unwrap();
    assert_eq!(
        (job.body["data"]["kind"].as_str(), job.body["data"]["last_error"].as_str()),
        (Some("test_doomed"), Some("the test doomed it"))
    );

    // The Discord hook got its one event, as one line, signed too.
    let d = discord.deliveries();
    assert!(d.iter().all(|d| d.verified && d.id.starts_with("job.dead:")), "{d:#?}");
    assert_eq!(delivered(&d).get(&dead_job), Some(&1));
    let line = d.last().unwrap().body["content"].as_str().unwrap().to_owned();
    assert!(line.contains("test\\_doomed") && line.contains("the test doomed it") && !line.contains('\n'), "{line}");
    assert_eq!(d.last().unwrap().body["allowed_mentions"], serde_json::json!({ "parse": [] }));

    // Every delivery job succeeded, and a second scan queues nothing.
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT unique_key, state::text FROM jobs WHERE kind = 'webhook' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(states.iter().all(|(_, s)| s == "succeeded"), "{states:?}");
    assert!(states.iter().any(|(k, _)| *k == format!("webhook:{all_id}:recording.completed:{recording}")));
    assert_eq!(mothership::webhook::enqueue_events(&pool).await.unwrap(), 0);
    sqlx::query("UPDATE colony SET webhook_scanned_until = NULL").execute(&pool).await.unwrap();
    assert_eq!(mothership::webhook::enqueue_events(&pool).await.unwrap(), 0, "a full rescan queued again");

    // No secret in the JSON outputs.
    for args in [&["webhook", "list", "--json"][..], &["job", "list", "--json", "--limit", "1000"][..]] {
        let out = colony.run(args).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        for secret in [&all_secret, &discord_secret] {
            assert!(!text.contains(&secret[6..]), "{args:?} printed a secret");
        }
        if args[0] == "webhook" {
            let hooks: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(hooks.as_array().unwrap().len(), 2, "{hooks:#}");
        }
    }
    colony.kill_cells().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_down_for_good_ends_as_a_dead_job_and_blocks_no_one() {
    let colony = Colony::new(Rig::file().await);
    let pool = colony.rig.pool.clone();
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (down_id, _) =
        add_hook(&colony, &format!("http://127.0.0.1:{closed}/hook?token=s3cret"), &["--events", "job.dead"]).await;
    let up = Receiver::start(0).await;
    let (_, up_secret) = add_hook(&colony, &up.url, &["--events", "job.dead"]).await;
    up.set_secret(&up_secret);
    let dead_job = a_job_dies(&pool).await;
    assert_eq!(mothership::webhook::enqueue_events(&pool).await.unwrap(), 2);

    // The working receiver gets its event from the next tick while the other keeps failing.
    colony_tests::eventually("the delivery to the working receiver", SECS(30), || async {
        colony.tick(&[]).await;
        delivered(&up.deliveries()).contains_key(&dead_job).then_some(())
    })
    .await;

    // The backoff spans hours; stand in for them by making each retry due now.
    let job = colony_tests::eventually("the delivery to the closed port to die", SECS(90), || async {
        sqlx::query("UPDATE jobs SET run_at = now() WHERE kind = 'webhook' AND state = 'retryable'")
            .execute(&pool)
            .await
            .unwrap();
        colony.tick(&[]).await;
        let row: (String, i32, i32, Option<String>) =
            sqlx::query_as("SELECT state::text, attempt, max_attempts, last_error FROM jobs WHERE unique_key = $1")
                .bind(format!("webhook:{down_id}:{dead_job}"))
                .fetch_one(&pool)
                .await
                .unwrap();
        (row.0 == "dead").then_some(row)
    })
    .await;
    assert_eq!((job.1, job.2), (12, 12), "{job:?}");
    let error = job.3.unwrap();
    assert!(error.contains("could not be reached") && error.contains("127.0.0.1"), "{error}");
    assert!(!error.contains("s3cret") && !error.contains("/hook"), "the error shows the URL: {error}");

    // A dead delivery is queued neither again nor as a job.dead event.
    assert_eq!(mothership::webhook::enqueue_events(&pool).await.unwrap(), 0);
    sqlx::query("UPDATE colony SET webhook_scanned_until = NULL").execute(&pool).await.unwrap();
    assert_eq!(mothership::webhook::enqueue_events(&pool).await.unwrap(), 0);
    assert_eq!(delivered(&up.deliveries()).len(), 1);
}

#[tokio::test]
async fn a_bad_webhook_is_refused_with_one_line_and_exit_2() {
    let colony = Colony::new(Rig::file().await);
    for (args, says) in [
        (
            &["webhook", "add", "http://127.0.0.1:9/hook", "--events", "job.dead,channel.exploded"][..],
            "channel.exploded",
        ),
        (&["webhook", "add", "ftp://127.0.0.1/hook"][..], "http(s)"),
        (&["webhook", "add", "http://127.0.0.1:9/hook", "--format", "xml"][..], "--format"),
        (&["webhook", "remove", "12345"][..], "no webhook 12345"),
    ] {
        let out = colony.run(args).await;
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line expected: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let hooks: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(hooks, 0);
}
