//! The trust boundaries (issue 22), tried as an attacker would try them.
//!
//! Each test names the finding it answers; each failed on the code before
//! the fix (`docs/SECURITY.md` lists them with the threat they belong to):
//!
//! 1. a resolver stored in a row ran commands through the real programs'
//!    abbreviated options, bundled flags and `@argfiles`;
//! 2. a cell inherited the mothership's whole environment, platform
//!    credentials and web token included;
//! 3. a web page could drive a token-less dashboard by rebinding its own
//!    name to 127.0.0.1;
//! 5. the smaller ones: shown resolver templates, the login cookie, the
//!    rate limits and headers, the redirect filter, webhooks to private
//!    addresses, receivers' answers and mentions, source names that
//!    resolve inside the network, and event streams without a cap.
//!
//! (Finding 4, the roles, is `tests/roles.rs`; the ffmpeg arguments are
//! unit tests in `harvest-cell`.) The resolvers are the pinned yt-dlp and
//! streamlink of `Dockerfiles/resolvers.txt`, as `.ci/run` installs them:
//! their real parsers are what the allow-list must hold against.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use colony::queue::{NewJob, Queue};
use colony_tests::live::{Container, LiveSource, Profile, media};
use colony_tests::mothership::Colony;
use colony_tests::observer::{Rig, wait_exit};
use colony_tests::web::serve;
use colony_tests::webhook_receiver::Receiver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECS: fn(u64) -> Duration = Duration::from_secs;
const TOKEN: &str = "trust-test-token-0123456789abcdefghij";

/// A program of the pinned resolvers: `~/.cache/colony/resolvers/bin`
/// (where `.ci/run` installs them), else `PATH`.
fn resolver_program(name: &str) -> PathBuf {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    let venv = home.join(".cache/colony/resolvers/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; .ci/run installs the pinned resolvers"))
}

