//! `infra/compose.yaml` really starts: `docker compose up -d` (or
//! docker-compose 1.29, whichever is installed) with an env file, on images
//! built here from Debian packages, the cargo-installed Garage and this
//! checkout's binaries, nothing pulled.
//!
//! The stack comes up healthy; a channel added with `mothership channel add`
//! inside the mothership container is recorded by an observer container the
//! docker launcher starts on the stack's network, and its segments are in
//! Garage; the dashboard answers (`/healthz`, `/api/v1/status` with the
//! token); Prometheus scrapes its `/metrics` with the token; and after the
//! channel is disabled and `down -v`, nothing of the project or the colony is
//! left. The live source is a small container of the test's own override
//! file: ffmpeg (from the observer image) writes a live HLS window that
//! python3's http.server serves on the compose network, where both the
//! mothership's probe and the cells reach it.
//!
//! Bounded: six minutes after the images are built; the stack guard takes
//! everything down however the test ends.

use std::time::{Duration, Instant};

use colony_tests::compose::{Stack, TAG, build_images, docker};
use colony_tests::eventually;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const WHOLE_TEST: Duration = Duration::from_secs(360);
const LOGIN: &str = "composed";

/// The live source: a sliding window of 1-second segments, published in
/// real time, at http://source:8000/live.m3u8 on the stack's network.
fn override_yaml() -> String {
    let ffmpeg = "ffmpeg -hide_banner -loglevel error -re \
        -f lavfi -i testsrc=size=192x108:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -c:v libx264 -preset ultrafast -g 25 -keyint_min 25 -sc_threshold 0 -b:v 200k \
        -c:a aac -b:a 64k -f hls -hls_time 1 -hls_list_size 6 \
        -hls_flags delete_segments+temp_file -hls_segment_filename seg%05d.ts live.m3u8";
    format!(
        r#"services:
  source:
    image: colony-observer-cell:{TAG}
    entrypoint: ["sh", "-c", "mkdir -p /tmp/live && cd /tmp/live && (python3 -m http.server 8000 >/dev/null 2>&1 &) && exec {ffmpeg}"]
    init: true
    networks: [colony]
"#
    )
}

async fn query<T>(pool: &sqlx::PgPool, sql: &str, login: &str) -> Option<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).bind(login).fetch_optional(pool).await.ok().flatten()
}

