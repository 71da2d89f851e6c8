//! `mothership up`: a whole colony on this machine with embedded defaults, for
//! a first look and for small single-machine archives. A private Postgres
//! cluster under `--dir` (initdb + pg_ctl), `file://` storage beside it, the
//! `process` launcher, and the tick loop in this process. With no channel
//! configured it adds a demo channel broadcast by ffmpeg and served on
//! loopback. Ctrl-C stops the loop, then the cells (observers finalize their
//! recordings as interrupted), then Postgres; running it again picks up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser};
use colony::exit::Exit;
use colony::mothership::admin::{self, ChannelUpdate, NewChannel};
use colony::mothership::launcher::Launcher;
use colony::mothership::launcher::process::{ProcessArgs, ProcessLauncher};
use sqlx::PgPool;
use tokio::process::{Child, Command};

use crate::{Setup, TickArgs};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Where this colony lives: its Postgres cluster, media, cell logs and spool.
    /// Created on first use; running again with the same directory picks up.
    #[arg(long, env = "COLONY_HOME", default_value = ".colony", value_name = "DIR")]
    dir: PathBuf,
    /// Neither add nor broadcast the demo channel.
    #[arg(long, env = "COLONY_UP_NO_DEMO")]
    no_demo: bool,
    /// How long the demo channel broadcasts before its stream ends.
    #[arg(long, env = "COLONY_UP_DEMO_LENGTH", default_value = "60s", value_name = "DURATION")]
    demo_length: humantime::Duration,
    /// Time from the start of one tick to the start of the next.
    #[arg(long, env = "COLONY_UP_EVERY", default_value = "5s", value_name = "DURATION")]
    every: humantime::Duration,
    /// Never run apt-get, even as root; say what to install instead.
    #[arg(long, env = "COLONY_UP_NO_INSTALL")]
    no_install: bool,
}

/// Defaults that make a single machine feel responsive; each applies only
/// when its variable is not already set, so an operator's setting wins.
const LOOP_DEFAULTS: &[(&str, &str, &str)] = &[
    ("--probe-every", "COLONY_PROBE_EVERY", "5s"),
    ("--scale-down-window", "COLONY_SCALE_DOWN_WINDOW", "30s"),
    ("--idle-cooldown", "COLONY_IDLE_COOLDOWN", "30s"),
    ("--max-harvest", "COLONY_MAX_HARVEST", "2"),
];
const CELL_DEFAULTS: &[(&str, &str)] =
    &[("OBSERVER_STANDBY", "30s"), ("HARVEST_IDLE_EXIT", "30s"), ("HARVEST_POLL", "2s")];

const DEMO: &str = "demo";

struct Layout {
    root: PathBuf,
    cluster: PathBuf,
    media: PathBuf,
    logs: PathBuf,
    spool: PathBuf,
    demo: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Exit::config(format!("cannot create {}: {e}", dir.display())))?;
        let root = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
        let layout = Self {
            cluster: root.join("postgres"),
            media: root.join("media"),
            logs: root.join("logs"),
            spool: root.join("spool"),
            demo: root.join("demo"),
            root,
        };
        for d in [&layout.media, &layout.logs, &layout.spool, &layout.demo] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(layout)
    }
}

