//! The whole loop in containers: `mothership run` with the docker launcher,
//! cells in the images `Dockerfiles/build.sh` builds, Garage as S3, and three
//! live channels, one of them a Twitch channel: found live through a local
//! fake of Helix (`colony_tests::twitch::FakeTwitch`; the real API cannot be
//! reached from here) and resolved inside its container by the image's own
//! pinned streamlink, whose template points at the live test source. Bounded in time; its containers are removed even when it
//! fails (a guard removes everything labelled with this colony's id).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colony::storage::ObjectKey;
use colony_tests::chat::{FakeChat, Step};
use colony_tests::docker::dockerfile_images;
use colony_tests::garage::garage;
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::Rig;
use colony_tests::twitch::FakeTwitch;
use tokio::io::AsyncBufReadExt;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WHOLE_TEST: Duration = Duration::from_secs(300);

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// This colony's containers: (id, kind, state).
fn containers(instance: &str) -> Vec<(String, String, String)> {
    docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=colony.instance={instance}"),
        "--format",
        "{{.ID}} {{.Label \"colony.cell.kind\"}} {{.State}}",
    ])
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace().map(str::to_owned);
        Some((w.next()?, w.next()?, w.next()?))
    })
    .collect()
}

/// Removes every container of this colony when the test ends, however it ends.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (id, _, _) in containers(&self.0) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}

/// A container's death as `docker events` reports it.
#[derive(Debug, Clone)]
struct Death {
    kind: String,
    channel: String,
    exit_code: i32,
}