/// `PATH` with the pinned resolvers first.
fn resolver_path() -> String {
    let dir = resolver_program("yt-dlp").parent().unwrap().display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

async fn test_media() -> colony_tests::live::Media {
    tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap()
}

fn one_line(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Finding 1: `channel add … --resolver "yt-dlp --netrc-c 'touch /tmp/p' -g
/// {url}"` was accepted, and the next tick ran it. The seven templates the
/// review tried, each refused now: a row names a profile, and a profile's
/// template, from the host, is held to its program's exact options.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_names_a_resolver_and_never_carries_one() {
    let colony = Colony::new(Rig::file().await);
    let source = LiveSource::start().await;
    let clip = test_media().await;
    source.add("good", &clip, 6);
    source.add("evil", &clip, 6);
    let marker = colony.logs.path().join("pwned");
    let m = marker.display().to_string();
    std::fs::write(format!("{m}.args"), "logfile=/tmp/colony-trust-pwned\n").unwrap();
    let templates = [
        format!("yt-dlp --netrc-c 'touch {m}' -g {{url}}"),
        format!("yt-dlp --exec-b 'touch {m}' --skip-d -g --no-simul {{url}}"),
        format!("yt-dlp --outp {m} -g {{url}}"),
        format!("streamlink --logf {m} --stream-url {{url}} best"),
        format!("yt-dlp --config-loc {m}.conf -g {{url}}"),
        format!("streamlink -fo {m} {{url}} best"),
        format!("streamlink @{m}.args --stream-url {{url}} best"),
    ];
    let resolvers = format!("printf,yt-dlp,streamlink,{}", resolver_program("yt-dlp").display());
    let with_resolvers = |cmd: &mut tokio::process::Command| {
        cmd.env("PATH", resolver_path()).env("COLONY_RESOLVERS", &resolvers);
    };
    for (i, template) in templates.iter().enumerate() {
        let login = format!("evil{i}");
        let mut add = colony.command(&[
            "channel",
            "add",
            "--login",
            &login,
            "--source-url",
            &source.media_url("evil"),
            "--resolver",
            template,
        ]);
        with_resolvers(&mut add);
        let out = add.stderr(Stdio::piped()).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{template} was accepted: {}", one_line(&out));
        let line = one_line(&out);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.contains("profile") && line.contains("COLONY_RESOLVER_"), "{line}");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM channels").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(stored, 0, "no row carries a command");

    // The host defines two profiles: a plain one, which the real yt-dlp
    // runs here, and one with an abbreviated option that would run a
    // command (`--exec-b` is `--exec-before-download` to yt-dlp).
    let profiles =
        [("COLONY_RESOLVER_GOOD", "yt-dlp -g {url}".to_owned()), ("COLONY_RESOLVER_EVIL", templates[1].clone())];
    for (login, profile) in [("good", "good"), ("evil", "evil")] {
        let mut add = colony.command(&[
            "channel",
            "add",
            "--login",
            login,
            "--source-url",
            &source.media_url(login),
            "--resolver",
            profile,
        ]);
        with_resolvers(&mut add);
        let out = add.envs(profiles.iter().map(|(k, v)| (*k, v.as_str()))).stderr(Stdio::piped()).output().await;
        let out = out.unwrap();
        assert!(out.status.success(), "{}", one_line(&out));
    }
    let mut env: Vec<(&str, String)> = profiles.iter().map(|(k, v)| (*k, v.clone())).collect();
    env.push(("PATH", resolver_path()));
    env.push(("COLONY_RESOLVERS", resolvers.clone()));
    // No observer: the probe alone is what ran the stored commands.
    env.push(("COLONY_MAX_OBSERVERS", "0".into()));
    let report = colony.tick_env(&[], &env).await;
    assert_eq!(report["probes"]["probed"], 2, "{report:#}");
    let probes: Vec<(String, bool, Option<String>)> =
        sqlx::query_as("SELECT login, live, probe_error FROM channels ORDER BY login")
            .fetch_all(&colony.rig.pool)
            .await
            .unwrap();
    assert_eq!(probes[1], ("good".to_owned(), true, None), "the real yt-dlp resolves here: {probes:?}");
    let (_, live, error) = &probes[0];
    let error = error.clone().unwrap_or_default();
    assert!(!live && error.contains("--exec-b") && error.contains("refused"), "{error}");
    assert!(!marker.exists(), "a resolver ran a command");
    assert!(!std::path::Path::new("/tmp/colony-trust-pwned").exists(), "an @argfile was read");
}

/// The environment of a process, from /proc.
fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Finding 2: a harvest cell started by `mothership tick` carried the
/// platform secrets, the web token and an unrelated host variable, and so
/// did every program it ran. Now the cell has its contract (its role's
/// database URL among it) and its programs less still.
#[tokio::test(flavor = "multi_thread")]
async fn a_cell_and_its_programs_get_the_contract_and_nothing_else() {
    let colony = Colony::new(Rig::file().await);
    // A resolver that writes down the environment it was given.
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump-env");
    std::fs::write(&dump, "#!/bin/sh\nenv > \"$0.env\"\nprintf '%s\\n' \"$1\"\n").unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let channel = colony.rig.channel("past", "http://unused.invalid/").await;
    Queue::new(colony.rig.pool.clone())
        .enqueue(&NewJob::new(
            "vod_download",
            serde_json::json!({ "url": "http://127.0.0.1:9/vod.m3u8", "channel_id": channel, "resolver": "dump" }),
        ))
        .await
        .unwrap();
    let secrets = [
        ("COLONY_TWITCH_CLIENT_ID", "twitch-id-s3cret"),
        ("COLONY_TWITCH_CLIENT_SECRET", "twitch-s3cret"),
        ("COLONY_YOUTUBE_API_KEY", "youtube-s3cret"),
        ("COLONY_KICK_CLIENT_ID", "kick-id-s3cret"),
        ("COLONY_KICK_CLIENT_SECRET", "kick-s3cret"),
        ("COLONY_WEB_TOKEN", TOKEN),
        ("UNRELATED_HOST_SECRET", "host-s3cret"),
    ];
    let mut env: Vec<(&str, String)> = secrets.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.push(("COLONY_RESOLVER_DUMP", format!("{} {{url}}", dump.display())));
    env.push(("COLONY_RESOLVERS", format!("printf,{}", dump.display())));
    env.push(("HARVEST_IDLE_EXIT", "60s".into()));
    let report = colony.tick_env(&[], &env).await;
    assert_eq!(report["harvest_started"], 1, "{report:#}");
    let (_, pid, _) = colony.active("harvest").await.pop().expect("a harvest cell");
    let pid: u32 = pid.expect("its pid").parse().unwrap();
    let cell = colony_tests::eventually("the cell's environment", SECS(10), || async {
        let env = environ(pid);
        (!env.is_empty()).then_some(env)
    })
    .await;
    for (name, value) in &secrets {
        assert!(!cell.iter().any(|(k, v)| k == name || v.contains(value)), "the cell got {name}: {cell:?}");
    }
    let url = cell.iter().find(|(k, _)| k == "DATABASE_URL").map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(url.starts_with("postgres://colony_test_harvest@"), "the cell connects as its role: {url}");
    assert!(cell.iter().any(|(k, _)| k == "COLONY_RESOLVER_DUMP"), "profiles are in the contract: {cell:?}");

    // The resolver the cell ran got less still: no database URL, no keys.
    let written = dump.with_extension("env");
    let child = colony_tests::eventually("the resolver to run", SECS(30), || async {
        std::fs::read_to_string(&written).ok().filter(|t| t.contains("PATH="))
    })
    .await;
    for line in child.lines() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            !(name == "DATABASE_URL" || name.starts_with("AWS_") || name.starts_with("COLONY_")),
            "a resolver got {name}:\n{child}"
        );
    }
    colony.kill_cells().await;
}