fn say(line: impl AsRef<str>) {
    println!("{} {}", chrono::Local::now().format("%H:%M:%S"), line.as_ref());
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<()> {
    let layout = Layout::new(&args.dir)?;
    let tools = Tools::find_or_install(!args.no_install, !args.no_demo).await?;
    let pg = Cluster { dir: layout.cluster.clone(), bin: tools.pg_bin.clone(), logs: layout.logs.clone() };
    let database_url = pg.start().await?;
    let storage_url =
        std::env::var("COLONY_STORAGE_URL").unwrap_or_else(|_| format!("file://{}", layout.media.display()));
    write_env_file(&layout, &database_url, &storage_url)?;

    // The tick loop's arguments, parsed as `mothership run` would parse them.
    #[derive(Parser)]
    struct Loop {
        #[command(flatten)]
        tick: TickArgs,
    }
    let logs = layout.logs.display().to_string();
    let mut argv = vec!["up", "--database-url", &database_url, "--launcher", "process", "--process-log-dir", &logs];
    for (flag, var, value) in LOOP_DEFAULTS {
        if std::env::var_os(var).is_none() {
            argv.extend([*flag, *value]);
        }
    }
    let mut tick_args = Loop::try_parse_from(argv).map_err(|e| Exit::config(e.to_string()))?.tick;
    tick_args.cell_env.push(("COLONY_STORAGE_URL".into(), storage_url.clone()));
    tick_args.cell_env.push(("COLONY_SPOOL_DIR".into(), layout.spool.display().to_string()));
    for (var, value) in CELL_DEFAULTS {
        if std::env::var_os(var).is_none() {
            tick_args.cell_env.push(((*var).into(), (*value).into()));
        }
    }
    let setup = Setup::new(&tick_args).await?;
    let pool = setup.pool.clone();

    let demo = if args.no_demo { None } else { Demo::start(&pool, &layout, &tools, args.demo_length.into()).await? };
    let existing: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM decisions").fetch_one(&pool).await?;
    let mut narrator = Narrator::new(&pool, &layout, existing).await?;

    say(format!("Colony is up in {}", layout.root.display()));
    say(format!("  postgres  {} (log: {})", redact(&database_url), layout.logs.join("postgres.log").display()));
    say(format!("  storage   {storage_url}"));
    say(format!("  cells     process launcher; logs in {}", layout.logs.display()));
    say(format!("  ticking   every {}; Ctrl-C stops everything cleanly", args.every));
    say("Add a real channel from another terminal:");
    say(format!("  set -a; . {}; set +a", layout.root.join("env").display()));
    say(format!(
        "  {} channel add --login NAME --source-url https://…/live.m3u8",
        std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "mothership".into())
    ));

    let stop = crate::stop_signal()?;
    let ticking = crate::tick_loop(&setup, &tick_args, args.every.into(), |_| {}, stop);
    tokio::pin!(ticking);
    let mut look = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut ticking => break,
            _ = look.tick() => {
                if let Err(e) = narrator.look().await {
                    tracing::warn!(error = %format!("{e:#}"), "reading progress failed");
                }
            }
        }
    }

    say("stopping: the tick loop has ended; now the cells, then the demo source and Postgres");
    stop_cells(&setup, &layout).await;
    narrator.look().await.ok();
    if let Some(demo) = demo {
        demo.stop().await;
    }
    setup.pool.close().await;
    pg.stop().await?;
    say(format!(
        "stopped cleanly. Run the same command again to pick up where it left off ({}).",
        layout.root.display()
    ));
    Ok(())
}

fn redact(url: &str) -> String {
    colony::config::DatabaseUrl::parse(url).map(|u| u.to_string()).unwrap_or_default()
}

/// `<dir>/env`: the variables other `mothership` commands need for this colony.
fn write_env_file(layout: &Layout, database_url: &str, storage_url: &str) -> anyhow::Result<()> {
    let text = format!(
        "# Written by `mothership up`: source it to run other commands against this colony.\n\
         DATABASE_URL={database_url}\nCOLONY_STORAGE_URL={storage_url}\nCOLONY_SPOOL_DIR={}\n",
        layout.spool.display()
    );
    write_private(&layout.root.join("env"), &text)
}

