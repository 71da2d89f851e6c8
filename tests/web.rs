//! The operator's web surface, `mothership serve`, tested with the real
//! parts: the server binary, real observer cells recording a live test
//! source (a finished MPEG-TS recording, a finished fMP4 recording, and one
//! still in progress), a real harvest cell making the storyboard, headless
//! Chromium from Debian playing each recording in the page's player, and
//! Prometheus from Debian scraping `/metrics` with the alert rules loaded.
//! Bounded in time; every process is killed when the test ends.
//!
//! Set COLONY_SCREENSHOTS=DIR to keep a PNG of each page (docs/screenshots
//! holds the ones taken this way).

use std::process::Stdio;
use std::time::Duration;

use colony_tests::browser::{Browser, chromium};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::{Rig, wait_exit};
use colony_tests::web::{plays, serve, sign_in};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const TOKEN: &str = "test-token-0123456789-abcdefghijklmnop";
const HOSTILE_TITLE: &str = "<script>window.pwned = 1</script>";
const HOSTILE_NAME: &str = "<img src=x onerror=\"window.pwned = 2\">";

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn get(url: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = client().get(url).header("accept", "text/html");
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// GET an API path with the token; its JSON.
async fn api(base: &str, path: &str) -> Value {
    client().get(format!("{base}{path}")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
}

/// A request written by hand, so that `..` reaches the server as sent.
async fn raw_get(base: &str, path: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(host).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn promtool(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = std::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed (apt-get install prometheus); .ci/run installs it");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn serving_beyond_loopback_needs_a_token() {
    let colony = Colony::new(Rig::file().await);
    let out = colony.command(&["serve", "--bind", "0.0.0.0:0"]).stderr(Stdio::piped()).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("COLONY_WEB_TOKEN"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_plays_and_measures_a_colony() {
    tokio::time::timeout(SECS(300), dashboard()).await.expect("the test took over 5 minutes");
}

async fn dashboard() {
    // The live channel's media is long enough not to loop during the test
    // (the test source loops without a discontinuity, which no player takes).
    let (ts, fmp4, long) = tokio::task::spawn_blocking(|| {
        (
            media(Container::Ts, Profile::SMALL_480P),
            media(Container::Fmp4, Profile::SMALL_480P),
            media(Container::Ts, Profile::TEST),
        )
    })
    .await
    .unwrap();
    let source = LiveSource::start().await;
    let colony = Colony::new(Rig::file().await);
    let rig = &colony.rig;

    // Three channels: two whose broadcasts end, one that stays live.
    let mut observers = Vec::new();
    let mut recorded: Vec<i64> = Vec::new();
    for (name, m) in [("tsdone", &ts), ("fmdone", &fmp4), ("tslive", &long)] {
        source.add(name, m, 6);
        let channel = rig.channel(name, &source.media_url(name)).await;
        let (cell, a) = rig.assign(channel).await;
        observers.push(rig.observer(channel, name, cell, a, &["--standby", "1s"]));
        recorded.push(a.recording_id);
    }
    // The live channel's timeline gets an ad break (Twitch's markers) and a
    // segment the source never delivers (a gap).
    source.ads("tslive", 8..11);
    source.fail_segment("tslive", 14);
    for &r in &recorded {
        rig.wait_segments(r, 6, SECS(60)).await;
    }
    let live_observer = observers.pop().unwrap();
    source.end("tsdone");
    source.end("fmdone");
    for child in observers {
        let (code, stderr) = wait_exit(child, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let (tsdone, fmdone, tslive) = (recorded[0], recorded[1], recorded[2]);
    // The storyboard the player shows on hover, made by the real thumbnails job.
    let harvest = rig.harvest(&["--kinds", "thumbnails", "--idle-exit", "3s"]);
    let (code, stderr) = wait_exit(harvest, SECS(90)).await;
    assert_eq!(code, Some(0), "{stderr}");
    // Titles and names come from platforms and operators: untrusted.
    sqlx::query("UPDATE recordings SET title = $1 WHERE id = $2")
        .bind(HOSTILE_TITLE)
        .bind(tsdone)
        .execute(&rig.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE channels SET display_name = $1 WHERE login = 'tslive'")
        .bind(HOSTILE_NAME)
        .execute(&rig.pool)
        .await
        .unwrap();
    // A tick's counters, so /metrics has them.
    let tick = colony.run(&["tick", "--json"]).await;
    assert!(tick.status.success() || tick.status.code() == Some(4), "{tick:?}");

    let (_server, base) = serve(&colony, Some(TOKEN), &[]).await;

    // --- access
    assert_eq!(get(&format!("{base}/healthz"), None).await.0, StatusCode::OK);
    assert_eq!(get(&format!("{base}/readyz"), None).await.0, StatusCode::OK);
    assert_eq!(get(&format!("{base}/"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&format!("{base}/api/v1/status"), Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&format!("{base}/metrics"), None).await.0, StatusCode::UNAUTHORIZED);

    // --- pages escape what they show
    let (status, overview) = get(&format!("{base}/"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.contains("tslive") && overview.contains(&format!("/recordings/{tslive}")), "{overview}");
    assert!(!overview.contains(HOSTILE_NAME) && overview.contains("&lt;img src=x"), "{overview}");
    let (_, channel) = get(&format!("{base}/channels/tsdone"), Some(TOKEN)).await;
    assert!(!channel.contains(HOSTILE_TITLE) && channel.contains("&lt;script&gt;window.pwned"), "{channel}");
    for page in ["/jobs", "/cells", &format!("/recordings/{tsdone}")] {
        let (status, body) = get(&format!("{base}{page}"), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{page}: {body}");
        assert!(!body.contains(HOSTILE_TITLE), "{page}");
    }

    // --- the API has the CLI's shapes
    let status = api(&base, "/api/v1/status").await;
    let cli: Value = serde_json::from_slice(&colony.run(&["status", "--json"]).await.stdout).unwrap();
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&status), keys(&cli));
    assert_eq!(keys(&status["channels"][0]), keys(&cli["channels"][0]));
    assert_eq!(status["channels"].as_array().map(Vec::len), Some(3));
    let recording = api(&base, &format!("/api/v1/recordings/{tsdone}")).await;
    assert_eq!(recording["recording"]["state"], "complete");
    assert!(recording["timeline"].as_array().is_some_and(|t| !t.is_empty()), "{recording}");
    assert!(recording["storyboard_vtt"].is_string(), "the thumbnails job made a storyboard: {recording}");
    assert_eq!(get(&format!("{base}/api/v1/recordings/99999999"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{base}/recordings/99999999"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&format!("{base}/channels/nobody"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);

    // --- admin actions need the CSRF token
    let post = |path: &str| client().post(format!("{base}{path}")).bearer_auth(TOKEN);
    let refused = post("/api/v1/channels/tsdone/disable").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let enabled: bool =
        sqlx::query_scalar("SELECT enabled FROM channels WHERE login = 'tsdone'").fetch_one(&rig.pool).await.unwrap();
    assert!(enabled, "a refused POST changes nothing");
    let csrf = api(&base, "/api/v1/csrf").await["csrf"].as_str().unwrap().to_owned();
    let wrong = post("/api/v1/channels/tsdone/disable").header("x-csrf-token", "nope").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let ok = post("/api/v1/channels/tsdone/disable").header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    // A browser's form: the field, and a redirect back.
    let form = post("/api/v1/channels/tsdone/enable")
        .form(&[("csrf", csrf.as_str()), ("next", "/channels/tsdone")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    assert_eq!(form.headers()["location"], "/channels/tsdone");
    let open_redirect = post("/api/v1/channels/tsdone/enable")
        .form(&[("csrf", csrf.as_str()), ("next", "//evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(open_redirect.headers()["location"], "/", "never a redirect off the site");
    // The export button queues one job, once.
    let export = || async {
        let response = post(&format!("/api/v1/recordings/{tsdone}/export")).header("x-csrf-token", &csrf).send();
        response.await.unwrap().json::<Value>().await.unwrap()
    };
    let (first, again) = (export().await, export().await);
    assert_eq!(first["job"], again["job"], "{first} {again}");
    assert_eq!(again["created"], json!(false));
    let bad_add = post("/api/v1/channels")
        .header("x-csrf-token", &csrf)
        .json(&json!({ "url": "not a url" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_add.status(), StatusCode::BAD_REQUEST);

    // The jobs page's live progress: server-sent events of the running jobs.
    let mut events = client().get(format!("{base}/api/v1/jobs/events")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(SECS(10), events.chunk()).await.expect("an event within 10 s").unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: running\ndata: ["), "{first:?}");
    drop(events);

    // --- media: playlists from the ledger, objects only under the recording's prefix
    let (_, live_playlist) = get(&format!("{base}/media/recordings/{tslive}/playlist.m3u8"), Some(TOKEN)).await;
    assert!(live_playlist.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !live_playlist.contains("ENDLIST"));
    let (_, vod_playlist) = get(&format!("{base}/media/recordings/{fmdone}/playlist.m3u8"), Some(TOKEN)).await;
    assert!(vod_playlist.contains("#EXT-X-MAP") && vod_playlist.contains("#EXT-X-ENDLIST"), "{vod_playlist}");
    let first_segment = vod_playlist.lines().find(|l| l.starts_with("/media/")).unwrap().to_owned();
    assert_eq!(get(&format!("{base}{first_segment}"), Some(TOKEN)).await.0, StatusCode::OK);
    let objects = format!("/media/recordings/{tsdone}/objects");
    let prefix = format!("channels/tsdone/{tsdone}");
    for path in [
        format!("{objects}/{prefix}/../../../../etc/passwd"),
        format!("{objects}/{prefix}/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        format!("{objects}/{prefix}/..%2f..%2f..%2fetc/passwd"),
    ] {
        let code = raw_get(&base, &path).await;
        assert!(code == 400 || code == 404, "{path}: {code}");
    }
    // Another recording's object, through this recording's route.
    let other = first_segment.replace(&format!("/media/recordings/{fmdone}/objects"), &objects);
    assert_eq!(get(&format!("{base}{other}"), Some(TOKEN)).await.0, StatusCode::NOT_FOUND);

    // --- metrics: valid for promtool, with what the issue names
    let (status, metrics) = get(&format!("{base}/metrics"), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    promtool(&["check", "metrics"], Some(&metrics));
    for needle in [
        "colony_channels{state=\"offline\"}",
        "colony_recordings{state=\"complete\"} 2",
        "colony_recordings{state=\"recording\"} 1",
        "colony_recording_lag_seconds{channel=\"tslive\"}",
        "colony_segments_stored_total",
        "colony_segment_gaps_total",
        "colony_stored_bytes",
        "colony_observer_reconnects_total",
        "colony_jobs{kind=\"thumbnails\",state=\"succeeded\"}",
        "colony_cells{kind=\"harvest\",state=\"running\"}",
        "colony_tick_duration_seconds_bucket{le=\"+Inf\"} 1",
        "colony_ticks_total{outcome=",
        "colony_probe_errors_total",
        "colony_tick_actions_total",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}:\n{metrics}");
    }
    promtool(&["check", "rules", repo("infra/prometheus/alerts.yml").to_str().unwrap()], None);
    promtool(&["test", "rules", repo("infra/prometheus/alerts.test.yml").to_str().unwrap()], None);
    prometheus_scrapes(&base).await;

    // --- playback in a real browser
    if chromium().is_none() {
        panic!("chromium is not installed (apt-get install chromium); .ci/run installs it");
    }
    let browser = Browser::start().await;
    let mut tab = browser.tab().await;
    sign_in(&mut tab, &base, TOKEN).await;
    for (id, what) in [(tsdone, "MPEG-TS"), (fmdone, "fMP4"), (tslive, "in progress")] {
        tab.open(&format!("{base}/recordings/{id}")).await;
        plays(&mut tab, what).await;
        assert_eq!(tab.eval("typeof window.pwned").await, json!("undefined"), "no injected script ran");
        // The pages satisfy their CSP: no inline script or style, media from allowed origins only.
        assert_eq!(tab.csp_violations().await, Vec::<String>::new(), "{what}");
    }
    // Hovering the timeline of a recording with a storyboard shows its tile.
    tab.open(&format!("{base}/recordings/{tsdone}")).await;
    let tile = tab
        .eval(
            "new Promise(r => setTimeout(() => {
               const bar = document.getElementById('timeline'), box = bar.getBoundingClientRect();
               bar.dispatchEvent(new MouseEvent('mousemove', { clientX: box.left + box.width / 2, clientY: box.top + 5 }));
               const sb = document.getElementById('storyboard');
               r({ shown: sb.style.display, image: sb.style.backgroundImage });
             }, 1000))",
        )
        .await;
    assert_eq!(tile["shown"], "block", "{tile}");
    assert!(tile["image"].as_str().is_some_and(|i| i.contains("sprite.jpg")), "{tile}");
    tab.open(&format!("{base}/recordings/{tslive}")).await;
    plays(&mut tab, "in progress, again").await;
    // Seeking back in the recording that is still going.
    let sought = tab
        .eval(
            "new Promise(r => { const v = document.getElementById('player'); v.currentTime = 0.5;
               setTimeout(() => r(v.currentTime), 1500); })",
        )
        .await;
    assert!(sought.as_f64().is_some_and(|t| t < 4.0), "seeking back in a live recording: {sought}");
    assert!(live_observer.id().is_some(), "the live channel was still being recorded");

    if let Ok(dir) = std::env::var("COLONY_SCREENSHOTS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, path) in [
            ("overview", "/".to_owned()),
            ("channel", "/channels/tsdone".to_owned()),
            ("recording", format!("/recordings/{tsdone}")),
            ("recording-live", format!("/recordings/{tslive}")),
            ("jobs", "/jobs".to_owned()),
            ("cells", "/cells".to_owned()),
        ] {
            tab.open(&format!("{base}{path}")).await;
            if path.starts_with("/recordings/") {
                plays(&mut tab, name).await;
            }
            assert_eq!(tab.csp_violations().await, Vec::<String>::new(), "{path}");
            std::fs::write(format!("{dir}/{name}.png"), tab.screenshot().await).unwrap();
        }
    }
    // Every page checked in the browser too: no injected script ran anywhere,
    // and no page breaks its CSP.
    for path in ["/", "/channels/tsdone", "/jobs", "/cells"] {
        tab.open(&format!("{base}{path}")).await;
        assert_eq!(tab.csp_violations().await, Vec::<String>::new(), "{path}");
        assert_eq!(tab.eval("typeof window.pwned").await, json!("undefined"));
    }
    // The progress bars were sized by the page's script, not inline styles.
    tab.open(&format!("{base}/recordings/{tsdone}")).await;
    let laid_out = tab.eval("document.querySelector('#timeline .span-media').style.width").await;
    assert!(laid_out.as_str().is_some_and(|w| w.ends_with('%')), "{laid_out}");
}

/// A Prometheus started here scrapes the server, loads the rules and answers a query.
async fn prometheus_scrapes(base: &str) {
    let dir = tempfile::tempdir().unwrap();
    let target = base.trim_start_matches("http://");
    let alerts = repo("infra/prometheus/alerts.yml");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: colony\n    authorization: {{ credentials: {TOKEN} }}\n    \
             static_configs: [{{ targets: ['{target}'] }}]\n",
            alerts.display()
        ),
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus is not installed (apt-get install prometheus); .ci/run installs it");
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let value = colony_tests::eventually("Prometheus to scrape colony_recordings", SECS(60), || async {
        let answer: Value = reqwest::get(format!("{api}/query?query=colony_recordings%7Bstate%3D%22complete%22%7D"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        answer["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(value, "2");
    let rules: Value = reqwest::get(format!("{api}/rules")).await.unwrap().json().await.unwrap();
    let loaded = rules["data"]["groups"][0]["rules"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(loaded, 6, "Prometheus loaded the alert rules: {rules}");
}

/// With S3 storage (Garage here), the playlist the server renders names its
/// object links, each a redirect to a presigned URL signed for the endpoint
/// browsers use (--media-endpoint), so the browser fetches the media from
/// the store and the server never carries it. The player plays it that way.
#[tokio::test(flavor = "multi_thread")]
async fn s3_media_reaches_the_browser_through_presigned_urls() {
    tokio::time::timeout(SECS(180), async {
        let g = colony_tests::garage::garage();
        let ts = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::SMALL_480P)).await.unwrap();
        let source = LiveSource::start().await;
        source.add("s3chan", &ts, 6);
        let colony = Colony::new(Rig::garage(g).await);
        let rig = &colony.rig;
        let channel = rig.channel("s3chan", &source.media_url("s3chan")).await;
        let (cell, a) = rig.assign(channel).await;
        let observer = rig.observer(channel, "s3chan", cell, a, &["--standby", "1s"]);
        rig.wait_segments(a.recording_id, 6, SECS(60)).await;
        source.end("s3chan");
        let (code, stderr) = wait_exit(observer, SECS(60)).await;
        assert_eq!(code, Some(0), "{stderr}");

        // Browsers reach the store by another name than the server does.
        let public = g.endpoint.replace("127.0.0.1", "localhost");
        let (_server, base) = serve(&colony, Some(TOKEN), &[("COLONY_MEDIA_ENDPOINT", &public)]).await;
        let (status, playlist) =
            get(&format!("{base}/media/recordings/{}/playlist.m3u8", a.recording_id), Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK);
        // Defect: every playlist request presigned every segment. The
        // playlist names this server's object links, which cost no signing.
        let uris: Vec<&str> = playlist.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert!(!uris.is_empty(), "{playlist}");
        let links = format!("/media/recordings/{}/objects/", a.recording_id);
        for uri in &uris {
            assert!(uri.starts_with(&links) && !uri.contains("X-Amz-Signature="), "{uri}");
        }
        // An object link is a redirect to the store, presigned for the
        // endpoint browsers use: the media never passes through the server.
        let link = client().get(format!("{base}{}", uris[0])).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(link.status(), StatusCode::TEMPORARY_REDIRECT);
        let presigned = link.headers()["location"].to_str().unwrap().to_owned();
        assert!(presigned.starts_with(&public) && presigned.contains("X-Amz-Signature="), "{presigned}");
        // Anyone holding the presigned URL gets the bytes, with no token of ours.
        let rows = rig.rows(a.recording_id).await;
        let key = colony::storage::ObjectKey::parse(rows[0].object_key.as_deref().unwrap()).unwrap();
        assert!(uris[0].ends_with(key.as_str()), "{} names {key}", uris[0]);
        let stored = colony::storage::get_bytes(rig.store.as_ref(), &key).await.unwrap();
        let fetched = reqwest::get(&presigned).await.unwrap();
        assert_eq!(fetched.status(), StatusCode::OK);
        assert_eq!(fetched.bytes().await.unwrap(), stored);

        // The player fetches the segments from another origin (the store):
        // the bucket must allow it, as docs/OPERATIONS.md tells operators.
        g.allow_cors_get().await;
        let browser = Browser::start().await;
        let mut tab = browser.tab().await;
        sign_in(&mut tab, &base, TOKEN).await;
        tab.open(&format!("{base}/recordings/{}", a.recording_id)).await;
        plays(&mut tab, "S3 (presigned)").await;
        // The store's origin is in the CSP, and nothing else was needed.
        assert_eq!(tab.csp_violations().await, Vec::<String>::new());
    })
    .await
    .expect("the test took over 3 minutes");
}