/// Follows `docker events` for this colony's containers: id → death.
fn watch_deaths(instance: &str) -> (tokio::process::Child, Arc<Mutex<HashMap<String, Death>>>) {
    let mut child = tokio::process::Command::new("docker")
        .args(["events", "--filter", "type=container", "--filter", "event=die"])
        .args(["--filter", &format!("label=colony.instance={instance}")])
        .args(["--format", "{{.Actor.ID}} {{.Actor.Attributes.exitCode}} {{index .Actor.Attributes \"colony.cell.kind\"}} {{index .Actor.Attributes \"colony.channel\"}}"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deaths = Arc::new(Mutex::new(HashMap::new()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = deaths.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let w: Vec<&str> = line.split_whitespace().collect();
            if let [id, code, kind, rest @ ..] = w.as_slice() {
                let death = Death {
                    kind: (*kind).to_owned(),
                    channel: rest.first().map(|c| (*c).to_owned()).unwrap_or_default(),
                    exit_code: code.parse().unwrap_or(-1),
                };
                sink.lock().unwrap().insert((*id).to_owned(), death);
            }
        }
    });
    (child, deaths)
}

async fn recordings_of(colony: &Colony, login: &str) -> Vec<(i64, String, i64)> {
    sqlx::query_as(
        "SELECT r.id, r.state::text, r.segment_count FROM recordings r JOIN channels c ON c.id = r.channel_id
          WHERE c.login = $1 ORDER BY r.id",
    )
    .bind(login)
    .fetch_all(&colony.rig.pool)
    .await
    .unwrap()
}

async fn one_recording(colony: &Colony, login: &str) -> (i64, String, i64) {
    let all = recordings_of(colony, login).await;
    assert_eq!(all.len(), 1, "{login} has exactly one recording: {all:?}");
    all[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_loop_runs_in_containers_from_live_to_post_processed_to_zero() {
    let tag = tokio::task::spawn_blocking(dockerfile_images).await.unwrap();
    let colony = Colony::new(Rig::garage(garage()).await);
    let instance = mothership::observe::instance_id(&colony.rig.pool).await.unwrap().to_string();
    let _cleanup = Cleanup(instance.clone());
    let (_events, deaths) = watch_deaths(&instance);

    let source = LiveSource::start().await;
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    for login in ["steady", "flaky", "ending"] {
        source.add(login, &media, 4);
    }
    for login in ["flaky", "ending"] {
        let out = colony.run(&["channel", "add", "--login", login, "--source-url", &source.media_url(login)]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // `steady` is a Twitch channel. The image's streamlink resolves it: the
    // template names the test source's master playlist by the channel's handle.
    let twitch = FakeTwitch::start().await;
    twitch.add_user("steady");
    twitch.go_live("steady", "Steady on air", "Science & Technology");
    let out = colony.run(&["channel", "add", "https://www.twitch.tv/steady"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Its chat: a fake of Twitch's IRC-over-WebSocket chat (the real one
    // cannot be reached from here), recorded by the same observer container.
    let chat_script = vec![
        Step::Say { user: "alice", text: "hello from the e2e Kappa".into() },
        Step::Sub { user: "bob", months: 3 },
        Step::Wait(SECS(2)),
        Step::Say { user: "carol", text: "still watching ✨".into() },
    ];
    let chat = FakeChat::start("steady", chat_script).await;
    let resolver = format!("streamlink --stream-url {} best", source.master_url("{handle}"));
    let version =
        docker(&["run", "--rm", "--entrypoint", "streamlink", &format!("colony-observer-cell:{tag}"), "--version"]);
    assert!(version.starts_with("streamlink 8."), "the image carries the pinned streamlink: {version}");

    // The mothership loop, as an operator runs it, with the docker launcher.
    let mut run = colony.command(&["run", "--every", "2s", "--launcher", "docker", "--docker-network", "host"]);
    run.env("COLONY_DOCKER_OBSERVER_IMAGE", format!("colony-observer-cell:{tag}"))
        .env("COLONY_DOCKER_HARVEST_IMAGE", format!("colony-harvest-cell:{tag}"))
        .env("COLONY_DOCKER_STOP_TIMEOUT", "20")
        .env("OBSERVER_STANDBY", "10s")
        .env("COLONY_IDLE_COOLDOWN", "4s")
        .env("COLONY_LOG", "info")
        .env("COLONY_RESOLVER_TWITCH", &resolver)
        .env("OBSERVER_TWITCH_CHAT_URL", chat.url())
        .env("OBSERVER_CHAT_FLUSH_EVERY", "2s")
        // The images allow streamlink and yt-dlp; the test harness narrows
        // every host's list, and cells inherit the mothership's.
        .env("COLONY_RESOLVERS", "streamlink")
        .envs(twitch.env())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut mothership = run.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = tokio::io::BufReader::new(mothership.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });

    let story = tokio::time::timeout(WHOLE_TEST, async {
        // Observer containers start for the three live channels within one tick.
        colony_tests::eventually("three observer containers", SECS(60), || async {
            let running = containers(&instance)
                .iter()
                .filter(|(_, kind, state)| kind == "observer" && state == "running")
                .count();
            (running == 3).then_some(())
        })
        .await;
        let starts: Vec<(uuid::Uuid, String)> = sqlx::query_as(
            "SELECT tick_id, subject FROM decisions WHERE action = 'start_observer' AND outcome = 'ok' ORDER BY id",
        )
        .fetch_all(&colony.rig.pool)
        .await
        .unwrap();
        assert_eq!(starts.len(), 3, "{starts:?}");
        assert!(starts.iter().all(|(tick, _)| *tick == starts[0].0), "all three started by one tick: {starts:?}");

        // Recordings land in Garage.
        for login in ["steady", "flaky", "ending"] {
            let (id, _, _) = colony_tests::eventually("a recording", SECS(30), || async {
                recordings_of(&colony, login).await.pop()
            })
            .await;
            colony.rig.wait_segments(id, 3, SECS(60)).await;
            let rows = colony.rig.rows(id).await;
            let key = ObjectKey::parse(rows[0].object_key.as_deref().unwrap()).unwrap();
            let bytes = colony::storage::get_bytes(colony.rig.store.as_ref(), &key).await.unwrap();
            assert_eq!(bytes.len() as i64, rows[0].bytes, "{login}'s first segment is whole in Garage");
        }

        // `flaky` drops and returns inside the standby window: one recording.
        let (flaky, _, _) = one_recording(&colony, "flaky").await;
        source.go_offline("flaky");
        colony_tests::eventually("flaky to stand by", SECS(30), || async {
            (colony.rig.recording_state(flaky).await == "standby").then_some(())
        })
        .await;
        let before = one_recording(&colony, "flaky").await.2;
        source.come_back("flaky");
        colony_tests::eventually("flaky to record again", SECS(30), || async {
            let (_, state, segments) = one_recording(&colony, "flaky").await;
            (state == "recording" && segments > before + 2).then_some(())
        })
        .await;

        // `ending` goes offline for good: its container exits 0 after the
        // standby window, and harvest containers do its post-processing.
        let (ending, _, _) = one_recording(&colony, "ending").await;
        source.end("ending");
        colony_tests::eventually("ending's recording to complete", SECS(60), || async {
            (colony.rig.recording_state(ending).await == "complete").then_some(())
        })
        .await;
        colony_tests::eventually("ending's observer container to exit 0", SECS(30), || async {
            let deaths = deaths.lock().unwrap();
            deaths.values().find(|d| d.kind == "observer" && d.channel == "ending").map(|d| {
                assert_eq!(d.exit_code, 0, "{d:?}");
            })
        })
        .await;
        let worker: String = colony_tests::eventually("ending's thumbnails job to succeed", SECS(90), || async {
            sqlx::query_scalar(
                "SELECT attempted_by FROM jobs WHERE kind = 'thumbnails' AND state = 'succeeded'
                  AND (args->>'recording_id')::bigint = $1",
            )
            .bind(ending)
            .fetch_optional(&colony.rig.pool)
            .await
            .unwrap()
        })
        .await;
        let (kind, backend): (String, String) =
            sqlx::query_as("SELECT kind::text, backend_ref FROM cells WHERE id = $1::uuid")
                .bind(&worker)
                .fetch_one(&colony.rig.pool)
                .await
                .unwrap();
        assert_eq!(kind, "harvest");
        assert!(
            docker(&["image", "inspect", &format!("colony-harvest-cell:{tag}"), "--format", "{{.Id}}"])
                .starts_with("sha256:"),
            "the harvest image is the one build.sh made"
        );
        assert_eq!(one_recording(&colony, "steady").await.1, "recording", "steady records on");
        let title: Option<String> = sqlx::query_scalar(
            "SELECT r.title FROM recordings r JOIN channels c ON c.id = r.channel_id WHERE c.login = 'steady'",
        )
        .fetch_one(&colony.rig.pool)
        .await
        .unwrap();
        assert_eq!(title.as_deref(), Some("Steady on air"), "the Twitch channel's recording carries its title");

        colony_tests::eventually("the chat script to be heard", SECS(60), || async { chat.finished().then_some(()) })
            .await;

        // The rest end; with nothing live and the queue empty, the colony
        // reaches zero containers after the idle cooldown.
        source.end("steady");
        twitch.go_offline("steady");
        source.end("flaky");
        colony_tests::eventually("zero containers and zero active cells", SECS(120), || async {
            (containers(&instance).is_empty() && colony.active_count().await == 0).then_some(())
        })
        .await;
        for login in ["steady", "flaky", "ending"] {
            let (_, state, _) = one_recording(&colony, login).await;
            assert_eq!(state, "complete", "{login}");
        }
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded')")
            .fetch_one(&colony.rig.pool)
            .await
            .unwrap();
        assert_eq!(open, 0, "every post-processing job succeeded");
        // The chat was recorded beside the video, every message once, and exported.
        let (steady, _, _) = one_recording(&colony, "steady").await;
        let mut heard = Vec::new();
        for chunk in colony::recording::chat_ledger::chunks(&colony.rig.pool, steady).await.unwrap() {
            let key = ObjectKey::parse(&chunk.object_key).unwrap();
            let body = colony::storage::get_bytes(colony.rig.store.as_ref(), &key).await.unwrap();
            heard.extend(colony::chat::decode_chunk(&body).unwrap().into_iter().map(|m| m.id));
        }
        let sent: Vec<String> = chat.sent().into_iter().filter_map(|s| s.id).collect();
        assert!(sent.iter().all(|id| heard.iter().filter(|h| *h == id).count() == 1), "{sent:?} in {heard:?}");
        let exports: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'chat_export' AND state = 'succeeded'")
                .fetch_one(&colony.rig.pool)
                .await
                .unwrap();
        assert_eq!(exports, 1, "the chat export ran");
        let deaths = deaths.lock().unwrap().clone();
        let harvest_death = deaths.get(&backend).unwrap_or_else(|| panic!("{backend} died unseen: {deaths:?}"));
        assert_eq!(harvest_death.exit_code, 0, "the harvest container that did the work exited 0");
        let observers: Vec<&Death> = deaths.values().filter(|d| d.kind == "observer").collect();
        assert_eq!(observers.len(), 3, "{deaths:?}");
        assert!(observers.iter().all(|d| d.exit_code == 0), "every observer container exited 0: {observers:?}");
    })
    .await;

    let _ = mothership.start_kill();
    if story.is_err() {
        panic!("the loop did not finish within {WHOLE_TEST:?}; mothership log:\n{}", log.lock().unwrap());
    }
}