/// SIGTERM every cell this colony's process launcher runs, wait for them to
/// finish (observers finalize their recordings), and kill what outlives the wait.
async fn stop_cells(setup: &Setup, layout: &Layout) {
    let args = ProcessArgs {
        process_observer_bin: None,
        process_harvest_bin: None,
        process_log_dir: Some(layout.logs.clone()),
    };
    let Ok(launcher) = ProcessLauncher::new(setup.instance, &args) else { return };
    let cells = launcher.list().await.unwrap_or_default();
    if cells.is_empty() {
        return;
    }
    say(format!("stopping {} cell(s); observers finalize their recordings first", cells.len()));
    for cell in &cells {
        let _ = launcher.stop(&cell.backend_ref, cell.cell_id, "mothership up is stopping").await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let left = launcher.list().await.unwrap_or_default();
        if left.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            say(format!("{} cell(s) outlived 90s; killing them (their work is handed back)", left.len()));
            for cell in &left {
                let _ = launcher.reap(&cell.backend_ref, cell.cell_id, "did not stop within 90s").await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------- tools ----

struct Tools {
    pg_bin: PathBuf,
    ffmpeg: bool,
}

impl Tools {
    async fn find_or_install(may_install: bool, need_ffmpeg: bool) -> anyhow::Result<Self> {
        let mut missing = Vec::new();
        if pg_bin_dir().is_none() {
            missing.push("postgresql");
        }
        let ffmpeg = which("ffmpeg");
        if !ffmpeg {
            missing.push("ffmpeg");
        }
        if !missing.is_empty() {
            let root = nix::unistd::Uid::effective().is_root();
            if !(may_install && root && which("apt-get")) {
                let list = missing.join(" ");
                return Err(Exit::config(format!(
                    "missing Debian package(s): {list}; install them with `sudo apt-get install {list}` \
                     (or run `mothership up` as root to let it do so)"
                ))
                .into());
            }
            say(format!("installing {} with apt-get (needed once)", missing.join(", ")));
            for args in
                [vec!["update", "-q"], [&["install", "-y", "-q", "--no-install-recommends"][..], &missing].concat()]
            {
                let status = std::process::Command::new("apt-get")
                    .args(&args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .context("running apt-get")?;
                if !status.success() {
                    bail!("apt-get {} failed ({status})", args.join(" "));
                }
            }
        }
        let pg_bin = pg_bin_dir().context("PostgreSQL's initdb is still missing after installing postgresql")?;
        let ffmpeg = which("ffmpeg");
        if need_ffmpeg && !ffmpeg {
            bail!("ffmpeg is still missing after installing it");
        }
        Ok(Self { pg_bin, ffmpeg })
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding initdb, or the
/// directory of an `initdb` on PATH.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).or_else(|| {
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths).find(|dir| dir.join("initdb").is_file())
    })
}

// ------------------------------------------------------------- postgres ----

/// The private cluster: `<dir>/postgres/data`, listening on 127.0.0.1 only,
/// with a generated password (`<dir>/postgres/password`, mode 0600).
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    logs: PathBuf,
}

impl Cluster {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// initdb refuses to run as root; the cluster then belongs to `postgres`.
    fn command(&self, tool: &str) -> std::process::Command {
        let exe = self.bin.join(tool);
        if nix::unistd::Uid::effective().is_root() {
            let mut cmd = std::process::Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            std::process::Command::new(exe)
        }
    }

    fn run(&self, what: &str, cmd: &mut std::process::Command) -> anyhow::Result<()> {
        let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
            bail!("{what} failed ({}): {last}", out.status);
        }
        Ok(())
    }

    /// Create the cluster on first use, start it unless it runs, and make sure
    /// the `colony` database exists and is migrated. Returns its URL.
    async fn start(&self) -> anyhow::Result<String> {
        let password_file = self.dir.join("password");
        let port_file = self.dir.join("port");
        let root = nix::unistd::Uid::effective().is_root();
        if !self.data().join("PG_VERSION").exists() {
            say(format!("creating a private Postgres cluster in {}", self.data().display()));
            std::fs::create_dir_all(self.data())?;
            let password: String = {
                use rand::Rng;
                rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect()
            };
            write_private(&password_file, &password)?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            write_private(&port_file, &port.to_string())?;
            if root {
                self.run(
                    "chown",
                    std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir),
                )?;
                let reachable = std::process::Command::new("runuser")
                    .args(["-u", "postgres", "--", "test", "-w"])
                    .arg(self.data())
                    .status()
                    .is_ok_and(|s| s.success());
                if !reachable {
                    return Err(Exit::config(format!(
                        "running as root, the cluster runs as user postgres, which cannot reach {}; \
                         choose a --dir it can reach, e.g. /var/lib/colony",
                        self.dir.display()
                    ))
                    .into());
                }
            }
            self.run(
                "initdb",
                self.command("initdb")
                    .arg("-D")
                    .arg(self.data())
                    .args(["--username=colony", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"])
                    .arg(format!("--pwfile={}", password_file.display())),
            )?;
            let conf = format!(
                "\n# mothership up\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
            );
            let mut f = std::fs::OpenOptions::new().append(true).open(self.data().join("postgresql.conf"))?;
            std::io::Write::write_all(&mut f, conf.as_bytes())?;
        }
        let password = std::fs::read_to_string(&password_file)
            .with_context(|| format!("reading {} (the cluster's password)", password_file.display()))?;
        let port: u16 = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("reading {}", port_file.display()))?;

        let running = self.command("pg_ctl").arg("status").arg("-D").arg(self.data()).output()?.status.success();
        if running {
            say(format!("Postgres is already running on 127.0.0.1:{port}; using it"));
        } else {
            let log = self.logs.join("postgres.log");
            if root {
                std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
                self.run("chown", std::process::Command::new("chown").arg("postgres").arg(&log))?;
            }
            say(format!("starting Postgres on 127.0.0.1:{port}"));
            self.run(
                "pg_ctl start",
                self.command("pg_ctl").arg("-D").arg(self.data()).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]),
            )
            .with_context(|| format!("see {}", log.display()))?;
        }

        let admin_url = format!("postgres://colony:{}@127.0.0.1:{port}/postgres", password.trim());
        let admin_pool = PgPool::connect(&admin_url).await.context("connecting to the private cluster")?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'colony')")
            .fetch_one(&admin_pool)
            .await?;
        if !exists {
            sqlx::query("CREATE DATABASE colony").execute(&admin_pool).await?;
        }
        admin_pool.close().await;
        let url = format!("postgres://colony:{}@127.0.0.1:{port}/colony", password.trim());
        let pool = PgPool::connect(&url).await.context("connecting to the colony database")?;
        let report = colony::db::migrate(&pool).await?;
        if !report.applied.is_empty() {
            say(format!("applied {} migration(s); schema is at version {}", report.applied.len(), report.version));
        }
        pool.close().await;
        Ok(url)
    }

    /// A fast shutdown: open transactions roll back, everything committed stays.
    async fn stop(&self) -> anyhow::Result<()> {
        self.run("pg_ctl stop", self.command("pg_ctl").arg("-D").arg(self.data()).args(["-m", "fast", "-w", "stop"]))
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

// ----------------------------------------------------------------- demo ----

/// The demo channel: ffmpeg broadcasts a test pattern as live HLS into
/// `<dir>/demo`, and a loopback HTTP server serves it.
struct Demo {
    ffmpeg: Child,
    server: tokio::task::JoinHandle<()>,
}

impl Demo {
    /// Adds the demo channel when no channel exists; broadcasts it whenever it
    /// exists and is enabled. None when there is nothing to broadcast.
    async fn start(pool: &PgPool, layout: &Layout, tools: &Tools, length: Duration) -> anyhow::Result<Option<Self>> {
        let channels = admin::channel_status(pool).await?;
        let demo_enabled = match channels.iter().find(|c| c.login == DEMO) {
            Some(c) => c.enabled,
            None if channels.is_empty() => true,
            None => return Ok(None),
        };
        if !demo_enabled {
            return Ok(None);
        }
        if !tools.ffmpeg {
            bail!("the demo channel needs ffmpeg; install it, or pass --no-demo");
        }
        for entry in std::fs::read_dir(&layout.demo)?.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let url = format!("http://{addr}/live.m3u8");
        if channels.is_empty() {
            let new = NewChannel::parse(DEMO, &url, Some("Demo (ffmpeg test pattern)".into()), None, None, &[])?;
            admin::add_channel(pool, &new).await?;
            say(format!("no channel configured: added the demo channel '{DEMO}' ({url})"));
        } else {
            let update = ChannelUpdate { source_url: Some(url.clone()), ..Default::default() };
            admin::update_channel(pool, DEMO, &update).await?;
        }
        let dir = layout.demo.clone();
        let server = tokio::spawn(async move {
            let app = axum::Router::new().route("/{file}", axum::routing::get(serve)).with_state(dir);
            let _ = axum::serve(listener, app).await;
        });
        let log = std::fs::File::create(layout.logs.join("demo-ffmpeg.log"))?;
        let seg = layout.demo.join("s%05d.ts");
        let ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "warning", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", &length.as_secs().max(4).to_string()])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(["-b:v", "800k", "-c:a", "aac", "-b:a", "96k"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "6"])
            .args(["-hls_flags", "delete_segments+independent_segments+temp_file"])
            .arg("-hls_segment_filename")
            .arg(&seg)
            .arg(layout.demo.join("live.m3u8"))
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: Ctrl-C reaches `up`, which ends it in order.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting ffmpeg for the demo channel")?;
        say(format!(
            "the demo channel broadcasts a {} test pattern; it ends by itself",
            humantime::format_duration(length)
        ));
        Ok(Some(Self { ffmpeg, server }))
    }

    async fn stop(mut self) {
        let _ = self.ffmpeg.start_kill();
        let _ = self.ffmpeg.wait().await;
        self.server.abort();
    }
}

async fn serve(
    axum::extract::State(dir): axum::extract::State<PathBuf>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let safe = !file.is_empty() && file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let kind = if file.ends_with(".m3u8") { "application/vnd.apple.mpegurl" } else { "video/mp2t" };
    match tokio::fs::read(dir.join(&file)).await {
        Ok(body) if safe && !file.starts_with('.') => ([(header::CONTENT_TYPE, kind)], body).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

// ------------------------------------------------------------- progress ----

/// Prints what happens: decisions, recordings, jobs.
struct Narrator {
    pool: PgPool,
    media: PathBuf,
    file_storage: bool,
    last_decision: i64,
    recordings: HashMap<i64, (String, i64)>,
    jobs: HashMap<i64, String>,
}

impl Narrator {
    async fn new(pool: &PgPool, layout: &Layout, last_decision: i64) -> anyhow::Result<Self> {
        let mut n = Self {
            pool: pool.clone(),
            media: layout.media.clone(),
            file_storage: std::env::var_os("COLONY_STORAGE_URL").is_none(),
            last_decision,
            recordings: HashMap::new(),
            jobs: HashMap::new(),
        };
        // What already happened is not news.
        let done: Vec<(i64, String, i64)> =
            sqlx::query_as("SELECT id, state::text, segment_count FROM recordings").fetch_all(pool).await?;
        n.recordings = done.into_iter().map(|(id, s, c)| (id, (s, c))).collect();
        let jobs: Vec<(i64, String)> = sqlx::query_as("SELECT id, state::text FROM jobs").fetch_all(pool).await?;
        n.jobs = jobs.into_iter().collect();
        Ok(n)
    }

    async fn look(&mut self) -> anyhow::Result<()> {
        let decisions: Vec<(i64, String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, action, subject, reason, outcome, error FROM decisions WHERE id > $1 ORDER BY id",
        )
        .bind(self.last_decision)
        .fetch_all(&self.pool)
        .await?;
        for (id, action, subject, reason, outcome, error) in decisions {
            self.last_decision = id;
            let error = error.map(|e| format!(": {e}")).unwrap_or_default();
            say(format!("mothership: {action} {subject} ({reason}) → {outcome}{error}"));
        }

        let recordings: Vec<(i64, String, String, i64, f64, String)> = sqlx::query_as(
            "SELECT r.id, c.login, r.state::text, r.segment_count, r.duration_secs, r.storage_prefix
               FROM recordings r JOIN channels c ON c.id = r.channel_id ORDER BY r.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, login, state, segments, secs, prefix) in recordings {
            let before = self.recordings.get(&id).cloned();
            let changed = before.as_ref().is_none_or(|(s, _)| *s != state);
            let progressed = before.as_ref().is_some_and(|(_, n)| segments / 10 > n / 10);
            if changed || progressed {
                let playlist = self.media.join(&prefix).join("playlist.m3u8");
                let tail = match state.as_str() {
                    "complete" | "interrupted" if self.file_storage => {
                        format!("; play it: ffplay {}", playlist.display())
                    }
                    "complete" | "interrupted" => format!("; playlist at {prefix}/playlist.m3u8"),
                    _ => String::new(),
                };
                say(format!("recording {id} of {login}: {state}, {segments} segments, {secs:.0}s{tail}"));
            }
            self.recordings.insert(id, (state, segments));
        }

        let jobs: Vec<(i64, String, String, Option<String>)> =
            sqlx::query_as("SELECT id, kind::text, state::text, last_error FROM jobs ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        for (id, kind, state, error) in jobs {
            if self.jobs.get(&id) != Some(&state) {
                let error = error.filter(|_| state != "succeeded").map(|e| format!(": {e}")).unwrap_or_default();
                say(format!("job {id} ({kind}): {state}{error}"));
                self.jobs.insert(id, state);
            }
        }
        Ok(())
    }
}