/// GET with an optional bearer token: the status, or None if nothing answers.
async fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(SECS(5)).build().unwrap();
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// Poll `url` until it answers `want`; the last answer either way.
async fn answers(url: &str, token: Option<&str>, want: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = get(url, token).await;
        if got.as_ref().is_some_and(|(status, _)| *status == want) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{url} did not answer {want} within {timeout:?}; last answer: {got:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_stack_starts_records_a_channel_is_scraped_and_goes_away() {
    let built = Instant::now();
    tokio::task::spawn_blocking(build_images).await.unwrap();
    eprintln!("images built in {:?}", built.elapsed());
    let started = Instant::now();

    let stack = Stack::new(
        &override_yaml(),
        &[
            ("COLONY_TICK_EVERY", "2s"),
            ("COLONY_PROBE_EVERY", "2s"),
            ("OBSERVER_STANDBY", "10s"),
            ("COLONY_MAX_HARVEST", "0"),
            ("COLONY_LOG_FORMAT", "human"),
        ],
    );
    let stack = std::sync::Arc::new(stack);
    let story = tokio::time::timeout(WHOLE_TEST, async {
        // Up, with the env file: Postgres and Garage healthy (Garage only
        // once its bucket exists), the schema migrated, the loop running.
        let up = tokio::task::spawn_blocking({
            let stack = stack.clone();
            move || stack.compose(&["up", "-d"])
        })
        .await
        .unwrap();
        assert!(up.status.success(), "compose up failed:\n{}", String::from_utf8_lossy(&up.stderr));
        tokio::task::spawn_blocking({
            let stack = stack.clone();
            move || {
                stack.wait_status(
                    &[
                        ("postgres", "healthy"),
                        ("garage", "healthy"),
                        ("migrate", "exited 0"),
                        ("mothership", "running"),
                        ("source", "running"),
                        ("prometheus", "healthy"),
                    ],
                    SECS(120),
                )
            }
        })
        .await
        .unwrap();

        // Postgres through its published loopback port, with the password.
        let pool = sqlx::PgPool::connect(&stack.database_url()).await.expect("Postgres on the published port");
        let instance: uuid::Uuid = sqlx::query_scalar("SELECT instance_id FROM colony").fetch_one(&pool).await.unwrap();
        stack.set_instance(&instance.to_string());

        // A channel, added the README's way: inside the mothership container.
        // Its source is a name on the stack's private network, which a name
        // may resolve to only when the channel allows it (DNS rebinding).
        let add = stack.exec(
            "mothership",
            &[
                "mothership",
                "channel",
                "add",
                "--login",
                LOGIN,
                "--source-url",
                "http://source:8000/live.m3u8",
                "--allow-host",
                "source",
            ],
        );
        assert!(add.status.success(), "channel add: {}", String::from_utf8_lossy(&add.stderr));

        // The docker launcher starts an observer container on the stack's
        // network; it has no Docker socket.
        let observer = eventually("an observer container", SECS(90), || async {
            stack.cells().into_iter().find(|(_, kind, state)| kind == "observer" && state == "running")
        })
        .await
        .0;
        let mounts = docker(&["inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}", &observer]);
        assert!(!mounts.contains("docker.sock"), "a cell got the Docker socket: {mounts}");
        let networks =
            docker(&["inspect", "--format", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", &observer]);
        assert_eq!(networks.trim(), stack.project, "the cell joined the stack's network");
        // It connects as the observer role's login and holds nothing of the
        // mothership's own: not the owner's password, not the web token.
        let env = docker(&["inspect", "--format", "{{json .Config.Env}}", &observer]);
        assert!(env.contains("DATABASE_URL=postgres://colony_observer_login:"), "{env}");
        for secret in [stack.postgres_password.as_str(), stack.web_token.as_str(), "COLONY_HARVEST_DATABASE_URL"] {
            assert!(!env.contains(secret), "the cell got {secret}: {env}");
        }

        // Its segments are in the ledger and in Garage.
        let recording: i64 = eventually("a recording", SECS(60), || async {
            query(
                &pool,
                "SELECT r.id FROM recordings r JOIN channels c ON c.id = r.channel_id WHERE c.login = $1",
                LOGIN,
            )
            .await
        })
        .await;
        let stored: Vec<(String, i64)> = eventually("3 stored segments", SECS(90), || async {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT object_key, bytes FROM segments
                  WHERE recording_id = $1 AND NOT is_gap AND object_key IS NOT NULL ORDER BY epoch, media_sequence",
            )
            .bind(recording)
            .fetch_all(&pool)
            .await
            .unwrap();
            (rows.len() >= 3).then_some(rows)
        })
        .await;
        let garage = colony_tests::garage::Garage {
            endpoint: format!("http://127.0.0.1:{}", stack.garage_port),
            key_id: stack.s3_key_id.clone(),
            secret: stack.s3_secret.clone(),
            bucket: stack.bucket.clone(),
            config: Default::default(),
        };
        let etag = garage.etag(&stored[0].0).await;
        assert!(!etag.is_empty(), "{} is in Garage", stored[0].0);
        eprintln!("recorded {} segments ({} bytes first) after {:?}", stored.len(), stored[0].1, started.elapsed());

        // The dashboard and Prometheus. Their failures are collected, so the
        // teardown below is still exercised when they fail.
        let mut failures = Vec::new();
        let web = format!("http://127.0.0.1:{}", stack.web_port);
        let token = stack.web_token.as_str();
        for check in [
            answers(&format!("{web}/healthz"), None, 200, SECS(30)).await,
            answers(&format!("{web}/api/v1/status"), Some(token), 200, SECS(10)).await,
            answers(&format!("{web}/api/v1/status"), None, 401, SECS(10)).await,
        ] {
            failures.extend(check.err());
        }
        let prometheus = format!("http://127.0.0.1:{}", stack.prometheus_port);
        let up_query = format!("{prometheus}/api/v1/query?query=up%7Bjob%3D%22colony%22%7D");
        let scraped = tokio::time::timeout(SECS(60), async {
            loop {
                // {"data":{"result":[{"metric":{...},"value":[<time>,"1"]}]}}
                if let Some((200, body)) = get(&up_query, None).await {
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    if json["data"]["result"][0]["value"][1] == "1" {
                        return;
                    }
                }
                tokio::time::sleep(SECS(1)).await;
            }
        })
        .await;
        if scraped.is_err() {
            let last = get(&up_query, None).await;
            failures.push(format!("Prometheus never saw up{{job=\"colony\"}} == 1 within 60s; last answer: {last:?}"));
        }

        // Stop the recording the operator's way; the mothership stops and
        // removes the cell. Then `down -v` leaves nothing.
        let disable = stack.exec("mothership", &["mothership", "channel", "disable", LOGIN]);
        assert!(disable.status.success(), "channel disable: {}", String::from_utf8_lossy(&disable.stderr));
        eventually("the colony's cells to be gone", SECS(90), || async { stack.cells().is_empty().then_some(()) })
            .await;
        // A stopped observer finalizes its recording as `interrupted`.
        let (state, ended): (String, bool) =
            sqlx::query_as("SELECT state::text, ended_at IS NOT NULL FROM recordings WHERE id = $1")
                .bind(recording)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((state.as_str(), ended), ("interrupted", true), "the observer finalized the recording on SIGTERM");
        pool.close().await;
        // The queries that must come back empty after down see the stack
        // before it: an empty answer then means gone, not missed by a filter
        // (and a failed docker command panics instead of answering nothing).
        assert!(!stack.project_containers().is_empty(), "no container of the project found before down");
        assert!(!stack.network().is_empty(), "the stack's network not found before down");
        assert!(!stack.volumes().is_empty(), "the project's named volumes not found before down");
        let down = tokio::task::spawn_blocking({
            let stack = stack.clone();
            move || stack.down()
        })
        .await
        .unwrap();
        assert!(down.status.success(), "compose down failed:\n{}", String::from_utf8_lossy(&down.stderr));
        assert_eq!(stack.project_containers(), Vec::<String>::new(), "containers of the project after down");
        assert_eq!(stack.cells(), Vec::new(), "cell containers of the colony after down");
        assert_eq!(stack.network(), "", "the stack's network outlived down");
        assert_eq!(stack.volumes(), Vec::<String>::new(), "down -v left volumes");
        assert!(failures.is_empty(), "the stack ran, but:\n- {}", failures.join("\n- "));
    })
    .await;
    eprintln!("stack test took {:?} after the images were built", started.elapsed());
    if story.is_err() {
        panic!("the compose stack test did not finish within {WHOLE_TEST:?}:\n{}", stack.logs());
    }
}