/// One request with a `Host` and headers of the caller's choosing; the
/// status, the headers and the body.
async fn raw(base: &str, request_line: &str, host: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{request_line} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    let status = answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Finding 3: with no token (the default on loopback), a request naming a
/// foreign `Host` got the CSRF token and the channels, and a POST with a
/// foreign `Origin` and that token added a channel: a page that rebinds its
/// name to 127.0.0.1 drove the dashboard through the visitor's browser.
#[tokio::test(flavor = "multi_thread")]
async fn a_web_page_cannot_drive_a_tokenless_dashboard() {
    let colony = Colony::new(Rig::file().await);
    let (_server, base) = serve(&colony, None, &[]).await;
    let here = base.trim_start_matches("http://").to_owned();
    let port = here.rsplit(':').next().unwrap().to_owned();
    let evil = format!("evil.example:{port}");
    for path in ["/api/v1/csrf", "/api/v1/channels", "/", "/metrics"] {
        let (status, answer) = raw(&base, &format!("GET {path}"), &evil, &[], "").await;
        assert_eq!(status, 421, "GET {path} for a foreign host: {answer}");
        assert!(!answer.contains("csrf\":"), "{answer}");
    }
    // The token a page of this site would see.
    let (status, answer) = raw(&base, "GET /api/v1/csrf", &here, &[], "").await;
    assert_eq!(status, 200, "{answer}");
    let csrf = answer.split("\"csrf\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    let form = format!("csrf={csrf}&url=http%3A%2F%2F127.0.0.1%3A9%2Fx.m3u8&login=planted");
    let post = |host: String, headers: Vec<(&'static str, String)>| {
        let (base, form) = (base.clone(), form.clone());
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
            all.extend(headers);
            raw(&base, "POST /api/v1/channels", &host, &all, &form).await.0
        }
    };
    assert_eq!(post(evil.clone(), vec![]).await, 421, "a foreign host");
    assert_eq!(post(here.clone(), vec![("Origin", "http://evil.example".into())]).await, 403, "a foreign origin");
    assert_eq!(post(here.clone(), vec![("Origin", "null".into())]).await, 403, "an opaque origin");
    assert_eq!(post(here.clone(), vec![("Sec-Fetch-Site", "cross-site".into())]).await, 403, "a cross-site fetch");
    let planted: i64 = sqlx::query_scalar("SELECT count(*) FROM channels").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(planted, 0, "a refused POST added a channel");
    // This site's own form still works.
    assert_eq!(post(here.clone(), vec![("Origin", format!("http://{here}"))]).await, 303);
    let added: i64 = sqlx::query_scalar("SELECT count(*) FROM channels").fetch_one(&colony.rig.pool).await.unwrap();
    assert_eq!(added, 1);
}

/// Finding 5, the dashboard's: the cookie held the raw token for ever, any
/// non-empty token was accepted, nothing limited guesses, no security
/// header was sent, `next=/\evil.example/phish` left the site, and every
/// open event stream cost a query a second, with no cap.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_signs_sessions_limits_guesses_and_sends_its_headers() {
    let colony = Colony::new(Rig::file().await);
    // A token anyone could guess is refused at start, in one line.
    let mut short = colony.command(&["serve", "--bind", "127.0.0.1:0"]);
    short.env("COLONY_WEB_TOKEN", "x").stderr(Stdio::piped()).kill_on_drop(true);
    let out = tokio::time::timeout(SECS(20), short.output()).await.expect("a short token was accepted").unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", one_line(&out));
    assert!(one_line(&out).contains("at least 32"), "{}", one_line(&out));

    let (_server, base) = serve(&colony, Some(TOKEN), &[("COLONY_WEB_MAX_STREAMS", "2")]).await;
    let here = base.trim_start_matches("http://").to_owned();
    let login = |token: &str, headers: &[(&str, &str)]| {
        let (base, here, body) = (base.clone(), here.clone(), format!("token={token}"));
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        let all: Vec<(String, String)> = all.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        async move {
            let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            raw(&base, "POST /login", &here, &all, &body).await
        }
    };
    let (status, answer) = login(TOKEN, &[]).await;
    assert_eq!(status, 303, "{answer}");
    let cookie = answer.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap().to_owned();
    assert!(!cookie.contains(TOKEN), "the cookie holds the token: {cookie}");
    for part in ["colony_session=", "HttpOnly", "SameSite=Strict", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{part} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let (_, over_https) = login(TOKEN, &[("X-Forwarded-Proto", "https")]).await;
    assert!(over_https.lines().any(|l| l.starts_with("set-cookie:") && l.contains("; Secure")), "{over_https}");
    let session = cookie.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_owned();
    let get = |path: &str, headers: Vec<(&'static str, String)>| {
        let (base, here, path) = (base.clone(), here.clone(), path.to_owned());
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw(&base, &format!("GET {path}"), &here, &headers, "").await
        }
    };
    assert_eq!(get("/api/v1/status", vec![("Cookie", session.clone())]).await.0, 200);
    assert_eq!(get("/api/v1/status", vec![("Cookie", format!("colony_session={TOKEN}"))]).await.0, 401);
    assert_eq!(get("/api/v1/status", vec![("Cookie", format!("colony_token={TOKEN}"))]).await.0, 401);

    // Every answer carries the headers; the CSP allows no inline code.
    for path in ["/login", "/healthz", "/api/v1/status"] {
        let (_, answer) = get(path, vec![("Authorization", format!("Bearer {TOKEN}"))]).await;
        let lower = answer.to_ascii_lowercase();
        for header in [
            "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self';",
            "frame-ancestors 'none'",
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(lower.contains(header), "{path} lacks {header}: {answer}");
        }
        assert!(!lower.contains("unsafe-inline"), "{answer}");
    }

    // A form's `next` stays on the site, however it is spelled.
    let (_, csrf) = get("/api/v1/csrf", vec![("Cookie", session.clone())]).await;
    let csrf = csrf.split("\"csrf\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    colony.rig.channel("chan", "http://127.0.0.1:9/x.m3u8").await;
    for next in ["/%5Cevil.example/phish", "%2F%2Fevil.example", "/%09/evil.example"] {
        let body = format!("csrf={csrf}&next={next}");
        let headers =
            [("Cookie", session.as_str()), ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", &base)];
        let (status, answer) = raw(&base, "POST /api/v1/channels/chan/enable", &here, &headers, &body).await;
        assert_eq!(status, 303, "{answer}");
        assert!(answer.lines().any(|l| l.eq_ignore_ascii_case("location: /")), "{next}: {answer}");
    }

    // At most --max-streams event streams at once.
    let client = reqwest::Client::new();
    let open = || client.get(format!("{base}/api/v1/jobs/events")).bearer_auth(TOKEN).send();
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    assert_eq!(open().await.unwrap().status().as_u16(), 503, "a third stream was let in");
    drop((a, b));
    colony_tests::eventually("a slot to free up", SECS(10), || async {
        (open().await.unwrap().status().as_u16() == 200).then_some(())
    })
    .await;

    // Guesses: ten wrong tokens from one address, then even the right one waits.
    for _ in 0..10 {
        assert_eq!(login("wrong-token", &[]).await.0, 401);
    }
    let (status, answer) = login(TOKEN, &[]).await;
    assert_eq!(status, 429, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 60"), "{answer}");
    let (status, _) = get("/api/v1/status", vec![("Authorization", "Bearer wrong".into())]).await;
    assert_eq!(status, 429, "bearer guesses share the limit");
}

/// Finding 5: `/api/v1/channels`, `/api/v1/status`, `channel list --json`
/// and `status --json` showed resolver templates, with the credentials
/// operators put in them (`--twitch-api-header 'Authorization=OAuth …'`).
#[tokio::test(flavor = "multi_thread")]
async fn resolver_credentials_are_never_shown() {
    let colony = Colony::new(Rig::file().await);
    let template = "streamlink --twitch-api-header 'Authorization=OAuth s3cr3t0auth' --stream-url {url} best";
    let add = |resolver: &str| {
        let mut cmd = colony.command(&["channel", "add", "https://www.twitch.tv/someone", "--resolver", resolver]);
        cmd.env("COLONY_RESOLVER_WITH_HEADER", template).stderr(Stdio::piped());
        cmd
    };
    let by_template = add(template).output().await.unwrap();
    assert_eq!(by_template.status.code(), Some(2), "a template was stored");
    assert!(!one_line(&by_template).contains("s3cr3t0auth"), "the refusal shows it: {}", one_line(&by_template));
    let by_profile = add("with_header").output().await.unwrap();
    assert!(by_profile.status.success(), "{}", one_line(&by_profile));
    let (_server, base) = serve(&colony, None, &[("COLONY_RESOLVER_WITH_HEADER", template)]).await;
    let mut shown = Vec::new();
    for args in [&["channel", "list", "--json"][..], &["status", "--json"][..]] {
        let mut cmd = colony.command(args);
        cmd.env("COLONY_RESOLVER_WITH_HEADER", template);
        shown.push(String::from_utf8_lossy(&cmd.output().await.unwrap().stdout).into_owned());
    }
    for path in ["/api/v1/channels", "/api/v1/status"] {
        shown.push(reqwest::get(format!("{base}{path}")).await.unwrap().text().await.unwrap());
    }
    for text in &shown {
        assert!(text.contains("with_header"), "the profile's name is shown: {text}");
        assert!(!text.contains("s3cr3t0auth") && !text.contains("OAuth"), "a credential is shown: {text}");
    }
    // The check of a host's resolvers shows the template with its values hidden.
    let check = colony
        .rig
        .cell("observer-cell")
        .env("COLONY_RESOLVER_WITH_HEADER", template)
        .env("COLONY_RESOLVERS", "streamlink")
        .arg("--check")
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("profile with_header: `streamlink --twitch-api-header ***"), "{report}");
    assert!(!report.contains("s3cr3t0auth"), "{report}");
}

/// Finding 5, webhooks: a hook could target loopback, private, link-local
/// and metadata addresses; a receiver's answer went whole into the job's
/// error; a Discord title with `@everyone` pinged the whole server.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_reach_only_where_they_are_meant_and_say_only_so_much() {
    let colony = Colony::new(Rig::file().await);
    let pool = colony.rig.pool.clone();
    for (url, extra) in [
        ("http://127.0.0.1:9/hook", &[][..]),
        ("http://localhost:9/hook", &[][..]),
        ("http://10.1.2.3/hook", &[][..]),
        ("http://[::1]:9/hook", &[][..]),
        ("http://169.254.169.254/latest/meta-data", &["--allow-private"][..]),
    ] {
        let mut args = vec!["webhook", "add", url];
        args.extend_from_slice(extra);
        let out = colony.command(&args).stderr(Stdio::piped()).output().await.unwrap();
        assert_eq!(out.status.code(), Some(2), "{url} was accepted");
        assert!(one_line(&out).contains("--allow-private"), "{}", one_line(&out));
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhooks").fetch_one(&pool).await.unwrap();
    assert_eq!(count, 0);

    // A hook whose name now resolves inside the network (a row written by
    // hand, or DNS that changed its answer since `add`): refused at delivery.
    let receiver = Receiver::start(0).await;
    let port = receiver.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let insert = "INSERT INTO webhooks (url, events, format, secret) VALUES ($1, $2, $3, $4) RETURNING id";
    let rebound: i64 = sqlx::query_scalar(insert)
        .bind(format!("http://localhost:{port}/hook"))
        .bind(vec!["recording.failed"])
        .bind("json")
        .bind(secret)
        .fetch_one(&pool)
        .await
        .unwrap();
    // A receiver that answers a long, noisy refusal.
    let noisy = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            let body = format!("<html>\x1b[31m{}\n\tsee https://internal.example/x?token=abc</html>", "A".repeat(3000));
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, body)
        }),
    );
    let (noisy_addr, _noisy) = colony_tests::serve_loopback(noisy).await;
    let add = |url: String, format: &'static str| {
        let colony = &colony;
        async move {
            let out = colony
                .run(&["webhook", "add", &url, "--allow-private", "--events", "recording.failed", "--format", format])
                .await;
            assert!(out.status.success(), "{}", one_line(&out));
        }
    };
    add(format!("http://{noisy_addr}/hook"), "json").await;
    let discord = Receiver::start(0).await;
    add(discord.url.clone(), "discord").await;

    // A recording fails with an error that mentions everyone (a source's or
    // a platform's words end up in such texts, as titles do).
    let channel = colony.rig.channel("loud", "http://127.0.0.1:9/x.m3u8").await;
    let (_, failing) = colony.rig.assign(channel).await;
    colony::recording::rows::fail(&pool, failing.recording_id, failing.lease_token, "@everyone **free** <@&123>")
        .await
        .unwrap();
    let states = colony_tests::eventually("every delivery to end its first attempt", SECS(60), || async {
        colony.tick(&[]).await;
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT unique_key, state::text, last_error FROM jobs WHERE kind = 'webhook' ORDER BY unique_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        (rows.len() == 3 && rows.iter().all(|(_, s, _)| s != "available" && s != "running")).then_some(rows)
    })
    .await;
    let of = |hook: i64| states.iter().find(|(k, ..)| k.starts_with(&format!("webhook:{hook}:"))).unwrap().clone();
    let (_, state, error) = of(rebound);
    assert_eq!(state, "dead", "an address refused stays refused: {error:?}");
    assert!(error.unwrap_or_default().contains("--allow-private"), "the error says why");
    assert!(receiver.deliveries().is_empty(), "the receiver inside the network was reached");
    let (_, _, error) = states.iter().find(|(_, s, _)| s == "retryable").cloned().expect("the noisy one retries");
    let error = error.unwrap_or_default();
    assert!(error.contains("answered 500: <html>") && error.chars().count() <= 150, "{error}");
    assert!(
        !error.contains('\x1b') && !error.contains("token=abc") && !error.contains("AAAAAAAAAA".repeat(10).as_str())
    );
    let body = discord.deliveries().first().expect("the discord hook got it").body.clone();
    assert_eq!(body["allowed_mentions"], serde_json::json!({ "parse": [] }), "{body}");
    let line = body["content"].as_str().unwrap();
    assert!(line.contains("recording") && line.contains("failed"), "{line}");
    assert!(!line.contains("@everyone") && !line.contains("<@&") && line.contains("\\*\\*free"), "{line}");
}

/// Finding 5, sources: a source whose public name later resolved to
/// 127.0.0.1 or 10.x (DNS rebinding) had the observer store an internal
/// service's replies as segments. A name must resolve to a public address
/// unless the channel allows it; a literal address still works.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_name_never_leads_inside_the_network_unless_allowed() {
    let source = LiveSource::start().await;
    let clip = test_media().await;
    source.add("rebound", &clip, 4);
    source.add("allowed", &clip, 4);
    let rig = Rig::file().await;
    // The source as a name that resolves to loopback, as a rebound public name would.
    let by_name = |name: &str| source.media_url(name).replace("127.0.0.1", "localhost");
    let rebound = rig.channel("rebound", &by_name("rebound")).await;
    let allowed = rig.channel("allowed", &by_name("allowed")).await;
    sqlx::query("UPDATE channels SET allowed_hosts = '{localhost}' WHERE id = $1")
        .bind(allowed)
        .execute(&rig.pool)
        .await
        .unwrap();
    let (cell, a) = rig.assign(allowed).await;
    let ok = rig.observer(allowed, "allowed", cell, a, &["--standby", "1s"]);
    let (cell, b) = rig.assign(rebound).await;
    let refused = rig.observer(rebound, "rebound", cell, b, &["--standby", "1s"]);
    rig.wait_segments(a.recording_id, 3, SECS(60)).await;
    // By now the refused observer had as long: the origin must not have
    // been asked for anything of its.
    assert!(source.segment_requests("rebound").is_empty(), "the origin was asked for a segment");
    let (_, stderr) = wait_exit(refused, SECS(90)).await;
    assert!(stderr.contains("--allow-host localhost"), "the observer says why: {stderr}");
    let stored = rig.rows(b.recording_id).await.iter().filter(|r| !r.is_gap).count();
    assert_eq!(stored, 0, "a segment was stored from a name that resolves inside the network");
    drop(ok);
}
